"""The controls catalogue (catalogue.yaml): loading and checking it. The evidence engine
(engine.py) and the report (report.py) build on it; no control's status is ever stored here."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CATALOGUE = Path(__file__).with_name("catalogue.yaml")
CHECK_KINDS = ("pulumi_policy", "pytest", "command", "file", "code", "probe", "manual")
PAGE_STATUSES = ("Stated", "Planned", "In progress")
ROOT = Path(__file__).resolve().parent.parent


class CatalogueError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    kind: str
    target: str
    pattern: str | None = None     # file: a regex the file must contain
    reviewed: str | None = None    # manual: ISO date the document was last reviewed

    @property
    def key(self) -> str:
        """Evidence is stored per check, under this key (several controls may share a check)."""
        return f"{self.kind}:{self.target}" + (f"~{self.pattern}" if self.pattern else "")


@dataclass(frozen=True)
class Control:
    id: str
    area: str
    statement: str
    owner: str
    page_status: str
    refresh: str
    checks: tuple[Check, ...] = field(default_factory=tuple)
    gaps: str = ""                 # what the page states that no check proves yet

    @property
    def refresh_seconds(self) -> int:
        return int(self.refresh[:-1]) * (86400 if self.refresh.endswith("d") else 3600)


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
            if c.get("reviewed") is not None and not re.match(r"^\d{4}-\d\d-\d\d$", str(c["reviewed"])):
                raise CatalogueError(f"{cid}: `reviewed` must be a date, YYYY-MM-DD")
            checks.append(Check(c["kind"], str(c["target"]), c.get("pattern"),
                                str(c["reviewed"]) if c.get("reviewed") else None))
        out.append(Control(cid, raw["area"], raw["statement"], raw["owner"], raw["page_status"],
                           str(raw["refresh"]), tuple(checks), str(raw.get("gaps") or "").strip()))
    return out
