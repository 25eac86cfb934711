"""Central journals on the converged lab (issue 19): what is written on the db host (a marker, a UFW
kernel line, an sshd line) is read on ops from db's own files under the receiver's directory, on
every ops host (each keeps every other host's journal, the other ops hosts' included); an outage of
one receiver loses nothing and duplicates nothing (the uploader instance keeps its cursor) and holds
back nothing on the other ops host; a client without a certificate of the fleet is refused. Host
names and addresses come from the inventory."""
from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml

from trustops.converge import ANSIBLE_DIR, role_default
from trustops.lab.environment import ops_keys
from trustops.wait import until

REMOTE_DIR = role_default("journal_remote", "journal_remote_dir")
TLS_DIR = role_default("journal_remote", "journal_remote_tls_dir")
PORT = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text())["trustops_journal_port"]
TAG = "trustops-journal-test"


def _host(lab: dict, role: str) -> tuple[str, str]:
    """(inventory name, private address) of the lab's first host of `role` (the one whose
    container is the role's: ops-1 of the twin's two, where the others ship their journals)."""
    name, hv = next(iter(lab["all"]["children"][role]["hosts"].items()))
    return name, hv["private_ip"]


def _ops(lab, lab_config) -> list[tuple[str, str]]:
    """(container key, inventory name) of every ops host, the first one first."""
    return list(zip(ops_keys(lab_config), lab["all"]["children"]["ops"]["hosts"]))


def _sh(lab_config, role: str, script: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", lab_config.container(role), "bash", "-o", "pipefail", "-ec", script],
                          capture_output=True, text=True, timeout=timeout)


def _central(lab, lab_config, role: str, *match: str, on: str = "ops", name: str = "") -> list[str]:
    """Messages of `role`'s host (or the host `name`) as the ops host `on` (a container key) keeps
    them: only from the files named by that host's certificate (the one being written and its
    archives; a host new to the receiver has no archive yet)."""
    name = name or _host(lab, role)[0]
    listing = _sh(lab_config, on, f"ls -1 {REMOTE_DIR}").stdout.split()
    files = [f for f in listing if f == f"remote-{name}.journal" or f.startswith(f"remote-{name}@")]
    if not files:
        return []
    proc = _sh(lab_config, on, "journalctl --no-pager -o cat "
               + " ".join(f"--file='{REMOTE_DIR}/{f}'" for f in files) + " " + " ".join(match))
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def _logger(lab_config, role: str, message: str) -> None:
    proc = _sh(lab_config, role, f"logger -t {TAG} '{message}'")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def journals(lab, lab_config, converged):
    return lab, lab_config


def test_a_marker_written_on_db_is_read_on_every_ops_host(journals):
    lab, lab_config = journals
    marker = f"central-journal-marker-{secrets.token_hex(6)}"
    _logger(lab_config, "db", marker)
    for key, name in _ops(lab, lab_config):
        until(lambda: marker in _central(lab, lab_config, "db", f"SYSLOG_IDENTIFIER={TAG}", on=key), 90,
              f"{marker} from db in {name}'s {REMOTE_DIR}", interval=2)
        assert marker not in _central(lab, lab_config, "app", f"SYSLOG_IDENTIFIER={TAG}", on=key)  # db's files only


def test_each_ops_host_keeps_the_other_ops_hosts_journal(journals):
    """Ops hosts upload to each other: the journal of an ops host that is lost is on the others."""
    lab, lab_config = journals
    ops = _ops(lab, lab_config)
    if len(ops) < 2:
        pytest.skip("one ops host: it keeps its own journal, there is no other to send it to")
    marker = f"ops-journal-marker-{secrets.token_hex(6)}"
    for key, _ in ops:
        _logger(lab_config, key, f"{marker}-{key}")
    for key, name in ops:
        for other_key, other in ops:
            if other != name:
                until(lambda: f"{marker}-{other_key}" in _central(lab, lab_config, "ops", f"SYSLOG_IDENTIFIER={TAG}",
                                                                  on=key, name=other), 90,
                      f"{other}'s marker in {name}'s {REMOTE_DIR}", interval=2)


def test_a_ufw_line_and_an_sshd_line_of_db_arrive(journals):
    lab, lab_config = journals
    _, db_ip = _host(lab, "db")
    port = 20000 + secrets.randbelow(10000)
    # From the app host: a packet UFW drops on db (a closed port), and an SSH connection that says its
    # version and leaves (sshd logs it with the client's source port; one, far below fail2ban's five).
    probe = ("import socket\n"
             f"s = socket.socket(); s.settimeout(2)\ntry:\n    s.connect(('{db_ip}', {port}))\nexcept OSError:\n    pass\n"
             f"s = socket.create_connection(('{db_ip}', 22), timeout=10)\n"
             "s.sendall(b'SSH-2.0-trustops-journal-test\\r\\n'); s.recv(256); print(s.getsockname()[1]); s.close()\n")
    proc = _sh(lab_config, "app", f"python3 -c \"{probe}\"")
    assert proc.returncode == 0, proc.stderr
    ssh_port = proc.stdout.strip()
    until(lambda: any(f"DPT={port} " in m for m in _central(lab, lab_config, "db")), 90,
          f"db's UFW line for port {port} on ops", interval=3)
    until(lambda: any(f"port {ssh_port}" in m for m in _central(lab, lab_config, "db", "_COMM=sshd")), 90,
          f"db's sshd line for source port {ssh_port} on ops", interval=3)


