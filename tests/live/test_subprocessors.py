"""HOST-03 on the deployed system: the running app's own effective configuration (its environment,
its SDK's client), read inside the live container by `manage.py subprocessors --json`, names no
sub-processor endpoint outside the EU."""
from __future__ import annotations

import json

import pytest

from trustops.controls.evidence import CouldNotCheck


@pytest.mark.probe("subprocessors-in-eu")
def test_every_subprocessor_endpoint_of_the_running_app_is_in_the_eu(site):
    """Every sub-processor endpoint in the running app's effective configuration is in the EU/EEA
    (AI on Bedrock in an EU region or none, PostHog on its EU host, S3 in an EU region)."""
    for name in site.need("app"):
        container = site.setting("app", "app_container_name")
        live = site.setting("app", "app_live_slot_file")
        command = f"docker exec {container}-$(cat {live}) python3 manage.py subprocessors --json"
        result = site.run(name, command)
        try:
            found = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise CouldNotCheck(f"{name}: `{command}` exited {result.rc} without its JSON: "
                                f"{' '.join(result.stderr.split())[:200]}") from exc
        assert found["endpoints"], f"{name}: the app reports no sub-processor endpoint at all"
        assert found["outside_eu"] == [], f"{name}: sub-processor endpoints outside the EU: {found['outside_eu']}"
