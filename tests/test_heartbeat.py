"""The dead man's switch's receiver (trustops.heartbeat): its timing on a clock the test moves, and
the real daemon on loopback paging through the real alert sink, against hostile requests and a
pager that is down for a while."""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

import pytest

from trustops import heartbeat
from trustops.heartbeat import HEARTBEAT_ALERT, PAGE_ALERT, Switch
from trustops.wait import until

WATCHDOG = {"version": "4", "status": "firing", "receiver": "heartbeat",
            "alerts": [{"status": "firing", "labels": {"alertname": HEARTBEAT_ALERT, "severity": "info"}}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pages(directory) -> list[tuple[str, str]]:
    path = directory / "alerts-pager.jsonl"
    if not path.exists():
        return []
    return [(r["payload"]["status"], r["payload"]["alerts"][0]["labels"]["alertname"])
            for r in map(json.loads, path.read_text().splitlines())]


def test_pages_once_when_overdue_repeats_and_resolves(tmp_path):
    clock = Clock()
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=0, clock=clock)
    sw.beat()
    clock.now += 60
    sw.check()
    assert pages(tmp_path) == []
    clock.now += 1
    sw.check()
    sw.check()
    assert pages(tmp_path) == [("firing", PAGE_ALERT)]
    clock.now += 600
    sw.check()
    assert pages(tmp_path) == [("firing", PAGE_ALERT)] * 2
    sw.beat()
    sw.check()
    assert pages(tmp_path)[-1] == ("resolved", PAGE_ALERT) and len(pages(tmp_path)) == 3


def test_a_new_receiver_waits_for_the_grace_period_then_pages(tmp_path):
    clock = Clock()
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=900, clock=clock)
    clock.now += 899
    sw.check()
    assert pages(tmp_path) == []
    clock.now += 2
    sw.check()
    assert pages(tmp_path) == [("firing", PAGE_ALERT)]


def test_a_restarted_receiver_remembers_the_last_heartbeat(tmp_path):
    """SIGKILL and restart: the outage that began before is paged at once, with no new grace."""
    clock = Clock()
    Switch(tmp_path, timeout=60, repeat=600, grace=900, clock=clock).beat()
    clock.now += 120
    again = Switch(tmp_path, timeout=60, repeat=600, grace=900, clock=clock)
    again.check()
    assert pages(tmp_path) == [("firing", PAGE_ALERT)]
    page = json.loads((tmp_path / "alerts-pager.jsonl").read_text())["payload"]
    assert page["alerts"][0]["annotations"]["runbook_url"].endswith(f"/runbooks/{PAGE_ALERT}.md")
    assert "120s" in page["alerts"][0]["annotations"]["summary"]


def test_a_torn_state_file_is_ignored(tmp_path):
    (tmp_path / heartbeat.STATE_FILE).write_text('{"last_beat": 12')
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=900, clock=Clock())
    assert sw.last_beat == {} and sw.paged_at == {}


