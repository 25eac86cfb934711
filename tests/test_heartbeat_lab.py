"""The dead man's switch on the converged lab (issue 19). Prometheus runs on every ops host (an HA
pair) and the Alertmanagers there as one cluster: trustops-heartbeat on the db host hears each
replica's Watchdog apart. Prometheus stopped on one ops host pages naming that replica (the other
still alerts); Alertmanager stopped on one ops host pages nobody (the other peer still notifies),
stopped on all of them it pages. Each page is resolved when the heartbeat is back. The lab's pager
is alerts-pager.jsonl on db; the lab runs it on short timings (lab.environment.LAB_HEARTBEAT_VARS)."""
from __future__ import annotations

import json
import subprocess
import time

from trustops.heartbeat import PAGE_ALERT, STATE_FILE
from trustops.lab.environment import LAB_HEARTBEAT_VARS, ops_keys
from trustops.wait import until

STATE_DIR = "/var/lib/trustops-heartbeat"
# After Prometheus stops, Alertmanager holds Watchdog for 4 x max(group interval 5s, resend delay),
# then the receiver waits its timeout; after Alertmanager stops, only the timeout. Slack for load.
TIMEOUT = LAB_HEARTBEAT_VARS["heartbeat_timeout"]
BOUND = {"prometheus": 4 * 5 + TIMEOUT + 45, "prometheus-alertmanager": 5 + TIMEOUT + 45}


def _exec(lab_config, host: str, command: str) -> str:
    proc = subprocess.run(["docker", "exec", lab_config.container(host), "bash", "-c", command],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{host}: {command}: {proc.stderr[-500:]}"
    return proc.stdout


def _pages(lab_config) -> list[tuple[float, str, str]]:
    """(received, status, replica) of every heartbeat page."""
    out = _exec(lab_config, "db", f"cat {STATE_DIR}/alerts-pager.jsonl 2>/dev/null || true")
    return [(r["received_at"], r["payload"]["status"], r["payload"]["alerts"][0]["labels"].get("replica", ""))
            for r in map(json.loads, out.splitlines())
            if r["payload"]["alerts"][0]["labels"]["alertname"] == PAGE_ALERT]


def _beating(lab_config, hosts: list[str]) -> bool:
    state = json.loads(_exec(lab_config, "db", f"cat {STATE_DIR}/{STATE_FILE} 2>/dev/null || echo '{{}}'"))
    beats = state.get("beats") or {}
    return all(time.time() - (beats.get(h) or 0) < TIMEOUT / 2 for h in hosts)


def _stop(lab_config, keys: list[str], unit: str) -> None:
    for key in keys:
        _exec(lab_config, key, f"systemctl stop {unit}")


def _start(lab_config, keys: list[str], unit: str) -> None:
    for key in keys:
        _exec(lab_config, key, f"systemctl start {unit}")


def _paged_after(lab_config, since: float, unit: str, replicas: set[str] | None = None) -> float:
    def paged():
        return [t for t, s, r in _pages(lab_config) if s == "firing" and t > since
                and (replicas is None or r in replicas)]
    return until(paged, BOUND[unit], f"{PAGE_ALERT} paged after {unit} stopped", interval=1)[0]


def _resolved_after(lab_config, since: float, what: str) -> None:
    until(lambda: [t for t, s, _ in _pages(lab_config) if s == "resolved" and t > since], 120,
          f"the resolved notice once {what} is back", interval=1)


def test_a_stopped_prometheus_or_every_alertmanager_pages_from_the_db_host(lab, lab_config, converged, capsys):
    keys = ops_keys(lab_config)
    inv = __import__("yaml").safe_load(lab_config.inventory_file.read_text())
    replicas = list(inv["all"]["children"]["ops"]["hosts"])          # ops-1, ops-2: the inventory's names
    until(lambda: _beating(lab_config, replicas), 120, "every replica's Watchdog reaching the db host", interval=2)
    took = {}

    # Prometheus on the first ops host: the page names that replica, though the other still beats
    stopped = time.time()
    _stop(lab_config, keys[:1], "prometheus")
    try:
        paged = _paged_after(lab_config, stopped, "prometheus", {replicas[0]})
        took["prometheus"] = round(paged - stopped, 1)
    finally:
        _start(lab_config, keys[:1], "prometheus")
    _resolved_after(lab_config, paged, "Prometheus")
    assert not [r for t, s, r in _pages(lab_config) if s == "firing" and t > stopped and r != replicas[0]]

    if len(keys) > 1:   # one Alertmanager of the cluster gone: the other peer still sends the heartbeat
        until(lambda: _beating(lab_config, replicas), 120, "heartbeats again", interval=2)
        stopped = time.time()
        _stop(lab_config, keys[:1], "prometheus-alertmanager")
        try:
            time.sleep(TIMEOUT + 10)
            assert not [p for p in _pages(lab_config) if p[0] > stopped], \
                "one Alertmanager of the cluster stopped, and the heartbeat stopped with it"
            assert _beating(lab_config, replicas)
        finally:
            _start(lab_config, keys[:1], "prometheus-alertmanager")

    # every Alertmanager: nothing can notify, the switch pages
    until(lambda: _beating(lab_config, replicas), 120, "heartbeats again", interval=2)
    stopped = time.time()
    _stop(lab_config, keys, "prometheus-alertmanager")
    try:
        paged = _paged_after(lab_config, stopped, "prometheus-alertmanager")
        took["every alertmanager"] = round(paged - stopped, 1)
    finally:
        _start(lab_config, keys, "prometheus-alertmanager")
    _resolved_after(lab_config, paged, "Alertmanager")
    with capsys.disabled():
        print(f"\n  dead man's switch: paged {took} s after the stop (timeout {TIMEOUT} s)")
