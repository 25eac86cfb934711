"""The journal input for host authentication (monitors/hostauth.py): sshd, sudo and group changes
as real Debian 12 hosts log them, hostile records, its rules on both engines, its config, the
daemon's export for the cross-host rule, and what the monitors role writes."""
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.monitors.hostile import assert_counted_by_reason
from trustops.monitors import events as ev
from trustops.monitors import hostauth
from trustops.monitors.hostauth import REASONS, HostAuthParser
from trustops.monitors.monitor import Monitor, load_config, replay
from trustops.monitors.rules import Engine, load_rules
from trustops.monitors.speedups import FastEngine, available

SAMPLES = Path(__file__).parent / "samples"
# Generated on a lab db host (Debian 12, OpenSSH 9.2p1, sudo 1.9.13): sshd at Debian's LogLevel INFO
# with passwords allowed (before the hardening role), then sudo failures and group changes.
INFO_SAMPLE = SAMPLES / "real-debian12-journal-hostauth-loglevel-info.json"
# The same host hardened (keys only, LogLevel VERBOSE, MaxAuthTries 3, AllowGroups ssh-users).
VERBOSE_SAMPLE = SAMPLES / "real-debian12-journal-hostauth-hardened.json"
ENGINES = [Engine, pytest.param(FastEngine, marks=pytest.mark.skipif(not available(), reason="C extension not built"))]
KEY = "ED25519 SHA256:" + "Qk" * 21 + "A"
T = 1_796_208_000


def rec(msg, comm="sshd", t=T, **fields) -> str:
    """One `journalctl -o json` record as journald writes it (fields it sets itself included)."""
    exe = hostauth.PROGRAMS.get(comm, f"/usr/bin/{comm}")
    return json.dumps({"__CURSOR": "s=1;i=1", "__REALTIME_TIMESTAMP": str(int(t * 1e6)), "_COMM": comm, "_EXE": exe,
                       "_UID": "0", "SYSLOG_IDENTIFIER": comm, "MESSAGE": msg, **fields})


def feed(p: HostAuthParser, lines) -> list[ev.Event]:
    return [e for line in lines for e in p.feed(line)]


# ------------------------------------------------------------------------------- real samples

def test_the_info_sample_gives_one_failure_per_attempt_and_every_sudo_and_group_change():
    p = HostAuthParser()
    evts = feed(p, INFO_SAMPLE.read_text().splitlines())
    assert p.unparsed == 0
    assert Counter((e.type, e.user, e.reason) for e in evts) == {
        # two passwords per connection; "Failed none" (the client's probe) is no attempt
        (ev.SSH_AUTH_FAILED, "nosuchuser", "invalid_user"): 4, (ev.SSH_AUTH_FAILED, "we ird", "invalid_user"): 2,
        (ev.SSH_AUTH_FAILED, "deploy", "password"): 2, (ev.SSH_AUTH_FAILED, "root", "password"): 2,
        (ev.SUDO_FAILED, "mallory", "not_in_sudoers"): 2, (ev.SUDO_FAILED, "alice", "bad_password"): 2,
        (ev.SUDO_FAILED, "alice", "password_required"): 1,
        # usermod -aG, useradd -G (adm too: not privileged, the rule decides), gpasswd -a, gpasswd -M, adduser
        (ev.GROUP_ADD, "alice", "sudo"): 1, (ev.GROUP_ADD, "eve", "sudo"): 1, (ev.GROUP_ADD, "eve", "adm"): 1,
        (ev.GROUP_ADD, "mallory", "docker"): 1, (ev.GROUP_ADD, "alice", "wheel"): 1, (ev.GROUP_ADD, "eve", "wheel"): 1,
        (ev.GROUP_ADD, "mallory", "disk"): 1}
    assert {e.source for e in evts if e.type == ev.SSH_AUTH_FAILED} == {"172.21.0.1"}
    assert all(e.ts > 1.79e9 for e in evts)


def test_the_hardened_sample_counts_refused_keys_but_not_those_before_a_login():
    p = HostAuthParser()
    evts = feed(p, VERBOSE_SAMPLE.read_text().splitlines())
    assert p.unparsed == 0
    failed = Counter((e.user, e.reason) for e in evts if e.type == ev.SSH_AUTH_FAILED)
    logins = [e for e in evts if e.type == ev.SSH_LOGIN]
    assert logins and all(e.reason == "publickey" for e in logins)
    assert failed[("deploy", "publickey")] >= 1          # a key refused, on a connection that never logged in
    assert failed[("nosuchuser", "invalid_user")] >= 1   # an unknown user: one for its connection
    assert failed[("alice", "invalid_user")] >= 1        # a user outside AllowGroups is invalid to sshd
    assert sum(1 for e in evts if e.type == ev.SUDO_FAILED) >= 1


