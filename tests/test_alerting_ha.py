"""Alerting without a single point of failure, on the converged twin (issue 19): two ops hosts, each
with Prometheus (an HA pair) and an Alertmanager peer of one cluster; the monitors and both
Prometheus send every alert to every peer. One ops host is killed (SIGKILL to the whole host, as a
VM lost) and an attack is staged: its alerts still reach the receivers, each exactly once, and
the dead man's switch on db pages for the lost Prometheus. The host comes back as a restarted VM
would, rejoins the cluster, and nothing is notified a second time."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from trustops import drill, opsapi
from trustops.heartbeat import PAGE_ALERT
from trustops.lab import environment
from trustops.lab.system import Progress
from trustops.wait import until


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


def _cluster_size(cfg, key: str) -> int:
    status = opsapi.session(cfg.state_dir).get(opsapi.lab_urls(cfg, key)[1] + "/api/v2/status", timeout=(2, 5))
    status.raise_for_status()
    return len(status.json()["cluster"]["peers"] or [])


def test_an_ops_host_killed_during_an_attack_loses_no_page_and_doubles_none(lab, lab_config, converged, capsys):
    keys = environment.ops_keys(lab_config)
    if len(keys) < 2:
        pytest.skip("the flat lab has one ops host; the twin's stack declares two")
    lost, left = keys[0], keys[1]
    until(lambda: _cluster_size(lab_config, left) == len(keys), 120, "every Alertmanager peer in the cluster",
          interval=2)
    killed = time.time()
    subprocess.run(["docker", "kill", lab_config.container(lost)], check=True, capture_output=True, timeout=60)
    try:
        result = drill.attack(lab_config, Progress(), timeout=150)
        assert result.missing == [], (result.at_alertmanager, result.delivered, result.already_firing)
        assert result.leaked == [], result.held_back
        notified = _firing_notifications(lab_config, result.started)
        for name in result.expected:
            if name in result.delivered:
                assert notified.get(name) == [left], (name, notified)
        # the dead man's switch on db: the lost host's Prometheus is gone, and that pages
        lost_name = next(n for n in lab["all"]["children"]["ops"]["hosts"] if environment.host_key("ops", n) == lost)

        def heartbeat_page():
            out = subprocess.run(["docker", "exec", lab_config.container("db"), "cat",
                                  "/var/lib/trustops-heartbeat/alerts-pager.jsonl"], capture_output=True, text=True)
            pages = [r["payload"] for r in map(json.loads, out.stdout.splitlines()) if r["received_at"] > killed]
            return [p for p in pages if p["status"] == "firing" and p["alerts"][0]["labels"].get("alertname") ==
                    PAGE_ALERT and p["alerts"][0]["labels"].get("replica") == lost_name]
        until(heartbeat_page, 90, f"{PAGE_ALERT} for {lost_name}", interval=2)
    finally:
        # back as a restarted VM: the same disk, its services start, the lab routes it again
        environment.up(lab_config, Progress(quiet=True))
    until(lambda: _cluster_size(lab_config, left) == len(keys), 180, f"{lost} back in the cluster", interval=3)
    # the monitors re-post what still fires every minute, to the peer that is back too: it must not
    # notify again what its peer already did (it learns the notification log from the gossip)
    time.sleep(75)
    again = _firing_notifications(lab_config, result.started)
    for name in result.delivered:
        assert again.get(name) == [left], (name, again)
    with capsys.disabled():
        print(f"\n  {lost} killed: delivered by {left} "
              f"{ {k: (r, round(t, 1)) for k, (r, t) in result.delivered.items()} }; none twice after it rejoined")