def test_an_outage_of_ops_loses_nothing_and_duplicates_nothing(journals):
    """db's receiver on the first ops host stopped: its uploader instance fails and keeps its cursor,
    the other ops hosts get db's entries meanwhile; back, every entry arrives there once."""
    lab, lab_config = journals
    ops = _ops(lab, lab_config)
    receiver = f"trustops-journal-remote@{_host(lab, 'db')[0]}"
    uploader = f"trustops-journal-upload@{ops[0][1]}"
    since = _sh(lab_config, "db", "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    stop = _sh(lab_config, "ops", f"systemctl stop {receiver}.socket {receiver}.service")
    assert stop.returncode == 0, stop.stderr
    run = secrets.token_hex(6)
    markers = [f"outage-{run}-{i}" for i in range(5)]
    try:
        for m in markers:
            _logger(lab_config, "db", m)
        until(lambda: "failed" in _sh(lab_config, "db", f"journalctl -u {uploader} --since '{since}' "
                                                         "--no-pager -o cat").stdout,
              60, f"the uploader failing while db's receiver on {ops[0][1]} is down", interval=2)
        for key, name in ops[1:]:   # the other ops hosts are not held back
            until(lambda: all(m in _central(lab, lab_config, "db", f"SYSLOG_IDENTIFIER={TAG}", on=key) for m in markers),
                  90, f"the outage's markers on {name}", interval=3)
        assert not any(run in m for m in _central(lab, lab_config, "db", f"SYSLOG_IDENTIFIER={TAG}"))
    finally:
        start = _sh(lab_config, "ops", f"systemctl start {receiver}.socket")
    assert start.returncode == 0, start.stderr
    got = until(lambda: (lambda ms: ms if all(m in ms for m in markers) else None)(
        _central(lab, lab_config, "db", f"SYSLOG_IDENTIFIER={TAG}")), 120, "the outage's markers on ops", interval=3)
    assert sorted(m for m in got if run in m) == markers, "each marker exactly once"
    assert _sh(lab_config, "db", f"systemctl is-active {uploader}").stdout.strip() in ("active", "activating")


REFUSE = r"""
import http.client, ssl, subprocess, sys, tempfile, os
host, port, tls, marker, spoofed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def post(label, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=f"{tls}/ca.crt")
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    body = f"__REALTIME_TIMESTAMP=1\nMESSAGE={marker}-{label}\nSYSLOG_IDENTIFIER=trustops-journal-test\n\n".encode()
    try:
        c = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
        c.request("POST", "/upload", body, {"Content-Type": "application/vnd.fdo.journal"})
        return str(c.getresponse().status)
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__
d = tempfile.mkdtemp()
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={spoofed}", "-days", "1", "-keyout", f"{d}/k", "-out", f"{d}/c"], check=True,
               capture_output=True)
print(post("none"), post("intruder", f"{d}/c", f"{d}/k"), post("fleet", f"{tls}/host.crt", f"{tls}/host.key"))
"""


def test_a_client_without_a_certificate_of_the_fleet_is_refused(journals):
    lab, lab_config = journals
    _, ops_ip = _host(lab, "ops")
    marker = f"intruder-{secrets.token_hex(6)}"
    # the intruder's own certificate names the db host: only the CA check keeps it out of db's files
    proc = subprocess.run(["docker", "exec", "-i", lab_config.container("app"), "python3", "-", ops_ip, str(PORT),
                           TLS_DIR, marker, _host(lab, "db")[0]], input=REFUSE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    none, intruder, fleet = proc.stdout.split()
    assert not none.startswith("2") and not intruder.startswith("2"), proc.stdout
    assert fleet.startswith("2"), f"the host's own certificate must be taken (else the refusals prove nothing): {proc.stdout}"
    got = until(lambda: (lambda ms: ms if f"{marker}-fleet" in ms else None)(
        _sh(lab_config, "ops", f"journalctl --directory={REMOTE_DIR} -o cat SYSLOG_IDENTIFIER={TAG}").stdout), 60,
        "the fleet certificate's post on ops", interval=2)
    assert f"{marker}-none" not in got and f"{marker}-intruder" not in got


def test_each_receiver_and_uploader_instance_is_sandboxed_ok_or_better(journals):
    from tests.test_unit_sandboxing import GOOD, exposure

    lab, lab_config = journals
    measured = [("ops", f"trustops-journal-remote@{_host(lab, role)[0]}.service") for role in ("app", "db")]
    measured += [("db", f"trustops-journal-upload@{name}.service") for _, name in _ops(lab, lab_config)]
    for where, unit in measured:
        score, level, _ = exposure(lab_config, where, unit)
        assert level in GOOD and score < 5.0, f"{unit}: {score} {level}"
