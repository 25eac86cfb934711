"""AIDE on the converged lab (issue 19): every host has its baseline, taken at the end of the
converge by trustops-aide-check.service, the daily timer is scheduled, and the result reaches
Prometheus with no changes, and a whole check run now, after the hosts have been busy a while,
finds none either (the excluded churn keeps the lab quiet: the monitors' checkpoints, metrics and
logs change all day). The detection itself is tests/test_aide_check.py's, on AIDE's text."""
from __future__ import annotations

import re
import subprocess

from tests.playbooks import lab_hosts, role_template
from tests.test_alerting import query
from trustops.converge import role_default
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


def test_aide_and_aide_common_are_installed_with_the_roles_configuration_only(lab, lab_config, converged):
    """CIS Debian 12 audits aide and aide-common as installed; AIDE runs on the role's configuration,
    at the path aide-common's tools and Lynis read, and none of aide-common's 211 snippets is there
    (dpkg left them out: their ucf run was a minute of the first converge)."""
    config = role_default("aide", "aide_config")
    header = role_template("aide", "trustops-aide.conf.j2").render(aide_db="", aide_checksums="",
                                                                    aide_exclude=[]).splitlines()[0]
    for role in ROLES:
        proc = subprocess.run(["docker", "exec", lab_config.container(role), "bash", "-c",
                               "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' aide aide-common && "
                               f"head -1 {config} && aide --config {config} --config-check && "
                               "find /etc/aide /usr/share/aide/config -type f | sort"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{role}: {proc.stdout} {proc.stderr}"
        lines = proc.stdout.splitlines()
        assert lines[:3] == ["aide ii ", "aide-common ii ", header], f"{role}: {lines}"
        assert lines[3:] == [config], f"{role}: files besides the role's: {lines[3:]}"


def test_a_check_on_a_busy_host_finds_nothing_changed(lab, lab_config, converged):
    """A full check on every host at once (about 15 s each with sha512): the state the project's own
    services write (monitor checkpoints, metrics, backups, journals) is excluded, so nothing shows."""
    procs = {role: subprocess.Popen(["docker", "exec", lab_config.container(role), "bash", "-c",
                                     "systemctl start trustops-aide-check.service && "
                                     "cat /var/lib/trustops/metrics/aide.prom && journalctl -q -o cat -n 60 "
                                     "-u trustops-aide-check.service | grep -E '^(File|Directory|Link):' || true"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for role in ROLES}
    for role, proc in procs.items():
        # 15-40 s each, but 231 s once (CI simulation 11: reads of every file, three hosts at once,
        # behind other writers on the machine's one disk, whose mq-deadline ignores I/O classes)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{role}: {out}"
        counts = dict(re.findall(r'trustops_aide_changed_entries\{kind="(\w+)"\} (\d+)', out))
        assert counts == {"added": "0", "removed": "0", "changed": "0"}, f"{role}: {counts}\n{out[-2000:]}"