@pytest.mark.parametrize("payload, ok", [
    (WATCHDOG, True),
    ({**WATCHDOG, "status": "resolved"}, False),
    ({**WATCHDOG, "alerts": [{"status": "firing", "labels": {"alertname": "UfwInactive"}}]}, False),
    ({**WATCHDOG, "alerts": "Watchdog"}, False),
    ([WATCHDOG], False),
])
def test_only_a_firing_watchdog_is_a_heartbeat(payload, ok):
    assert heartbeat.is_heartbeat(payload) is ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: bytes, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def _daemon(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_the_daemon_pages_through_the_pager_url_and_survives_hostile_requests(tmp_path):
    """The real receiver on loopback, paging the real alert sink; the sink is down when the page is
    due (it is sent once the sink is back), and bad requests get 4xx without counting as beats."""
    port, sink_port = _free_port(), _free_port()
    state, sink_dir = tmp_path / "state", tmp_path / "sink"
    state.mkdir()
    sink_dir.mkdir()
    hb = _daemon(["trustops.heartbeat", "127.0.0.1", str(port), str(state), "--timeout", "1.5", "--repeat", "60",
                  "--grace", "0", "--tick", "0.2", "--pager-url", f"http://127.0.0.1:{sink_port}/pager"])
    sink = None
    try:
        until(lambda: _post(port, "/heartbeat", json.dumps(WATCHDOG).encode()) == 200, 20, "the receiver answering",
              retry_on=(OSError,))
        assert _post(port, "/other", b"{}") == 404
        assert _post(port, "/heartbeat", b"not json") == 400
        assert _post(port, "/heartbeat", b"x", {"Content-Length": str(10 ** 9)}) == 413
        assert _post(port, "/heartbeat", json.dumps({**WATCHDOG, "status": "resolved"}).encode()) == 422
        time.sleep(2.5)                       # overdue, and the pager is down: nothing delivered yet
        assert hb.poll() is None
        sink = _daemon(["trustops.alert_sink", "127.0.0.1", str(sink_port), str(sink_dir)])
        until(lambda: pages(sink_dir) == [("firing", PAGE_ALERT)], 20, "the page, once the pager is back")
        assert _post(port, "/heartbeat", json.dumps(WATCHDOG).encode()) == 200
        until(lambda: pages(sink_dir)[-1:] == [("resolved", PAGE_ALERT)], 10, "the resolved notice")
    finally:
        for p in (hb, sink):
            if p:
                p.kill()
                p.wait()


@pytest.mark.parametrize("argv, message", [
    (["127.0.0.1", "1", "/nonexistent-dir"], "is not a directory"),
    (["127.0.0.1", "1", ".", "--timeout", "0"], "must be above 0"),
])
def test_bad_arguments_get_one_line(argv, message, capsys):
    assert heartbeat.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_the_page_names_its_host_as_every_other_alert_does():
    """On-call clarity (issue 19): host and instance are the inventory's host name, as on the
    monitors' and Prometheus' alerts (the role passes --instance; it was the node name)."""
    args = heartbeat.build_parser().parse_args(["127.0.0.1", "1", "/tmp", "--instance", "db-1"])
    labels = heartbeat.page_payload("firing", args.instance, 0, 400, 300)["alerts"][0]["labels"]
    assert labels["host"] == labels["instance"] == "db-1"


def _watchdogs(*replicas: str) -> dict:
    return {**WATCHDOG, "alerts": [{"status": "firing", "labels": {"alertname": HEARTBEAT_ALERT, "severity": "info",
                                                                   heartbeat.REPLICA_LABEL: r}} for r in replicas]}


def test_one_prometheus_replica_gone_pages_for_it_though_the_other_keeps_beating(tmp_path):
    """Issue 19 (Prometheus as an HA pair): both replicas' Watchdogs arrive in one notification;
    when one stops, the other still beats, and the receiver pages naming the one that stopped,
    then resolves it when it is back. Before, any Watchdog was a heartbeat: one replica dead was
    silent."""
    clock = Clock()
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=0, clock=clock, replicas=("ops-1", "ops-2"))
    sw.beat(heartbeat.heartbeat_replicas(_watchdogs("ops-1", "ops-2")))
    for _ in range(3):
        clock.now += 30
        sw.beat(heartbeat.heartbeat_replicas(_watchdogs("ops-1")))
        sw.check()
    records = [json.loads(line)["payload"] for line in (tmp_path / "alerts-pager.jsonl").read_text().splitlines()]
    assert [(r["status"], r["alerts"][0]["labels"].get("replica")) for r in records] == [("firing", "ops-2")]
    assert "Prometheus on ops-2" in records[0]["alerts"][0]["annotations"]["summary"]
    clock.now += 30
    sw.beat(heartbeat.heartbeat_replicas(_watchdogs("ops-2", "ops-1")))
    records = [json.loads(line)["payload"] for line in (tmp_path / "alerts-pager.jsonl").read_text().splitlines()]
    assert [(r["status"], r["alerts"][0]["labels"].get("replica")) for r in records] == [
        ("firing", "ops-2"), ("resolved", "ops-2")]
    # a restart keeps each replica's last beat
    again = Switch(tmp_path, timeout=60, repeat=600, grace=0, clock=clock, replicas=("ops-1", "ops-2"))
    assert again.last_beat == {"ops-1": clock.now, "ops-2": clock.now}


def test_a_state_file_from_before_replicas_stands_for_each_of_them(tmp_path):
    clock = Clock()
    (tmp_path / heartbeat.STATE_FILE).write_text(json.dumps({"last_beat": clock.now - 120, "paged_at": None}))
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=900, clock=clock, replicas=("ops-1", "ops-2"))
    sw.check()
    assert sorted(r for s, r in [(p["status"], p["alerts"][0]["labels"]["replica"]) for p in
                                 (json.loads(line)["payload"] for line in
                                  (tmp_path / "alerts-pager.jsonl").read_text().splitlines())]) == ["ops-1", "ops-2"]


def test_a_watchdog_of_a_replica_nobody_expects_is_no_heartbeat(tmp_path):
    clock = Clock()
    sw = Switch(tmp_path, timeout=60, repeat=600, grace=0, clock=clock, replicas=("ops-1",))
    sw.beat(heartbeat.heartbeat_replicas(_watchdogs("ops-9")))
    clock.now += 61
    sw.check()
    assert pages(tmp_path) == [("firing", PAGE_ALERT)]


def test_the_unit_expects_every_ops_host_and_keeps_its_lines_apart():
    """Rendered as Ansible renders templates (trim_blocks): the first version ended ExecStart with
    a for-loop, whose end tag ate the newline, and the live twin ran `--expect ops-2EnvironmentFile=...`
    (ops-2 never beat, and the unit lost its environment file)."""
    from pathlib import Path

    import yaml

    from tests.playbooks import role_template
    role = Path(__file__).resolve().parents[1] / "ansible" / "roles" / "heartbeat"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if not isinstance(v, str) or "{{" not in v}
    text = role_template("heartbeat", "trustops-heartbeat.service.j2").render(
        **values, heartbeat_expected_replicas=["ops-1", "ops-2"], private_ip="10.0.2.4", trustops_heartbeat_port=9097,
        inventory_hostname="db-1", heartbeat_pager_url="")
    lines = text.splitlines()
    [start] = [line for line in lines if line.startswith("ExecStart=")]
    assert start.split()[-4:] == ["--expect", "ops-1", "--expect", "ops-2"], start
    assert any(line.startswith("EnvironmentFile=") for line in lines), text
    args = heartbeat.build_parser().parse_args(start.split()[1:])
    assert args.expect == ["ops-1", "ops-2"]
