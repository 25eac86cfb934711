"""The alerting pipeline on the converged test lab, for real: host, monitor and backup metrics
arrive (every target up and every rule group loaded: tests/live/test_monitoring.py), and a staged
attack on one lab host reaches the receivers through the Alertmanager cluster on the ops hosts
(`trustops drill attack`), exactly once, with one ops host killed."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests
import yaml

from tests.playbooks import lab_hosts
from trustops.converge import ANSIBLE_DIR, role_default
from trustops.heartbeat import PAGE_ALERT
from trustops.lab import environment
from trustops.lab.system import Progress
from trustops import drill, opsapi
from trustops.wait import until

HEARTBEAT_DIR = "/var/lib/trustops-heartbeat"
PAGE_GROUP_WAIT = int(role_default("alerting", "alerting_group_wait_critical").rstrip("s"))
PEER_WAIT = 15               # Alertmanager's --cluster.peer-timeout: how long the second peer waits for the first


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


def _firing_notifications(cfg, since: float) -> dict[str, list[str]]:
    """alertname -> the peers that delivered a firing notification of it since `since`."""
    out: dict[str, list[str]] = {}
    for rec in drill.sink_records(cfg):
        if rec["received_at"] < since:
            continue
        for a in rec["payload"].get("alerts", []):
            if a.get("status") == "firing":
                out.setdefault(a["labels"].get("alertname", ""), []).append(rec["peer"])
    return out


def _peer(cfg, key: str, path: str):
    got = opsapi.session(cfg.state_dir).get(opsapi.lab_urls(cfg, key)[1] + path, timeout=(2, 5))
    got.raise_for_status()
    return got.json()


def _heartbeat_pages(cfg, since: float) -> list[dict]:
    out = subprocess.run(["docker", "exec", cfg.container("db"), "cat", f"{HEARTBEAT_DIR}/alerts-pager.jsonl"],
                         capture_output=True, text=True, timeout=30).stdout
    return [r["payload"] for r in map(json.loads, out.splitlines()) if r["received_at"] > since]


def test_a_staged_attack_reaches_the_receivers_exactly_once_with_an_ops_host_killed(lab, lab_config, converged,
                                                                                    capsys):
    """The staged attack (`trustops drill attack`) while one ops host is lost (issue 19: no single
    point of failure). On the twin there are two ops hosts, each with Prometheus and an Alertmanager
    peer of one cluster; the first is killed (SIGKILL to the whole host, as a VM lost) before the
    attack. Every alert still reaches its receiver, exactly once over both hosts' sinks; the db
    NSG drops the ops host's scan before db's UFW sees it (as on Azure), so the scan's two alerts
    are held back and must not arrive; the dead man's switch on db pages for the lost Prometheus.
    The host then comes back as a restarted VM would, rejoins the cluster, gets the alerts again
    from the monitors, and does not notify them a second time. (The flat lab has one ops host: the
    attack runs with nothing killed.)"""
    keys = environment.ops_keys(lab_config)
    lost = keys[0] if len(keys) > 1 else None
    if lost:
        until(lambda: len(_peer(lab_config, keys[1], "/api/v2/status")["cluster"]["peers"] or []) == len(keys), 120,
              "every Alertmanager peer in the cluster", interval=2, retry_on=(requests.RequestException,))
        killed = time.time()
        subprocess.run(["docker", "kill", lab_config.container(lost)], check=True, capture_output=True, timeout=60)
    try:
        result = drill.attack(lab_config, Progress(), timeout=150)
        assert result.missing == [], (result.at_alertmanager, result.delivered, result.already_firing)
        assert result.leaked == [], result.held_back
        assert set(result.held_back) == ({"UfwPortScan", "UfwDatabasePortProbe"} if lab_config.kind == "twin" else set())
        assert "PostgresLoginAfterFailures" in result.delivered, \
            f"the page was firing before this attack (another within the monitor's 10 min): {result.already_firing}"
        receiver, latency = result.delivered["PostgresLoginAfterFailures"]
        assert receiver == "pager"
        notified = _firing_notifications(lab_config, result.started)
        for name in result.delivered:
            assert len(notified.get(name, [])) == 1 and lost not in notified[name], (name, notified)
        if lost:   # the lost host's Prometheus falls silent: the switch on db pages naming it
            replica = next(n for n in lab["all"]["children"]["ops"]["hosts"] if environment.host_key("ops", n) == lost)
            until(lambda: [p for p in _heartbeat_pages(lab_config, killed) if p["status"] == "firing"
                           and p["alerts"][0]["labels"].get("replica") == replica], 90, f"{PAGE_ALERT} for {replica}",
                  interval=2)
    finally:
        if lost:   # back as a restarted VM: the same disk, its services start, the lab routes it again
            environment.up(lab_config, Progress(quiet=True))
    if lost:
        until(lambda: len(_peer(lab_config, lost, "/api/v2/status")["cluster"]["peers"] or []) == len(keys), 180,
              f"{lost} back in the cluster", interval=3, retry_on=(requests.RequestException,))
        # the monitor re-posts what fires every minute, to the peer that is back too; once that peer
        # holds the page, a group wait and a peer's wait later it has still not notified it again
        until(lambda: [a for a in _peer(lab_config, lost, "/api/v2/alerts?active=true")
                       if a["labels"].get("alertname") == "PostgresLoginAfterFailures"], 120,
              f"the page at {lost}'s Alertmanager again", interval=2, retry_on=(requests.RequestException,))
        time.sleep(PAGE_GROUP_WAIT + PEER_WAIT + 5)
        again = _firing_notifications(lab_config, result.started)
        assert again.get("PostgresLoginAfterFailures") == notified["PostgresLoginAfterFailures"], again
    with capsys.disabled():
        print(f"\n  drill latencies (s since the attack began){f' with {lost} killed' if lost else ''}: at Alertmanager "
              f"{ {k: round(v, 1) for k, v in result.at_alertmanager.items()} }, delivered "
              f"{ {k: (r, round(t, 1)) for k, (r, t) in result.delivered.items()} }")


GOSSIP_PROBE = r"""
import socket, ssl, sys
host, port, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def attempt(with_cert):
    ctx = ssl.create_default_context(cafile=f"{tls}/ca.crt")
    if with_cert:
        ctx.load_cert_chain(f"{tls}/server.crt", f"{tls}/server.key")
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.settimeout(3)
                try:
                    s.recv(1)   # TLS 1.3: a refused client certificate shows on the first read
                except socket.timeout:
                    pass        # the peer waits for gossip: taken
                return "accepted"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__
