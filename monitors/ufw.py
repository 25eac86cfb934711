"""UFW kernel log lines, wherever they were read: rsyslog files (ufw.log, kern.log), journald
(`journalctl -k` short/short-iso/short-precise, `-o json`, `-o export`), dmesg, /dev/kmsg.

Only `[UFW ...]` lines are UFW events; other iptables LOG lines are not ours and are skipped.
IPv6 addresses arrive fully expanded; they are kept as printed (rules compare them as addresses).
"""
from __future__ import annotations

import ipaddress
import json
import re
import time

from trustops.monitors import events as ev
from trustops.monitors.events import Event, TimestampCache, remember, valid_ts

_TAG = re.compile(r"\[UFW (" + "|".join(map(re.escape, ev.UFW_ACTIONS)) + r")\] ", re.ASCII)
# The fields rules use, in the kernel's fixed order; DPT only for TCP/UDP (not ICMP).
_FIELDS = re.compile(r" SRC=([0-9A-Fa-f.:]+) DST=(\S+) .*?PROTO=(\S+)(?: SPT=\d+ DPT=(\d+))?", re.ASCII)
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", re.ASCII)
_BSD = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)(\.\d+)?", re.ASCII)


def _compress(addr: str) -> str:
    try:
        return ipaddress.ip_address(addr).compressed
    except ValueError:
        return addr


class UfwParser:
    """`feed(line)` returns the UFW event on it, if any. `journal` input is `journalctl -o json`.
    `only_dest`: keep packets addressed to these hosts only (a kernel log shared by several hosts,
    as in the lab, where every container's UFW lines land in the machine's one kernel log)."""

    def __init__(self, only_dest: list[str] | None = None) -> None:
        self.ts = TimestampCache()
        self.unparsed = 0
        self.not_ufw = 0
        self.other_host = 0
        self.only_dest = set(only_dest) if only_dest else None
        self._v6cache: dict[str, str] = {}

    def feed(self, line: str) -> list[Event]:
        if line.startswith("{"):
            return self._feed_json(line)
        if line.startswith("MESSAGE="):  # journal export format: one field a line
            line = line[8:]
        i = line.find("[UFW ")
        if i < 0:
            self.not_ufw += 1
            return []
        e = self._parse(line, i)
        return [e] if e is not None else []

    def _line_time(self, line: str) -> float:
        if _ISO.match(line):
            return self.ts.iso(line.split(" ", 1)[0])
        m = _BSD.match(line)
        if m:
            return self.ts.bsd(m.group(1)) + (float(m.group(2)) if m.group(2) else 0.0)
        return time.time()  # dmesg / kmsg: monotonic stamps only, so the time it was read

    def _parse(self, line: str, i: int, ts: float | None = None) -> Event | None:
        m = _TAG.match(line, i)
        if m is None:
            self.unparsed += 1
            return None
        f = _FIELDS.search(line, m.end())
        if f is None:
            self.unparsed += 1
            return None
        src, dst, proto, dpt = f.groups()
        if dpt is not None and (len(dpt) > 5 or int(dpt) > 65535):  # no such port: a bad line
            self.unparsed += 1
            return None
        if self.only_dest is not None and dst not in self.only_dest:
            self.other_host += 1
            return None
        if ":" in src:  # the kernel prints IPv6 fully expanded; alerts and allow-lists want it short
            src = self._v6(src)
        if ts is None:
            try:
                ts = self._line_time(line)
            except ValueError:  # a timestamp that is no valid time: a bad line
                self.unparsed += 1
                return None
        return Event(ev.UFW, ts, source=src, action=m.group(1),
                     dest=dst, proto=proto, dport=int(dpt) if dpt else None)

    def _v6(self, addr: str) -> str:
        return remember(self._v6cache, addr, _compress)

    def _feed_json(self, line: str) -> list[Event]:
        """One `journalctl -o json` record. Anything of the wrong shape (a MESSAGE that is a
        number, a timestamp that is not one) is an unparsed line, never an exception."""
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            self.unparsed += 1
            return []
        msg = rec.get("MESSAGE") if isinstance(rec, dict) else None
        if isinstance(msg, list):  # journald sends non-UTF-8 messages as byte arrays
            if not all(type(b) is int and 0 <= b <= 255 for b in msg):
                self.unparsed += 1
                return []
            msg = bytes(msg).decode("utf-8", "replace")
        if not isinstance(msg, str):
            self.unparsed += 1
            return []
        i = msg.find("[UFW ")
        if i < 0:
            self.not_ufw += 1
            return []
        rt = rec.get("__REALTIME_TIMESTAMP")
        if rt:
            ts = journal_time(rt)
            if ts is None:
                self.unparsed += 1
                return []
        else:
            ts = time.time()
        e = self._parse(msg, i, ts=ts)
        return [e] if e is not None else []


def journal_time(rt) -> float | None:
    """__REALTIME_TIMESTAMP (microseconds, a decimal string) in seconds, or None when it is not
    one or out of range."""
    if not isinstance(rt, str) or not rt.isascii() or not rt.isdigit() or len(rt) > 18:
        return None
    ts = int(rt) / 1e6
    return ts if valid_ts(ts) else None
