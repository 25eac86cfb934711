"""The trust page's machine-readable feed (trust.json): every control's status and the evidence
behind it, in a shape fixed by pydantic models, so a reader (or our tests) can validate it."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from trustops.controls import describe
from trustops.controls.engine import STATUSES, ControlStatus
from trustops.controls.evidence import RESULTS, ChainReport

SCHEMA = "trustops-trust-feed/2"
CHAIN_PROBLEM = "the evidence chain did not verify when this feed was generated"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckEntry(_Strict):
    how: str                       # the check in plain words
    kind: str
    state: Literal["passing", "failing", "unknown", "stale", "missing"]
    reason: str                    # the state in the page's fixed words (describe.STATE_WORDS); the check's
                                   # own output stays in the internal report: it can name hosts and paths
    result: Literal[RESULTS] | None   # type: ignore[valid-type]  # None: never ran
    last_ran: dt.datetime | None
    output_sha256: str | None


class ControlEntry(_Strict):
    id: str
    area: str
    statement: str
    page_status: str               # what the page itself says (Stated, Planned, In progress)
    status: Literal[STATUSES]      # type: ignore[valid-type]  # computed from evidence
    category: Literal[describe.CATEGORIES]   # type: ignore[valid-type]
    label: str
    reason: str                    # engine.PUBLIC_REASONS: a fixed vocabulary
    refresh: str
    last_checked: dt.datetime | None
    gaps: str | None               # what the statement promises that no check proves yet
    checks: list[CheckEntry]


class Chain(_Strict):
    intact: bool
    head: str | None               # hash of the newest evidence record (None when the chain is broken)
    records: int
    problem: str | None            # CHAIN_PROBLEM or None (the details are in the internal report)


class Feed(_Strict):
    schema_: str = SCHEMA
    generated: dt.datetime
    last_full_check: dt.datetime | None
    checks_never_run: int
    summary: dict[str, int]        # category -> number of controls, in describe.CATEGORIES order
    evidence_chain: Chain
    controls: list[ControlEntry]

    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              alias_generator=lambda name: "schema" if name == "schema_" else name)


def build(statuses: list[ControlStatus], generated: dt.datetime, chain: ChainReport | None) -> Feed:
    full, never = describe.last_full_check(statuses)
    controls = []
    for s in statuses:
        checks = [CheckEntry(how=describe.how(c), kind=c.kind, state=state, reason=describe.STATE_WORDS[state],
                             result=ev.result if ev else None, last_ran=ev.started_at if ev else None,
                             output_sha256=ev.output_sha256 if ev else None)
                  for c, ev, state in s.evidence]
        controls.append(ControlEntry(
            id=s.control.id, area=s.control.area, statement=s.control.statement, page_status=s.control.page_status,
            status=s.status, category=describe.category(s), label=describe.label(s), reason=s.public_reason,
            refresh=s.control.refresh, last_checked=s.last_checked, gaps=s.control.gaps or None, checks=checks))
    summary = {cat: sum(1 for c in controls if c.category == cat) for cat in describe.CATEGORIES}
    return Feed(generated=generated, last_full_check=full, checks_never_run=never, summary=summary,
                evidence_chain=Chain(intact=chain is not None, head=chain.head if chain else None,
                                     records=chain.records if chain else 0,
                                     problem=None if chain else CHAIN_PROBLEM),
                controls=controls)


def to_json(feed: Feed) -> str:
    return feed.model_dump_json(indent=2, by_alias=True) + "\n"