def test_the_hardened_sample_exactly():
    """Keys only: a wrong key (1), a wrong key before the right one (0, a login), a user outside
    AllowGroups (1), five keys against MaxAuthTries 3 (3, not 4: the error line is no extra
    attempt), an unknown user offering keys (1: sshd logs no attempt for it), a client that offered
    nothing (1); the session child's lines as the user give no event."""
    p = HostAuthParser()
    evts = feed(p, VERBOSE_SAMPLE.read_text().splitlines())
    assert (p.unparsed, p.reasons) == (0, {})
    assert Counter((e.type, e.user, e.reason) for e in evts) == {
        (ev.SSH_AUTH_FAILED, "deploy", "publickey"): 4, (ev.SSH_AUTH_FAILED, "deploy", "no_attempt"): 1,
        (ev.SSH_AUTH_FAILED, "nosuchuser", "invalid_user"): 1, (ev.SSH_AUTH_FAILED, "alice", "invalid_user"): 1,
        (ev.SSH_AUTH_FAILED, "nosuch user2", "invalid_user"): 1, (ev.SSH_LOGIN, "deploy", "publickey"): 1,
        (ev.SUDO_FAILED, "nobody", "not_in_sudoers"): 1}


# ------------------------------------------------------------------------------- connections

def test_keys_offered_before_the_right_one_are_no_failures():
    p = HostAuthParser()
    out = feed(p, [rec(f"Failed publickey for deploy from 10.0.0.9 port 40000 ssh2: {KEY}"),
                   rec(f"Failed publickey for deploy from 10.0.0.9 port 40000 ssh2: {KEY}"),
                   rec(f"Accepted publickey for deploy from 10.0.0.9 port 40000 ssh2: {KEY}")])
    assert [(e.type, e.user, e.source, e.reason) for e in out] == [(ev.SSH_LOGIN, "deploy", "10.0.0.9", "publickey")]


def test_a_connection_counts_each_attempt_or_one_when_it_made_none():
    p = HostAuthParser()
    out = feed(p, [rec(f"Failed publickey for deploy from 10.0.0.9 port 1 ssh2: {KEY}"),
                   rec("error: maximum authentication attempts exceeded for deploy from 10.0.0.9 port 1 ssh2 [preauth]"),
                   rec(f"Failed publickey for deploy from 10.0.0.9 port 1 ssh2: {KEY}"),
                   rec("Disconnecting authenticating user deploy 10.0.0.9 port 1: Too many authentication failures "
                       "[preauth]"),
                   rec("Invalid user oracle from 2001:0db8:0:0:0:0:0:7 port 2"),
                   rec("Connection closed by invalid user oracle 2001:0db8:0:0:0:0:0:7 port 2 [preauth]"),
                   rec("Connection closed by authenticating user deploy 10.0.0.9 port 3 [preauth]"),
                   rec("Failed password for root from 10.0.0.9 port 4 ssh2"),
                   rec("fatal: Timeout before authentication for 10.0.0.9 port 4"),
                   rec("Connection closed by 10.0.0.9 port 5 [preauth]")])   # a port probe: no user, no attempt
    assert [(e.user, e.source, e.reason) for e in out] == [
        ("deploy", "10.0.0.9", "publickey"), ("deploy", "10.0.0.9", "publickey"),
        ("oracle", "2001:db8::7", "invalid_user"), ("deploy", "10.0.0.9", "no_attempt"),
        ("root", "10.0.0.9", "password")]


def test_a_user_name_cannot_move_the_source():
    """sshd prints the user the client sent; the source is sshd's own last 'from A port P'."""
    p = HostAuthParser()
    out = feed(p, [rec("Failed password for invalid user x from 10.10.0.1 port 1 ssh2 from 203.0.113.5 port 7 ssh2"),
                   rec("Disconnected from invalid user x from 10.10.0.1 port 1 ssh2 203.0.113.5 port 7 [preauth]"),
                   rec("Accepted publickey for a from 10.10.0.1 port 22 from 203.0.113.6 port 8 ssh2")])
    assert [(e.source, e.user) for e in out] == [("203.0.113.5", "x from 10.10.0.1 port 1 ssh2"),
                                                ("203.0.113.6", "a from 10.10.0.1 port 22")]