print(attempt(False), attempt(True))
"""


def test_the_clusters_gossip_takes_only_a_peer_with_a_certificate_of_the_fleet(lab, lab_config, converged):
    """From the second ops host (where the NSG and UFW let it in) to the first one's gossip port:
    TLS whose server certificate checks against the platform CA, and refused without a client
    certificate of it; the host's own gets in. (Plain gossip, as before, let anything that reached
    the port join the cluster and read or forge silences.)"""
    keys = environment.ops_keys(lab_config)
    if len(keys) < 2:
        pytest.skip("one ops host: no cluster, no gossip port")
    first_ip = next(iter(lab["all"]["children"]["ops"]["hosts"].values()))["private_ip"]
    port = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text())["trustops_alertmanager_cluster_port"]
    proc = subprocess.run(["docker", "exec", "-i", lab_config.container(keys[1]), "python3", "-", first_ip, str(port),
                           role_default("alerting", "alerting_tls_dir")], input=GOSSIP_PROBE, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    without, with_cert = proc.stdout.split()
    assert with_cert == "accepted", proc.stdout     # else the refusal below proves nothing
    assert without == "SSLError", proc.stdout


def test_the_cluster_gossip_is_mutual_tls_over_tcp_only():
    """Without the lab: every peer's Alertmanager gets --cluster.tls-config, whose server side
    requires a client certificate of the platform CA; the host's alerting certificate may be a
    client's; and with TLS the gossip is TCP only, so no UDP flow is opened for it."""
    from trustops.infra.network import FLOWS

    role = ANSIBLE_DIR / "roles" / "alerting"
    tasks = (role / "tasks" / "alertmanager.yml").read_text()
    assert "'--cluster.tls-config=' ~ alerting_cluster_tls_config" in tasks
    tls = yaml.safe_load((role / "templates" / "alertmanager-cluster-tls.yml.j2").read_text()
                         .replace("{{ alerting_tls_dir }}", "/tls"))
    assert tls["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    assert tls["tls_server_config"]["client_ca_file"] == tls["tls_client_config"]["ca_file"] == "/tls/ca.crt"
    assert "clientAuth" in (role / "tasks" / "tls.yml").read_text()
    port = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text())["trustops_alertmanager_cluster_port"]
    assert {f.protocol for f in FLOWS if f.port == port} == {"Tcp"}
