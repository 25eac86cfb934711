"""AIDE on the converged lab (issue 19): every host has its baseline, taken at the end of the
converge by trustops-aide-check.service, the daily timer is scheduled, and the result reaches
Prometheus with no changes (the excluded churn keeps the lab quiet). Running a whole check here
would take minutes per host: the detection itself is tests/test_aide_check.py's, on AIDE's text."""
from __future__ import annotations

import subprocess

from tests.playbooks import lab_hosts
from tests.test_alerting import query
from trustops.inventory import ROLES
from trustops.wait import until


def test_every_host_has_a_baseline_and_a_daily_check_reported_to_prometheus(lab, lab_config, converged):
    for role in ROLES:
        proc = subprocess.run(["docker", "exec", lab_config.container(role), "bash", "-c",
                               "test -s /var/lib/aide/aide.db && systemctl is-enabled trustops-aide-check.timer "
                               "&& systemctl is-active trustops-aide-check.timer && ! systemctl is-enabled "
                               "dailyaidecheck.timer"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{role}: {proc.stdout} {proc.stderr}"
    ok = until(lambda: query(lab_config, "trustops_aide_last_run_success == 1"), 120,
               "trustops_aide_last_run_success == 1 in Prometheus", interval=3)
    assert {m["metric"]["host"] for m in ok} == lab_hosts(lab_config), ok
    assert not query(lab_config, "sum by (host) (trustops_aide_changed_entries) > 0")
