"""Applies the retention rules of core/privacy.py (run daily by the app host's timer)."""
from django.core.management.base import BaseCommand

from core.privacy import RETENTION, purge_expired


class Command(BaseCommand):
    help = "Delete what is past its retention period (core/privacy.py RETENTION)"

    def handle(self, *args, **opts):
        counts = purge_expired()
        for what, (period, why) in RETENTION.items():
            self.stdout.write(f"{what}: kept {period.days} days ({why})")
        self.stdout.write(self.style.SUCCESS("purged: " + ", ".join(f"{n} {k}" for k, n in counts.items())))
