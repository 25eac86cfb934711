"""The live checks' fixtures: which environment to look at, and how to reach its hosts.

Run against any inventory in the contract's shape (trustops/inventory.py), the lab's or a cloud
stack's, with pytest-testinfra's own option:

    pytest tests/live --ansible-inventory=.lab-<name>/inventory.yml

Without it they bring up and converge the test lab (the `converged` fixture) and look at that.
`--probe NAME` keeps only the checks of that catalogue probe (repeatable); each test's probe
names go into the JUnit XML as `probe` properties, which is how the evidence engine reads them.
"""
from __future__ import annotations

import configparser
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from trustops.controls.evidence import CouldNotCheck
from trustops.controls.live import PROBE_MARKER, PROBE_PROPERTY, SETTLE_SECONDS, VERDICT_PROPERTY, verdict
from trustops.converge import role_default

ANSIBLE_CFG = Path(__file__).resolve().parents[2] / "ansible" / "ansible.cfg"


def pytest_addoption(parser):
    group = parser.getgroup("trustops live checks")
    group.addoption("--probe", action="append", default=[], metavar="NAME",
                    help="only the live checks of this catalogue probe (repeatable)")
    group.addoption("--settle-timeout", type=float, default=SETTLE_SECONDS, metavar="SECONDS",
                    help=f"how long a check waits for what it checks to settle (default {SETTLE_SECONDS:g})")


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("--probe"))
    keep, drop = [], []
    here = Path(__file__).parent
    for item in items:
        if here not in Path(item.path).parents:
            keep.append(item)
            continue
        names = [n for m in item.iter_markers(PROBE_MARKER) for n in m.args]
        item.user_properties.extend((PROBE_PROPERTY, n) for n in names)
        if not config.getoption("ansible_inventory", None):
            item.add_marker(pytest.mark.lab)      # the fallback brings up the test lab
        (keep if not wanted or wanted & set(names) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A live check that failed in its body gets a verdict by the exception's class (contradiction
    or could-not-check), written into the JUnit XML for the evidence engine (controls/live.py)."""
    report = yield
    if call.when == "call" and call.excinfo is not None and report.get_result().failed \
            and Path(__file__).parent in Path(item.path).parents:
        item.user_properties.append((VERDICT_PROPERTY, verdict(call.excinfo.value)))


SSH_FAILED = 255                 # ssh's own exit status: the host was not reached
NOT_RUNNABLE = (126, 127)        # the shell's: the command is missing or cannot run


def run(host, command: str, name: str):
    """The command's result on a host (a testinfra host), for checks that judge the exit status
    themselves; CouldNotCheck when the host was not reached or the command could not run."""
    try:
        result = host.run(command)
    except RuntimeError as exc:   # testinfra's ssh backend raises on ssh's own failure (exit 255)
        raise CouldNotCheck(f"{name}: not reached over SSH ({' '.join(str(exc).split())[-200:]})") from exc
    if result.rc == SSH_FAILED or result.rc in NOT_RUNNABLE:
        why = "not reached over SSH" if result.rc == SSH_FAILED else f"`{command.split()[0]}` is missing"
        raise CouldNotCheck(f"{name}: {why} (exit {result.rc}: {' '.join(result.stderr.split())[:200]})")
    return result


def output(host, command: str, name: str) -> str:
    """The command's output on a host; CouldNotCheck when it could not be had (host not reached,
    command missing or failing): what a check judges is the output, and there is none."""
    result = run(host, command, name)
    if result.rc != 0:
        raise CouldNotCheck(f"{name}: `{command}` exited {result.rc}: {' '.join(result.stderr.split())[:200]}")
    return result.stdout.rstrip("\r\n")


@dataclass
class Site:
    """The environment under test, as its inventory describes it."""

    inventory: Path
    vars: dict
    hosts: dict[str, dict] = field(default_factory=dict)   # name -> host vars, with trustops_role

    @classmethod
    def read(cls, inventory: Path) -> "Site":
        try:
            doc = yaml.safe_load(Path(inventory).read_text())["all"]
            hosts = {name: {**(hv or {}), "trustops_role": role}
                     for role, group in (doc.get("children") or {}).items()
                     for name, hv in ((group or {}).get("hosts") or {}).items()}
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise pytest.UsageError(f"cannot read inventory {inventory}: {exc}") from exc
        if not hosts:
            raise pytest.UsageError(f"inventory {inventory} names no host")
        return cls(Path(inventory), doc.get("vars") or {}, hosts)

    def need(self, role: str) -> list[str]:
        """The role's hosts; a check about a role the environment does not have (a managed
        database in place of the db VM) is skipped with that reason, never passed unasserted."""
        if not self.role(role):
            pytest.skip(f"no {role} host in the inventory {self.inventory.name}")
        return self.role(role)

    def role(self, role: str) -> list[str]:
        return sorted(n for n, h in self.hosts.items() if h["trustops_role"] == role)

    def host(self, name: str):
        """The host over SSH as Ansible reaches it (user, key, port, known_hosts), root through sudo."""
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={self.inventory}", sudo=True)

    def output(self, name: str, command: str) -> str:
        return output(self.host(name), command, name)

    def run(self, name: str, command: str):
        return run(self.host(name), command, name)

    def private_ip(self, name: str) -> str:
        return self.hosts[name]["private_ip"]

    def database_address(self) -> str:
        """Where the app reaches Postgres: a managed server, or the db VM's private address."""
        return self.vars.get("trustops_database_host") or self.private_ip(self.role("db")[0])

    def setting(self, role: str, key: str):
        """A role's setting as the converge used it: the inventory's value, else the role's default."""
        if key in self.vars:
            return self.vars[key]
        return role_default(role, key)

    def prometheus_url(self, name: str) -> str:
        """Prometheus on an ops host, on its private address (asked from that host, over TLS)."""
        return f"https://{self.private_ip(name)}:{self.setting('alerting', 'alerting_prometheus_port')}"

    def public(self, name: str, port: int) -> tuple[str, int]:
        """Where the control node reaches a host's public port: the lab publishes it on loopback,
        a cloud host answers on its own address."""
        published = (self.vars.get("trustops_lab_published") or {}).get(name) or {}
        return self.hosts[name]["ansible_host"], int(published.get(port, published.get(str(port), port)))

    def s3(self):
        """A boto3 S3 client: the lab's endpoint and generated keys, or the default AWS chain."""
        import boto3

        s3 = self.vars["trustops_s3"]
        kwargs: dict = {"region_name": s3["region"]}
        local = self.vars.get("trustops_lab_s3_local_url")
        if local:
            creds = Path(self.vars["trustops_lab_state_dir"]) / "s3-credentials.json"
            kwargs.update(endpoint_url=local, verify=self.vars["trustops_lab_s3_local_verify"],
                          **json.loads(creds.read_text()))
        elif s3.get("endpoint_url"):
            kwargs["endpoint_url"] = s3["endpoint_url"]
        return boto3.client("s3", **kwargs)


