"""The evidence engine's probe kind runs the live checks (tests/live) with pytest against the
inventory it is given: every catalogue probe has live checks behind it, a probe no test carries
fails by name, and an environment that cannot be reached is "could not check", not failing.
(The lab tests in test_ansible.py run the same checks on a converged lab and break one.)"""
from __future__ import annotations

import socket
from pathlib import Path

import yaml

from trustops.controls import live
from trustops.controls.catalogue import load


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
