"""The evidence engine's probe kind runs the live checks (tests/live) with pytest against the
inventory it is given: every catalogue probe has live checks behind it, a probe no test carries
fails by name, and an environment that cannot be reached is "could not check", not failing.
(The lab tests in test_ansible.py run the same checks on a converged lab and break one.)"""
from __future__ import annotations

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
    assert unreachable.summary.startswith("could not check: test_ufw_is_on_everywhere: RuntimeError"), \
        unreachable.summary
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
        until(lambda: len(promtool_query(site.host("ops"), site.prometheus_url("ops"), "up")) == 4, 60,
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
