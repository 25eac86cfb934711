"""The C hot path (monitors/_speedups.c) against the pure-Python reference: the same lines must
give the same events, counts, errors and detections, on real samples, generated logs, mangled
input and random rules. Python is the specification; any difference is a bug in one of them."""
import json
import random
import re
import sys
from pathlib import Path

import pytest

from trustops.monitors import events as ev
from trustops.monitors import speedups
from trustops.monitors.events import Event, iso_time
from trustops.monitors.monitor import replay
from trustops.monitors.pg import compile_prefix, prefix_program
from trustops.monitors.rules import Engine, load_rules

from tests.bench import monitor_logs

SAMPLES = Path(__file__).parent / "samples"
pytestmark = pytest.mark.skipif(speedups._speedups is None, reason="C extension not built")


def test_the_extension_is_built_and_chosen():
    """CI builds it (gcc and the Python headers are there): a silent fall back to pure Python
    would lose the speed without any test noticing."""
    assert speedups.available()
    assert isinstance(speedups.make_engine(load_rules()), speedups.FastEngine)


def both(monkeypatch, paths, **kw) -> tuple[dict, dict]:
    """replay in pure Python, then in C. A line with no usable time gets the time it was read:
    the clock is frozen so that both runs read it the same."""
    import time
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.0)
    out = []
    for pure in ("1", "0"):
        monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", pure)
        pipe = replay([Path(p) for p in paths], by_source=True, **kw)
        out.append({"lines": pipe.lines, "errors": pipe.errors, "events": pipe.events, "by_source": pipe.by_source,
                    "detections": [d.as_dict() for d in pipe.detections],
                    "scanners": sorted(pipe.scanners)})
    py, c = out
    assert py["scanners"] == [] and c["scanners"], "the C run must really use the scanners"
    py.pop("scanners"), c.pop("scanners")
    return py, c


@pytest.mark.parametrize("name,prefix", [
    ("pg15-stderr-debian-prefix.full-session.log", "%m [%p] %q%u@%d "),
    ("pg15-stderr-crowdsec-prefix.log", "%m [%p] %q%u@%d "),
    ("real-debian12-rsyslog-ufw.log", None), ("public-wazuh-ufw-lines.log", None),
    ("public-crowdsec-hub-iptables-scan-multi-port.log", None), ("real-journald-journalctl-k-json.txt", None),
    ("real-journald-journalctl-k-short-iso.txt", None), ("real-journald-journalctl-k-short-precise.txt", None),
    ("real-journald-journalctl-k-export-excerpt.txt", None), ("real-kernel-dmesg-ufw-loopback.txt", None),
])
def test_same_answer_on_the_real_samples(monkeypatch, name, prefix):
    kw = {"log_line_prefix": prefix} if prefix else {"input_type": "ufw"}
    py, c = both(monkeypatch, [SAMPLES / name], **kw)
    assert py == c
    assert sum(py["events"].values()) > 0


