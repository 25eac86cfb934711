"""Postgres 15 authentication events from its stderr log (any `log_line_prefix`) or jsonlog.

With the Debian prefix the client address is on no FATAL line: it is on `connection received`
only, so a FATAL is joined to it by PID; the PID is forgotten when the connection ends (FATAL or
disconnection), because PIDs are reused. Wrong password and unknown role print the same FATAL;
only the DETAIL line after it tells them apart, so a password FATAL waits for its DETAIL.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict

from monitors import events as ev
from monitors.events import Event, TimestampCache

DEBIAN_PREFIX = "%m [%p] %q%u@%d "

# log_line_prefix escapes -> regex. Names: ts, pid, user, db, host, port, app.
_ESCAPES = {
    "m": r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [A-Za-z0-9+-]+)",
    "t": r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Za-z0-9+-]+)",
    "n": r"(?P<epoch>\d+\.\d+)",
    "p": r"(?P<pid>\d+)",
    "u": r"(?P<user>\[unknown\]|[^@\s]*)",
    "d": r"(?P<db>\[unknown\]|\S*?)",
    "h": r"(?P<host>\[local\]|\[unknown\]|[0-9A-Fa-f:.]*)",
    "r": r"(?P<host>\[local\]|\[unknown\]|[0-9A-Fa-f:.]*)(?:\((?P<port>\d+)\))?",
    "a": r"(?P<app>.*?)",
    "c": r"[0-9a-f]+\.[0-9a-f]+",
    "l": r"\d+",
    "s": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Za-z0-9+-]+",
    "v": r"(?:\d+/\d+)?",
    "x": r"\d+",
    "e": r"[0-9A-Z]{5}",
    "i": r"\S*",
    "b": r".*?",
    "Q": r"-?\d+",
    "%": "%",
}
_LEVELS = r"(?P<level>DEBUG\d|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION)"


class PrefixError(ValueError):
    pass


def compile_prefix(prefix: str) -> re.Pattern[str]:
    """A regex for lines written with `log_line_prefix = prefix`; %q makes the rest optional
    (Postgres prints it only for session processes)."""
    out, i, optional_from = [], 0, None
    used: set[str] = set()
    while i < len(prefix):
        c = prefix[i]
        if c == "%":
            if i + 1 >= len(prefix):
                raise PrefixError(f"log_line_prefix {prefix!r} ends with a lone %")
            k = prefix[i + 1]
            # a numeric padding such as %-10u is allowed by Postgres: skip it
            j = i + 1
            while j < len(prefix) and (prefix[j].isdigit() or prefix[j] == "-"):
                j += 1
            k = prefix[j] if j < len(prefix) else ""
            if k == "q":
                optional_from = len(out)
            elif k in _ESCAPES:
                rx = _ESCAPES[k]
                names = re.findall(r"\?P<(\w+)>", rx)
                if any(n in used for n in names):  # a repeated escape: match it without capturing
                    rx = re.sub(r"\?P<\w+>", "?:", rx)
                used.update(names)
                out.append(rx if j == i + 1 else rf"\s*{rx}\s*")
            else:
                raise PrefixError(f"log_line_prefix escape %{k} is not supported")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    if optional_from is not None:
        out = out[:optional_from] + ["(?:" + "".join(out[optional_from:]) + ")?"]
    return re.compile("^" + "".join(out) + _LEVELS + r":  (?P<msg>.*)$")


_RE_RECEIVED = re.compile(r"connection received: host=(\S+?)(?: port=(\d+))?$")
_RE_AUTHORIZED = re.compile(r"connection authorized: user=(\S+)(?: database=(\S+))?")
_RE_TLS = re.compile(r"SSL enabled \(protocol=([^,)]+)")
_RE_PREFIX_CHANGED = re.compile(r'parameter "log_line_prefix" changed to "(.*)"$')
_RE_PWFAIL = re.compile(r'password authentication failed for user "(.*)"$')
_RE_HBA = re.compile(r'no pg_hba\.conf entry for host "([^"]*)", user "([^"]*)", database "([^"]*)"(, (no encryption|SSL encryption|GSS encryption))?')
_RE_NODB = re.compile(r'database "(.*)" does not exist$')
_RE_ROLE_MISSING = re.compile(r'Role "(.*)" does not exist\.')
_RE_DISCONN = re.compile(r"disconnection: .*? host=(\S+)")
_BAD_STARTUP = ("invalid length of startup packet", "could not accept SSL connection", "incomplete startup packet",
                "unsupported frontend protocol", "could not receive data from client", "invalid startup packet",
                "received direct SSL connection request without ALPN")
_TOO_MANY = ("sorry, too many clients already", "remaining connection slots are reserved")

MAX_TRACKED_PIDS = 65536


def _clean(v: str | None) -> str | None:
    return None if v in (None, "", "[unknown]", "[local]") else v


class PostgresParser:
    """Feed it lines (`feed`), take events; `flush()` at the end of a batch releases a password
    failure still waiting for its DETAIL line."""

    def __init__(self, prefix: str = DEBIAN_PREFIX, fmt: str = "stderr") -> None:
        if fmt not in ("stderr", "jsonlog"):
            raise ValueError(f"postgres log format {fmt!r}: use stderr or jsonlog")
        self.fmt = fmt
        self.rx = compile_prefix(prefix)
        self.ts = TimestampCache()
        self.hosts: OrderedDict[str, str] = OrderedDict()   # pid -> client address
        self.pending: tuple[str, Event] | None = None       # (pid, password failure awaiting DETAIL)
        self.unparsed = 0

    # -- connection bookkeeping ------------------------------------------------------------
    def _remember(self, pid: str, host: str) -> None:
        self.hosts[pid] = host
        self.hosts.move_to_end(pid)
        if len(self.hosts) > MAX_TRACKED_PIDS:
            self.hosts.popitem(last=False)

    def _source(self, pid: str, host: str | None) -> str | None:
        return _clean(host) or _clean(self.hosts.get(pid))

    def flush(self) -> list[Event]:
        if self.pending is None:
            return []
        pid, e = self.pending
        self.pending = None
        if e.reason is None:
            e.reason = "bad_password"
        self.hosts.pop(pid, None)
        return [e]

    # -- lines -----------------------------------------------------------------------------
    def feed(self, line: str) -> list[Event]:
        if self.fmt == "jsonlog":
            return self._feed_json(line)
        if line.startswith("\t"):          # continuation of the previous record (DETAIL)
            if self.pending is not None:
                m = _RE_ROLE_MISSING.search(line)
                if m:
                    self.pending[1].reason = "unknown_role"
            return []
        m = self.rx.match(line)
        if m is None:
            self.unparsed += 1
            return self.flush()
        g = m.groupdict()
        pid, level, msg = g.get("pid") or "", g["level"], g["msg"]
        out: list[Event] = []
        if self.pending is not None:
            if level == "DETAIL" and pid == self.pending[0]:
                if _RE_ROLE_MISSING.search(msg):
                    self.pending[1].reason = "unknown_role"
                return self.flush()
            out = self.flush()
        ts = self._ts(g)
        e = self._event(pid, level, msg, ts, g.get("host"), g.get("user"), g.get("db"))
        if e is not None:
            if e.type == ev.PG_AUTH_FAILED and e.reason is None:
                self.pending = (pid, e)
            else:
                out.append(e)
        return out

    def _ts(self, g: dict) -> float:
        if g.get("ts"):
            return self.ts.iso(g["ts"])
        if g.get("epoch"):
            return float(g["epoch"])
        import time
        return time.time()

    def _event(self, pid: str, level: str, msg: str, ts: float, host: str | None, user: str | None,
               db: str | None) -> Event | None:
        if level == "LOG":
            if msg.startswith("connection received: "):
                m = _RE_RECEIVED.match(msg)
                if m is None:
                    return None
                self._remember(pid, m.group(1))
                if m.group(1) == "[local]":
                    return None
                return Event(ev.PG_CONNECTION, ts, source=m.group(1))
            if msg.startswith("connection authorized: "):
                m = _RE_AUTHORIZED.match(msg)
                tls = _RE_TLS.search(msg)
                src = self._source(pid, host)
                return Event(ev.PG_AUTHORIZED, ts, source=src, user=m.group(1) if m else _clean(user),
                             database=m.group(2) if m else _clean(db),
                             tls=tls is not None, reason=tls.group(1) if tls else "no_tls")
            if msg.startswith("disconnection: "):
                m = _RE_DISCONN.search(msg)
                src = self._source(pid, m.group(1) if m else host)
                self.hosts.pop(pid, None)
                return Event(ev.PG_DISCONNECTION, ts, source=src, user=_clean(user), database=_clean(db))
            if msg.startswith(_BAD_STARTUP):
                src = self._source(pid, host)
                return Event(ev.PG_BAD_STARTUP, ts, source=src, reason=msg.split(":")[0][:40])
            if self.fmt == "stderr" and msg.startswith('parameter "log_line_prefix"'):
                m = _RE_PREFIX_CHANGED.match(msg)
                if m:  # the server changed its prefix on reload: follow it
                    self.rx = compile_prefix(m.group(1))
            return None
        if level != "FATAL":
            return None
        src = self._source(pid, host)
        self.hosts.pop(pid, None)  # a FATAL ends the backend
        m = _RE_PWFAIL.match(msg)
        if m:
            return Event(ev.PG_AUTH_FAILED, ts, source=src, user=m.group(1), database=_clean(db))
        m = _RE_HBA.match(msg)
        if m:
            enc = m.group(5)
            return Event(ev.PG_HBA_REJECT, ts, source=_clean(m.group(1)) or src, user=m.group(2),
                         database=m.group(3), tls=(enc != "no encryption") if enc else None,
                         reason="no_encryption" if enc == "no encryption" else "hba_reject")
        m = _RE_NODB.match(msg)
        if m:
            return Event(ev.PG_UNKNOWN_DB, ts, source=src, user=_clean(user), database=m.group(1))
        if msg.startswith(_TOO_MANY):
            return Event(ev.PG_TOO_MANY, ts, source=src, user=_clean(user), database=_clean(db))
        if msg.startswith(_BAD_STARTUP):
            return Event(ev.PG_BAD_STARTUP, ts, source=src, reason=msg.split(":")[0][:40])
        return None

    def _feed_json(self, line: str) -> list[Event]:
        try:
            rec = json.loads(line)
        except ValueError:
            self.unparsed += 1
            return []
        if not isinstance(rec, dict) or "error_severity" not in rec:
            self.unparsed += 1
            return []
        ts = self.ts.iso(rec["timestamp"]) if "timestamp" in rec else 0.0
        pid = str(rec.get("pid", ""))
        e = self._event(pid, rec["error_severity"], rec.get("message", ""), ts, rec.get("remote_host"),
                        rec.get("user"), rec.get("dbname"))
        if e is not None and e.type == ev.PG_AUTH_FAILED:
            e.reason = "unknown_role" if _RE_ROLE_MISSING.search(rec.get("detail", "")) else "bad_password"
        return [e] if e is not None else []
