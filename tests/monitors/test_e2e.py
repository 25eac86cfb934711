"""End to end with real parts: wrong passwords against a real Postgres 15 become a brute-force
alert at a real Alertmanager, which delivers it to a webhook. And: Alertmanager down, then up."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import psycopg
import pytest
import yaml

from tests.services import Alertmanager, Postgres, Webhook, free_port, wait_port
from trustops.wait import NotSettled, until


@pytest.fixture
def pg():
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def _monitor(tmp_path, pg, am_url, metrics_port):
    cfg = tmp_path / "monitor.yml"
    cfg.write_text(yaml.safe_dump({
        "instance": "db-test", "start_at": "beginning", "state_dir": str(tmp_path / "state"),
        "inputs": [{"name": "postgres", "type": "postgres", "path": str(pg.log)}],
        "allowed_networks": ["127.0.0.0/8"], "alertmanager": {"url": am_url},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"}, "poll_interval": "0.5s",
    }))
    proc = subprocess.Popen([sys.executable, "-m", "trustops.monitors", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "monitor.err", "ab"))
    wait_port(metrics_port, 30)
    return proc


def _wrong_passwords(pg, n, user="postgres"):
    for _ in range(n):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.dsn(user=user, password="wrong-" + str(time.time())))  # pragma: allowlist secret


def _wait_for(pred, timeout=30.0):
    """What pred found, or None when it found nothing in time (the callers assert on it)."""
    try:
        return until(pred, timeout, "the condition", interval=0.1)
    except NotSettled:
        return None


def _metrics(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()


def _brute_force(hook):
    return [a for a in hook.alerts() if a["labels"].get("alertname") == "PostgresBruteForce"]


def test_brute_force_reaches_alertmanager_webhook(tmp_path, pg, webhook):
    am = Alertmanager(tmp_path / "am", f"http://127.0.0.1:{webhook.port}/").start()
    metrics_port = free_port()
    mon = _monitor(tmp_path, pg, am.url, metrics_port)
    try:
        _wrong_passwords(pg, 12)
        alerts = _wait_for(lambda: _brute_force(webhook))
        assert alerts, f"no alert reached the webhook; got {webhook.received}"
        a = alerts[0]
        assert a["status"] == "firing"
        assert a["labels"]["severity"] == "warning" and a["labels"]["source"] == "127.0.0.1"
        assert a["labels"]["instance"] == "db-test"
        assert a["annotations"]["runbook_url"].endswith("/PostgresBruteForce.md")
        assert "failed logins" in a["annotations"]["summary"]
        from trustops.monitors.speedups import available
        want = ['trustops_monitor_events_total{outcome="pg_auth_failed:bad_password",source_type="postgres"} 12.0',
                'trustops_monitor_detections_total{rule="PostgresBruteForce",severity="warning"} 1.0',
                f'trustops_monitor_build_info{{hot_path="{"c" if available() else "python"}"}} 1.0']
        got = _wait_for(lambda: all(w in _metrics(metrics_port) for w in want) or None, timeout=10)
        assert got, [m for m in _metrics(metrics_port).splitlines() if "events_total" in m or "detections" in m]
    finally:
        mon.terminate()
        mon.wait(10)
        am.stop()


def test_alerts_wait_for_alertmanager_and_arrive_when_it_is_back(tmp_path, pg, webhook):
    am_port = free_port()  # nothing listens there yet
    metrics_port = free_port()
    mon = _monitor(tmp_path, pg, f"http://127.0.0.1:{am_port}", metrics_port)
    am = None
    try:
        _wrong_passwords(pg, 10)
        queued = _wait_for(lambda: re.search(r"^trustops_monitor_alerts_queued [1-9]", urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics").read().decode(), re.M))  # brute force (and the slow rule)
        assert queued, "the alert was not queued while Alertmanager was down"
        # restart the monitor while the alert is still queued: the checkpoint keeps it
        mon.terminate()
        mon.wait(10)
        mon = _monitor(tmp_path, pg, f"http://127.0.0.1:{am_port}", metrics_port)
        am = Alertmanager(tmp_path / "am", f"http://127.0.0.1:{webhook.port}/", port=am_port).start()
        alerts = _wait_for(lambda: _brute_force(webhook), timeout=60)
        assert alerts and len({a["fingerprint"] for a in alerts}) == 1
    finally:
        mon.terminate()
        mon.wait(10)
        if am:
            am.stop()
