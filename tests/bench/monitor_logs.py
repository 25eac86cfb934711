"""Generates the monitor benchmark's logs: a 1,000,000-line Postgres 15 log (about 30 % of lines
from password failures, from ~5,000 sources) and a 1,000,000-line UFW log (rsyslog format,
IPv4 and IPv6). Deterministic (seeded), so every run measures the same input."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

PG_PREFIX = "%m [%p] %h%q %u@%d "


def _ts(sec: float) -> str:
    import time
    ms = int((sec % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec)) + f".{ms:03d} UTC"


def _sources(rng: random.Random, n: int) -> list[str]:
    out = [f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(n * 9 // 10)]
    out += [f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65535):x}" for _ in range(n - len(out))]
    return sorted(set(out))


def postgres_log(path: Path, lines: int = 1_000_000, seed: int = 7) -> Counter:
    """Writes the log; returns the true per-source count of password failures."""
    rng = random.Random(seed)
    attackers = _sources(rng, 5000)
    truth: Counter = Counter()
    t, pid, n = 1_790_000_000.0, 10_000, 0
    with open(path, "w") as out:
        while n < lines:
            t += 0.003
            pid = pid + 1 if pid < 4_000_000 else 10_000
            if rng.random() < 0.36 and n + 3 <= lines:  # 3-line failures vs 4-line logins: ~30 % of lines
                src = rng.choice(attackers)
                user = rng.choice(("postgres", "app", "admin", "root", "backup"))
                pre = f"{_ts(t)} [{pid}] {src} {user}@appdb"
                out.write(f"{_ts(t)} [{pid}] {src} [unknown]@[unknown] LOG:  connection received: host={src} port={rng.randrange(1024, 65535)}\n"
                          f"{pre} FATAL:  password authentication failed for user \"{user}\"\n"
                          f"{pre} DETAIL:  Connection matched pg_hba.conf line 7: \"hostssl all all 0.0.0.0/0 scram-sha-256\"\n")
                truth[src] += 1
                n += 3
            elif n + 4 <= lines:
                src = f"10.10.1.{rng.randrange(4, 12)}"
                pre = f"{_ts(t)} [{pid}] {src} app@appdb"
                out.write(f"{_ts(t)} [{pid}] {src} [unknown]@[unknown] LOG:  connection received: host={src} port={rng.randrange(1024, 65535)}\n"
                          f"{pre} LOG:  connection authenticated: identity=\"app\" method=scram-sha-256 (/etc/postgresql/15/main/pg_hba.conf:5)\n"
                          f"{pre} LOG:  connection authorized: user=app database=appdb application_name=benefits SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)\n"
                          f"{pre} LOG:  disconnection: session time: 0:00:00.041 user=app database=appdb host={src} port=40000\n")
                n += 4
            else:
                out.write(f"{_ts(t)} [{pid}] LOG:  checkpoint starting: time\n")
                n += 1
    return truth


def ufw_log(path: Path, lines: int = 1_000_000, seed: int = 11) -> Counter:
    """Writes the log; returns the true per-source count of blocked packets (BLOCK + LIMIT BLOCK)."""
    rng = random.Random(seed)
    sources = _sources(rng, 5000)
    truth: Counter = Counter()
    t = 1_790_000_000.0
    with open(path, "w") as out:
        for i in range(lines):
            t += 0.002
            src = rng.choice(sources)
            action = rng.choices(("BLOCK", "LIMIT BLOCK", "ALLOW", "AUDIT"), (55, 5, 15, 25))[0]
            if action in ("BLOCK", "LIMIT BLOCK"):
                truth[src] += 1
            import time as _t
            stamp = _t.strftime("%Y-%m-%dT%H:%M:%S", _t.gmtime(t)) + f".{int((t % 1) * 1e6):06d}+00:00"
            v6 = ":" in src
            shown = ":".join(f"{int(x, 16):04x}" for x in _expand(src)) if v6 else src
            dst = "2001:0db8:0000:0000:0000:0000:0000:0010" if v6 else "10.10.1.4"
            port = rng.choice((22, 5432, 443, 80, 3389, 8080)) if rng.random() < 0.8 else rng.randrange(1, 65535)
            out.write(f"{stamp} app-1 kernel: [{i / 1000:12.6f}] [UFW {action}] IN=eth0 OUT= "
                      f"MAC=00:0d:3a:aa:bb:cc:12:34:56:78:9a:bc:08:00 SRC={shown} DST={dst} LEN=60 TOS=0x00 "
                      f"PREC=0x00 TTL=52 ID={i & 65535} DF PROTO=TCP SPT={rng.randrange(1024, 65535)} DPT={port} "
                      f"WINDOW=64240 RES=0x00 SYN URGP=0 \n")
    return truth


def _expand(v6: str) -> list[str]:
    import ipaddress
    return ipaddress.ip_address(v6).exploded.split(":")
