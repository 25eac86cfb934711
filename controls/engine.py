"""The evidence engine: runs each control's checks, stores what ran and what came out, and derives
every control's status from stored evidence alone (a status is never written by hand).

Evidence is an append-only, hash-chained JSON-lines file (evidence.py); the newest record per
check key wins. A check's result is pass, fail (the evidence contradicts the promise) or unknown
(the check could not be made: a service unreachable, no lab to probe). A control is:
  passing          every check has passing evidence younger than the control's refresh period
  failing          the newest evidence of some check failed
  unknown          nothing failed, but some check could not be made (its reason is shown); also
                   every control when the evidence file's chain does not verify (nothing in it
                   counts), and a check whose evidence is dated in the future
  stale            nothing failed, but some check's evidence is missing or older than the refresh
  partial          every check passes, but the catalogue names gaps no check proves yet
  manual           only manual evidence (a reviewed document), and it is in date
  not implemented  the catalogue lists no check at all
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trustops.controls.catalogue import CHECK_KINDS, ROOT, CatalogueError, Check, Control, load
from trustops.controls.evidence import ChainError, CouldNotCheck, Evidence, EvidenceStore

STATUSES = ("passing", "failing", "unknown", "stale", "partial", "manual", "not implemented")
COMMAND_TIMEOUT = 900
FUTURE_SLACK = dt.timedelta(minutes=5)   # clock skew allowed before evidence counts as future-dated
CHAIN_BROKEN = "evidence chain broken"
# What the public page, feed and OSCAL say about a control: a fixed vocabulary chosen here, never a
# check's own output (which can name hosts, addresses and paths: that stays in the internal report).
PUBLIC_REASONS = {
    "passing": "every check passed within its refresh period",
    "failing": "the evidence of a check contradicts this commitment",
    "unknown": "a check could not be made, so this is not verified",
    "stale": "some evidence is missing or older than the refresh period",
    "partial": "the checks pass, but part of the commitment is not proven by any check yet",
    "manual": "a reviewed document, in date",
    "not implemented": "no check proves this yet",
    CHAIN_BROKEN: f"could not be checked: {CHAIN_BROKEN}",
    "future": "could not be checked: its evidence is dated in the future",
}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    summary: str
    output: str
    ran: str
    unknown: bool = False   # the check could not be made; summary says why (ok is then False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _env() -> dict[str, str]:
    """The project's virtualenv first on PATH, so commands find promtool's peers and our own tools."""
    venv_bin = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""), PYTHONPATH=str(ROOT))


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1][:240] if lines else "(no output)"


# --- runners, one per check kind ----------------------------------------------------------------

def run_command(check: Check, ctx: "Context") -> Outcome:
    argv = shlex.split(check.target)
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError:
        return Outcome(False, f"could not check: {argv[0]} is not installed", "", check.target, unknown=True)
    except subprocess.TimeoutExpired:
        return Outcome(False, f"could not check: timed out after {COMMAND_TIMEOUT}s", "", check.target, unknown=True)
    out = proc.stdout + proc.stderr
    if proc.returncode < 0:   # killed: it said nothing about what it checks
        return Outcome(False, f"could not check: killed by signal {-proc.returncode}: {_last_line(out)}", out,
                       check.target, unknown=True)
    return Outcome(proc.returncode == 0, f"exit {proc.returncode}: {_last_line(out)}", out, check.target)


def run_file(check: Check, ctx: "Context") -> Outcome:
    path = ROOT / check.target
    if not path.is_file():
        return Outcome(False, f"{check.target} does not exist", "", f"read {check.target}")
    text = path.read_text(errors="replace")
    if check.pattern and not re.search(check.pattern, text, re.M):
        return Outcome(False, f"{check.target} lacks /{check.pattern}/", text, f"grep {check.target}")
    return Outcome(True, f"{check.target} present" + (f", matches /{check.pattern}/" if check.pattern else ""),
                   text, f"read {check.target}")


def run_manual(check: Check, ctx: "Context") -> Outcome:
    """Manual evidence: the document exists and its review date is known. Age is judged by status()."""
    path = ROOT / check.target
    if not path.is_file():
        return Outcome(False, f"evidence document {check.target} is missing", "", f"read {check.target}")
    if not check.reviewed:
        return Outcome(False, f"{check.target} has no review date in the catalogue", "", f"read {check.target}")
    return Outcome(True, f"document present, reviewed {check.reviewed}", path.read_text(errors="replace"),
                   f"read {check.target}")


def _from_problems(problems: list[str], output: str, holds: str, ran: str) -> Outcome:
    """A property's or probe's (problems, output): it holds when there are no problems."""
    summary = holds if not problems else f"{len(problems)} problem(s): {problems[0]}"
    return Outcome(not problems, summary, output + "\n".join(problems), ran)


def run_code(check: Check, ctx: "Context") -> Outcome:
    from trustops.controls import properties

    fn = properties.PROPERTIES.get(check.target)
    if fn is None:
        return Outcome(False, f"no code property named {check.target}", "", check.target)
    try:
        problems, output = fn()
    except CouldNotCheck as exc:
        return Outcome(False, f"could not check: {exc}", "", f"property {check.target}", unknown=True)
    return _from_problems(problems, output, "holds", f"property {check.target}")


def run_probes(checks: list[Check], ctx: "Context") -> dict[str, Outcome]:
    """The live checks (tests/live) of every probe named, in one pytest run against the inventory."""
    from trustops.controls import live

    if ctx.inventory is None:
        return {c.key: Outcome(False, "no inventory: bring the lab up (`trustops lab up`) or pass --inventory", "",
                               f"probe {c.target}", unknown=True) for c in checks}
    results = live.run(sorted({c.target for c in checks}), ctx.inventory, ctx.progress)
    return {c.key: Outcome(results[c.target].ok, results[c.target].summary, results[c.target].output,
                           results[c.target].ran, unknown=not results[c.target].checked) for c in checks}


def run_policies(checks: list[Check], ctx: "Context") -> dict[str, Outcome]:
    """Every stack's program under Pulumi mocks, one process per stack (the mock runtime is global)."""
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    procs = {s: subprocess.Popen([sys.executable, "-m", "trustops.mockrun", s], cwd=ROOT, env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in stacks}
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for stack, proc in procs.items():
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        if proc.returncode == 0:
            results[stack] = json.loads(out.strip().splitlines()[-1])["policies"]
        else:
            errors[stack] = _last_line(err)
    outcomes = {}
    for check in checks:
        ran = f"policy {check.target} on stacks {', '.join(stacks)} (Pulumi mocks)"
        if errors:
            outcomes[check.key] = Outcome(False, f"program failed on {', '.join(errors)}: "
                                          f"{next(iter(errors.values()))}", json.dumps(errors), ran)
            continue
        if any(check.target not in r for r in results.values()):
            outcomes[check.key] = Outcome(False, f"no policy named {check.target}", "", ran)
            continue
        violations = {s: r[check.target] for s, r in results.items() if r[check.target]}
        summary = (f"0 violations on {len(stacks)} stacks" if not violations else
                   "violations on " + ", ".join(f"{s} ({v[0]})" for s, v in violations.items()))
        outcomes[check.key] = Outcome(not violations, summary,
                                      json.dumps({s: r[check.target] for s, r in results.items()}), ran)
    return outcomes


def run_pytests(checks: list[Check], ctx: "Context") -> dict[str, Outcome]:
    """One pytest run for every test the catalogue names; each test's outcome from the JUnit XML.
    A named test that does not exist fails on its own (pytest would refuse the whole run)."""
    def exists(target: str) -> bool:
        file, _, name = target.partition("::")
        path = ROOT / file
        return path.is_file() and re.search(rf"^\s*(async )?def {re.escape(name.split('[')[0])}\(",
                                            path.read_text(), re.M) is not None

    outcomes = {c.key: Outcome(False, f"no test {c.target}", "", "pytest") for c in checks if not exists(c.target)}
    checks = [c for c in checks if c.key not in outcomes]
    if not checks:
        return outcomes
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={xml}",
                *sorted({c.target for c in checks})]
        proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        output = []
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            ctx.progress(f"  pytest: {line.rstrip()}") if re.search(r"(PASSED|FAILED|ERROR|\d+%\])", line) else None
        proc.wait()
        cases: dict[str, tuple[str, str]] = {}   # name -> (passed | failure | error | skipped, message)
        torn = False
        if xml.exists():
            try:
                for case in ET.parse(xml).iter("testcase"):
                    module = case.get("classname", "").replace(".", "/")
                    name = f"{module}.py::{case.get('name', '')}"
                    bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
                    cases[name] = (bad[0].tag if bad else "passed",
                                   (bad[0].tag + ": " + (bad[0].get("message") or ""))[:200] if bad else "passed")
            except ET.ParseError:   # a run killed while writing it
                torn = True
    text = "".join(output)
    for check in checks:
        # parametrized tests report name[param]; all parameters must pass
        hits = {n: v for n, v in cases.items() if n == check.target or n.startswith(check.target + "[")}
        ran = " ".join(shlex.quote(a) for a in argv[1:3]) + f" {check.target}"
        failed = [f"{n.split('::')[-1]}: {m}" for n, (outcome, m) in hits.items() if outcome == "failure"]
        unchecked = [f"{n.split('::')[-1]}: {m}" for n, (outcome, m) in hits.items()
                     if outcome in ("error", "skipped")]
        if failed:
            outcomes[check.key] = Outcome(False, failed[0], text, ran)
        elif not hits or unchecked or proc.returncode < 0:
            why = (unchecked[0] if unchecked else
                   f"pytest killed by signal {-proc.returncode}" if proc.returncode < 0 else
                   "its JUnit report was torn" if torn else f"test did not run (pytest exit {proc.returncode})")
            outcomes[check.key] = Outcome(False, f"could not check: {why}: {_last_line(text)}", text, ran,
                                          unknown=True)
        else:
            outcomes[check.key] = Outcome(True, f"{len(hits)} passed", text, ran)
    return outcomes