def _mangle(lines: list[str], rng: random.Random) -> list[bytes]:
    """Real-looking lines, some of them broken the ways logs break."""
    out = []
    for line in lines:
        b = line.encode()
        r = rng.random()
        if r < 0.02:
            b = b[:rng.randrange(len(b) + 1)]                       # cut anywhere
        elif r < 0.03:
            b = b.replace(b" ", b"\xff", 1)                          # invalid UTF-8
        elif r < 0.035:
            b = b + b"\x00\x01"                                      # binary garbage
        elif r < 0.05:
            i = rng.randrange(len(b) + 1)
            b = b[:i] + rng.choice([b"\xc3\xa9", b"\xe2\x82\xac", b" ", b"\t", b'"', b":  ", b"@", b"]", b"9",
                                    b"[unknown]", b"\r", b"2026-13-45 ", b"DETAIL:  "]) + b[i:]
        elif r < 0.06:
            b = b + b"\r"
        elif r < 0.065:
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        out.append(b)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_answer_on_generated_and_mangled_postgres_logs(monkeypatch, tmp_path, seed):
    log = tmp_path / "pg.log"
    monitor_logs.postgres_log(log, 20_000, seed=seed)
    lines = log.read_text().splitlines()
    rng = random.Random(seed)
    extra = [  # every message kind the parser knows, with the bench's prefix
        '2026-09-21 14:13:20.100 UTC [77] 203.0.113.5 [unknown]@[unknown] LOG:  connection received: host=203.0.113.5',
        '2026-09-21 14:13:20.101 UTC [77] 203.0.113.5 bob@appdb FATAL:  password authentication failed for user "bob"',
        '2026-09-21 14:13:20.101 UTC [77] 203.0.113.5 bob@appdb DETAIL:  Role "bob" does not exist.',
        '2026-09-21 14:13:20.102 UTC [78] 203.0.113.5 x@y FATAL:  no pg_hba.conf entry for host "203.0.113.5", '
        'user "x", database "y", no encryption',
        '2026-09-21 14:13:20.102 UTC [79]  x@y FATAL:  no pg_hba.conf entry for host "[local]", user "x", '
        'database "y"',
        '2026-09-21 14:13:20.103 UTC [80] 203.0.113.6 a@nodb FATAL:  database "nodb" does not exist',
        '2026-09-21 14:13:20.104 UTC [81] 203.0.113.7 a@b FATAL:  sorry, too many clients already',
        '2026-09-21 14:13:20.105 UTC [82] 203.0.113.8 [unknown]@[unknown] LOG:  invalid length of startup packet',
        '2026-09-21 14:13:20.106 UTC [83] 203.0.113.8 [unknown]@[unknown] LOG:  could not accept SSL connection: '
        'wrong version number é',
        '2026-09-21 14:13:20.107 UTC [84] 203.0.113.9 a@b FATAL:  password authentication failed for user "a"',
        '\tRole "a" does not exist.',
        '2026-09-21 14:13:20.108 UTC [85] 10.0.0.1 a@b LOG:  connection authorized: user=a database=b',
        '2026-09-21 14:13:20.109 UTC [85] 10.0.0.1 a@b LOG:  disconnection: session time: 0:00:00.001 user=a '
        'database=b host=10.0.0.1 port=5',
    ]
    together = [  # a reload to another prefix and back, then an unsupported one (the prefix stays)
        '2026-09-21 14:13:20.110 UTC [86] LOG:  parameter "log_line_prefix" changed to "%m [%p] %q%u@%d "',
        '2026-09-21 14:13:20.111 UTC [87] a@b FATAL:  password authentication failed for user "a"',
        '2026-09-21 14:13:20.112 UTC [88] LOG:  parameter "log_line_prefix" changed to "%m [%p] %h%q %u@%d "',
        '2026-09-21 14:13:20.113 UTC [89] LOG:  parameter "log_line_prefix" changed to "%m %Z "',
    ]
    for line in extra:
        lines.insert(rng.randrange(len(lines)), line)
    raw = _mangle(lines, rng)
    at = rng.randrange(len(raw))
    raw[at:at] = [line.encode() for line in together]  # not mangled: the prefix does come back
    log.write_bytes(b"\n".join(raw) + b"\n")
    py, c = both(monkeypatch, [log], log_line_prefix=monitor_logs.PG_PREFIX)
    assert py == c
    assert py["events"][("postgres", "pg_auth_failed:bad_password")] > 1000
    assert py["errors"].get(("0:pg.log", "invalid_utf8"), 0) > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_same_answer_on_generated_and_mangled_ufw_logs(monkeypatch, tmp_path, seed):
    log = tmp_path / "ufw.log"
    monitor_logs.ufw_log(log, 20_000, seed=seed)
    rng = random.Random(seed)
    lines = log.read_text().splitlines()
    lines += ["Nov 24 19:37:39 db-1 kernel: [  1.0] [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.4 LEN=40 "
              "PROTO=TCP SPT=1 DPT=5432 ", "2026-02-30T00:00:00.000000+00:00 x kernel: [UFW BLOCK] SRC=1.2.3.4 "
              "DST=5.6.7.8 PROTO=UDP SPT=1 DPT=53", "MESSAGE=[UFW AUDIT INVALID] SRC=1.2.3.4 DST=5.6.7.8 PROTO=ICMP",
              "x [UFW BLOCKED] SRC=1.2.3.4", "x [UFW BLOCK] SRC= DST=1 PROTO=TCP", "iptables: no ufw here"]
    rng.shuffle(lines)
    log.write_bytes(b"\n".join(_mangle(lines, rng)) + b"\n")
    py, c = both(monkeypatch, [log], input_type="ufw")
    assert py == c
    assert py["events"][("ufw", "block")] > 5000


