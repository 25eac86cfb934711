"""The evidence engine's probe kind runs the live checks (tests/live) with pytest against the
inventory it is given: every catalogue probe has live checks behind it, a probe no test carries
fails by name, and an environment that cannot be reached is "could not check", not failing.
(The lab tests in test_ansible.py run the same checks on a converged lab and break one.)"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import testinfra
import yaml

from tests.live.conftest import Site
from trustops.controls import live
from trustops.controls.catalogue import load
from trustops.wait import NotSettled, until


def test_every_catalogue_probe_is_a_live_test_and_no_live_test_names_an_unknown_probe():
    probes = {c.target for control in load() for c in control.checks if c.kind == "probe"}
    marked = {name for check in live.catalogue() for name in check.probes}
    assert probes and probes == marked, probes ^ marked
    assert all(live.describe(p) for p in probes), [p for p in probes if not live.describe(p)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # closed again once the socket is gone


def _inventory(tmp_path: Path) -> Path:
    """A contract-shaped inventory whose hosts do not answer (a closed port on loopback)."""
    port = _closed_port()
    host = lambda role, ip: {role: {"ansible_host": "127.0.0.1", "ansible_port": port,  # noqa: E731
                                    "private_ip": ip, "trustops_role": role}}
    doc = {"all": {"vars": {"ansible_user": "deploy", "trustops_environment": "lab", "trustops_cloud": "lab",
                            "ansible_ssh_common_args": "-o ConnectTimeout=3 -o StrictHostKeyChecking=no "
                                                       f"-o UserKnownHostsFile={tmp_path}/known_hosts"},
                   "children": {"app": {"hosts": host("app", "10.9.0.2")}, "db": {"hosts": host("db", "10.9.0.3")},
                                "ops": {"hosts": host("ops", "10.9.0.4")}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_unreachable_hosts_could_not_be_checked_and_unknown_probes_fail_by_name(tmp_path):
    results = live.run(["ufw-active", "no-such-probe"], _inventory(tmp_path))
    unreachable = results["ufw-active"]
    assert not unreachable.ok and not unreachable.checked
    assert unreachable.summary.startswith("could not check: test_ufw_is_on_everywhere: ") and \
        "not reached over SSH" in unreachable.summary, unreachable.summary
    assert "tests/live" in unreachable.ran and "test_ufw_is_on_everywhere" in unreachable.ran
    unknown = results["no-such-probe"]
    assert not unknown.ok and unknown.checked and "marked probe('no-such-probe')" in unknown.summary


def test_an_unreadable_inventory_is_named_and_nothing_is_claimed(tmp_path):
    bad = tmp_path / "inventory.yml"
    bad.write_text("all: [unclosed\n")
    result = live.run(["sshd-hardened"], bad)["sshd-hardened"]
    assert not result.ok and not result.checked
    assert "could not check" in result.summary and str(bad) in result.summary, result.summary


class _MachineSite(Site):
    """The live checks' view of an environment whose one ops host is this machine (testinfra's
    local backend, promtool and Prometheus on 127.0.0.1): the alerting check's own code, run
    against a real Prometheus without a lab."""

    def host(self, name: str):
        return testinfra.get_host("local://")

    def prometheus_url(self, name: str) -> str:   # a plain Prometheus of its own (no TLS, no auth)
        return super().prometheus_url(name).replace("https:", "http:", 1)


def _metrics_server(port: int) -> ThreadingHTTPServer:
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"trustops_test_up 1\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", port), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_alerting_check_fails_naming_a_down_target_and_waits_for_one_coming_up(tmp_path):
    """Issue 21's race, on a real Prometheus (Debian's, scraping every second): a target still
    down after the settle time fails the check naming it; a target that comes up within the settle
    time (2 s into the check) passes it. The pre-live probe asked once and failed in both cases."""
    from tests.services import free_port, wait_port
    from tests.live.test_monitoring import RULE_GROUPS
    from tests.live.test_monitoring import _query as promtool_query
    from tests.live.test_monitoring import test_prometheus_scrapes_everything_and_alerts_through_alertmanager \
        as alerting_check

    port, late = free_port(), free_port()
    me = f"127.0.0.1:{port}"
    jobs = {"prometheus": [me], "node": [me], "trustops-monitor": [f"127.0.0.1:{late}"], "alertmanager": [me]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [
        {"name": g, "rules": [{"alert": "Never", "expr": "vector(0) > 1"}]} for g in RULE_GROUPS]}))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}]}]},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets, "labels": {"host": "ops"}}]}
                           for job, targets in jobs.items()]}))
    prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--web.listen-address={me}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                   "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    site = _MachineSite(tmp_path / "inventory.yml", {"alerting_prometheus_port": port},
                        {"ops": {"trustops_role": "ops", "private_ip": "127.0.0.1"}})
    server = None
    try:
        wait_port(port)
        until(lambda: len(promtool_query(site.host("ops"), site.prometheus_url("ops"), "up", "ops")) == 4, 60,
              "Prometheus's first scrape of its four targets")
        with pytest.raises(NotSettled, match=r"target trustops-monitor/ops is down"):
            alerting_check(site, settle=4)
        timer = threading.Timer(2, lambda: _started.append(_metrics_server(late)))
        _started: list = []
        timer.start()
        alerting_check(site, settle=60)    # passes once the late target is scraped up
        timer.join()
        server = _started[0]
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        if server:
            server.shutdown()


def _junit(cases: str) -> str:
    return f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'


def _case(name: str, probe: str, body: str = "", verdict: str | None = None) -> str:
    props = f'<property name="probe" value="{probe}"/>' + \
        (f'<property name="verdict" value="{verdict}"/>' if verdict else "")
    return f'<testcase classname="tests.live.test_x" name="{name}"><properties>{props}</properties>{body}</testcase>'


def test_a_failure_is_judged_by_its_exception_class_not_its_message():
    """A bare assert, pytest.fail, a ValueError on a malformed header, an S3 bucket with no
    encryption configuration and a wait that ran out contradict the promise; CouldNotCheck, a
    refused connection, an unreachable endpoint and an S3 access error only mean it was not looked at."""
    import botocore.exceptions

    from trustops.controls.evidence import CouldNotCheck

    def raised(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - pytest.fail raises a BaseException
            return exc
        raise AssertionError("did not raise")

    def bare():
        assert False  # noqa: B011 - exactly what a check may do

    def no_config(code):
        return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "x"}}, "GetBucketEncryption")

    contradictions = [raised(bare), raised(lambda: pytest.fail("HSTS header malformed")),
                      raised(lambda: int("abc")), KeyError("Rules"),
                      no_config("NoSuchPublicAccessBlockConfiguration"),
                      no_config("ServerSideEncryptionConfigurationNotFoundError"),
                      no_config("NoSuchBucketEncryptionConfiguration"),
                      raised(lambda: until(lambda: None, 0, "a backup"))]
    ssh_failed = raised(lambda: testinfra.get_host(f"ssh://nobody@127.0.0.1:{_closed_port()}?timeout=3")
                        .file("/etc/hostname").exists)
    assert isinstance(ssh_failed, RuntimeError)
    command_failed = raised(lambda: testinfra.get_host("local://").check_output("no-such-command-anywhere"))
    assert isinstance(command_failed, AssertionError)
    unchecked = [ssh_failed, command_failed, CouldNotCheck("db: not reached over SSH"), ConnectionRefusedError(111, "refused"),
                 botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
                 no_config("AccessDenied"), no_config("NoSuchBucket")]
    assert [live.verdict(e) for e in contradictions] == [live.CONTRADICTION] * len(contradictions)
    assert [live.verdict(e) for e in unchecked] == [live.UNCHECKED] * len(unchecked)


def test_the_judge_reads_the_verdict_and_counts_no_verdict_as_not_checked(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(_junit(
        _case("test_a", "bare", '<failure message="assert False"/>', live.CONTRADICTION)
        + _case("test_b", "env", '<failure message="AssertionError: Unexpected exit code 255"/>', live.UNCHECKED)
        + _case("test_c", "setup", '<error message="failed on setup with RuntimeError"/>')
        + _case("test_d", "old", '<failure message="AssertionError: no verdict written"/>')
        + _case("test_e", "ok")))
    cases = live._cases(xml)
    assert live._judge(cases["bare"])[:2] == (False, True)
    for probe in ("env", "setup", "old"):
        holds, checked, summary = live._judge(cases[probe])
        assert (holds, checked) == (False, False) and summary.startswith(live.COULD_NOT_CHECK), probe
    assert live._judge(cases["ok"]) == (True, True, "1 live check(s) passed")


def test_the_live_conftest_writes_each_failures_verdict(tmp_path):
    """The hook in tests/live/conftest.py, run by pytest on checks that fail in each way."""
    live_dir = Path(__file__).parent / "live"
    probe = live_dir / f"test_zz_verdicts_{os.getpid()}.py"   # removed below; unique per run
    probe.write_text(
        "import pytest\nfrom trustops.controls.evidence import CouldNotCheck\n"
        "def test_bare():\n    assert False\n"
        "def test_value():\n    int('max-age=abc'.split('=')[1])\n"
        "def test_env():\n    raise CouldNotCheck('db: `ufw` is missing')\n")
    try:
        xml = tmp_path / "junit.xml"
        subprocess.run(["python", "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={xml}",
                        "--ansible-inventory=/nonexistent", str(probe)], cwd=live_dir.parent.parent,
                       capture_output=True, timeout=300, executable=__import__("sys").executable)
    finally:
        probe.unlink()
    import xml.etree.ElementTree as ET
    verdicts = {tc.get("name"): [p.get("value") for p in tc.iter("property") if p.get("name") == "verdict"]
                for tc in ET.parse(xml).iter("testcase")}
    assert verdicts == {"test_bare": [live.CONTRADICTION], "test_value": [live.CONTRADICTION],
                        "test_env": [live.UNCHECKED]}


def test_commands_on_a_host_that_cannot_be_run_could_not_be_checked():
    """A missing command or a host not reached is CouldNotCheck, never a failed assertion (testinfra's
    check_output raises AssertionError for both); a command that ran keeps its exit status."""
    from tests.live.conftest import output, run
    from trustops.controls.evidence import CouldNotCheck

    here = testinfra.get_host("local://")
    with pytest.raises(CouldNotCheck, match="`no-such-command-anywhere` is missing"):
        output(here, "no-such-command-anywhere --version", "db")
    with pytest.raises(CouldNotCheck, match="exited 3"):
        output(here, "exit 3", "db")
    assert run(here, "exit 1", "db").rc == 1 and output(here, "echo hello", "db") == "hello"
    unreachable = testinfra.get_host(f"ssh://nobody@127.0.0.1:{_closed_port()}?timeout=3")
    with pytest.raises(CouldNotCheck, match="not reached over SSH"):
        run(unreachable, "timeout 5 bash -c '</dev/tcp/10.9.0.5/9470'", "db")


UFW_DB = """Status: active
Logging: on (high)
Default: deny (incoming), allow (outgoing), deny (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    10.9.0.0/24                # SSH from the admin network
5432/tcp                   ALLOW IN    10.9.0.2                   # Postgres from the app
9100/tcp                   ALLOW IN    10.9.0.4
"""


@pytest.mark.parametrize("extra", [
    "5432                       ALLOW IN    Anywhere",
    "5432/tcp (v6)              ALLOW IN    Anywhere (v6)",
    "5432/tcp                   ALLOW IN    10.0.0.0/8",
    "5000:6000/tcp              ALLOW IN    10.9.0.4",
    "Anywhere                   ALLOW IN    10.9.0.4",
    "5432/tcp                   LIMIT IN    Anywhere",
])
def test_the_ufw_check_finds_every_rule_opening_postgres_beyond_the_app_hosts(extra):
    from tests.live import ufw

    assert ufw.open_to_others(UFW_DB, 5432, {"10.9.0.2"}) == []
    found = ufw.open_to_others(UFW_DB + extra + "\n", 5432, {"10.9.0.2"})
    assert len(found) == 1 and f"{found[0].to} {found[0].action}".split() == extra.split()[:len(
        f"{found[0].to} {found[0].action}".split())], found
    assert ufw.open_to_others(UFW_DB + "5432/tcp                   DENY IN     Anywhere\n", 5432, {"10.9.0.2"}) == []
    with pytest.raises(ValueError, match="no rule table"):
        ufw.rules("Status: inactive\n")


def test_the_front_waits_for_a_200_not_for_any_answer():
    """While the app starts nginx answers 502: the check waits for 200 (bounded) instead of
    judging the 502 page's headers."""
    from tests.live.test_front import NotOk, answered_ok

    class Response:
        def __init__(self, status):
            self.status = status
    answers = iter([Response(502), Response(502), Response(200)])
    got = until(lambda: answered_ok(lambda path: next(answers), "/login/"), 5, "200", interval=0.01,
                retry_on=(NotOk,))
    assert got.status == 200
    with pytest.raises(NotSettled, match="answered 502"):
        until(lambda: answered_ok(lambda path: Response(502), "/login/"), 0.05, "200", interval=0.01,
              retry_on=(NotOk,))


def test_the_apps_metrics_check_waits_through_a_prometheus_not_answering_yet(tmp_path):
    """promtool failing (Prometheus still starting) is retried until the settle time runs out,
    not a failure at the first ask."""
    from tests.live.test_monitoring import test_the_apps_own_metrics_reach_prometheus as app_metrics_check

    site = _MachineSite(tmp_path / "inventory.yml", {"alerting_prometheus_port": _closed_port()},
                        {"ops": {"trustops_role": "ops", "private_ip": "127.0.0.1"},
                         "app": {"trustops_role": "app", "private_ip": "127.0.0.1"}})
    with pytest.raises(NotSettled, match="benefits_dsr_overdue.*CouldNotCheck"):
        app_metrics_check(site, settle=2)