SINGLE_RUNNERS: dict[str, Callable[[Check, "Context"], Outcome]] = {
    "command": run_command, "file": run_file, "manual": run_manual, "code": run_code}
BATCH_RUNNERS = {"pulumi_policy": run_policies, "pytest": run_pytests, "probe": run_probes}


@dataclass
class Context:
    inventory: Path | None = None
    progress: Callable[[str], None] = lambda msg: sys.stderr.write(msg + "\n")


def select(controls: list[Control], kinds: set[str] | None = None, ids: set[str] | None = None) -> list[Check]:
    """The distinct checks to run (a check shared by several controls runs once)."""
    seen: dict[str, Check] = {}
    for c in controls:
        if ids and c.id not in ids:
            continue
        for check in c.checks:
            if kinds is None or check.kind in kinds:
                seen.setdefault(check.key, check)
    return list(seen.values())


def run_checks(checks: list[Check], store: EvidenceStore, ctx: Context, jobs: int = 4) -> list[Evidence]:
    """Runs the checks (batches and single checks in parallel), storing each result as it lands."""
    total, done = len(checks), 0
    results: list[Evidence] = []
    lock = threading.Lock()

    def record(check: Check, started: dt.datetime, t0: float, outcome: Outcome) -> None:
        nonlocal done
        result = "unknown" if outcome.unknown else "pass" if outcome.ok else "fail"
        ev = Evidence(check.key, check.kind, check.target, started.isoformat(timespec="seconds"),
                      round(time.monotonic() - t0, 2), outcome.ok and not outcome.unknown, outcome.summary,
                      outcome.ran, _digest(outcome.output), result)
        with lock:
            store.append([ev])
            results.append(ev)
            done += 1
            label = {"pass": "ok  ", "fail": "FAIL", "unknown": "????"}[ev.result]
            ctx.progress(f"[{done}/{total}] {label} {check.key} ({ev.duration_s:.1f}s)"
                         + ("" if ev.ok else f": {ev.summary}"))

    def single(check: Check) -> None:
        started, t0 = _now(), time.monotonic()
        try:
            outcome = SINGLE_RUNNERS[check.kind](check, ctx)
        except CouldNotCheck as exc:
            outcome = Outcome(False, f"could not check: {exc}", "", check.key, unknown=True)
        except Exception as exc:  # noqa: BLE001 - a broken check is failing evidence, not a crash
            outcome = Outcome(False, f"check crashed: {type(exc).__name__}: {exc}", repr(exc), check.key)
        record(check, started, t0, outcome)

    def batch(kind: str, group: list[Check]) -> None:
        started, t0 = _now(), time.monotonic()
        try:
            outcomes = BATCH_RUNNERS[kind](group, ctx)
        except Exception as exc:  # noqa: BLE001
            outcomes = {c.key: Outcome(False, f"{kind} run crashed: {type(exc).__name__}: {exc}", repr(exc), kind)
                        for c in group}
        for check in group:
            record(check, started, t0, outcomes[check.key])

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(batch, kind, [c for c in checks if c.kind == kind])
                   for kind in BATCH_RUNNERS if any(c.kind == kind for c in checks)]
        futures += [pool.submit(single, c) for c in checks if c.kind in SINGLE_RUNNERS]
        for f in futures:
            f.result()
    return results


