"""Lists the sub-processor endpoints of this deployment's effective configuration and exits 1 when
any is outside the EU (HOST-03); the controls probe runs it inside the live app container."""
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.subprocessors import endpoints, outside_eu


class Command(BaseCommand):
    help = "List each sub-processor endpoint and its region; fail when any is outside the EU"

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object: endpoints and outside_eu")

    def handle(self, *args, **opts):
        found = endpoints(settings)
        outside = outside_eu(found)
        if opts["json"]:
            self.stdout.write(json.dumps({"endpoints": [e.as_dict() for e in found], "outside_eu": outside}))
        else:
            for e in found:
                self.stdout.write(f"{e.name}: {e.endpoint} ({e.region}){'' if e.in_eu else ' OUTSIDE THE EU'}")
        if outside:
            raise CommandError(f"{len(outside)} sub-processor endpoint(s) outside the EU: {'; '.join(outside)}")
