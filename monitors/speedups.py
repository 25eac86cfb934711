"""Chooses the monitor's hot path: the C extension (`_speedups.c`, built by `pip install`) when it
is there, else the pure-Python parsers and engine, which stay the reference. Both give the same
events, counts and detections (tests/monitors/test_speedups.py); C is about ten times faster.

`TRUSTOPS_MONITOR_PURE=1` forces pure Python (to compare, or to rule the extension out).
"""
from __future__ import annotations

import os

from trustops.monitors.events import PYTHON_ONLY_TYPES
from trustops.monitors.rules import Detection, Engine, Networks, Rule, as_list, detection_for

try:
    from trustops.monitors import _speedups
except ImportError:  # not built (no compiler where it was installed): pure Python
    _speedups = None


def c_spec() -> dict:
    """What the C path takes from Python at start-up: its event types, fields, outcomes, UFW
    actions, Postgres messages, levels and reasons are defined once, in events.py and pg.py."""
    from trustops.monitors import events as ev
    from trustops.monitors import pg
    types = [t for _, t, _ in pg.MESSAGES.values() if t is not None] + [ev.UFW]
    return {"fields": ev.FIELDS, "types": list(dict.fromkeys(types)), "outcomes": ev.OUTCOMES,
            "ufw_actions": ev.UFW_ACTIONS, "ufw_type": ev.UFW, "messages": pg.MESSAGES, "levels": pg.LEVELS,
            "reasons": {r: r for r in (ev.BAD_PASSWORD, ev.UNKNOWN_ROLE, ev.NO_ENCRYPTION, ev.HBA_REJECT, ev.NO_TLS)}}


if _speedups is not None:
    _speedups.setup(c_spec())


def available() -> bool:
    return _speedups is not None and os.environ.get("TRUSTOPS_MONITOR_PURE") != "1"


def _rule_spec(r: Rule) -> tuple:
    after = r.after or {}
    return (as_list(r.match["type"]), r._conds, as_list(after["match"]["type"]) if after else (), r._after_conds,
            r.group_by, r.distinct, r.threshold, r.window, r.cooldown, after.get("count", 0),
            float(after.get("within", 0)), bool(after), r.outside_allowed,
            r.allowlist.__contains__ if r.allowlist.nets else None, r.max_groups, after.get("same"))


def _types(r: Rule) -> list[str]:
    return as_list(r.match["type"]) + (as_list(r.after["match"]["type"]) if r.after else [])


def is_python_rule(r: Rule) -> bool:
    """Whether a rule looks at event types the C engine does not know (the app's sign-ins)."""
    return any(t in PYTHON_ONLY_TYPES for t in _types(r))


class FastEngine:
    """The C engine behind the pure-Python Engine's interface. Rules on event types the C engine
    does not know (the app's sign-ins, a few a second at most) run on a Python Engine inside it,
    so adding them never takes the Postgres and UFW inputs off the C path."""

    def __init__(self, rules: list[Rule], allowed_networks=None) -> None:
        c_rules = [r for r in rules if not is_python_rule(r)]
        py_rules = [r for r in rules if is_python_rule(r)]
        for r in py_rules:  # its C-known events would go to the C engine only: all in Python then
            if not all(t in PYTHON_ONLY_TYPES for t in _types(r)):
                raise NotImplementedError(f"rule {r.name} mixes app and Postgres/UFW event types")
        self.rules = c_rules + py_rules  # the C engine's rule i is rules[i]
        self.allowed = Networks(allowed_networks or [])
        self.c = _speedups.Engine([_rule_spec(r) for r in c_rules],
                                  self.allowed.__contains__ if self.allowed.nets else None)
        self.py = Engine(py_rules, allowed_networks)
        self.detections_total: dict[str, int] = {r.name: 0 for r in rules}
        self._index = {r.name: i for i, r in enumerate(c_rules)}

    def detection(self, raw: tuple) -> Detection:
        index, key, count, first, last, user, same = raw
        rule = self.rules[index]
        self.detections_total[rule.name] += 1
        return detection_for(rule, key, count, first, last, user, None if same < 0 else bool(same))

    def process(self, e) -> list[Detection]:
        if e.type in PYTHON_ONLY_TYPES:
            found = self.py.process(e)
            for d in found:
                self.detections_total[d.rule] += 1
            return found
        return [self.detection(raw) for raw in self.c.process(e)]

    def expire(self, now: float) -> int:
        return self.c.expire(now) + self.py.expire(now)

    def groups(self) -> int:
        return sum(self.c.group_counts()) + self.py.groups()

    def top(self, rule: str, n: int) -> list[tuple[int, str]]:
        if rule not in self._index:
            return self.py.top(rule, n)
        return self.c.top(self._index[rule], n)

    def hits(self, rule: str, key: str) -> int | None:
        if rule not in self._index:
            return self.py.hits(rule, key)
        return self.c.hits(self._index[rule], key)

    @property
    def evicted(self) -> dict[str, int]:
        return {**dict(zip((r.name for r in self.rules), self.c.evicted())), **self.py.evicted}


def make_engine(rules: list[Rule], allowed_networks=None) -> Engine | FastEngine:
    """The C engine when it is built and handles every rule (fields it knows), else Python's."""
    if available():
        try:
            return FastEngine(rules, allowed_networks)
        except NotImplementedError:
            pass
    return Engine(rules, allowed_networks)


def scanner_for(parser, engine):
    """A C scanner doing `parser`'s work line by line into the C `engine`, or None (then the
    Python parser reads the lines). Postgres jsonlog stays in Python."""
    if not isinstance(engine, FastEngine):
        return None
    from trustops.monitors.pg import PostgresParser
    from trustops.monitors.ufw import UfwParser
    if isinstance(parser, PostgresParser) and parser.fmt == "stderr":
        return _speedups.PgScanner(engine.c, parser, parser.program)
    if isinstance(parser, UfwParser):
        return _speedups.UfwScanner(engine.c, parser, parser.only_dest)
    return None
