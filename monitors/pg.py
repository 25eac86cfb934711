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

from trustops.monitors import events as ev
from trustops.monitors.events import Event, TimestampCache

DEBIAN_PREFIX = "%m [%p] %q%u@%d "

# log_line_prefix as a small program: literals, character classes (greedy or lazy, with fixed
# alternatives such as "[unknown]" tried first), captures and optional groups. The regex is made
# from the program, and the C hot path (_speedups.c) runs the same program, so both read the
# same lines the same way. Classes are ASCII, as the regex is compiled with re.ASCII.
DIGIT, TZ, USER, NONSPACE, HOST, ANY, HEX, UPPERDIG, SPACE = range(9)
_CLASS_RX = (r"\d", r"[A-Za-z0-9+-]", r"[^@\s]", r"\S", r"[0-9A-Fa-f:.]", r".", r"[0-9a-f]", r"[0-9A-Z]", r"\s")
SLOTS = ("ts", "epoch", "pid", "user", "db", "host")  # the captures the parser reads
MANY = -1


def _cls(c: int, lo: int = 1, hi: int = MANY, lazy: bool = False, slot: str | None = None, alts=()) -> tuple:
    return ("class", c, lo, hi, int(lazy), SLOTS.index(slot) if slot else -1, tuple(a.encode() for a in alts))


def _lit(text: str) -> tuple:
    return ("lit", text.encode())


def _opt(*items) -> tuple:
    return ("group", list(items))


def _captured(slot: str, items: list, capture: bool) -> list:
    """items, captured as `slot` (a repeated escape is matched without capturing)."""
    return [("open", SLOTS.index(slot)), *items, ("close", SLOTS.index(slot))] if capture else items


_DATE = [_cls(DIGIT, 4, 4), _lit("-"), _cls(DIGIT, 2, 2), _lit("-"), _cls(DIGIT, 2, 2), _lit(" "), _cls(DIGIT, 2, 2),
         _lit(":"), _cls(DIGIT, 2, 2), _lit(":"), _cls(DIGIT, 2, 2)]
# Every class has an upper bound, the longest text Postgres can print there: names (user,
# database, application) are cut to NAMEDATALEN - 1 = 63 bytes, numbers are at most 20 digits.
# Bounded classes keep matching a prefix a constant amount of work, however long the line
# (without bounds, '%m %a %a [%p] ' took 18 s on one 64 KiB line).
NAME = 63
NUMBER = 20
ZONE = 32
ADDRESS = 64
_HOST = dict(slot="host", alts=("[local]", "[unknown]"))
# escape -> (the slot it fills or None, its items)
_ESCAPES = {
    "m": ("ts", lambda c: _captured("ts", [*_DATE, _lit("."), _cls(DIGIT, 1, 9), _lit(" "), _cls(TZ, 1, ZONE)], c)),
    "t": ("ts", lambda c: _captured("ts", [*_DATE, _lit(" "), _cls(TZ, 1, ZONE)], c)),
    "n": ("epoch", lambda c: _captured("epoch", [_cls(DIGIT, 1, NUMBER), _lit("."), _cls(DIGIT, 1, NUMBER)], c)),
    "p": ("pid", lambda c: [_cls(DIGIT, 1, NUMBER, slot="pid" if c else None)]),
    "u": ("user", lambda c: [_cls(USER, 0, NAME, slot="user" if c else None, alts=("[unknown]",))]),
    "d": ("db", lambda c: [_cls(NONSPACE, 0, NAME, lazy=True, slot="db" if c else None, alts=("[unknown]",))]),
    "h": ("host", lambda c: [_cls(HOST, 0, ADDRESS, **(_HOST if c else dict(alts=_HOST["alts"])))]),
    "r": ("host", lambda c: [_cls(HOST, 0, ADDRESS, **(_HOST if c else dict(alts=_HOST["alts"]))),
                             _opt(_lit("("), _cls(DIGIT, 1, NUMBER), _lit(")"))]),
    "a": (None, lambda c: [_cls(ANY, 0, NAME, lazy=True)]),
    "c": (None, lambda c: [_cls(HEX, 1, NUMBER), _lit("."), _cls(HEX, 1, NUMBER)]),
    "l": (None, lambda c: [_cls(DIGIT, 1, NUMBER)]),
    "s": (None, lambda c: [*_DATE, _lit(" "), _cls(TZ, 1, ZONE)]),
    "v": (None, lambda c: [_opt(_cls(DIGIT, 1, NUMBER), _lit("/"), _cls(DIGIT, 1, NUMBER))]),
    "x": (None, lambda c: [_cls(DIGIT, 1, NUMBER)]),
    "e": (None, lambda c: [_cls(UPPERDIG, 5, 5)]),
    "i": (None, lambda c: [_cls(NONSPACE, 0, NAME)]),
    "b": (None, lambda c: [_cls(ANY, 0, NAME, lazy=True)]),
    "Q": (None, lambda c: [_opt(_lit("-")), _cls(DIGIT, 1, NUMBER)]),
    "%": (None, lambda c: [_lit("%")]),
}
LEVELS = ("LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC", "DETAIL", "HINT", "CONTEXT", "STATEMENT",
          "QUERY", "LOCATION")  # and DEBUG1..5