def test_connections_held_are_bounded(monkeypatch):
    monkeypatch.setattr(hostauth, "CONNECTIONS_MAX", 100)
    p = HostAuthParser()
    feed(p, [rec(f"Failed password for root from 10.0.{i // 250}.{i % 250} port {i} ssh2") for i in range(1000)])
    assert len(p._conns) == 100 and p.connections_dropped == 900


# ------------------------------------------------------------------------------- trust and hostile records

def test_records_are_trusted_by_what_journald_sets_not_by_the_identifier():
    p = HostAuthParser()
    forged = [rec("Accepted publickey for root from 203.0.113.1 port 1 ssh2", comm="logger",
                  SYSLOG_IDENTIFIER="sshd"),                                           # logger -t sshd
              rec("Accepted publickey for root from 203.0.113.1 port 1 ssh2", _EXE="/home/u/sshd"),
              rec("Accepted publickey for root from 203.0.113.1 port 1 ssh2", _UID="1000"),
              rec("add 'u' to group 'sudo'", comm="usermod", _EXE="/tmp/usermod")]
    assert feed(p, forged) == []
    assert p.reasons == {"untrusted": 2} and p.no_event == 2   # logger's, and an sshd a user runs
    # journald leaves _EXE out when the process was gone before it looked (a quick `sudo -n`)
    quick = json.loads(rec("   alice : a password is required ; PWD=/ ; USER=root ; COMMAND=/usr/bin/id", comm="sudo"))
    del quick["_EXE"]
    assert [e.reason for e in p.feed(json.dumps(quick))] == ["password_required"]


HOSTILE = {
    "not_json": ["", "hello", "{", "[" * 100_000 + "]" * 100_000, "{" + '"a":[' * 50_000, "[1, 2]", '{"x": NaN'],
    "wrong_type": [rec(17), rec(None), rec({"a": 1}), rec([300, 1]), rec(["a"]), rec([1] * (1 << 20 + 1))],
    "bad_time": [rec("x", t=-1), rec("x", t=10 ** 13), rec("x", __REALTIME_TIMESTAMP="yesterday"),
                 rec("x", __REALTIME_TIMESTAMP=1796208000000000), rec("x", __REALTIME_TIMESTAMP="1" * 5000)],
    "bad_value": [rec("Failed password for root from 999.1.1.1 port 2 ssh2"),
                  rec("Failed password for root from 10.0.0.1 port 99999 ssh2"),
                  rec("Failed none for invalid user x from ::1::2 port 5 ssh2"),
                  rec("Connection closed by invalid user x 1.2.3 port 5 [preauth]")],
    "untrusted": [rec("x", comm="sudo", _EXE="/home/u/bin/sudo")],
}


def test_hostile_records_are_counted_by_reason_and_never_raise():
    p = HostAuthParser()
    assert_counted_by_reason(p, HOSTILE, REASONS)
    assert feed(p, [rec("Invalid user z from 10.0.0.1 port 5"),
                    rec("Connection closed by invalid user z 10.0.0.1 port 5 [preauth]")])  # the stream goes on


def test_user_names_with_control_characters_unicode_and_any_length_are_kept_safe():
    p = HostAuthParser()
    names = ["a\x1b[31mred", "bob\nFailed password", "élodie", "\u202eevil", "x" * 100_000, "\ud800"]
    out = []
    for i, name in enumerate(names):
        out += feed(p, [rec(f"Invalid user {name} from 10.0.0.1 port {i + 1}"),
                        rec(f"Connection closed by invalid user {name} 10.0.0.1 port {i + 1} [preauth]")])
    assert p.unparsed == 0 and len(out) == len(names)
    for e in out:
        assert e.user.isprintable() and len(e.user) <= 4 * hostauth.USER_MAX
        e.user.encode("utf-8")
    assert out[2].user == "élodie"
    # a message journald stored as bytes (not UTF-8) is read with replacement characters
    raw = json.loads(rec(""))
    raw["MESSAGE"] = list(b"Failed password for invalid user \xff\xfe from 10.0.0.1 port 9 ssh2")
    assert p.feed(json.dumps(raw)) == []
    closed = p.feed(rec("Connection closed by invalid user \ufffd\ufffd 10.0.0.1 port 9 [preauth]"))
    assert [(e.user, e.reason) for e in closed] == [("\ufffd\ufffd", "invalid_user")]


