"""Hostile log lines for the monitor's fuzz tests and bench: real-looking Postgres (stderr and
jsonlog) and UFW (syslog, journal JSON and export) lines, broken the ways an attacker or a bad
day breaks them: fields of the wrong type, months that are no month, numbers thousands of digits
long, invalid UTF-8, NUL bytes, deep JSON, prefix look-alikes repeated along a whole line.
Seeded: the same seed gives the same lines."""
from __future__ import annotations

import json
import random

PG_PREFIX = "%m [%p] %h%q %u@%d "

_PG = [
    '{t} [{pid}] {src} [unknown]@[unknown] LOG:  connection received: host={src} port={port}',
    '{t} [{pid}] {src} {user}@appdb FATAL:  password authentication failed for user "{user}"',
    '{t} [{pid}] {src} {user}@appdb DETAIL:  Role "{user}" does not exist.',
    '{t} [{pid}] {src} {user}@appdb DETAIL:  Connection matched pg_hba.conf line 5: "host all all 0.0.0.0/0 md5"',
    '\tRole "{user}" does not exist.',
    '{t} [{pid}] {src} {user}@appdb LOG:  connection authorized: user={user} database=appdb SSL enabled '
    '(protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)',
    '{t} [{pid}] {src} {user}@appdb FATAL:  no pg_hba.conf entry for host "{src}", user "{user}", database "x", '
    'no encryption',
    '{t} [{pid}] {src} {user}@nodb FATAL:  database "nodb" does not exist',
    '{t} [{pid}] {src} [unknown]@[unknown] LOG:  invalid length of startup packet',
    '{t} [{pid}] {src} {user}@appdb LOG:  disconnection: session time: 0:00:00.004 user={user} database=appdb '
    'host={src} port={port}',
    '{t} [{pid}] LOG:  parameter "log_line_prefix" changed to "{prefix}"',
    '{t} [{pid}] {src} {user}@appdb FATAL:  sorry, too many clients already',
]
# prefixes a reload may switch to: each one still reads the change lines ("{t} [{pid}] LOG:  "), so
# the stream can switch back
_PREFIXES = ["%m [%p] %h%q %u@%d ", "%m [%p] %q%u@%d ", "%m [%p] %q%a %u@%d ", "%Z", "%", "%m [%p] %h%q %u@%d "]
_UFW = ('{ts} db-1 kernel: [{up}] [UFW {action}] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc SRC={src} DST=10.0.0.4 '
        'LEN=44 TOS=0x00 PREC=0x00 TTL=244 ID=54321 PROTO={proto} SPT={port} DPT={dport} WINDOW=1024 RES=0x00 SYN '
        'URGP=0')
_ACTIONS = ["BLOCK", "LIMIT BLOCK", "ALLOW", "AUDIT", "BLOCKED", "BLOCK INVALID"]
_JUNK = [b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\r", b"\t", b" ", b'"', b":  ", b"@", b"[", b"]", b"{", b"}",
         b"9" * 5000, b"-" * 3, b"FATAL:  ", b"LOG:  ", b"DETAIL:  ", b"[UFW BLOCK] ", b" SRC=", b" DPT=",
         b"\xf0\x9f\x92\xa9", b"%", b"[unknown]", b"\\", b"\x1b[31m"]


def _src(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ":".join(f"{rng.randrange(65536):04x}" for _ in range(8))
    return f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _num(rng: random.Random, good: int) -> str:
    r = rng.random()
    if r < 0.9:
        return str(good)
    return rng.choice(["9" * rng.randrange(6, 6000), "-1", "", "0x10", "65536", "99999", "1e9", "١٢"])


def _syslog_time(rng: random.Random) -> str:
    mon = rng.choice(["Nov", "Dec", "Jan"] * 4 + ["Foo", "nov", "NOV", "Feb", "Xyz"])
    return f"{mon} {rng.choice([' 1', '24', '31', '30', '00', '99'])} " \
           f"{rng.choice(['19', '23', '24', '99'])}:{rng.choice(['37', '60', '00'])}:{rng.choice(['39', '61', '62'])}"


def _iso_time(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return "2026-11-24 19:32:20.%03d UTC" % rng.randrange(1000)
    return rng.choice(["2026-13-45 19:32:20.067 UTC", "0001-01-01 00:00:00.000 UTC", "9999-12-31 23:59:59.999 -01",
                       "1969-12-31 23:59:59.000 UTC", "2026-11-24 19:32:20." + "1" * 300 + " UTC"])


def _value(rng: random.Random, good):
    """good, or a value of a wrong type or shape."""
    if rng.random() < 0.95:
        return good
    return rng.choice([None, 5, -1, 1.5, True, [], [1, 2, 300], [72, 105], {"a": 1}, "", "x" * 200, 10 ** 30,
                       "[UFW BLOCK] SRC=1.2.3.4 DST=10.0.0.4 PROTO=TCP SPT=1 DPT=" + "7" * 5000])


def _mangle(b: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 2, 3])):
        r = rng.random()
        i = rng.randrange(len(b) + 1)
        if r < 0.45:
            b = b[:i] + rng.choice(_JUNK) + b[i:]
        elif r < 0.6:
            b = b[:i]
        elif r < 0.7:
            b = b[:i] + b[i + rng.randrange(1, 20):]
        elif r < 0.93:
            b = b[:i] + b[i:i + 40] * rng.randrange(2, 400) + b[i:]  # a piece repeated along the line
        else:
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
    return b


