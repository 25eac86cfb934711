"""Parsers on the real samples: exact event counts, the same answer from every log format."""
from collections import Counter
from pathlib import Path

import pytest

from trustops.monitors import events as ev
from trustops.monitors.pg import PostgresParser, PrefixError, compile_prefix
from trustops.monitors.ufw import UfwParser

S = Path(__file__).parent / "samples"


def _pg(path, prefix="%m [%p] %q%u@%d ", fmt="stderr"):
    p = PostgresParser(prefix, fmt)
    out = []
    for line in path.read_text().splitlines():
        out += p.feed(line)
    return out + p.flush(), p


def _auth(evts):
    return Counter((e.type, e.reason, e.source, e.user) for e in evts
                   if e.type in (ev.PG_AUTH_FAILED, ev.PG_HBA_REJECT, ev.PG_UNKNOWN_DB, ev.PG_TOO_MANY,
                                 ev.PG_BAD_STARTUP))


def test_stderr_full_session_follows_prefix_changes_and_matches_jsonlog():
    stderr, p = _pg(S / "pg15-stderr-debian-prefix.full-session.log")
    assert p.unparsed == 0  # the prefix changes twice mid-file; the parser follows the server
    json_, pj = _pg(S / "pg15-jsonlog.json", fmt="jsonlog")
    assert pj.unparsed == 0
    assert _auth(stderr) == _auth(json_)
    c = _auth(stderr)
    assert c[(ev.PG_AUTH_FAILED, "bad_password", "127.0.0.1", "alice")] == 4
    assert c[(ev.PG_AUTH_FAILED, "unknown_role", "127.0.0.1", "mallory")] == 1
    assert c[(ev.PG_AUTH_FAILED, "unknown_role", "::1", "mallory")] == 1
    assert c[(ev.PG_HBA_REJECT, "no_encryption", "127.0.0.1", "alice")] == 2
    assert c[(ev.PG_HBA_REJECT, "no_encryption", "::1", "bob")] == 1
    assert sum(n for k, n in c.items() if k[0] == ev.PG_TOO_MANY) == 3
    assert sum(n for k, n in c.items() if k[0] == ev.PG_BAD_STARTUP) == 2


def test_authorized_connections_carry_tls_protocol():
    evts, _ = _pg(S / "pg15-stderr-debian-prefix.full-session.log")
    tcp = [e for e in evts if e.type == ev.PG_AUTHORIZED and e.source and e.source != "[local]"]
    assert tcp and all(e.tls and e.reason == "TLSv1.3" for e in tcp)
    local = [e for e in evts if e.type == ev.PG_AUTHORIZED and e.source == "[local]"]  # the Unix socket
    assert local and not any(e.tls for e in local)


def test_crowdsec_prefix_puts_host_on_every_line():
    evts, p = _pg(S / "pg15-stderr-crowdsec-prefix.log", "%m [%p] %h%q %u@%d ")
    assert p.unparsed == 2  # the file's first two lines predate the server's switch to this prefix
    _, p_debian = _pg(S / "pg15-stderr-crowdsec-prefix.log")
    assert p_debian.unparsed == 0  # started with the old prefix, it follows the logged change
    fails = [e for e in evts if e.type == ev.PG_AUTH_FAILED]
    assert [(e.source, e.reason) for e in fails] == [("127.0.0.1", "bad_password")]


