"""Re-seals every encrypted field under the current key version (key rotation, REST-03/AUTH-03).
Safe to run again: values already under the current version are left alone."""
from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from core.fields import EncryptedTextField, cipher


class Command(BaseCommand):
    help = "Re-encrypt encrypted fields under the current key version"

    def handle(self, *args, **opts):
        c = cipher()
        current = c.provider.current_version()
        total = 0
        for model in apps.get_models():
            fields = [f for f in model._meta.fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            # the stored text (not decrypted) tells which key version sealed each value
            stored = model.objects.extra(select={f.attname + "__raw": f.column for f in fields})
            n = 0
            for obj in stored.iterator(chunk_size=500):
                stale = [f for f in fields if (v := getattr(obj, f.attname + "__raw")) and c.needs_rotation(v)]
                if stale:
                    with transaction.atomic():
                        obj.save(update_fields=[f.name for f in stale])
                    n += 1
            total += n
            self.stdout.write(f"{model._meta.label}: {n} rows re-encrypted under {current}")
        self.stdout.write(self.style.SUCCESS(f"done: {total} rows now under key version {current}"))
