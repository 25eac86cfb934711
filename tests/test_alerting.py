"""The alerting pipeline on the converged test lab, for real: host, monitor and backup metrics
arrive (every target up and every rule group loaded: tests/live/test_monitoring.py), and a staged
attack on one lab host reaches the ops host's receivers through Alertmanager (`trustops drill
attack`)."""
from __future__ import annotations

import time

from tests.playbooks import lab_hosts
from trustops.lab.system import Progress
from trustops import drill, opsapi
from trustops.wait import until


def prometheus(lab_config) -> str:
    return opsapi.lab_urls(lab_config)[0]


def query(lab_config, expr: str) -> list[dict]:
    """Asked as the operator (Prometheus serves TLS and basic auth)."""
    r = opsapi.session(lab_config.state_dir).get(f"{prometheus(lab_config)}/api/v1/query", params={"query": expr},
                                                 timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_host_metrics_and_the_monitors_hot_path_reach_prometheus(lab, lab_config, converged):
    """The UFW state of every host arrives, and the monitors role gave every host the C hot path
    built here, which loads on Debian's python3."""
    until(lambda: len(query(lab_config, "trustops_ufw_active == 1")) == len(lab_hosts(lab_config)), 90,
          "trustops_ufw_active == 1 on every host",
          interval=2)
    hot = until(lambda: (lambda q: q if len(q) == len(lab_hosts(lab_config)) else None)(
        query(lab_config, "trustops_monitor_build_info == 1")), 90, "trustops_monitor_build_info of every host",
        interval=2)
    assert {(m["metric"]["host"], m["metric"]["hot_path"]) for m in hot} == {(h, "c") for h in lab_hosts(lab_config)}, hot


def test_backup_and_certificate_metrics_reach_prometheus(lab, lab_config, converged):
    import subprocess

    started = time.time()
    subprocess.run(["docker", "exec", lab_config.container("db"), "systemctl", "start", "trustops-backup.service"],
                   check=True, capture_output=True)

    def fresh():   # the run just made, once Prometheus has scraped it (not the converge's first backup)
        found = query(lab_config, 'trustops_backup_last_success_timestamp_seconds{database="benefits"}')
        return found if found and float(found[0]["value"][1]) >= started - 1 else None
    until(fresh, 90, "the backup run just started reaching Prometheus", interval=2)
    certs = until(lambda: query(lab_config, "trustops_tls_cert_expiry_timestamp_seconds"), 90,
                  "certificate expiry metrics", interval=2)
    assert {c["metric"]["path"] for c in certs} >= {"/etc/postgresql/15/main/tls/server.crt",
                                                    "/etc/trustops/postgres-ca.crt"}
    assert not query(lab_config, 'ALERTS{alertname=~"BackupTooOld|TlsCertificateExpiring|UfwInactive"}')


def test_a_staged_attack_reaches_the_receivers(lab, lab_config, converged, capsys):
    """On the twin the db NSG drops the ops host's scan before db's UFW sees it (as on Azure): the
    scan's two alerts are held back, and must not arrive."""
    result = drill.attack(lab_config, Progress(), timeout=150)
    assert result.missing == [], (result.at_alertmanager, result.delivered, result.already_firing)
    assert result.leaked == [], result.held_back
    assert set(result.held_back) == ({"UfwPortScan", "UfwDatabasePortProbe"} if lab_config.kind == "twin" else set())
    receiver, latency = result.delivered["PostgresLoginAfterFailures"]
    assert receiver == "pager"
    with capsys.disabled():
        print(f"\n  drill latencies (s since the attack began): at Alertmanager "
              f"{ {k: round(v, 1) for k, v in result.at_alertmanager.items()} }, delivered "
              f"{ {k: (r, round(t, 1)) for k, (r, t) in result.delivered.items()} }")
