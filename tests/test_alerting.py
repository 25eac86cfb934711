"""The alerting pipeline on the converged test lab, for real: Prometheus on the ops host scrapes
every exporter and monitor, the backup metrics arrive, and a staged attack on one lab host reaches
the ops host's receivers through Alertmanager (`trustops drill attack`)."""
from __future__ import annotations

import time

import requests

from trustops.lab.system import Progress
from trustops import drill


def prometheus(lab_config) -> str:
    return f"http://127.0.0.1:{lab_config.ports('ops')[9090]}"


def query(lab_config, expr: str) -> list[dict]:
    r = requests.get(f"{prometheus(lab_config)}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait(predicate, timeout: float = 90, step: float = 2):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(step)


def test_prometheus_scrapes_every_exporter_and_monitor(lab, lab_config, converged):
    def healthy():
        targets = requests.get(f"{prometheus(lab_config)}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        up = {(t["labels"]["job"], t["labels"]["host"]) for t in targets if t["health"] == "up"}
        want = {("node", h) for h in ("app", "db", "ops")} | {("trustops-monitor", h) for h in ("app", "db")} \
            | {("prometheus", "ops"), ("alertmanager", "ops"), ("benefits-app", "app")}
        return want <= up and (want, up)
    assert wait(healthy), requests.get(f"{prometheus(lab_config)}/api/v1/targets", timeout=10).text[:3000]
    rules = requests.get(f"{prometheus(lab_config)}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {g["name"] for g in rules} >= {"trustops-monitor", "trustops-backups", "trustops-hosts", "trustops-app"}
    assert query(lab_config, "trustops_ufw_active == 1") and len(query(lab_config, "trustops_ufw_active")) == 3
    # the monitors role gave both hosts the C hot path built here, and it loads on Debian's python3
    hot = query(lab_config, "trustops_monitor_build_info == 1")
    assert {(m["metric"]["host"], m["metric"]["hot_path"]) for m in hot} == {("app", "c"), ("db", "c")}, hot


def test_backup_and_certificate_metrics_reach_prometheus(lab, lab_config, converged):
    import subprocess

    started = time.time()
    subprocess.run(["docker", "exec", lab_config.container("db"), "systemctl", "start", "trustops-backup.service"],
                   check=True, capture_output=True)

    def fresh():   # the run just made, once Prometheus has scraped it (not the converge's first backup)
        found = query(lab_config, 'trustops_backup_last_success_timestamp_seconds{database="benefits"}')
        return found if found and float(found[0]["value"][1]) >= started - 1 else None
    assert wait(fresh), query(lab_config, 'trustops_backup_last_success_timestamp_seconds')
    certs = wait(lambda: query(lab_config, "trustops_tls_cert_expiry_timestamp_seconds"))
    assert {c["metric"]["path"] for c in certs} >= {"/etc/postgresql/15/main/tls/server.crt",
                                                    "/etc/trustops/postgres-ca.crt"}
    assert not query(lab_config, 'ALERTS{alertname=~"BackupTooOld|TlsCertificateExpiring|UfwInactive"}')


def test_a_staged_attack_reaches_the_receivers(lab, lab_config, converged, capsys):
    result = drill.attack(lab_config, Progress(), timeout=150)
    assert result.missing == [], (result.at_alertmanager, result.delivered, result.already_firing)
    receiver, latency = result.delivered["PostgresLoginAfterFailures"]
    assert receiver == "pager"
    with capsys.disabled():
        print(f"\n  drill latencies (s since the attack began): at Alertmanager "
              f"{ {k: round(v, 1) for k, v in result.at_alertmanager.items()} }, delivered "
              f"{ {k: (r, round(t, 1)) for k, (r, t) in result.delivered.items()} }")
