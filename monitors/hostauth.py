"""Host authentication events from the journal (`journalctl -o json`): sshd logins, sudo failures,
and users added to groups (useradd, usermod, gpasswd).

A record is trusted by the fields journald itself sets (`_COMM`, `_EXE`, `_UID`), never by
SYSLOG_IDENTIFIER, which any local user chooses (`logger -t sshd`): a record of a program whose
executable is not the system's is counted as `untrusted` and skipped. Only root's sshd decides
logins: sshd records of another user (the session child after a login, or an sshd a user started
on a port of their own) give no event. journald leaves `_EXE` out when the process exited before it looked (a quick `sudo -n`):
such a record is taken on its `_COMM`.

sshd (OpenSSH 9.2, Debian 12, LogLevel VERBOSE) logs an attempt in several lines, every one ending
with the client's `ADDRESS port PORT`, which names the connection. A failed attempt ("Failed
publickey|password|... for [invalid user] U from A port P") is held until its connection ends:
a connection that then logs in counts none (the keys an agent offers before the right one are no
attack); one that ends ("Connection closed by / Disconnected from / Disconnecting
{authenticating|invalid} user U A port P ... [preauth]", a timeout) gives one `ssh_auth_failed`
event per failed attempt, or one if it ended before any logged attempt (an unknown user, a user
outside AllowGroups). The user sshd prints is the one the client sent: the user is the part before
sshd's own last "from ADDRESS port PORT", so a user name containing such text cannot move the source.

A line that gives no event (another program, an sshd line that is no attempt, an attempt held) is
counted in `no_event`; a line that breaks the journal's shape (not JSON, a MESSAGE that is no text, a
time that is no time, an address that is no address, a port above 65535) in `unparsed`, and by
its reason in `reasons` (one of REASONS), never raised.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict

from trustops.monitors import events as ev
from trustops.monitors.app import _address, _printable as printable
from trustops.monitors.events import Event, remember
from trustops.monitors.ufw import journal_time

# The programs read, by the executable journald saw (`_EXE`); the monitors role's journalctl
# filter is built from the same names (`journal_command`).
PROGRAMS = {"sshd": "/usr/sbin/sshd", "sudo": "/usr/bin/sudo", "useradd": "/usr/sbin/useradd",
            "usermod": "/usr/sbin/usermod", "gpasswd": "/usr/bin/gpasswd"}
REASONS = ("not_json", "wrong_type", "bad_time", "bad_value", "untrusted")
# sshd's authentication method names (auth2.c); anything else a client sends counts as "other",
# so the `reason` (and the metrics outcome made of it) stays a bounded set.
METHODS = {"password": "password", "publickey": "publickey", "keyboard-interactive": "keyboard_interactive",
           "keyboard-interactive/pam": "keyboard_interactive", "hostbased": "hostbased", "none": "none",
           "gssapi-with-mic": "gssapi"}
# Reasons of ssh_auth_failed besides the methods (so the outcomes `replay --counts-by-source` counts)
FAILURE_REASONS = ("invalid_user", "no_attempt", "max_tries", "other", *sorted(set(METHODS.values()) - {"none"}))
FAILURE_OUTCOMES = frozenset(f"{ev.SSH_AUTH_FAILED}:{r}" for r in FAILURE_REASONS)
# The rule whose tracked sources each monitor exports for the cross-host rule in Prometheus
# (SshFailuresAcrossHosts), and how many of them at most (the only metric labelled by an address).
CROSS_HOST_RULE = "SshBruteForce"
CROSS_HOST_TOP = 10
USER_MAX = 256      # longer user names (sshd prints what the client sent) are cut, not trusted whole
CONNECTIONS_MAX = 65536  # connections remembered between their lines (the oldest forgotten first)
ATTEMPTS_MAX = 64        # failed attempts held per connection (sshd allows MaxAuthTries, 3 here)

_ADDR = r"([0-9A-Fa-f:.]{2,45})"
_KEY = r"(?:: [A-Z0-9-]{2,40} SHA256:[A-Za-z0-9+/]{43})?"
# Greedy user: the last "from A port P" (sshd's own tail) ends it.
_FAILED = re.compile(r"^Failed (\S{1,64}) for (invalid user )?(.*) from " + _ADDR + r" port (\d{1,6}) ssh2" + _KEY + "$",
                     re.S)
_ACCEPTED = re.compile(r"^Accepted (\S{1,64}) for (.*) from " + _ADDR + r" port (\d{1,6}) ssh2" + _KEY + "$", re.S)
_CLOSED = re.compile(r"^(?:Connection closed by|Disconnected from|Disconnecting) (authenticating|invalid) user (.*) "
                     + _ADDR + r" port (\d{1,6})(?:: [^:]*)? \[preauth\]$", re.S)
# A connection that ends without a user named on the line: its held failures are counted then.
_ENDED = re.compile(r"^(?:Connection closed by|Disconnected from|(?:fatal: )?Timeout before authentication for) "
                    + _ADDR + r" port (\d{1,6})(?: \[preauth\])?$")
_MAX_TRIES = re.compile(r"^error: maximum authentication attempts exceeded for (invalid user )?(.*) from " + _ADDR
                        + r" port (\d{1,6}) ssh2 \[preauth\]$", re.S)
_SUDO = re.compile(r"^ *([^ :]{1,64}) : (?:\d{1,3} (incorrect password attempts?)|(user NOT in sudoers)"
                   r"|(command not allowed)|(a password is required)|(user NOT authorized on host)) ; ", re.S)
_SUDO_REASONS = ("bad_password", "not_in_sudoers", "not_allowed", "password_required", "not_in_sudoers")
# usermod -aG / useradd -G: "add 'alice' to group 'sudo'" (and the same for gshadow, not counted twice)
_ADD_TO_GROUP = re.compile(r"^add '([^']{1,64})' to group '([^']{1,64})'$")
_GPASSWD_ADD = re.compile(r"^user (\S{1,64}) added by \S{1,64} to group (\S{1,64})$")
_GPASSWD_SET = re.compile(r"^members of group (\S{1,64}) set by \S{1,64} to (\S{0,65536})$")


def journal_command() -> list[str]:
    """The daemon's default: new journal records of these programs as JSON, followed (journald's
    own `_COMM` field; journalctl ORs matches on one field)."""
    return ["journalctl", "--output=json", "--follow", "--lines=0", "--no-pager", *(f"_COMM={c}" for c in PROGRAMS)]


class _Skip(Exception):
    """A record that breaks the journal's shape, and why (one of REASONS)."""


