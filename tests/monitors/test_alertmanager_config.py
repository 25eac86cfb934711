"""The alerting role's Alertmanager config, rendered as Ansible renders it: amtool accepts it and
routes each severity to its receiver; a real Alertmanager then inhibits a warning while its
critical fires, and sends a second host's alert without waiting for the first host's group."""
import shutil
import subprocess
import time
from pathlib import Path

import jinja2
import pytest
import requests
import yaml

from tests.services import Alertmanager, Webhook
from trustops.wait import NotSettled, until

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "alerting"


GROUP_VARS = ROLE.parents[1] / "group_vars" / "all.yml"
# A db host for the heartbeat receiver (the dead man's switch), as an inventory gives it.
INVENTORY = {"groups": {"db": ["db"]}, "hostvars": {"db": {"private_ip": "192.0.2.12"}}}


def render(**overrides) -> str:
    defaults = {**yaml.safe_load(GROUP_VARS.read_text()), **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string((ROLE / "templates" / "alertmanager.yml.j2").read_text()).render(
        **{**defaults, **INVENTORY, **overrides})


@pytest.fixture(scope="module")
def amtool():
    tool = shutil.which("amtool")
    assert tool, "amtool missing: `make test` installs Debian's prometheus-alertmanager"
    return tool


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render())
    return path


def test_amtool_accepts_the_config(amtool, config_file):
    proc = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("labels, receiver", [
    ({"severity": "critical", "alertname": "UfwInactive", "instance": "db"}, "pager"),
    ({"severity": "warning", "alertname": "BackupTooOld", "instance": "db"}, "ticket"),
    ({"severity": "info", "alertname": "Something", "instance": "db"}, "nobody"),
    ({"alertname": "NoSeverityLabel"}, "ticket"),
])
def test_amtool_routes_each_severity(amtool, config_file, labels, receiver):
    proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config_file}",
                           *[f"{k}={v}" for k, v in labels.items()]], capture_output=True, text=True)
    assert proc.stdout.strip() == receiver, proc.stdout + proc.stderr


def test_default_receivers_are_the_local_sink_and_urls_override_them():
    assert "http://127.0.0.1:9095/pager" in render()
    heartbeat = [r for r in yaml.safe_load(render())["receivers"] if r["name"] == "heartbeat"]
    assert heartbeat[0]["webhook_configs"][0]["url"].startswith("http://192.0.2.12:")
    custom = render(alerting_pager_url="https://pager.example/hook")
    assert "https://pager.example/hook" in custom and "9095/pager" not in custom


def post(am: Alertmanager, *alerts: dict) -> None:
    r = requests.post(f"{am.url}/api/v2/alerts", json=[{"labels": a, "annotations": {"summary": "s"}}
                                                        for a in alerts], timeout=5)
    r.raise_for_status()


def wait_for(hook: Webhook, n: int, timeout: float = 20) -> None:
    """Until the hook holds n alerts; the callers then assert on exactly what arrived."""
    try:
        until(lambda: len(hook.alerts()) >= n, timeout, f"{n} alert(s) at the webhook", interval=0.1)
    except NotSettled:
        pass


def test_inhibition_and_grouping_on_a_real_alertmanager(tmp_path):
    pager, ticket = Webhook(), Webhook()
    cfg = render(alerting_pager_url=f"http://127.0.0.1:{pager.port}/", alerting_ticket_url=f"http://127.0.0.1:{ticket.port}/",
                 alerting_group_wait="2s", alerting_group_wait_critical="1s", alerting_group_interval="5m")
    am = Alertmanager(tmp_path, "unused", config=cfg).start()
    try:
        # warning and critical of the same alert on db: only the page goes out
        post(am, {"alertname": "BackupTooOld", "severity": "critical", "instance": "db"},
             {"alertname": "BackupTooOld", "severity": "warning", "instance": "db"})
        wait_for(pager, 1)
        time.sleep(3)   # past the warning's group_wait: it would have been sent by now
        assert [a["labels"]["severity"] for a in pager.alerts()] == ["critical"]
        assert ticket.alerts() == []
        # a second host's critical is its own group: sent after group_wait, not the 5m group_interval
        t0 = time.time()
        post(am, {"alertname": "BackupTooOld", "severity": "critical", "instance": "db2"})
        wait_for(pager, 2)
        assert [a["labels"]["instance"] for a in pager.alerts()] == ["db", "db2"]
        assert pager.times[-1] - t0 < 30
    finally:
        am.stop()
        pager.close()
        ticket.close()


def test_a_page_resolved_by_the_monitor_is_told_within_a_minute(tmp_path):
    """On-call clarity (issue 19): the role's own timings for pages (group_wait 5s, group_interval
    30s) and a real Alertmanager; the monitor's resolve path (AlertBook.tick, then its post with
    endsAt now) gets a resolved notice to the pager within a minute. With Alertmanager's default
    group_interval of 5m (the role's setting before), the notice waited up to 5 minutes."""
    from trustops.monitors.alerts import AlertBook
    from trustops.monitors.rules import Detection

    pager = Webhook()
    am = Alertmanager(tmp_path, "unused", config=render(alerting_pager_url=f"http://127.0.0.1:{pager.port}/")).start()
    try:
        book = AlertBook(am.url, "db-1", "https://x/runbooks", resolve_after=1)
        now = time.time()
        book.detected(Detection("PostgresLoginAfterFailures", "critical", "10.0.0.9", 5, now, now, "s", "d"), now)
        assert book.flush()
        until(lambda: pager.alerts(), 30, "the page at the pager", interval=0.2)
        assert {a["labels"]["host"] for a in pager.alerts()} == {"db-1"}   # one host label, as Prometheus'
        resolved_at = time.time()
        assert book.tick() == 1 and book.flush()
        until(lambda: [a for a in pager.alerts() if a["status"] == "resolved"], 60,
              "the resolved notice at the pager", interval=0.5)
        assert time.time() - resolved_at < 60
    finally:
        am.stop()
        pager.close()