@pytest.mark.parametrize("seed", range(3))
def test_mangled_records_never_raise(seed):
    rnd = random.Random(seed)
    lines = INFO_SAMPLE.read_text().splitlines()
    p = HostAuthParser()
    with_events = 0
    for _ in range(3000):
        line = rnd.choice(lines)
        i = rnd.randrange(len(line))
        cut = rnd.choice([line[:i], line[:i] + line[i + 1:], line[:i] + rnd.choice('"{}\\\x00\u2028é') + line[i:],
                          line.replace('"MESSAGE":"', '"MESSAGE":"' + "\x07" * rnd.randrange(3)),
                          line.replace('"_COMM":"', '"_COMM":"x')])
        with_events += bool(p.feed(cut))
    assert with_events + p.no_event + p.unparsed == 3000   # every record: events, none, or counted skipped
    assert p.unparsed > 100 and with_events > 10


def test_replay_reads_a_journal_export_and_counts_failures_by_source(tmp_path):
    log = tmp_path / "journal.json"
    log.write_text(INFO_SAMPLE.read_text() + "not json\n")
    pipe = replay([log], by_source=True)
    assert pipe.errors == {(f"0:{log.name}", "unparsed"): 1}
    assert pipe.by_source == {"ssh_auth_failed:invalid_user": {"172.21.0.1": 6},
                              "ssh_auth_failed:password": {"172.21.0.1": 4}}
    assert {d.rule for d in pipe.detections} == {"SshBruteForce", "SudoFailure", "HostPrivilegedGroupAdd"}


# ------------------------------------------------------------------------------- rules

@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def fired(engine_cls, events, overrides=None):
    rules = [r for r in load_rules(overrides=overrides) if any(t in ev.HOST_TYPES for t in (
        r.match["type"] if isinstance(r.match["type"], list) else [r.match["type"]]))]
    e = engine_cls(rules, ["10.10.1.4/32"])
    return [d for x in events for d in e.process(x)]


def fail(i, source="198.51.100.7", user="root", ts=T):
    return ev.Event(ev.SSH_AUTH_FAILED, ts + i, source=source, user=user, reason="publickey")


def test_ssh_brute_force_fires_at_ten_failures_in_ten_minutes(engine):
    assert [d.rule for d in fired(engine, [fail(i) for i in range(9)])] == []
    assert [d.rule for d in fired(engine, [fail(i * 60) for i in range(10)])] == ["SshBruteForce"]
    assert fired(engine, [fail(i * 70) for i in range(10)]) == []   # 10 in 10.5 minutes


def test_ssh_spraying_needs_five_user_names_from_one_source(engine):
    found = fired(engine, [fail(i, user=u) for i, u in enumerate(["root", "admin", "oracle", "ubuntu", "pi"])])
    assert [(d.rule, d.group) for d in found] == [("SshPasswordSpraying", "198.51.100.7")]


def test_a_login_from_outside_the_admin_networks_is_critical(engine):
    admin = {"SshLoginFromOutsideAdminNetworks": {"allowlist": ["192.88.99.0/24", "2001:db8:1::/48"]}}
    logins = [ev.Event(ev.SSH_LOGIN, T, source=s, user="deploy", reason="publickey")
              for s in ("192.88.99.1", "2001:db8:1::5", "203.0.113.77")]
    found = fired(engine, logins, admin)
    assert [(d.rule, d.group, d.severity) for d in found] == [("SshLoginFromOutsideAdminNetworks", "203.0.113.77",
                                                               "critical")]


def test_sudo_failures_and_privileged_groups(engine):
    found = fired(engine, [ev.Event(ev.SUDO_FAILED, T, user="mallory", reason="not_in_sudoers"),
                           ev.Event(ev.GROUP_ADD, T, user="eve", reason="adm"),       # reads logs: not root
                           ev.Event(ev.GROUP_ADD, T, user="eve", reason="sudo"),
                           ev.Event(ev.GROUP_ADD, T, user="bob", reason="docker")])
    assert [(d.rule, d.group) for d in found] == [("SudoFailure", "mallory"), ("HostPrivilegedGroupAdd", "eve"),
                                                  ("HostPrivilegedGroupAdd", "bob")]