def postgres_lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template = rng.choice(_PG)
        if "log_line_prefix" in template and rng.random() < 0.97:
            template = _PG[1]
        line = template.format(t=_iso_time(rng), pid=_num(rng, rng.randrange(100, 400)), src=_src(rng),
                                      user=rng.choice(["postgres", "app", "é", "postgres", "app", "a@b", "[unknown]", "x" * 70]),
                                      port=_num(rng, rng.randrange(1024, 65535)), prefix=rng.choice(_PREFIXES))
        if rng.random() < 0.05:  # an epoch time, for a %n prefix
            line = rng.choice(["1764012740.067", "1" * 70 + ".5", "0.0", "99999999999999.1"]) + line[27:]
        out.append(_mangle(line.encode(), rng))
    return out


def jsonlog_lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = rng.choice(["postgres", "app", "é"])
        rec = {"timestamp": _value(rng, _iso_time(rng)), "pid": _value(rng, rng.randrange(100, 400)),
               "remote_host": _value(rng, _src(rng)), "user": _value(rng, user), "dbname": _value(rng, "appdb"),
               "error_severity": _value(rng, rng.choice(["LOG", "FATAL", "DETAIL"])),
               "message": _value(rng, rng.choice(["password authentication failed for user \"%s\"" % user,
                                                 "connection received: host=1.2.3.4 port=5",
                                                 "connection authorized: user=app database=appdb"])),
               "detail": _value(rng, rng.choice(["", 'Role "x" does not exist.']))}
        b = json.dumps(rec).encode()
        if rng.random() < 0.002:
            b = b'{"message": ' + b"[" * rng.randrange(1000, 60_000)  # deeper than the JSON parser goes
        out.append(_mangle(b, rng))
    return out


def ufw_lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        fields = dict(up=f"{rng.randrange(99999)}.{rng.randrange(999999)}", action=rng.choice(_ACTIONS), src=_src(rng),
                      proto=rng.choice(["TCP", "UDP", "ICMP"]), port=_num(rng, rng.randrange(1024, 65535)),
                      dport=_num(rng, rng.choice([22, 5432, 80, 443, rng.randrange(65536)])))
        form = rng.random()
        if form < 0.5:
            line = _UFW.format(ts=_syslog_time(rng), **fields).encode()
        elif form < 0.65:
            line = _UFW.format(ts="2026-11-24T19:38:35.%06d+00:00" % rng.randrange(10 ** 6), **fields).encode()
        elif form < 0.9:
            msg = _UFW.format(ts="", **fields).split("kernel: ", 1)[1]
            rec = {"MESSAGE": _value(rng, msg), "__REALTIME_TIMESTAMP": _value(rng, str(rng.randrange(10 ** 15, 10 ** 16))),
                   "__CURSOR": "s=1;i=%x" % rng.randrange(10 ** 6)}
            line = json.dumps(rec).encode()
        else:
            line = b"MESSAGE=" + _UFW.format(ts="", **fields).split("kernel: ", 1)[1].encode()
        out.append(_mangle(line, rng))
    return out


def assert_counted_by_reason(parser, hostile: dict[str, list[str]], reasons) -> None:
    """Each hostile line gives no event, and the parser counts it as unparsed under its reason (one
    of `reasons`), never raising."""
    for reason, lines in hostile.items():
        for raw in lines:
            assert parser.feed(raw) == [], (reason, raw[:80])
    assert set(parser.reasons) <= set(reasons)
    assert parser.reasons == {k: len(v) for k, v in hostile.items()}
    assert parser.unparsed == sum(len(v) for v in hostile.values())
