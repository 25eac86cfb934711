"""The controls catalogue (catalogue.yaml): loading and checking it. The evidence engine and the
trust-page report (issue 9) build on this; no control's status is ever stored here."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CATALOGUE = Path(__file__).with_name("catalogue.yaml")
CHECK_KINDS = ("pulumi_policy", "pytest", "command", "file", "probe", "manual")
PAGE_STATUSES = ("Stated", "Planned", "In progress")
ROOT = Path(__file__).resolve().parent.parent


class CatalogueError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    kind: str
    target: str


@dataclass(frozen=True)
class Control:
    id: str
    area: str
    statement: str
    owner: str
    page_status: str
    refresh: str
    checks: tuple[Check, ...] = field(default_factory=tuple)


def load(path: Path = CATALOGUE) -> list[Control]:
    doc = yaml.safe_load(path.read_text())
    out, seen = [], set()
    for raw in doc.get("controls", []):
        cid = raw.get("id", "")
        if not re.match(r"^[A-Z]+-\d\d$", cid) or cid in seen:
            raise CatalogueError(f"control id {cid!r}: missing, malformed or duplicated")
        seen.add(cid)
        if raw.get("page_status") not in PAGE_STATUSES:
            raise CatalogueError(f"{cid}: page_status must be one of {PAGE_STATUSES}")
        if not re.match(r"^\d+[dh]$", str(raw.get("refresh", ""))):
            raise CatalogueError(f"{cid}: refresh like 7d or 24h")
        checks = []
        for c in raw.get("checks") or []:
            if c.get("kind") not in CHECK_KINDS:
                raise CatalogueError(f"{cid}: check kind {c.get('kind')!r} is not one of {CHECK_KINDS}")
            checks.append(Check(c["kind"], str(c["target"])))
        out.append(Control(cid, raw["area"], raw["statement"], raw["owner"], raw["page_status"],
                           str(raw["refresh"]), tuple(checks)))
    return out