# ------------------------------------------------------------------------------- config and daemon

def _config(tmp_path, **extra):
    return load_config(data={"instance": "db-1", "inputs": [{"name": "hostauth", "type": "hostauth"}],
                             "state_dir": str(tmp_path / "state"), "metrics": {"listen": None}, **extra})


def test_the_input_reads_the_journal_of_exactly_its_programs_by_default(tmp_path):
    cfg = _config(tmp_path)
    cmd = cfg.inputs[0].journal_command
    assert cmd[:2] == ["journalctl", "--output=json"] and "--follow" in cmd
    assert sorted(a for a in cmd if a.startswith("_COMM=")) == sorted(f"_COMM={c}" for c in hostauth.PROGRAMS)


@pytest.mark.parametrize("pure", ["1", "0"])
def test_the_daemon_alerts_and_exports_failing_sources_for_prometheus(monkeypatch, tmp_path, pure):
    """The journal command's records go through the rules (on the Python engine inside the C one),
    and the sources SshBruteForce tracks are exported for the cross-host rule; hostile records are
    counted in lines_skipped_total."""
    if pure == "0" and not available():
        pytest.skip("C extension not built")
    monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", pure)
    journal = tmp_path / "journal.json"
    now = time.time()
    lines = [rec(f"Invalid user u{i} from 198.51.100.{i % 2} port {i + 1}", t=now) for i in range(12)]
    lines += [rec(f"Connection closed by invalid user u{i} 198.51.100.{i % 2} port {i + 1} [preauth]", t=now)
              for i in range(12)]
    lines += ["{not json", rec("x" * 10, _EXE="/tmp/sshd")]
    journal.write_text("\n".join(lines) + "\n")
    cfg = load_config(data={"instance": "db-1", "state_dir": str(tmp_path / "state"), "metrics": {"listen": None},
                            "inputs": [{"name": "hostauth", "type": "hostauth", "journal_command": ["cat", str(journal)]}]})
    mon = Monitor(cfg)
    try:
        deadline = time.monotonic() + 10
        reg = mon.metrics.registry
        while time.monotonic() < deadline and (reg.get_sample_value("trustops_monitor_lines_read_total",
                                                                 {"input": "hostauth"}) or 0) < len(lines):
            mon.wake.wait(0.1)
            mon.step()
        assert reg.get_sample_value("trustops_monitor_lines_read_total", {"input": "hostauth"}) == len(lines)
        assert reg.get_sample_value("trustops_monitor_lines_skipped_total", {"input": "hostauth", "reason": "unparsed"}) == 2
        assert reg.get_sample_value("trustops_monitor_events_total",
                                    {"source_type": "hostauth", "outcome": "ssh_auth_failed:invalid_user"}) == 12
        assert reg.get_sample_value("trustops_monitor_detections_total",
                                    {"rule": "SshPasswordSpraying", "severity": "warning"}) == 2
        assert {k.split("|")[0] for k in mon.alerts.firing} == {"SshPasswordSpraying"}
        assert {s: reg.get_sample_value("trustops_monitor_ssh_failing_source_attempts", {"source": s})
                for s in ("198.51.100.0", "198.51.100.1")} == {"198.51.100.0": 6, "198.51.100.1": 6}
    finally:
        for t in mon.tails.values():
            t.close()


def test_the_role_gives_every_host_the_input_and_its_admin_networks(tmp_path):
    from tests.monitors.test_app import _render_monitor_yml
    ops = _render_monitor_yml(tmp_path, trustops_role="ops", group_names=["ops"],
                              monitors_admin_networks=["192.88.99.1/32"])
    assert [i["type"] for i in ops["inputs"]] == ["hostauth", "ufw"]
    assert ops["rules"] == {"SshLoginFromOutsideAdminNetworks": {"allowlist": ["192.88.99.1/32"]}}
    cfg = load_config(tmp_path / "monitor.yml")
    assert "SshLoginFromOutsideAdminNetworks" in {r.name for r in load_rules(cfg.rules_file, cfg.allowlist, cfg.rules)}