def test_same_answer_with_more_sources_than_the_c_side_caches(monkeypatch, tmp_path):
    """The UFW scanner reuses the str of a source, destination or protocol it saw lately (a
    direct-mapped cache smaller than this log's 40,000 sources, so slots collide and are taken over)
    and one int per port: every packet must still count for its own source and port. Sources that
    are prefixes of each other, IPv6 ones and ports at both ends of their range are in."""
    rng = random.Random(7)
    sources = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(40_000)]
    sources += ["10.0.0.1", "10.0.0.11", "10.0.0.111", "2001:0db8:0000:0000:0000:0000:0000:0001",
                "2001:0db8:0000:0000:0000:0000:0000:0010", "fe80:0000:0000:0000:0000:0000:0000:0001"]
    hot = rng.sample(sources, 50)  # some come back often: they must keep their own counts
    lines = []
    for i in range(120_000):
        src = rng.choice(hot) if i % 3 == 0 else rng.choice(sources)
        port = rng.choice([0, 22, 5432, 65535, rng.randrange(65536)])
        action = rng.choice(["BLOCK", "BLOCK", "LIMIT BLOCK", "ALLOW", "AUDIT"])
        dst = rng.choice(["10.10.1.4", "10.10.1.40", "2001:0db8:0000:0000:0000:0000:0000:0010"])
        lines.append(f"2026-09-21T14:{13 + i // 60000:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}000+00:00 app-1 "
                     f"kernel: [UFW {action}] IN=eth0 OUT= SRC={src} DST={dst} LEN=60 "
                     f"PROTO={rng.choice(['TCP', 'UDP', 'ICMP'])} SPT=1 DPT={port} ")
    log = tmp_path / "ufw.log"
    log.write_text("\n".join(lines) + "\n")
    py, c = both(monkeypatch, [log], input_type="ufw")
    assert py == c
    assert len(py["by_source"]["block"]) > 20_000 and py["detections"]


PREFIXES = ["%m [%p] %q%u@%d ", "%m [%p] %h%q %u@%d ", "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
            "%n %r %q%u %d ", "%m %c %x %v %e %i %Q %s %% %b|", "%-10u %5p %m ", "%p %q%h%u%d:", "%a%u@%d "]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_prefix_program_matches_like_its_regex(prefix):
    """The C matcher runs the program the regex is made from: same groups on every line."""
    rx = compile_prefix(prefix)
    sc = speedups._speedups.PgScanner(speedups.FastEngine([]).c, None, prefix_program(prefix))
    rng = random.Random(prefix)
    values = {"m": ["2026-11-24 19:32:20.067 UTC", "2026-11-24 19:32:20.5 CET", "2026-11-24 19:32:20 UTC"],
              "t": ["2026-11-24 19:32:20 UTC", "2026-11-24 19:32:20 +01"], "n": ["1764012740.067", "17.x"],
              "p": ["4242", "", "x"], "u": ["[unknown]", "alice", "", "a@b", "é"], "d": ["[unknown]", "app db", "db"],
              "h": ["[local]", "10.0.0.1", "::1", "", "DEAD"], "r": ["10.0.0.1(5432)", "[local]", "::1(", ""],
              "a": ["psql", "", "my app: x"], "c": ["6742f1b3.1a2", "g.1"], "l": ["12", ""], "x": ["0", "7"],
              "s": ["2026-11-24 19:00:00 UTC"], "v": ["3/4", "", "3/"], "e": ["28P01", "28p01"], "i": ["idle", ""],
              "b": ["client backend", ""], "Q": ["-7", "12", "-"], "%": ["%"], "q": [""]}
    lines = []
    for _ in range(3000):
        line = re.sub(r"%-?\d*([a-zA-Z%])", lambda m: rng.choice(values.get(m.group(1), ["?"])), prefix)
        if rng.random() < 0.3:  # a non-session line: the prefix stops at %q
            line = re.sub(r"%-?\d*([a-zA-Z%])", lambda m: rng.choice(values.get(m.group(1), ["?"])),
                          prefix.split("%q")[0])
        line += rng.choice(["LOG:  hi", "FATAL:  x y", "DETAIL:  z", "DEBUG3:  d", "LOG: one space", "WHAT:  "])
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            i = rng.randrange(len(line) + 1)
            line = line[:i] + rng.choice([" ", "", "@", "[", "]", ":", "9", "é", "LOG:  ", "("]) + line[i + 1:]
        lines.append(line)
    hits = 0
    for line in lines:
        m = rx.match(line)
        got = sc.match(line)
        if m is None:
            assert got is None, (prefix, line, got)
            continue
        hits += 1
        g = m.groupdict()
        want = {k: g.get(k) for k in ("ts", "epoch", "pid", "user", "db", "host")}
        want.update(level=g["level"], msg=g["msg"])
        assert got == want, (prefix, line)
    assert hits > 50, hits  # the lines did exercise matches (about 100 to 1,000 per prefix)