@dataclass(frozen=True)
class ControlStatus:
    control: Control
    status: str
    reason: str
    last_checked: dt.datetime | None
    evidence: tuple[tuple[Check, Evidence | None, str], ...]   # (check, newest evidence, its state)
    why_public: str = ""   # a PUBLIC_REASONS key when it is not the status itself

    @property
    def public_reason(self) -> str:
        """The reason in the fixed public vocabulary: safe to publish (no host, address or path)."""
        return PUBLIC_REASONS[self.why_public or self.status]

    @property
    def overclaim(self) -> str | None:
        """Where the page says more than the evidence shows."""
        if self.control.page_status == "Stated" and self.status not in ("passing", "manual"):
            return f"the page states this without qualification; the evidence shows {self.status}"
        return None

    @property
    def underclaim(self) -> str | None:
        """Where the page says less than the evidence shows: every check passes in date, yet the page
        still calls the control planned or in progress (it is ready to be promised)."""
        if self.control.page_status != "Stated" and self.evidence and \
                all(state == "passing" for _, _, state in self.evidence):
            qualifier = f", qualified by what no check proves yet: {self.control.gaps}" if self.control.gaps else ""
            return (f"the page says {self.control.page_status}, yet every check passes: ready to be "
                    f"promised{qualifier}")
        return None