def _multiplexing_config(directory: Path) -> Path:
    """The project's ansible.cfg plus an ssh ControlPath, which testinfra needs to reuse one SSH
    connection per host (without it every command is a new handshake: seconds each under load)."""
    cfg = configparser.RawConfigParser()
    cfg.read(ANSIBLE_CFG)
    if cfg.has_option("defaults", "roles_path"):   # relative to the file: keep it pointing at ours
        cfg.set("defaults", "roles_path", str((ANSIBLE_CFG.parent / cfg.get("defaults", "roles_path")).resolve()))
    if not cfg.has_section("ssh_connection"):
        cfg.add_section("ssh_connection")
    cfg.set("ssh_connection", "control_path", "%(directory)s/%%C")
    path = directory / "ansible.cfg"
    with open(path, "w") as f:
        cfg.write(f)
    return path


@pytest.fixture(scope="session")
def site(request, tmp_path_factory) -> Site:
    """The inventory given with --ansible-inventory, else the converged test lab's."""
    os.environ["ANSIBLE_CONFIG"] = str(_multiplexing_config(tmp_path_factory.mktemp("ansible")))
    Path("~/.ansible/cp").expanduser().mkdir(parents=True, exist_ok=True)   # testinfra's socket dir
    given = request.config.getoption("ansible_inventory", None)
    if not given:
        request.getfixturevalue("converged")
    site = Site.read(Path(given) if given else request.getfixturevalue("lab_config").inventory_file)
    try:   # Ansible's view of the inventory, read once here: a failure is "could not check", not a finding
        AnsibleRunner.get_runner(str(site.inventory)).inventory
    except Exception as exc:  # noqa: BLE001 - testinfra reports a failed ansible-inventory as AssertionError
        raise pytest.UsageError(f"ansible-inventory cannot read {site.inventory}: {exc}") from exc
    return site


MIN_SETTLE_SECONDS = 5


@pytest.fixture(scope="session")
def _settled_by(request) -> float:
    return time.monotonic() + request.config.getoption("--settle-timeout")


@pytest.fixture
def settle(_settled_by) -> float:
    """Seconds a check may wait for what it checks to settle (a service still starting after a
    converge is not a broken promise; one still down after this is). One budget for the run, from
    the first check that waits: an environment settles once, so a broken one costs the budget once,
    not once per check."""
    return max(_settled_by - time.monotonic(), MIN_SETTLE_SECONDS)