def _printable(s: str) -> str:
    """A user name as sent, cut to USER_MAX, control characters escaped (it ends up in alert texts)."""
    return printable(s[:USER_MAX])


class HostAuthParser:
    """`feed(line)` returns the events of one `journalctl -o json` record."""

    def __init__(self) -> None:
        self.unparsed = 0
        self.no_event = 0
        self.reasons: dict[str, int] = {}
        self._addrs: dict[str, str] = {}
        self._conns: OrderedDict[tuple[str, int], list[Event]] = OrderedDict()  # failed attempts per open connection
        self.connections_dropped = 0   # connections forgotten past CONNECTIONS_MAX (their failures with them)

    def feed(self, line: str) -> list[Event]:
        try:
            found = self._parse(line)
        except _Skip as why:
            reason = str(why)
        except (ValueError, RecursionError, TypeError, OverflowError):  # json.loads on hostile input
            reason = "not_json"
        else:
            if not found:
                self.no_event += 1
            return found
        self.unparsed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        return []

    def _parse(self, line: str) -> list[Event]:
        if not line.startswith("{"):
            raise _Skip("not_json")
        rec = json.loads(line)
        if not isinstance(rec, dict):
            raise _Skip("not_json")
        comm, exe, msg = rec.get("_COMM"), rec.get("_EXE"), rec.get("MESSAGE")
        if not isinstance(comm, str) or comm not in PROGRAMS:
            return []  # another program (the role's filter lets none through; a replayed journal may)
        if exe is not None and exe != PROGRAMS[comm]:
            raise _Skip("untrusted")  # another executable of that name
        if comm == "sshd" and rec.get("_UID") != "0":
            return []  # sshd decides logins as root; its children as the user log the session only
        if isinstance(msg, list):  # journald hands a message that is not UTF-8 as a byte array
            if len(msg) > 1 << 20 or not all(type(b) is int and 0 <= b <= 255 for b in msg):
                raise _Skip("wrong_type")
            msg = bytes(msg).decode("utf-8", "replace")
        if not isinstance(msg, str):
            raise _Skip("wrong_type")
        ts = journal_time(rec.get("__REALTIME_TIMESTAMP"))
        if ts is None:
            raise _Skip("bad_time")
        if comm == "sshd":
            return self._sshd(msg, ts)
        if comm == "sudo":
            return self._sudo(msg, ts)
        return self._groups(msg, ts)

    def _source(self, addr: str, port: str) -> tuple[str, int]:
        a = remember(self._addrs, addr, _address)
        if not a or int(port) > 65535:
            raise _Skip("bad_value")
        return a, int(port)

    def _sshd(self, msg: str, ts: float) -> list[Event]:
        m = _FAILED.match(msg)
        if m:
            method, invalid, user, addr, port = m.groups()
            conn = self._source(addr, port)
            if method != "none":  # "none" is the probe every client sends first, no attempt
                self._pending(conn, ts, user, "invalid_user" if invalid else METHODS.get(method, "other"))
            return []
        m = _MAX_TRIES.match(msg)
        if m:  # at LogLevel INFO the attempts before it are not logged: then it stands for them
            invalid, user, addr, port = m.groups()
            conn = self._source(addr, port)
            if conn not in self._conns:
                self._pending(conn, ts, user, "invalid_user" if invalid else "max_tries")
            return []
        m = _CLOSED.match(msg)
        if m:
            kind, user, addr, port = m.groups()
            conn = self._source(addr, port)
            if conn not in self._conns:  # it ended before any logged attempt: one failure
                self._pending(conn, ts, user, "invalid_user" if kind == "invalid" else "no_attempt")
            return self._failures(conn)
        m = _ENDED.match(msg)
        if m:
            return self._failures(self._source(*m.groups()))
        m = _ACCEPTED.match(msg)
        if m:
            method, user, addr, port = m.groups()
            conn = self._source(addr, port)
            self._conns.pop(conn, None)  # keys the agent offered before the right one are no attack
            return [Event(ev.SSH_LOGIN, ts, source=conn[0], user=_printable(user), reason=METHODS.get(method, "other"))]
        return []

    def _pending(self, conn: tuple[str, int], ts: float, user: str, reason: str) -> None:
        """A failed attempt, held until its connection ends: one that then logs in is no attack."""
        held = self._conns.get(conn)
        if held is None:
            held = self._conns[conn] = []
            if len(self._conns) > CONNECTIONS_MAX:
                self._conns.popitem(last=False)
                self.connections_dropped += 1
        if len(held) < ATTEMPTS_MAX:
            held.append(Event(ev.SSH_AUTH_FAILED, ts, source=conn[0], user=_printable(user), reason=reason))

    def _failures(self, conn: tuple[str, int]) -> list[Event]:
        return self._conns.pop(conn, [])

    def _sudo(self, msg: str, ts: float) -> list[Event]:
        m = _SUDO.match(msg)
        if not m:
            return []
        reason = next(r for r, g in zip(_SUDO_REASONS, m.groups()[1:]) if g)
        return [Event(ev.SUDO_FAILED, ts, user=_printable(m.group(1)), reason=reason)]

    def _groups(self, msg: str, ts: float) -> list[Event]:
        m = _ADD_TO_GROUP.match(msg) or _GPASSWD_ADD.match(msg)
        if m:
            return [Event(ev.GROUP_ADD, ts, user=_printable(m.group(1)), reason=_printable(m.group(2)))]
        m = _GPASSWD_SET.match(msg)
        if m:  # gpasswd -M: the whole member list, some perhaps members before
            return [Event(ev.GROUP_ADD, ts, user=_printable(u), reason=_printable(m.group(1)))
                    for u in m.group(2).split(",")[:64] if u]
        return []