def status(control: Control, latest: dict[str, Evidence], now: dt.datetime | None = None,
           chain_problem: str | None = None) -> ControlStatus:
    """The control's status from the newest evidence of each check. With a chain problem (the
    evidence file did not verify) nothing in that file counts: every check could not be checked."""
    now = now or _now()
    if not control.checks:
        return ControlStatus(control, "not implemented", "no check proves this yet", None, ())
    if chain_problem is not None:
        rows = tuple((c, latest.get(c.key), "unknown") for c in control.checks)
        return ControlStatus(control, "unknown", f"could not be checked: {CHAIN_BROKEN}: {chain_problem}", None,
                             rows, CHAIN_BROKEN)
    rows = []
    future = []
    for check in control.checks:
        ev = latest.get(check.key)
        if ev is None:
            state = "missing"
        elif ev.started_at > now + FUTURE_SLACK:   # a clock error or a forged record: proves nothing
            state = "unknown"
            future.append(check.key)
        elif ev.result == "unknown":
            state = "unknown"
        elif not ev.ok or (check.kind == "manual" and not check.reviewed):
            state = "failing"
        elif check.kind == "manual":
            reviewed = dt.datetime.fromisoformat(check.reviewed).replace(tzinfo=dt.timezone.utc)  # type: ignore[arg-type]
            state = "passing" if (now - reviewed).total_seconds() <= control.refresh_seconds else "stale"
        else:
            state = "passing" if (now - ev.started_at).total_seconds() <= control.refresh_seconds else "stale"
        rows.append((check, ev, state))
    states = [s for _, _, s in rows]
    checked = [ev.started_at for _, ev, _ in rows if ev is not None]
    last = min(checked) if checked and len(checked) == len(rows) else (max(checked) if checked else None)
    failing = [c.key for c, _, s in rows if s == "failing"]
    if failing:
        return ControlStatus(control, "failing", f"failing: {', '.join(failing)}", last, tuple(rows))
    unknown = [(c, ev) for c, ev, s in rows if s == "unknown"]
    if unknown:
        why = "; ".join(f"{c.key}: " + (f"evidence dated in the future ({ev.started})" if c.key in future
                                          else ev.summary) for c, ev in unknown)
        return ControlStatus(control, "unknown", f"could not be checked: {why}", last, tuple(rows),
                             "future" if len(future) == len(unknown) else "")
    if all(s == "passing" for s in states):
        if control.gaps:
            return ControlStatus(control, "partial", f"not yet proven: {control.gaps}", last, tuple(rows))
        if all(c.kind == "manual" for c in control.checks):
            return ControlStatus(control, "manual", "manual evidence, in date", last, tuple(rows))
        return ControlStatus(control, "passing", "every check passed within the refresh period", last, tuple(rows))
    missing = [c.key for c, _, s in rows if s == "missing"]
    stale = [c.key for c, _, s in rows if s == "stale"]
    if "passing" in states and missing and not stale:
        return ControlStatus(control, "partial", f"no evidence yet from: {', '.join(missing)}", last, tuple(rows))
    why = ([f"older than {control.refresh}: {', '.join(stale)}"] if stale else []) + \
          ([f"never checked: {', '.join(missing)}"] if missing else [])
    return ControlStatus(control, "stale", "; ".join(why), last, tuple(rows))


