"""Evidence records and their store: an append-only JSON-lines file in which each record carries
the hash of the one before it (a hash chain).

What the chain protects against, exactly: an accidental or careless edit, removal or reordering
of records is detected by `verify`; and once a head has been published (the report's trust.json,
which `verify` compares against by default), every record before it is pinned, so rewriting
those, or dropping records up to it, is detected too. What it does not protect against: anyone who
can write the file can append new records (a forged "pass" included) or rewrite everything after
the last published head and recompute the hashes; the chain has no secret. Signatures or
append-only storage elsewhere would be needed for that, and are not part of this store.

A record's hash is the SHA-256 of its canonical JSON (sorted keys, no spaces) without the `hash`
field, `prev` included. The first chained record's `prev` is GENESIS in an empty file, or the
SHA-256 of every byte before it when the file began before the chain existed (so the old records
are sealed from then on too). A torn last line (a crash mid-write) is skipped, and removed by the
next append; an unreadable line anywhere else is refused by `verify`.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RESULTS = ("pass", "fail", "unknown")   # unknown: the check could not be made (its summary says why)
GENESIS = "0" * 64
TAIL_BYTES = 1 << 16                      # enough to find the last record without reading the file


@dataclass(frozen=True)
class Evidence:
    check: str            # Check.key
    kind: str
    target: str
    started: str          # ISO 8601, UTC
    duration_s: float
    ok: bool
    summary: str          # one line: why it passed, failed or could not be checked
    ran: str              # what ran (command line, policy and stacks, probe name)
    output_sha256: str    # digest of the full output, so a later reader can tell runs apart
    result: str = ""      # one of RESULTS; records from before "unknown" existed derive it from ok

    def __post_init__(self) -> None:
        if not self.result:
            object.__setattr__(self, "result", "pass" if self.ok else "fail")
        if self.result not in RESULTS:
            raise ValueError(f"result {self.result!r} is not one of {RESULTS}")
        if not isinstance(self.ok, bool) or not isinstance(self.check, str) or self.started_at.tzinfo is None:
            raise ValueError(f"not an evidence record: {self.check!r} at {self.started!r}")
        if self.ok != (self.result == "pass"):   # a record that says both: trust neither
            raise ValueError(f"{self.check}: ok={self.ok} contradicts result {self.result!r}")

    @property
    def started_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started)

    @classmethod
    def from_record(cls, record: dict) -> "Evidence":
        """The record as evidence; ValueError when any field has the wrong type or form (a hostile
        or damaged record: a summary that is an object, a date without a zone, a result of "vibes")."""
        try:
            checked = _Record.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"not an evidence record: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in checked.model_dump().items() if k in names})


class _Record(BaseModel):
    """Every field of a stored record, by type and form (strict: no "yes" for a bool)."""
    model_config = ConfigDict(strict=True, extra="ignore")
    check: str = Field(min_length=1, max_length=1000)
    kind: str = Field(max_length=100)
    target: str = Field(max_length=4000)
    started: str = Field(max_length=64)
    duration_s: float = Field(ge=0, allow_inf_nan=False)
    ok: bool
    summary: str = Field(max_length=100_000)
    ran: str = Field(max_length=100_000)
    output_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    result: Literal["", "pass", "fail", "unknown"] = ""

    @field_validator("started")
    @classmethod
    def _zoned_iso(cls, value: str) -> str:
        if dt.datetime.fromisoformat(value).tzinfo is None:
            raise ValueError("started has no time zone")
        return value


class CouldNotCheck(Exception):
    """Raised by a check that could not be made (not a failure of what it checks): its message is
    the reason, stored as unknown evidence."""


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ChainError(ValueError):
    """The evidence file cannot be verified; the message is one line naming the first bad record."""


@dataclass(frozen=True)
class ChainReport:
    records: int          # chained records
    head: str             # hash of the last chained record (GENESIS when there is none)
    unchained: int        # records from before the chain (sealed by the first chained record's prev)
    torn: tuple[int, ...] = ()   # line numbers of unreadable lines skipped (a crash mid-write)

    def line(self, path: Path) -> str:
        out = f"{path}: {self.records} records chained, intact; head {self.head}"
        if self.unchained:
            out += f"; the {self.unchained} records before the chain began are sealed by its first record"
        if self.torn:
            out += f"; skipped {len(self.torn)} unreadable line(s) (a crash mid-write?): {', '.join(map(str, self.torn))}"
        return out


class EvidenceStore:
    """Append-only JSON lines with a hash chain. Appends take an exclusive lock on the file, so two
    runs writing at once still make one chain."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, records: Iterable[Evidence]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                size = self._drop_torn_tail(f, f.seek(0, os.SEEK_END))
                prev = self._tail_head(f, size)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":       # a last record without its newline: never glue onto it
                        f.write(b"\n")
                for r in records:
                    rec = dict(asdict(r), prev=prev)
                    rec["hash"] = prev = record_hash(rec)
                    f.write((json.dumps(rec, sort_keys=True) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @staticmethod
    def _drop_torn_tail(f, size: int) -> int:
        """Cuts an unreadable unterminated last line (a writer killed mid-record: it carries no
        evidence and no hash covers it), so unreadable lines only ever end the file. The new size."""
        if not size:
            return size
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
        if tail.endswith(b"\n"):
            return size
        start = tail.rfind(b"\n") + 1
        if start == 0 and size > TAIL_BYTES:
            return size                           # a line longer than we look at: leave it
        try:
            json.loads(tail[start:])
            return size                           # a whole record missing only its newline
        except (ValueError, RecursionError):
            pass
        new = size - (len(tail) - start)
        f.truncate(new)
        return new

    def _tail_head(self, f, size: int) -> str:
        """The `prev` for the next record: the last chained record's hash; else GENESIS for an empty
        file, or the digest of all bytes so far for a file begun before the chain."""
        if not size:
            return GENESIS
        f.seek(max(0, size - TAIL_BYTES))
        for line in reversed(f.read().splitlines()):
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(rec, dict) and "check" in rec:
                if isinstance(rec.get("hash"), str):
                    return rec["hash"]
                break
        f.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        f.seek(size - 1)
        if f.read(1) != b"\n":
            digest.update(b"\n")   # append() adds it before the first chained record
        return digest.hexdigest()

    def records(self) -> list[dict]:
        out = []
        if not self.path.exists():
            return out
        for line in self.path.read_bytes().splitlines():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):   # a torn line; nesting too deep to parse
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def read(self) -> tuple[dict[str, Evidence], int]:
        """(the newest evidence per check, how many records were skipped as not evidence)."""
        out: dict[str, Evidence] = {}
        skipped = 0
        for rec in self.records():
            try:
                ev = Evidence.from_record(rec)
            except (ValueError, TypeError):
                skipped += 1
                continue
            out[ev.check] = ev
        return out, skipped

    def latest(self) -> dict[str, Evidence]:
        return self.read()[0]

    def verify(self, published_head: str | None = None) -> ChainReport:
        """Checks the whole chain; raises ChainError naming the first record that does not fit. With
        a head published earlier (the report's), also checks the chain still contains it: removing
        the newest records or replacing the whole file leaves a chain that is intact but shorter."""
        if not self.path.exists():
            raise ChainError(f"{self.path}: no evidence file (run `trustops controls check` first)")
        data = self.path.read_bytes()
        prev, chained, unchained, torn, offset, seen = None, 0, 0, [], 0, set()
        lines = data.split(b"\n")
        last = max((i for i, raw in enumerate(lines, 1) if raw.strip()), default=0)
        for number, raw in enumerate(lines, 1):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError
            except (ValueError, RecursionError):
                # a crash mid-write leaves an incomplete last line (the next append removes it);
                # anywhere else an unreadable line was put there
                if number != last:
                    raise ChainError(f"{self.path}: line {number} is not a record and is not the last line: "
                                     f"inserted or damaged") from None
                torn.append(number)
                continue
            where = f"{self.path}: line {number} ({rec.get('check', '?')} at {rec.get('started', '?')})"
            if "hash" not in rec:
                if prev is not None:
                    raise ChainError(f"{where} has no hash but follows chained records: inserted or edited")
                unchained += 1
                continue
            if prev is None:   # the first chained record
                expected = GENESIS if start == 0 else hashlib.sha256(data[:start]).hexdigest()
                if rec.get("prev") != expected:
                    raise ChainError(f"{where}: its prev does not match "
                                     + ("the start of the file" if start == 0 else
                                        f"the {unchained} records before it: one of those was edited"))
            elif rec.get("prev") != prev:
                raise ChainError(f"{where}: its prev is not the hash of the record before it: a record was "
                                 f"removed, reordered or edited just before this one")
            if record_hash(rec) != rec["hash"]:
                raise ChainError(f"{where} was edited after it was written (its content no longer matches "
                                 f"its hash)")
            prev, chained = rec["hash"], chained + 1
            seen.add(prev)
        if prev is None:
            if unchained:
                raise ChainError(f"{self.path}: all {unchained} records were written before evidence was "
                                 f"hash-chained, so they cannot be verified; the next `trustops controls check` "
                                 f"starts a chain that seals them")
            raise ChainError(f"{self.path}: no evidence records yet")
        if published_head and published_head not in seen:
            raise ChainError(f"{self.path}: the published head {published_head[:16]}... is not in the chain: records "
                             f"it covered were removed or the file was replaced")
        return ChainReport(chained, prev, unchained, tuple(torn))

    def head(self) -> str | None:
        """The chain's head when the chain verifies, else None (the report then says it is broken)."""
        try:
            return self.verify().head
        except ChainError:
            return None