def test_iso_time_is_the_same_function():
    rng = random.Random(5)
    samples = ["2026-11-24 19:32:20.067 UTC", "2026-11-24T19:38:35.217843+00:00", "2026-11-24T19:38:35+0130",
               "2024-02-29 23:59:60 -05:00", "2023-02-29 00:00:00", "0000-01-01 00:00:00", "2026-11-24 24:00:00",
               "2026-11-24 19:32:20.1234567890123 UTC", "2026-11-24 19:32:20. +01:00", "2026-11-24"]
    chars = "0123456789-T :.+UTCZé"
    for _ in range(5000):
        s = list(rng.choice(samples))
        for _ in range(rng.randrange(3)):
            if s:
                s[rng.randrange(len(s))] = rng.choice(chars)
        samples.append("".join(s))
    for s in samples:
        try:
            want = iso_time(s)
        except ValueError:
            with pytest.raises(ValueError):
                speedups._speedups.iso_time(s)
            continue
        assert speedups._speedups.iso_time(s) == want, s


def _random_rules(rng: random.Random, path: Path) -> Path:
    rules = []
    fields = {"reason": ["bad_password", "unknown_role"], "action": ["BLOCK", "LIMIT BLOCK", "ALLOW"],
              "dport": [22, 5432, 80], "tls": [True, False], "user": ["a", "b"]}
    types = [ev.PG_AUTH_FAILED, ev.PG_AUTHORIZED, ev.PG_CONNECTION, ev.UFW, ev.PG_HBA_REJECT]
    for i in range(8):
        match = {"type": rng.choice([rng.choice(types), rng.sample(types, 2)])}
        for f in rng.sample(sorted(fields), rng.randrange(3)):
            match[f] = rng.choice([rng.choice(fields[f]), rng.sample(fields[f], 2)])
        r = {"name": f"Rule{i}", "match": match, "severity": "warning", "threshold": rng.randrange(1, 6),
             "window": f"{rng.randrange(1, 30)}s", "cooldown": f"{rng.randrange(0, 20)}s",
             "max_groups": rng.choice([2, 5, 1000]), "group_by": rng.choice(["source", "source", "user", "dport"])}
        if rng.random() < 0.3:
            r["distinct"] = rng.choice(["user", "dport"])
        if rng.random() < 0.2:
            r["after"] = {"match": {"type": ev.PG_AUTH_FAILED}, "count": rng.randrange(1, 4),
                          "within": f"{rng.randrange(1, 20)}s"}
            r.pop("distinct", None)  # a sequence rule counts no distinct values (the rules file refuses both)
            if rng.random() < 0.5:  # whether a prior event had the last one's user (and None == None)
                r["after"].update(same="user", other_severity=rng.choice(["info", "critical"]))
        if rng.random() < 0.2:
            r["outside_allowed"] = True
        if rng.random() < 0.2:
            r["allowlist"] = ["10.0.0.0/30"]
        rules.append(r)
    path.write_text(json.dumps({"rules": rules}))
    return path


