"""What the parsers produce and the rules consume: one security-relevant event from a log line."""
from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

# Postgres event types
PG_CONNECTION = "pg_connection_received"
PG_AUTHORIZED = "pg_authorized"
PG_AUTH_FAILED = "pg_auth_failed"          # reason: bad_password | unknown_role
PG_HBA_REJECT = "pg_hba_reject"            # tls: False for "no encryption"
PG_UNKNOWN_DB = "pg_unknown_database"
PG_TOO_MANY = "pg_too_many_connections"
PG_BAD_STARTUP = "pg_bad_startup"          # garbage on the port, failed TLS handshake
PG_DISCONNECTION = "pg_disconnection"
# UFW event types
UFW = "ufw"                                # action: BLOCK | LIMIT BLOCK | ALLOW | AUDIT


@dataclass(slots=True)
class Event:
    type: str
    ts: float                      # seconds since the epoch, from the log line when it has one
    source: str | None = None      # client / packet source address
    user: str | None = None
    database: str | None = None
    reason: str | None = None      # bad_password, unknown_role, no_encryption, ...
    tls: bool | None = None
    action: str | None = None      # UFW action
    dport: int | None = None
    proto: str | None = None
    dest: str | None = None

    @property
    def outcome(self) -> str:
        """A short, bounded label for metrics (never an address)."""
        if self.type == UFW:
            return (self.action or "unknown").lower().replace(" ", "_")
        return self.reason or self.type.removeprefix("pg_")


def remember(cache: dict, key, make, limit: int = 65536):
    """cache[key], made by make(key) on a miss; the cache is emptied when it passes `limit`, so a
    flood of distinct keys (addresses, timestamps) never grows memory without bound."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= limit:
            cache.clear()
        value = cache[key] = make(key)
    return value


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}


class TimestampCache:
    """Parses the log's timestamps quickly: the date-and-second part repeats across thousands of
    lines, so it is converted once and cached; sub-seconds are added."""

    def __init__(self) -> None:
        self._cache: dict[str, float] = {}

    def _cached(self, key: str, fn) -> float:
        return remember(self._cache, key, lambda _: fn(), limit=4096)

    def iso(self, s: str) -> float:
        """'2026-11-24 19:32:20.067 UTC', '2026-11-24T19:38:35.217843+00:00', '...+0000'."""
        if len(s) == 27 and s[19] == "." and s[23:] == " UTC":  # Postgres %m, the common case
            base = self._cache.get(s[:19])
            if base is not None:
                return base + int(s[20:23]) / 1000
        elif len(s) == 32 and s[19] == "." and s[26:] == "+00:00":  # rsyslog's RFC 3339 in UTC
            base = self._cache.get(s[:19])
            if base is not None:
                return base + int(s[20:26]) / 1e6
        base = self._cached(s[:19], lambda: float(calendar.timegm(time.strptime(s[:19].replace("T", " "),
                                                                               "%Y-%m-%d %H:%M:%S"))))
        frac = 0.0
        rest = s[19:]
        if rest.startswith("."):
            digits = rest[1:].split("+")[0].split("-")[0].split(" ")[0]
            if digits.isdigit():
                frac = int(digits) / 10 ** len(digits)
            rest = rest[1 + len(digits):]
        rest = rest.strip()
        offset = 0
        if rest and rest[0] in "+-" and len(rest) >= 5:
            hh, mm = int(rest[1:3]), int(rest[-2:])
            offset = (hh * 3600 + mm * 60) * (1 if rest[0] == "+" else -1)
        return base + frac - offset

    def bsd(self, s: str) -> float:
        """'Nov 24 19:37:39' (syslog without a year: the year that puts it nearest to now)."""
        def parse() -> float:
            mon, day, hms = s.split()
            now = time.gmtime()
            h, m, sec = (int(x) for x in hms.split(":"))
            best = None
            for year in (now.tm_year - 1, now.tm_year, now.tm_year + 1):
                t = calendar.timegm((year, _MONTHS[mon], int(day), h, m, sec, 0, 0, 0))
                if best is None or abs(t - time.time()) < abs(best - time.time()):
                    best = t
            return float(best)
        return self._cached(s, parse)
