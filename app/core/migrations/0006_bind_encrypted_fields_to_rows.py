"""Re-seals every encrypted field with the row's identity in the associated data (gcm1 -> gcm2),
so a ciphertext copied between rows no longer decrypts. Needs the field keys (the app role mounts
them for migrations); reversible."""
from django.db import migrations

FIELDS = [("core_employee", "core.Employee", "user_id", ("bank_account", "national_id"))]


def reseal(apps, schema_editor, forward=True):
    from benefits.crypto import LEGACY_PREFIX, PREFIX
    from core.fields import cipher
    c = cipher()
    conn = schema_editor.connection
    for table, label, row_key, columns in FIELDS:
        with conn.cursor() as cur:
            cur.execute(f"select id, {row_key}, {', '.join(columns)} from {table}")
            rows = cur.fetchall()
        for pk, row, *values in rows:
            changes = {}
            for column, value in zip(columns, values):
                if not value:
                    continue
                legacy, bound = f"{label}.{column}", f"{label}.{column}:{row}"
                if forward and value.startswith(LEGACY_PREFIX + ":"):
                    changes[column] = c.encrypt(c.decrypt(value, legacy, prefix=LEGACY_PREFIX), bound)
                elif not forward and value.startswith(PREFIX + ":"):
                    plain = c.decrypt(value, bound)
                    sealed = c.encrypt(plain, legacy)
                    changes[column] = LEGACY_PREFIX + sealed[len(PREFIX):]
            if changes:
                with conn.cursor() as cur:
                    cur.execute(f"update {table} set {', '.join(f'{k} = %s' for k in changes)} where id = %s",
                                [*changes.values(), pk])


class Migration(migrations.Migration):
    dependencies = [("core", "0005_security_review")]
    operations = [migrations.RunPython(reseal, lambda apps, se: reseal(apps, se, forward=False))]
