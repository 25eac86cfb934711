"""What the parsers produce and the rules consume: one security-relevant event from a log line."""
from __future__ import annotations

import calendar
import dataclasses
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
# Application sign-in event types (the app's auth log, monitors/app.py); `user` as typed, `source`
# the client address
APP_SIGNIN_FAILED = "app_signin_failed"
APP_SIGNIN_SUCCEEDED = "app_signin_succeeded"
APP_SIGNIN_LOCKED = "app_signin_locked"    # django-axes locked the account or source out
APP_TYPES = frozenset((APP_SIGNIN_FAILED, APP_SIGNIN_SUCCEEDED, APP_SIGNIN_LOCKED))
# Host authentication events from the journal (monitors/hostauth.py): `source` the SSH client's
# address, `user` the account, `reason` what failed or, for GROUP_ADD, the group joined.
SSH_AUTH_FAILED = "ssh_auth_failed"        # reason: publickey | password | ... | invalid_user | no_attempt | max_tries
SSH_LOGIN = "ssh_login"                    # reason: the method (publickey, password, ...)
SUDO_FAILED = "sudo_failed"                # reason: bad_password | not_in_sudoers | not_allowed | password_required
GROUP_ADD = "host_group_add"               # reason: the group (useradd -G, usermod -aG, gpasswd -a/-M)
HOST_TYPES = frozenset((SSH_AUTH_FAILED, SSH_LOGIN, SUDO_FAILED, GROUP_ADD))
PG_TYPES = frozenset((PG_CONNECTION, PG_AUTHORIZED, PG_AUTH_FAILED, PG_HBA_REJECT, PG_UNKNOWN_DB, PG_TOO_MANY,
                      PG_BAD_STARTUP, PG_DISCONNECTION))
# The monitor's input types and the event types each can produce (a rule for none of a monitor's
# inputs is not run there: an app rule on the database host would only take a share of the bounds).
TYPES_OF_INPUT = {"postgres": PG_TYPES, "ufw": frozenset((UFW,)), "app": APP_TYPES, "hostauth": HOST_TYPES}
# Types the C engine (_speedups.c) does not know: their rules run on the Python engine inside it.
PYTHON_ONLY_TYPES = APP_TYPES | HOST_TYPES


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
        if self.type in APP_TYPES:
            return self.type.removeprefix("app_")
        if self.type in HOST_TYPES:  # a group name is no bounded label
            return self.type if self.type == GROUP_ADD or not self.reason else f"{self.type}:{self.reason}"
        return self.reason or self.type.removeprefix("pg_")


# Every event type, message, outcome and reason is defined once, here and in pg.py (MESSAGES): the
# C hot path (_speedups.c) takes them at start-up (speedups.py calls _speedups.setup), so a new
# event type or outcome is one line of Python data.
FIELDS = tuple(f.name for f in dataclasses.fields(Event) if f.name not in ("type", "ts"))
# Reasons the Postgres parsers give (Event.reason)
BAD_PASSWORD, UNKNOWN_ROLE = "bad_password", "unknown_role"
NO_ENCRYPTION, HBA_REJECT, NO_TLS = "no_encryption", "hba_reject", "no_tls"
UFW_ACTIONS = ("BLOCK", "LIMIT BLOCK", "ALLOW", "AUDIT", "AUDIT INVALID", "BLOCK INVALID")
ATTACK_ACTIONS = ("BLOCK", "LIMIT BLOCK")   # what rules and --counts-by-source count as an attack
# events_total{source_type, outcome}: (event type, the field that decides, its value or None for
# any, source type, outcome, counted per source as an attack by `replay --counts-by-source`)
OUTCOMES = (
    (PG_CONNECTION, None, None, "postgres", PG_CONNECTION, False),
    (PG_AUTHORIZED, None, None, "postgres", PG_AUTHORIZED, False),
    (PG_AUTH_FAILED, "reason", UNKNOWN_ROLE, "postgres", f"{PG_AUTH_FAILED}:{UNKNOWN_ROLE}", True),
    (PG_AUTH_FAILED, None, None, "postgres", f"{PG_AUTH_FAILED}:{BAD_PASSWORD}", True),
    (PG_HBA_REJECT, "reason", NO_ENCRYPTION, "postgres", f"{PG_HBA_REJECT}:{NO_ENCRYPTION}", False),
    (PG_HBA_REJECT, None, None, "postgres", f"{PG_HBA_REJECT}:{HBA_REJECT}", False),
    (PG_UNKNOWN_DB, None, None, "postgres", PG_UNKNOWN_DB, False),
    (PG_TOO_MANY, None, None, "postgres", PG_TOO_MANY, False),
    (PG_BAD_STARTUP, None, None, "postgres", PG_BAD_STARTUP, False),
    (PG_DISCONNECTION, None, None, "postgres", PG_DISCONNECTION, False),
    *((UFW, "action", a, "ufw", a.lower().replace(" ", "_"), a in ATTACK_ACTIONS) for a in UFW_ACTIONS),
    (APP_SIGNIN_FAILED, None, None, "app", "signin_failed", True),
    (APP_SIGNIN_LOCKED, None, None, "app", "signin_locked", True),
    (APP_SIGNIN_SUCCEEDED, None, None, "app", "signin_succeeded", False),
)
ATTACK_OUTCOMES = frozenset(o[4] for o in OUTCOMES if o[5])
_OUTCOMES_OF: dict[str, list[tuple]] = {}
for _o in OUTCOMES:
    _OUTCOMES_OF.setdefault(_o[0], []).append(_o)
