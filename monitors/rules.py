"""Detections as data (rules.yaml), and the engine that runs them over events.

A rule says which events it looks at (`match`), how it groups them (`group_by`, a source
address by default), what it counts (events, or `distinct` values of a field), how many within
its `window` make a detection (`threshold`), and how long it stays quiet after firing
(`cooldown`). A `sequence` rule fires on an event that follows enough other events from the same
source (a login that succeeds after failures). State is bounded: each rule keeps at most
`max_groups` groups (least recently seen dropped first) and forgets groups idle past their window.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import string
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError,
                      field_validator, model_validator)

from trustops.monitors.events import TYPES_OF_INPUT, Event, remember

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
SEVERITIES = ("critical", "warning", "info")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
# yaml.safe_load's safe tags with libyaml's parser when PyYAML was built with it: the pure-Python
# parser took about a tenth of a one-line replay on the rules file alone
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RuleError(ValueError):
    pass


class OverrideError(RuleError):
    """A rule override from the monitor's config (`rules:`) that makes a rule invalid."""


def duration(v) -> float:
    m = _DURATION.match(str(v).strip())
    if not m:
        raise RuleError(f"bad duration {v!r}: use e.g. 30s, 5m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


class Networks:
    """CIDR membership with a bounded per-address cache (rules ask about the same sources often)."""

    def __init__(self, cidrs) -> None:
        try:
            self.nets = [ipaddress.ip_network(str(c), strict=False) for c in (cidrs or [])]
        except ValueError as exc:
            raise RuleError(f"bad CIDR in {cidrs!r}: {exc}") from exc
        self._cache: dict[str, bool] = {}

    def __contains__(self, addr: str | None) -> bool:
        if addr is None or not self.nets:
            return False
        return remember(self._cache, addr, self._lookup)

    def _lookup(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.nets)


@dataclass
class Rule:
    name: str
    match: dict
    severity: str
    summary: str
    description: str
    threshold: int = 1
    window: float = 60.0
    cooldown: float = 300.0
    group_by: str = "source"
    distinct: str | None = None
    after: dict | None = None          # sequence: {match: {...}, count: N, within: dur}
    outside_allowed: bool = False      # only sources outside the allowed networks
    allowlist: Networks = field(default_factory=lambda: Networks([]))
    mitre: str | None = None
    max_groups: int = 100_000

    def __post_init__(self) -> None:
        self._conds = _compile(self.match)
        self._after_conds = _compile(self.after["match"]) if self.after else ()

    def matches(self, e: Event, conds: tuple) -> bool:
        for k, want, many in conds:
            have = getattr(e, k)
            if (have not in want) if many else (have != want):
                return False
        return True


def _compile(match: dict) -> tuple:
    """`match` as (field, wanted, is_set) triples; the `type` is checked by the engine's index."""
    return tuple((k, frozenset(v) if isinstance(v, list) else v, isinstance(v, list))
                 for k, v in match.items() if k != "type")


@dataclass
class Detection:
    rule: str
    severity: str
    group: str
    count: int
    first_ts: float
    last_ts: float
    summary: str
    description: str
    mitre: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@functools.lru_cache(maxsize=256)
def _fmt_window(sec: float) -> str:
    return f"{int(sec // 3600)}h" if sec >= 3600 and sec % 3600 == 0 else (
        f"{int(sec // 60)}m" if sec >= 60 and sec % 60 == 0 else f"{sec:g}s")


# ------------------------------------------------------------------ the rules file's shape

def _duration(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError("a duration such as 30s, 5m, 1h")
    try:
        return duration(v)
    except RuleError as exc:
        raise ValueError("a duration such as 30s, 5m, 1h") from exc


def _cidr(v: str) -> str:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError as exc:
        raise ValueError(f"a CIDR such as 10.10.1.0/24 ({exc})") from exc
    return v


Duration = Annotated[StrictStr | StrictInt | float, AfterValidator(_duration)]
Cidr = Annotated[StrictStr, AfterValidator(_cidr)]
EVENT_TYPES = tuple(sorted(set().union(*TYPES_OF_INPUT.values())))   # what the parsers make (events.py)
EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event) if f.name not in ("type", "ts"))
PLACEHOLDERS = ("group", "source", "count", "window", "threshold", "user", "failed_for")  # detection_for's texts
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
EventField = Literal[EVENT_FIELDS]  # type: ignore[valid-type]
_STRS = Annotated[StrictStr, Field(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MatchModel(_Strict):
    """Which events a rule looks at: a type (or several) and wanted values of event fields, each
    of the field's own type (`dport: "5432"` would never match a port)."""
    type: EventType | list[EventType] = Field(min_length=1)
    source: _STRS | list[_STRS] | None = None
    user: _STRS | list[_STRS] | None = None
    database: _STRS | list[_STRS] | None = None
    reason: _STRS | list[_STRS] | None = None
    tls: StrictBool | list[StrictBool] | None = None
    action: _STRS | list[_STRS] | None = None
    dport: Annotated[StrictInt, Field(ge=0, le=65535)] | list[Annotated[StrictInt, Field(ge=0, le=65535)]] | None = None
    proto: _STRS | list[_STRS] | None = None
    dest: _STRS | list[_STRS] | None = None


class AfterModel(_Strict):
    """A sequence: `count` events matching `match` within `within` before the rule's event. With
    `same: user`, the detection says whether any of them had the last event's user (`{user}`,
    `{failed_for}`), and takes `other_severity` when none had (another user's failures)."""
    match: MatchModel
    count: StrictInt = Field(default=1, ge=1, le=10_000)
    within: Duration = "10m"
    same: EventField | None = None
    other_severity: Literal[SEVERITIES] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _other_needs_same(self) -> "AfterModel":
        if self.other_severity is not None and self.same is None:
            raise ValueError("other_severity: needs `same` (the field whose value decides)")
        return self


class RuleModel(_Strict):
    """One detection of rules.yaml (after `defaults` are merged in)."""
    name: StrictStr
    match: MatchModel
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    summary: StrictStr | None = None
    description: StrictStr = ""
    threshold: StrictInt = Field(default=1, ge=1, le=10_000_000)
    window: Duration = "60s"
    cooldown: Duration = "5m"
    group_by: EventField = "source"
    distinct: EventField | None = None
    after: AfterModel | None = None
    outside_allowed: StrictBool = False
    allowlist: list[Cidr] | None = None
    mitre: StrictStr | None = Field(default=None, pattern=r"^T\d{4}(\.\d{3})?$")
    max_groups: StrictInt = Field(default=100_000, ge=1, le=10_000_000)
    enabled: StrictBool = True

    @field_validator("name")
    @classmethod
    def _camel(cls, v: str) -> str:
        if not re.match(r"^[A-Z][A-Za-z0-9]+$", v):
            raise ValueError("CamelCase, led by the component (e.g. PostgresBruteForce)")
        return v

    @field_validator("summary", "description")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        try:
            used = [f for _, f, _, _ in string.Formatter().parse(v or "") if f is not None]
        except ValueError as exc:
            raise ValueError(f"a text with {{placeholders}} ({exc})") from exc
        bad = [f for f in used if f not in PLACEHOLDERS]
        if bad:
            raise ValueError(f"placeholder {{{bad[0]}}} is not one of " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RuleModel":
        if self.window <= 0:
            raise ValueError("window: must be more than 0")
        if self.after is not None and self.distinct is not None:
            raise ValueError("distinct: a sequence rule (after) counts events, not distinct values: drop one")
        return self


class RulesFileModel(_Strict):
    defaults: dict | None = None
    rules: list[dict] = Field(min_length=1)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _keys(loc: tuple) -> list:
    """The keys of an error's location, without the member tags pydantic adds inside a union
    ('literal[...]', 'constrained-int', 'str'): the path as the file spells it."""
    return [p for p in loc if isinstance(p, int) or (re.fullmatch(r"[A-Za-z_]\w*", p) and p not in _TYPE_TAGS)]


def first_problem(exc: ValidationError) -> str:
    """'key.path: what is allowed (got value)' for the first error pydantic found."""
    err = exc.errors()[0]
    loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in _keys(err["loc"])).replace(".[", "[") or "(top)"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if err["type"] == "missing" else f" (got {got!r})"[:120]
    return f"{loc}: {msg}{shown}"


def _problem(exc: ValidationError, where: str, spec: dict, defaults: dict) -> str:
    """first_problem's line with its path led by `where` (rules[3] (Name)), or by `defaults` when
    the bad key came from there."""
    text = first_problem(exc)
    keys = _keys(exc.errors()[0]["loc"])
    key = keys[0] if keys else None
    lead = "defaults" if key in defaults and key not in spec else where
    return f"{lead}.{text}" if key is not None else f"{lead}: {text.split(': ', 1)[-1]}"


def load_rules(path: Path | str = DEFAULT_RULES, allowlist=None,
               overrides: dict | None = None) -> list[Rule]:
    """Rules from YAML, checked by RuleModel; `overrides` {rule: {threshold:.., enabled: false}}
    from the config. A bad file is one RuleError line naming the file, the key path and what is
    allowed, e.g. `rules.yaml: rules[2].threshold: Input should be a valid integer (got 2.7)`."""
    try:
        doc = yaml.load(Path(path).read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(doc, dict):
        raise RuleError(f"{path}: (top): expected a mapping with a `rules:` list")
    try:
        RulesFileModel.model_validate(doc)
    except ValidationError as exc:
        raise RuleError(f"{path}: {first_problem(exc)}") from None
    defaults = doc.get("defaults") or {}
    overrides = overrides or {}
    names = [r.get("name") for r in doc["rules"]]
    for name in overrides:
        if name not in names:
            raise OverrideError(f"rules.{name}: no such rule in {path} (known: {', '.join(sorted(map(str, names)))})")
    global_allow = list(allowlist or [])
    rules = []
    for i, raw in enumerate(doc["rules"]):
        where = f"rules[{i}]" + (f" ({raw['name']})" if isinstance(raw.get("name"), str) else "")
        if raw.get("name") in names[:i]:
            raise RuleError(f"{path}: {where}.name: {raw['name']} is defined twice; names are unique")
        try:
            m = RuleModel.model_validate({**defaults, **raw})
        except ValidationError as exc:
            raise RuleError(f"{path}: {_problem(exc, where, raw, defaults)}") from None
        if m.name in overrides:
            try:
                m = RuleModel.model_validate({**defaults, **raw, **overrides[m.name]})
            except ValidationError as exc:
                raise OverrideError(_problem(exc, f"rules.{m.name}", overrides[m.name], {})) from None
        if not m.enabled:
            continue
        after = m.after and {"match": m.after.match.model_dump(exclude_unset=True), "count": m.after.count,
                             "within": m.after.within, "same": m.after.same,
                             "other_severity": m.after.other_severity}
        rules.append(Rule(
            name=m.name, match=m.match.model_dump(exclude_unset=True), severity=m.severity,
            summary=m.name if m.summary is None else m.summary, description=m.description,
            threshold=m.threshold, window=m.window, cooldown=m.cooldown, group_by=m.group_by, distinct=m.distinct,
            after=after, outside_allowed=m.outside_allowed, allowlist=Networks(global_allow + list(m.allowlist or [])),
            mitre=m.mitre, max_groups=m.max_groups,
        ))
    return rules


class _Group:
    """One source's state in one rule. Small on purpose (a flood brings many sources): the times
    of the last `threshold` events at most, in a plain list (a deque takes a 64-slot block even for
    one time)."""
    __slots__ = ("times", "values", "last_fired", "last_seen", "prior", "hits")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: dict | None = None
        self.last_fired: float | None = None
        self.last_seen = 0.0
        self.prior: deque[float] | None = None
        self.hits = 0                  # events the rule matched for this group while tracked


class Engine:
    """Runs rules over events in order; `process(event)` returns the detections it caused."""

    def __init__(self, rules: list[Rule], allowed_networks=None) -> None:
        self.rules = rules
        self.allowed = Networks(allowed_networks or [])
        self.by_type: dict[str, list[tuple[Rule, bool]]] = {}
        for r in rules:
            for t in as_list(r.match["type"]):
                self.by_type.setdefault(t, []).append((r, False))
            if r.after:
                for t in as_list(r.after["match"]["type"]):
                    self.by_type.setdefault(t, []).append((r, True))
        self.state: dict[str, OrderedDict[str, _Group]] = {r.name: OrderedDict() for r in rules}
        self.detections_total: dict[str, int] = {r.name: 0 for r in rules}
        self.evicted: dict[str, int] = {r.name: 0 for r in rules}  # groups dropped to stay within max_groups

    def groups(self) -> int:
        return sum(len(s) for s in self.state.values())

    def top(self, rule: str, n: int) -> list[tuple[int, str]]:
        """The n sources the rule has matched most, as (hits, source), most first (ties: least
        recently seen first)."""
        import heapq
        groups = self.state.get(rule, {})
        return [(h, k) for h, _, k in heapq.nlargest(n, ((g.hits, -i, k) for i, (k, g) in enumerate(groups.items())))]

    def hits(self, rule: str, key: str) -> int | None:
        """Events `rule` matched for `key` while it was tracked (the real count an alert text
        gives at send time), or None when the group is no longer held."""
        g = self.state.get(rule, {}).get(key)
        return None if g is None else g.hits

    def _group(self, rule: Rule, key: str, ts: float) -> _Group:
        groups = self.state[rule.name]
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group()
            if len(groups) > rule.max_groups:
                groups.popitem(last=False)
                self.evicted[rule.name] += 1
        else:
            groups.move_to_end(key)
        g.last_seen = ts
        return g

    def expire(self, now: float) -> int:
        """Forget groups idle longer than their rule's window and cooldown; returns how many."""
        dropped = 0
        for rule in self.rules:
            keep = max(rule.window, rule.after["within"] if rule.after else 0, rule.cooldown)
            groups = self.state[rule.name]
            while groups:
                key, g = next(iter(groups.items()))
                if now - g.last_seen <= keep:
                    break
                del groups[key]
                dropped += 1
        return dropped

    def process(self, e: Event) -> list[Detection]:
        cands = self.by_type.get(e.type)
        if not cands:
            return []
        out = []
        for rule, is_prior in cands:
            if rule.allowlist.nets and e.source in rule.allowlist:
                continue
            if not rule.matches(e, rule._after_conds if is_prior else rule._conds):
                continue
            key = getattr(e, rule.group_by)
            if key is None:
                continue
            if key.__class__ is not str:
                key = str(key)
            if is_prior:
                g = self._group(rule, key, e.ts)
                if g.prior is None:
                    g.prior = deque(maxlen=max(rule.after["count"], 1))  # type: ignore[index]
                same = rule.after["same"]  # type: ignore[index]
                g.prior.append((e.ts, getattr(e, same) if same else None))
                continue
            if rule.outside_allowed and (not self.allowed.nets or e.source in self.allowed):
                continue
            d = self._apply(rule, key, e)
            if d is not None:
                out.append(d)
        return out

    def _apply(self, rule: Rule, key: str, e: Event) -> Detection | None:
        g = self._group(rule, key, e.ts)
        ts = e.ts
        if rule.after:
            prior = g.prior
            need = rule.after["count"]
            if prior is None:
                return None
            recent = [(t, v) for t, v in prior if ts - t <= rule.after["within"]]
            if len(recent) < need:
                return None
            g.prior = None  # the failures are accounted for by this detection
            field_ = rule.after["same"]
            same = None if field_ is None else any(v == getattr(e, field_) for _, v in recent)
            return self._fire(rule, g, key, len(recent), recent[0][0], ts, e.user, same)
        g.hits += 1
        if rule.distinct:
            values = g.values
            if values is None:
                values = g.values = {}
            v = getattr(e, rule.distinct)
            if v is None:
                return None
            values.pop(v, None)  # re-inserted last: dicts keep insertion order, oldest first
            values[v] = ts
            while values and ts - next(iter(values.values())) > rule.window:
                del values[next(iter(values))]
            while len(values) > rule.threshold:
                del values[next(iter(values))]
            if len(g.values) < rule.threshold:
                return None
            first = next(iter(g.values.values()))
            return self._fire(rule, g, key, g.hits, first, ts)
        times = g.times
        times.append(ts)
        if len(times) > rule.threshold:  # at most `threshold` kept: the oldest is dropped first
            del times[0]
        window = rule.window
        while times and ts - times[0] > window:  # keep only the window: memory follows the rate
            del times[0]
        if len(times) < rule.threshold:
            return None
        return self._fire(rule, g, key, g.hits, times[0], ts)

    def _fire(self, rule: Rule, g: _Group, key: str, count: int, first: float, last: float,
              user: str | None = None, same: bool | None = None) -> Detection | None:
        if g.last_fired is not None and last - g.last_fired < rule.cooldown:
            return None
        g.last_fired = last
        self.detections_total[rule.name] += 1
        return detection_for(rule, key, count, first, last, user, same)


def detection_for(rule: Rule, key: str, count: int, first: float, last: float, user: str | None = None,
                  same: bool | None = None) -> Detection:
    """The Detection a rule reports, its summary and description filled in. `{user}`: the user of
    the event that completed a sequence (who logged in); `same`: whether any counted prior event had
    its `after.same` value (`{failed_for}`), None when the rule compares none. When none had, the
    detection takes `after.other_severity` (another user's failures: less likely a guessed password)."""
    ctx = {"group": key, "source": key, "count": count, "window": _fmt_window(rule.window),
           "threshold": rule.threshold, "user": "(no username)" if user is None else user,
           "failed_for": "the same user" if same else "other users" if same is not None else "any user"}
    severity = rule.severity
    if same is False and rule.after and rule.after.get("other_severity"):
        severity = rule.after["other_severity"]
    return Detection(rule.name, severity, key, count, first, last, rule.summary.format(**ctx),
                     rule.description.format(**ctx), rule.mitre)


def as_list(v) -> list:
    """A rule's `type` (one or a list) as a list."""
    return v if isinstance(v, list) else [v]
