"""Plain words for the trust page: how a check verifies its control, what its last result means,
and which public category a control falls in. One place, so the page, the JSON feed, the OSCAL
export and the CLI summary say the same thing."""
from __future__ import annotations

import datetime as dt

from trustops.controls.catalogue import Check
from trustops.controls.engine import ControlStatus

# The page's summary, in this order. "Documented": a person reviewed a document (no automation).
CATEGORIES = ("Verified", "Documented", "Partly verified", "Planned", "Not verified")

# A check's state (engine.status) in words a customer reads.
STATE_WORDS = {"passing": "passed", "failing": "failed", "unknown": "could not be checked",
               "stale": "not re-checked within its period", "missing": "not run yet"}

_KIND_WORDS = {
    "pulumi_policy": "Infrastructure policy “{name}” evaluated against every environment's cloud resources",
    "pytest": "Automated test: {name}",
    "command": "Command `{target}` succeeds",
    "file": "The repository's {target} is present{pattern}",
    "code": "Code check: {name}",
    "probe": "Live check of the running servers: {name}",
    "manual": "Document {target}, reviewed by a person{reviewed}",
}


def _sentence(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _docstring(kind: str, target: str) -> str | None:
    """The first sentence of a code property's or probe's docstring, when it has one."""
    try:
        if kind == "code":
            from trustops.controls import properties
            fn = properties.PROPERTIES.get(target)
        else:
            from trustops.controls import live
            return live.describe(target)   # the first sentence of its live check's docstring
    except Exception:  # noqa: BLE001 - words for a page: fall back to the check's name
        return None
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.split(". ")[0].rstrip(".").replace("\n", " ").replace("    ", " ") if doc else None


def how(check: Check) -> str:
    """How the check verifies its control, in one plain sentence."""
    if check.kind == "pytest":
        name = _sentence(check.target.split("::")[-1].split("[")[0].removeprefix("test_"))
    elif check.kind in ("code", "probe"):
        name = _docstring(check.kind, check.target) or _sentence(check.target)
    else:
        name = check.target
    return _KIND_WORDS[check.kind].format(
        name=name, target=check.target,
        pattern=f" and says “{check.pattern}”" if check.pattern else "",
        reviewed=f" on {check.reviewed}" if check.reviewed else " (not reviewed yet)")


def category(s: ControlStatus) -> str:
    if s.status == "passing":
        return "Verified"
    if s.status == "manual":
        return "Documented"
    if s.control.page_status in ("Planned", "In progress"):
        return "Planned"
    if s.status == "partial":
        return "Partly verified"
    return "Not verified"


def label(s: ControlStatus) -> str:
    """The control's status as the page shows it; "Verified" only when the engine computed passing."""
    date = s.last_checked.date().isoformat() if s.last_checked else ""
    cat = category(s)
    if cat == "Verified":
        return f"Verified {date}"
    if cat == "Documented":
        return f"Documented, reviewed {max(c.reviewed for c in s.control.checks if c.reviewed)}"
    if cat == "Planned":
        return s.control.page_status
    if cat == "Partly verified":
        return f"Partly verified {date}"
    if s.status == "failing":
        return "Not verified: a check fails"
    if s.status == "unknown":
        return "Not verified: could not be checked"
    return "Not yet verified"


def refresh_words(refresh: str) -> str:
    n, unit = int(refresh[:-1]), "day" if refresh.endswith("d") else "hour"
    return f"every {n} {unit}{'s' if n != 1 else ''}"


def last_full_check(statuses: list[ControlStatus]) -> tuple[dt.datetime | None, int]:
    """(since when every check has evidence, how many checks have none): the last full check is
    complete at the time the oldest check's newest evidence was taken."""
    newest: dict[str, dt.datetime | None] = {}
    for s in statuses:
        for check, ev, _ in s.evidence:
            newest[check.key] = ev.started_at if ev else None
    never = sum(1 for t in newest.values() if t is None)
    seen = [t for t in newest.values() if t is not None]
    return (min(seen) if seen and not never else None), never