@pytest.mark.parametrize("seed", range(12))
def test_the_c_engine_decides_like_the_python_engine(tmp_path, seed):
    rng = random.Random(seed)
    rules = load_rules(_random_rules(rng, tmp_path / "rules.yaml"))
    allowed = rng.choice([None, ["10.0.0.0/29"]])
    py, c = Engine(rules, allowed), speedups.FastEngine(rules, allowed)
    ts = 1000.0
    for i in range(4000):
        ts += rng.choice([0.0, 0.5, 1.0, 3.0, -2.0, 40.0])  # out-of-order and idle gaps too
        e = Event(rng.choice([ev.PG_AUTH_FAILED, ev.PG_AUTHORIZED, ev.PG_CONNECTION, ev.UFW, ev.PG_HBA_REJECT]), ts,
                  source=rng.choice([None, "10.0.0.1", "10.0.0.9", "203.0.113.1", "203.0.113.2", "2001:db8::1"]),
                  user=rng.choice([None, "a", "b", "c"]), reason=rng.choice(["bad_password", "unknown_role"]),
                  action=rng.choice(["BLOCK", "LIMIT BLOCK", "ALLOW", "AUDIT"]), dport=rng.choice([None, 22, 5432, 80]),
                  tls=rng.choice([None, True, False]))
        assert [d.as_dict() for d in c.process(e)] == [d.as_dict() for d in py.process(e)], (seed, i)
        if i % 500 == 499:
            assert c.expire(ts - 10) == py.expire(ts - 10)
        assert c.groups() == py.groups()
    assert c.detections_total == py.detections_total
    assert sum(py.detections_total.values()) > 0
    for i, r in enumerate(rules):  # the same groups, least recently seen first
        assert speedups._speedups.Engine.group_keys(c.c, i) == list(py.state[r.name])


def test_ipv6_sources_are_shortened_as_ipaddress_does():
    """The kernel prints IPv6 fully expanded; C shortens that form itself, anything else is
    passed to Python. Zero runs of every length and place, upper and lower case."""
    import ipaddress

    from trustops.monitors.ufw import UfwParser
    rng = random.Random(1)
    addrs = [":".join(rng.choice(["{:04x}", "{:04X}"]).format(rng.choice([0, 0, 0, 1, 0xffff, rng.randrange(65536)]))
                      for _ in range(8)) for _ in range(20_000)]
    addrs += ["2001:db8::1", "fe80:0000:0000:0000:0000:0000:0000:0001", "0000:0000:0000:0000:0000:0000:0000:0000"]
    parser = UfwParser()
    scanner = speedups._speedups.UfwScanner(speedups.FastEngine(load_rules()).c, parser, None)
    counts: dict = {}
    lines = [f"2026-09-21T14:13:20.002000+00:00 h kernel: [UFW BLOCK] IN=eth0 SRC={a} DST=::1 PROTO=TCP SPT=1 "
             f"DPT=1".encode() for a in addrs]
    scanner.feed(lines, {}, counts)
    assert set(counts["block"]) == {ipaddress.ip_address(a).compressed for a in addrs}
    assert parser.unparsed == 0


def test_the_c_path_restates_no_definition():
    """Event types, outcomes, UFW actions and Postgres messages are Python data (events.py, pg.py)
    that _speedups.setup() takes at import: none of them is written again in the C source, so a
    new event type or outcome is one line of Python (issue 17)."""
    from trustops.monitors import pg
    source = (Path(speedups.__file__).with_name("_speedups.c")).read_text()
    texts = {t for texts, _, _ in pg.MESSAGES.values() for t in texts}
    texts |= {o[0] for o in ev.OUTCOMES} | {o[4] for o in ev.OUTCOMES} | set(ev.UFW_ACTIONS)
    restated = sorted(t for t in texts if json.dumps(t) in source)  # as a C string literal
    assert restated == []
    spec = speedups.c_spec()
    assert set(spec["types"]) == ev.TYPES_OF_INPUT["postgres"] | ev.TYPES_OF_INPUT["ufw"]