def test_a_restart_resumes_the_journal_after_its_cursor_not_at_its_end():
    """Before: the role's `journalctl --lines=0 --follow` got `--after-cursor` added at restart, and
    journalctl then printed nothing from the cursor on (checked on a lab host: 0 records, 95 without
    --lines=0): what was logged while the monitor was down was never read."""
    import threading

    from trustops.monitors.monitor import JournalTail
    wake = threading.Event()
    tail = JournalTail(["sh", "-c", 'echo "$*"', "journalctl", "--output=json", "--follow", "--lines=0"], "s=abc;i=7",
                       wake)
    try:
        wake.wait(10)
        tail.proc.wait(10)
        assert tail.read() == [b"--output=json --follow --after-cursor=s=abc;i=7"]
    finally:
        tail.close()


def test_failing_sources_leave_the_metric_when_their_window_ends_and_never_blink(tmp_path):
    """A source SshBruteForce no longer tracks leaves the metric; one still tracked is never
    removed, not even for a moment (a scrape then would resolve SshFailuresAcrossHosts)."""
    cfg = load_config(data={"instance": "db-1", "state_dir": str(tmp_path / "state"), "metrics": {"listen": None},
                            "inputs": [{"name": "hostauth", "type": "hostauth", "journal_command": ["true"]}]})
    mon = Monitor(cfg)
    gauge = mon.metrics.ssh_failing_sources
    removed = []
    real_remove = gauge.remove
    gauge.remove = lambda *labels: (removed.append(labels), real_remove(*labels))
    gauge.clear = lambda: removed.append("all")
    reg = mon.metrics.registry

    def exported():
        return {s: reg.get_sample_value("trustops_monitor_ssh_failing_source_attempts", {"source": s})
                for s in ("198.51.100.1", "198.51.100.2") if reg.get_sample_value(
                    "trustops_monitor_ssh_failing_source_attempts", {"source": s}) is not None}
    try:
        now = time.time()
        for e in (fail(0, source="198.51.100.1", ts=now - 590), fail(0, source="198.51.100.2", ts=now),
                  fail(1, source="198.51.100.2", ts=now)):
            mon.engine.process(e)
        mon.step()
        assert exported() == {"198.51.100.1": 1, "198.51.100.2": 2} and removed == []
        mon.engine.expire(now + 20)   # .1 idle past SshBruteForce's 10 minutes
        mon.step()
        assert exported() == {"198.51.100.2": 2} and removed == [("198.51.100.1",)]
    finally:
        for t in mon.tails.values():
            t.close()


def test_hostile_names_from_a_real_sshd_and_sudo():
    """Made on the hardened lab host: a user name with an escape sequence, UTF-8 and a right-to-left
    mark (sshd escapes it in octal, twice over in its closing line), one of 5000 characters (sshd cuts
    it), one containing 'from 10.9.9.9 port 1', and sudo with a 9000-character command (sudo splits
    it into '(command continued)' records)."""
    p = HostAuthParser()
    evts = feed(p, (SAMPLES / "real-debian12-journal-hostauth-hostile.json").read_text().splitlines())
    assert (p.unparsed, len(evts)) == (0, 4)
    ssh = [e for e in evts if e.type == ev.SSH_AUTH_FAILED]
    assert [e.source for e in ssh] == ["172.21.0.1"] * 3
    assert ssh[0].user.startswith("ev\\\\033[31mil") and ssh[0].user.isprintable()
    assert set(ssh[1].user) == {"u"} and len(ssh[1].user) < 5000
    assert ssh[2].user == "x from 10.9.9.9 port 1"
    assert [(e.user, e.reason) for e in evts if e.type == ev.SUDO_FAILED] == [("nobody", "not_in_sudoers")]


def test_a_journal_command_that_ends_is_started_again_after_its_cursor(monkeypatch, capsys):
    """Before: a journalctl killed (or ended with journald) left its input blind until the monitor
    restarted. Now it is started again, after the last cursor read, at most every RESTART_WAIT."""
    import threading

    from trustops.monitors.monitor import JournalTail
    monkeypatch.setattr(JournalTail, "RESTART_WAIT", 0.0)
    script = 'echo "{\\"__CURSOR\\": \\"c$#\\"} $*"'
    tail = JournalTail(["sh", "-c", script, "journalctl", "--lines=0"], None, threading.Event())
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            got += tail.read()
            time.sleep(0.05)
        assert got == [b'{"__CURSOR": "c1"} --lines=0', b'{"__CURSOR": "c1"} --after-cursor=c1'], got
        assert tail.restarts >= 1 and "ended (exit 0); starting it again" in capsys.readouterr().err
    finally:
        tail.close()
