"""The controls catalogue (catalogue.yaml): loading and checking it. The evidence engine
(engine.py) and the report (report.py) build on it; no control's status is ever stored here.
The file's shape is pydantic models; a bad file is refused with one line naming the key path."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

CATALOGUE = Path(__file__).with_name("catalogue.yaml")
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckModel(_Strict):
    kind: Literal["pulumi_policy", "pytest", "command", "file", "code", "probe", "manual"]
    target: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    pattern: str | None = None
    reviewed: dt.date | None = None

    @field_validator("reviewed")
    @classmethod
    def _not_in_the_future(cls, value: dt.date | None) -> dt.date | None:
        # a review dated ahead would keep its document "in date" for longer than its period
        if value is not None and value > dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1):
            raise ValueError(f"a review date in the future ({value}): use the day the document was reviewed")
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class ControlModel(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Z]+-\d\d$")]
    area: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    statement: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    owner: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    page_status: Literal["Stated", "Planned", "In progress"]
    refresh: Annotated[str, StringConstraints(pattern=r"^[1-9]\d*[dh]$")]
    checks: list[CheckModel] | None = None
    gaps: str | None = None


class CatalogueModel(_Strict):
    controls: list[ControlModel]

    @field_validator("controls")
    @classmethod
    def _unique_ids(cls, value: list[ControlModel]) -> list[ControlModel]:
        seen: set[str] = set()
        for c in value:
            if c.id in seen:
                raise ValueError(f"control id {c.id} is duplicated")
            seen.add(c.id)
        return value


def _one_line(path: Path, exc: ValidationError) -> str:
    """The first error as `<file>: <key path>: <message>` (and how many more there are)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    got = f" (got {err['input']!r})" if err["type"] not in ("missing",) and not isinstance(
        err.get("input"), (dict, list)) else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {where}: {err['msg']}{got}{more}"


def load(path: Path = CATALOGUE) -> list[Control]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise CatalogueError(f"{path}: {where}not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except ValueError as exc:   # YAML that parses into an impossible value, e.g. a date 2026-13-01
        raise CatalogueError(f"{path}: a value YAML cannot construct: {exc}") from None
    if doc is None:
        raise CatalogueError(f"{path}: empty file (expected `controls:` and a list)")
    try:
        model = CatalogueModel.model_validate(doc)
    except ValidationError as exc:
        raise CatalogueError(_one_line(path, exc)) from None
    return [Control(c.id, c.area, c.statement, c.owner, c.page_status, c.refresh,
                    tuple(Check(k.kind, k.target, k.pattern, k.reviewed.isoformat() if k.reviewed else None)
                          for k in c.checks or ()),
                    (c.gaps or "").strip())
            for c in model.controls]


CHECK_KINDS: tuple[str, ...] = get_args(CheckModel.model_fields["kind"].annotation)
PAGE_STATUSES: tuple[str, ...] = get_args(ControlModel.model_fields["page_status"].annotation)