_LEVELS = r"(?P<level>DEBUG\d|" + "|".join(LEVELS) + ")"


class PrefixError(ValueError):
    pass


def _prefix_items(prefix: str) -> list:
    """The prefix as nested items; %q makes the rest an optional group (Postgres prints it only
    for session processes)."""
    out: list = []
    i, optional_from = 0, None
    used: set[str] = set()
    while i < len(prefix):
        c = prefix[i]
        if c != "%":
            out.append(_lit(c))
            i += 1
            continue
        if i + 1 >= len(prefix):
            raise PrefixError(f"log_line_prefix {prefix!r} ends with a lone %")
        j = i + 1  # a numeric padding such as %-10u is allowed by Postgres: spaces around it
        while j < len(prefix) and (prefix[j].isdigit() or prefix[j] == "-"):
            j += 1
        k = prefix[j] if j < len(prefix) else ""
        if k == "q":
            optional_from = len(out)
        elif k in _ESCAPES:
            slot, make = _ESCAPES[k]
            items = make(slot not in used)  # a repeated escape is matched without capturing
            if slot:
                used.add(slot)
            if j == i + 1:
                out.extend(items)
            else:  # padded to a width: at most that many spaces around it
                pad = min(int("".join(filter(str.isdigit, prefix[i + 1:j]))[:4] or 0), 1000)
                out.extend([_cls(SPACE, 0, pad), *items, _cls(SPACE, 0, pad)])
        else:
            raise PrefixError(f"log_line_prefix escape %{k} is not supported")
        i = j + 1
    if optional_from is not None:
        out = out[:optional_from] + [_opt(*out[optional_from:])]
    return out


def prefix_program(prefix: str) -> list[tuple]:
    """The flat program _speedups.PgScanner runs: a group becomes ("opt", index after it)."""
    flat: list[tuple] = []

    def walk(items: list) -> None:
        for it in items:
            if it[0] == "group":
                at = len(flat)
                flat.append(("opt", 0))
                walk(it[1])
                flat[at] = ("opt", len(flat))
            else:
                flat.append(it)
    walk(_prefix_items(prefix))
    return flat


