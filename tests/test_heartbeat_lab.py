"""The dead man's switch on the converged lab (issue 19): Prometheus stopped on ops, then
Alertmanager stopped, and each time trustops-heartbeat on the db host pages (the lab's pager: its
alerts-pager.jsonl there), then sends the resolved notice once the heartbeat is back. The lab runs
it on short timings (lab.environment.LAB_HEARTBEAT_VARS)."""
from __future__ import annotations

import json
import subprocess
import time

from trustops.heartbeat import PAGE_ALERT, STATE_FILE
from trustops.lab.environment import LAB_HEARTBEAT_VARS
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


def _pages(lab_config) -> list[tuple[float, str]]:
    out = _exec(lab_config, "db", f"cat {STATE_DIR}/alerts-pager.jsonl 2>/dev/null || true")
    return [(r["received_at"], r["payload"]["status"]) for r in map(json.loads, out.splitlines())
            if r["payload"]["alerts"][0]["labels"]["alertname"] == PAGE_ALERT]


def _beating(lab_config) -> bool:
    state = json.loads(_exec(lab_config, "db", f"cat {STATE_DIR}/{STATE_FILE} 2>/dev/null || echo '{{}}'"))
    return time.time() - (state.get("last_beat") or 0) < TIMEOUT / 2


def test_stopping_prometheus_then_alertmanager_pages_from_the_db_host(lab, lab_config, converged, capsys):
    until(lambda: _beating(lab_config), 120, "Watchdog heartbeats reaching the db host", interval=2)
    took = {}
    for unit in ("prometheus", "prometheus-alertmanager"):
        stopped = time.time()
        _exec(lab_config, "ops", f"systemctl stop {unit}")
        try:
            paged = until(lambda: [t for t, s in _pages(lab_config) if s == "firing" and t > stopped], BOUND[unit],
                          f"{PAGE_ALERT} paged after {unit} stopped", interval=1)[0]
            took[unit] = round(paged - stopped, 1)
        finally:
            _exec(lab_config, "ops", f"systemctl start {unit}")
        until(lambda: [t for t, s in _pages(lab_config) if s == "resolved" and t > paged], 120,
              f"the resolved notice once {unit} is back", interval=1)
    with capsys.disabled():
        print(f"\n  dead man's switch: paged {took} s after the stop (timeout {TIMEOUT} s)")
