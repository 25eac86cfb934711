"""Re-seals every encrypted field under the current key version (key rotation, REST-03/AUTH-03).
Safe to run again: values already under the current version are left alone. A row that does not
decrypt (its key version is gone) is named and skipped; the others are still re-sealed, and the
command exits non-zero at the end."""
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.fields import EncryptedTextField, Sealed, UndecryptableField, cipher


class Command(BaseCommand):
    help = "Re-encrypt encrypted fields under the current key version"

    def handle(self, *args, **opts):
        c = cipher()
        current = c.provider.current_version()
        total, failed = 0, []
        for model in apps.get_models():
            fields = [f for f in model._meta.fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            n = 0
            for obj in model.objects.iterator(chunk_size=500):
                # the stored text (not decrypted yet) tells which key version sealed each value
                stale = [f for f in fields if isinstance(v := obj.__dict__.get(f.attname), Sealed) and c.needs_rotation(v)]
                if not stale:
                    continue
                try:
                    for f in stale:
                        setattr(obj, f.attname, str(getattr(obj, f.attname)))   # plaintext: sealed anew on save
                except UndecryptableField as exc:
                    failed.append(str(exc))
                    self.stderr.write(f"skipped: {exc}")
                    continue
                with transaction.atomic():
                    obj.save(update_fields=[f.name for f in stale])
                n += 1
            total += n
            self.stdout.write(f"{model._meta.label}: {n} rows re-encrypted under {current}")
        if failed:
            raise CommandError(f"{len(failed)} rows could not be decrypted and were left as they were (see above)")
        self.stdout.write(self.style.SUCCESS(f"done: {total} rows now under key version {current}"))
