"""The benefits app's sign-in log (app/core/authlog.py, on the app host at /var/log/benefits/auth.log):
one JSON object a line, keys exactly

    {"time": "2026-12-02T05:40:00.123Z", "event": "signin.failed", "user": "alice",
     "source": "203.0.113.9", "company": 3}

`time` RFC 3339 UTC, `event` signin.failed | signin.succeeded | signin.locked, `user` as typed
(at most 150 characters, "" when none was typed), `source` the client address ("" when unknown),
`company` an integer or null. Anyone on the internet chooses `user`: a line that breaks the
contract in any way (not JSON, a wrong type, a time that is no time, an address that is no address,
a value too long) is counted in `unparsed` and by its reason in `reasons`, never raised.
"""
from __future__ import annotations

import ipaddress
import json
import re

from trustops.monitors import events as ev
from trustops.monitors.events import Event, TimestampCache, remember

EVENT_TYPES = {"signin.failed": ev.APP_SIGNIN_FAILED, "signin.succeeded": ev.APP_SIGNIN_SUCCEEDED,
               "signin.locked": ev.APP_SIGNIN_LOCKED}
KEYS = ("time", "event", "user", "source", "company")
USER_MAX = 150            # the app's limit (authlog.USER_MAX, Django's username length)
# The reasons a line is skipped, a bounded set (counted per reason in AppParser.reasons).
REASONS = ("not_json", "missing_key", "wrong_type", "bad_time", "unknown_event", "bad_value")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)$", re.ASCII)
_INT64 = 2 ** 63


class _Skip(Exception):
    """A line that breaks the contract, and why (one of REASONS)."""


def _address(s: str) -> str:
    try:
        return ipaddress.ip_address(s).compressed
    except ValueError:
        return ""


def _printable(s: str) -> str:
    """The user as typed, with control characters escaped: it ends up in alert texts and pages."""
    return s if s.isprintable() else s.encode("unicode_escape").decode("ascii")


class AppParser:
    """`feed(line)` returns the sign-in event on it, or [] (the line counted as unparsed, with why)."""

    def __init__(self) -> None:
        self.ts = TimestampCache()
        self.unparsed = 0
        self.reasons: dict[str, int] = {}
        self._addrs: dict[str, str] = {}

    def feed(self, line: str) -> list[Event]:
        try:
            return [self._parse(line)]
        except _Skip as why:
            reason = str(why)
        except (ValueError, RecursionError, TypeError, OverflowError):  # json.loads on hostile input
            reason = "not_json"
        self.unparsed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        return []

    def _parse(self, line: str) -> Event:
        if not line.startswith("{"):
            raise _Skip("not_json")
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise _Skip("not_json")
        for k in KEYS:
            if k not in doc:
                raise _Skip("missing_key")
        t, event, user, source, company = (doc[k] for k in KEYS)
        if not (isinstance(t, str) and isinstance(event, str) and isinstance(user, str) and isinstance(source, str)
                and (company is None or (isinstance(company, int) and not isinstance(company, bool)))):
            raise _Skip("wrong_type")
        if len(t) > 40 or not _TIME.match(t):
            raise _Skip("bad_time")
        try:
            ts = self.ts.iso(t)
        except ValueError:
            raise _Skip("bad_time") from None
        etype = EVENT_TYPES.get(event)
        if etype is None:
            raise _Skip("unknown_event")
        if len(user) > USER_MAX or len(source) > 45 or (company is not None and not -_INT64 <= company < _INT64):
            raise _Skip("bad_value")
        try:
            user.encode("utf-8")  # a lone surrogate ("\ud800") cannot go into an alert
        except UnicodeEncodeError:
            raise _Skip("bad_value") from None
        addr = remember(self._addrs, source, _address) if source else None
        if addr == "":
            raise _Skip("bad_value")
        return Event(etype, ts, source=addr, user=_printable(user) if user else None)