def _regex(items: list) -> str:
    out = []
    for it in items:
        kind = it[0]
        if kind == "lit":
            out.append(re.escape(it[1].decode()))
        elif kind == "group":
            out.append(f"(?:{_regex(it[1])})?")
        elif kind == "open":
            out.append(f"(?P<{SLOTS[it[1]]}>")
        elif kind == "close":
            out.append(")")
        else:
            _, c, lo, hi, lazy, slot, alts = it
            quant = {(1, MANY): "+", (0, MANY): "*"}.get((lo, hi)) or (f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")
            rx = _CLASS_RX[c] + quant + ("?" if lazy else "")
            if alts:
                rx = "|".join([*(re.escape(a.decode()) for a in alts), rx])
            out.append(f"(?P<{SLOTS[slot]}>{rx})" if slot >= 0 else (f"(?:{rx})" if alts else rx))
    return "".join(out)


def compile_prefix(prefix: str) -> re.Pattern[str]:
    """A regex for lines written with `log_line_prefix = prefix`."""
    return re.compile("^" + _regex(_prefix_items(prefix)) + _LEVELS + r":  (?P<msg>.*)$", re.ASCII)


# The messages the parsers read, defined once: role -> (its texts, the event type it makes, the
# level it comes at). The C hot path takes this table at start-up (speedups.py), the regexes below
# are made from it, and so is the filter that skips other lines unread (LOG_MESSAGES).
MESSAGES = {
    "received": (("connection received: ",), ev.PG_CONNECTION, "LOG"),
    "authorized": (("connection authorized: ",), ev.PG_AUTHORIZED, "LOG"),
    "disconnection": (("disconnection: ",), ev.PG_DISCONNECTION, "LOG"),
    "bad_startup": (("invalid length of startup packet", "could not accept SSL connection",
                     "incomplete startup packet", "unsupported frontend protocol", "could not receive data from client",
                     "invalid startup packet", "received direct SSL connection request without ALPN"),
                    ev.PG_BAD_STARTUP, "LOG"),  # and FATAL
    "prefix_changed": (('parameter "log_line_prefix" changed to "',), None, "LOG"),
    "password": (('password authentication failed for user "',), ev.PG_AUTH_FAILED, "FATAL"),
    "hba": (('no pg_hba.conf entry for host "',), ev.PG_HBA_REJECT, "FATAL"),
    "no_database": (('database "', '" does not exist'), ev.PG_UNKNOWN_DB, "FATAL"),  # start, end
    "too_many": (("sorry, too many clients already", "remaining connection slots are reserved"), ev.PG_TOO_MANY,
                 "FATAL"),
    "role_missing": (('Role "', '" does not exist.'), None, "DETAIL"),  # start, end: the failure was no role
}
LOG_MESSAGES = tuple(t.encode() for texts, _, level in MESSAGES.values() if level == "LOG" for t in texts)
_RECEIVED, _AUTHORIZED, _DISCONNECTION = (MESSAGES[k][0][0] for k in ("received", "authorized", "disconnection"))
_BAD_STARTUP, _TOO_MANY = MESSAGES["bad_startup"][0], MESSAGES["too_many"][0]
_x = re.escape
_RE_RECEIVED = re.compile(_x(_RECEIVED) + r"host=(\S+?)(?: port=(\d+))?$", re.ASCII)
_RE_AUTHORIZED = re.compile(_x(_AUTHORIZED) + r"user=(\S+)(?: database=(\S+))?", re.ASCII)
_RE_TLS = re.compile(r"SSL enabled \(protocol=([^,)]+)", re.ASCII)
_RE_PREFIX_CHANGED = re.compile(_x(MESSAGES["prefix_changed"][0][0]) + r'(.*)"$', re.ASCII)
_RE_PWFAIL = re.compile(_x(MESSAGES["password"][0][0]) + r'(.*)"$', re.ASCII)
_RE_HBA = re.compile(_x(MESSAGES["hba"][0][0]) + r'([^"]*)", user "([^"]*)", database "([^"]*)"'
                     r'(, (no encryption|SSL encryption|GSS encryption))?', re.ASCII)
_RE_NODB = re.compile("{}(.*){}$".format(*map(_x, MESSAGES["no_database"][0])), re.ASCII)
_RE_ROLE_MISSING = re.compile("{}(.*){}".format(*map(_x, MESSAGES["role_missing"][0])), re.ASCII)
_RE_DISCONN = re.compile(_x(_DISCONNECTION) + r".*? host=(\S+)", re.ASCII)

MAX_TRACKED_PIDS = 65536
LOCAL = "[local]"  # the source of a connection over the Unix socket


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
        self.program = prefix_program(prefix)
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
        """The client address; LOCAL for a connection over the Unix socket (brute force there is
        brute force too), None when it is not known."""
        remembered = self.hosts.get(pid)
        src = _clean(host) or _clean(remembered)
        if src is None and LOCAL in (host, remembered):
            return LOCAL
        return src

    def flush(self) -> list[Event]:
        if self.pending is None:
            return []
        pid, e = self.pending
        self.pending = None
        if e.reason is None:
            e.reason = ev.BAD_PASSWORD
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
                    self.pending[1].reason = ev.UNKNOWN_ROLE
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
                    self.pending[1].reason = ev.UNKNOWN_ROLE
                return self.flush()
            out = self.flush()
        try:
            ts = self._ts(g)
        except ValueError:  # a timestamp that is no valid time: a bad line
            self.unparsed += 1
            return out
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
            ts = float(g["epoch"])
            if not ev.valid_ts(ts):
                raise ValueError(f"not a valid time: {g['epoch'][:40]!r}")
            return ts
        import time
        return time.time()

    def _event(self, pid: str, level: str, msg: str, ts: float, host: str | None, user: str | None,
               db: str | None) -> Event | None:
        if level == "LOG":
            if msg.startswith(_RECEIVED):
                m = _RE_RECEIVED.match(msg)
                if m is None:
                    return None
                self._remember(pid, m.group(1))
                if m.group(1) == "[local]":
                    return None
                return Event(ev.PG_CONNECTION, ts, source=m.group(1))
            if msg.startswith(_AUTHORIZED):
                m = _RE_AUTHORIZED.match(msg)
                tls = _RE_TLS.search(msg)
                src = self._source(pid, host)
                return Event(ev.PG_AUTHORIZED, ts, source=src, user=m.group(1) if m else _clean(user),
                             database=m.group(2) if m else _clean(db),
                             tls=tls is not None, reason=tls.group(1) if tls else ev.NO_TLS)
            if msg.startswith(_DISCONNECTION):
                m = _RE_DISCONN.search(msg)
                src = self._source(pid, m.group(1) if m else host)
                self.hosts.pop(pid, None)
                return Event(ev.PG_DISCONNECTION, ts, source=src, user=_clean(user), database=_clean(db))
            if msg.startswith(_BAD_STARTUP):
                src = self._source(pid, host)
                return Event(ev.PG_BAD_STARTUP, ts, source=src, reason=msg.split(":")[0][:40])
            if self.fmt == "stderr" and msg.startswith(MESSAGES["prefix_changed"][0][0]):
                m = _RE_PREFIX_CHANGED.match(msg)
                if m:  # the server changed its prefix on reload: follow it
                    self.program_for(m.group(1))
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
                         reason=ev.NO_ENCRYPTION if enc == "no encryption" else ev.HBA_REJECT)
        m = _RE_NODB.match(msg)
        if m:
            return Event(ev.PG_UNKNOWN_DB, ts, source=src, user=_clean(user), database=m.group(1))
        if msg.startswith(_TOO_MANY):
            return Event(ev.PG_TOO_MANY, ts, source=src, user=_clean(user), database=_clean(db))
        if msg.startswith(_BAD_STARTUP):
            return Event(ev.PG_BAD_STARTUP, ts, source=src, reason=msg.split(":")[0][:40])
        return None

    def program_for(self, prefix: str) -> list[tuple] | None:
        """Follow a new log_line_prefix; an unsupported one keeps the old (and None is returned)."""
        try:
            rx, program = compile_prefix(prefix), prefix_program(prefix)
        except PrefixError:
            return None
        self.rx, self.program = rx, program
        return program

    def _feed_json(self, line: str) -> list[Event]:
        """One jsonlog record; a record of the wrong shape (a message that is a number, a pid
        that is a list) is an unparsed line, never an exception."""
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            self.unparsed += 1
            return []
        if not isinstance(rec, dict) or not isinstance(rec.get("error_severity"), str):
            self.unparsed += 1
            return []
        texts = [rec.get(k) for k in ("message", "detail", "remote_host", "user", "dbname", "timestamp")]
        pid = rec.get("pid", "")
        if (not all(v is None or isinstance(v, str) for v in texts)
                or not (isinstance(pid, str) or (type(pid) is int))):
            self.unparsed += 1
            return []
        try:
            ts = self.ts.iso(rec["timestamp"]) if rec.get("timestamp") is not None else 0.0
        except ValueError:
            self.unparsed += 1
            return []
        e = self._event(str(pid), rec["error_severity"], rec.get("message") or "", ts, rec.get("remote_host"),
                        rec.get("user"), rec.get("dbname"))
        if e is not None and e.type == ev.PG_AUTH_FAILED:
            e.reason = ev.UNKNOWN_ROLE if _RE_ROLE_MISSING.search(rec.get("detail") or "") else ev.BAD_PASSWORD
        return [e] if e is not None else []