def test_fatal_joined_by_pid_and_pid_forgotten_after_the_connection():
    lines = [
        "2026-01-01 00:00:00.000 UTC [100] [unknown]@[unknown] LOG:  connection received: host=10.0.0.5 port=1",
        "2026-01-01 00:00:00.100 UTC [100] bob@db FATAL:  password authentication failed for user \"bob\"",
        "2026-01-01 00:00:00.100 UTC [100] bob@db DETAIL:  Connection matched pg_hba.conf line 3: \"x\"",
        # PID 100 reused: without its own `connection received` the old address must not stick
        "2026-01-01 00:00:01.000 UTC [100] eve@db FATAL:  password authentication failed for user \"eve\"",
        "2026-01-01 00:00:01.000 UTC [100] eve@db DETAIL:  Role \"eve\" does not exist.",
        "\tConnection matched pg_hba.conf line 3",
    ]
    p = PostgresParser()
    out = []
    for line in lines:
        out += p.feed(line)
    out += p.flush()
    assert [(e.user, e.source, e.reason) for e in out if e.type == ev.PG_AUTH_FAILED] == [
        ("bob", "10.0.0.5", "bad_password"), ("eve", None, "unknown_role")]


def test_prefix_compiler_handles_escapes_and_rejects_bad_ones():
    rx = compile_prefix("%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ")
    m = rx.match("2026-01-01 00:00:00 UTC [42]: [3-1] user=bob,db=app,app=psql,client=10.1.2.3 FATAL:  x")
    assert m and m["pid"] == "42" and m["host"] == "10.1.2.3" and m["level"] == "FATAL"
    with pytest.raises(PrefixError):
        compile_prefix("%m %Z ")
    with pytest.raises(PrefixError):
        compile_prefix("%m %")


UFW_FILES = ["real-debian12-rsyslog-ufw.log", "real-journald-journalctl-k-json.txt",
             "real-journald-journalctl-k-short.txt", "real-journald-journalctl-k-short-precise.txt",
             "real-journald-journalctl-k-short-iso.txt", "real-kernel-dmesg-ufw-loopback.txt",
             "real-kernel-devkmsg-records.txt"]


@pytest.mark.parametrize("name", UFW_FILES)
def test_every_ufw_format_gives_the_same_events(name):
    p = UfwParser()
    evts = [e for line in (S / name).read_text().splitlines() for e in p.feed(line)]
    assert p.unparsed == 0
    assert Counter(e.action for e in evts) == {"AUDIT": 40, "ALLOW": 28, "LIMIT BLOCK": 8, "BLOCK": 4}
    blocked = Counter((e.source, e.dport) for e in evts if e.action in ("BLOCK", "LIMIT BLOCK"))
    assert blocked[("::1", 5432)] + blocked[("127.0.0.1", 5432)] > 0
    assert all(e.source in ("127.0.0.1", "::1") for e in evts)  # IPv6 shortened from the expanded form


def test_ufw_timestamps_from_the_line():
    p = UfwParser()
    iso = p.feed((S / "real-debian12-rsyslog-ufw.log").read_text().splitlines()[0])[0]
    js = p.feed((S / "real-journald-journalctl-k-json.txt").read_text().splitlines()[0])[0]
    assert abs(iso.ts - 1795549115.217843) < 1e-6
    assert abs(js.ts - 1795549059.106303) < 1e-6


def test_ufw_public_corpora_and_non_ufw_lines():
    p = UfwParser()
    evts = [e for line in (S / "public-wazuh-ufw-lines.log").read_text().splitlines() for e in p.feed(line)]
    assert [e.action for e in evts] == ["BLOCK", "BLOCK", "AUDIT"]
    assert evts[1].dport == 22 and evts[0].proto == "UDP"
    p2 = UfwParser()
    lines = (S / "public-crowdsec-hub-iptables-scan-multi-port.log").read_text().splitlines()
    evts2 = [e for line in lines for e in p2.feed(line)]
    assert p2.not_ufw == sum(1 for line in lines if "[UFW " not in line) and p2.unparsed == 0
    assert len(evts2) == sum(1 for line in lines if "[UFW " in line)


def test_export_format_reads_message_fields():
    p = UfwParser()
    lines = (S / "real-journald-journalctl-k-export-excerpt.txt").read_text().splitlines()
    evts = [e for line in lines for e in p.feed(line)]
    assert len(evts) == sum(1 for line in lines if line.startswith("MESSAGE=[UFW "))