def chain_problem(store: EvidenceStore) -> str | None:
    """Why the store's evidence cannot be trusted (its chain does not verify), or None. A store with
    no records has nothing to distrust: every check is then simply missing."""
    if not store.records():
        return None
    try:
        store.verify()
    except ChainError as exc:
        return str(exc)
    return None


def statuses(controls: list[Control], store: EvidenceStore, now: dt.datetime | None = None) -> list[ControlStatus]:
    latest = store.latest()
    problem = chain_problem(store)
    return [status(c, latest, now, problem) for c in controls]


def run_controls(inventory_file: Path | None, evidence_file: Path, kinds: set[str] | None = None,
                 skip: set[str] = frozenset(), ids: set[str] | None = None, jobs: int = 4):
    """Runs the chosen checks, stores their evidence, and returns the statuses that follow."""
    ctl = load()
    unknown = (ids or set()) - {c.id for c in ctl}
    if unknown:
        raise CatalogueError(f"no control {', '.join(sorted(unknown))} in controls/catalogue.yaml")
    wanted = (set(kinds) if kinds else set(CHECK_KINDS)) - set(skip)
    checks = select(ctl, wanted, ids)
    store = EvidenceStore(evidence_file)
    ctx = Context(inventory_file if inventory_file and inventory_file.exists() else None)
    ctx.progress(f"running {len(checks)} checks ({', '.join(sorted(wanted))}); evidence: {evidence_file}")
    run_checks(checks, store, ctx, jobs=jobs)
    return [s for s in statuses(ctl, store) if not ids or s.control.id in ids]