_SOURCE_TYPE = {t: name for name, types in TYPES_OF_INPUT.items() for t in types}


def outcome_key(e: Event) -> tuple[str, str]:
    """(source type, outcome) of an event, as events_total counts it: the first OUTCOMES row for
    its type whose field has the value (or that wants none); a type without rows gives
    Event.outcome (a short, bounded label)."""
    for _, fld, value, stype, outcome, _ in _OUTCOMES_OF.get(e.type, ()):
        if fld is None or getattr(e, fld) == value:
            return stype, outcome
    return _SOURCE_TYPE.get(e.type, "unknown"), e.outcome


# The times a log line may carry: from the epoch to the end of year 9999 (what RFC 3339 and
# datetime can print). A line outside is a bad line, not a crash further down (alert texts).
MAX_TS = 253402300800.0


def valid_ts(ts: float) -> bool:
    """Whether ts is a time an event may carry (finite, 1970..9999)."""
    return 0.0 <= ts < MAX_TS


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


_DIGITS = frozenset("0123456789")
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ISO_SHAPE = "dddd-dd-dd_dd:dd:dd"


def _iso_base(s: str) -> float:
    """Seconds since the epoch of 'YYYY-MM-DD[T ]HH:MM:SS' at the start of s; ValueError when
    that is no valid time (a month 13 in a log line is a bad line, not a crash)."""
    if len(s) < 19 or any((c not in _DIGITS) if want == "d" else (c not in "T " if want == "_" else c != want)
                          for c, want in zip(s, _ISO_SHAPE)):
        raise ValueError(f"not a timestamp: {s[:40]!r}")
    y, mo, d, h, mi, sec = int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]), int(s[17:19])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not (y >= 1 and 1 <= mo <= 12 and 1 <= d <= _MONTH_DAYS[mo] + (mo == 2 and leap) and h <= 23 and mi <= 59
            and sec <= 61):
        raise ValueError(f"not a valid time: {s[:40]!r}")
    return float(calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)))


def _iso_rest(s: str, base: float) -> float:
    """base plus the fraction (up to 9 digits count) minus the zone ('+HH:MM', '+HHMM'; a name
    such as UTC is taken as UTC)."""
    i, frac = 19, 0.0
    if s[i:i + 1] == ".":
        j = i + 1
        while j < len(s) and s[j] in _DIGITS:
            j += 1
        digits = s[i + 1:j][:9]
        if digits:
            frac = int(digits) / 10 ** len(digits)
        i = j
    z = s[i:].strip(" \t\n\r\f\v")
    offset = 0
    if ((len(z) == 5 or (len(z) == 6 and z[3] == ":")) and z[0] in "+-"
            and all(c in _DIGITS for c in (z[1], z[2], z[-2], z[-1]))):
        offset = (int(z[1:3]) * 3600 + int(z[-2:]) * 60) * (1 if z[0] == "+" else -1)
    ts = base + frac - offset
    if not valid_ts(ts):
        raise ValueError(f"not a time after 1970: {s[:40]!r}")
    return ts


def iso_time(s: str) -> float:
    """'2026-11-24 19:32:20.067 UTC', '2026-11-24T19:38:35.217843+00:00', '...+0000' -> seconds
    since the epoch. The C hot path (_speedups.iso_time) implements exactly this."""
    return _iso_rest(s, _iso_base(s))


class TimestampCache:
    """Parses the log's timestamps quickly: the date-and-second part repeats across thousands of
    lines, so it is converted once and cached; sub-seconds are added."""

    def __init__(self) -> None:
        self._cache: dict[str, float] = {}

    def _cached(self, key: str, fn) -> float:
        return remember(self._cache, key, lambda _: fn(), limit=4096)

    def iso(self, s: str) -> float:
        """iso_time(s), with the date part cached; ValueError for a time that is not valid."""
        base = self._cache.get(s[:19])
        if base is None:
            base = self._cached(s[:19], lambda: _iso_base(s))
        return _iso_rest(s, base)

    def bsd(self, s: str) -> float:
        """'Nov 24 19:37:39' (syslog without a year: the year that puts it nearest to now)."""
        def parse() -> float:
            try:
                mon, day, hms = s.split()
                h, m, sec = (int(x) for x in hms.split(":"))
                month, d = _MONTHS[mon], int(day)
            except (KeyError, ValueError) as exc:
                raise ValueError(f"not a syslog time: {s[:40]!r}") from exc
            if not (1 <= d <= _MONTH_DAYS[month] + (month == 2) and h <= 23 and m <= 59 and sec <= 61):
                raise ValueError(f"not a valid time: {s[:40]!r}")
            now = time.gmtime()
            best = None
            for year in (now.tm_year - 1, now.tm_year, now.tm_year + 1):
                t = calendar.timegm((year, month, d, h, m, sec, 0, 0, 0))
                if best is None or abs(t - time.time()) < abs(best - time.time()):
                    best = t
            return float(best)
        return self._cached(s, parse)
