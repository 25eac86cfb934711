"""The evidence engine's live checks: the deployed-system tests in tests/live, run by pytest
against whatever inventory the engine is given, each test's outcome read from the JUnit XML.

The tests are the checks (CI runs the same ones against the test lab); a catalogue probe names
the tests that give evidence for it with `@pytest.mark.probe("<name>")`. A probe holds when every
one of its tests passed. Whether a failed test contradicts the promise or could not look is
decided by the exception's class (`verdict`, called by tests/live/conftest.py's report hook, which
writes it into the JUnit XML): a test that raises CouldNotCheck (a host that does not answer, a
command that is missing) or errors before its body runs means the probe could not be checked.
"""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trustops.controls.catalogue import ROOT

LIVE_CHECKS = ROOT / "tests" / "live"
PROBE_MARKER = "probe"          # @pytest.mark.probe("<catalogue probe>")
PROBE_PROPERTY = "probe"        # <property name="probe" value="..."/> on each JUnit testcase
SETTLE_SECONDS = 120            # how long a check waits for what it checks to settle
RUN_TIMEOUT = 1800
COULD_NOT_CHECK = "could not check"
VERDICT_PROPERTY = "verdict"    # <property name="verdict" value="contradiction|could-not-check"/>
CONTRADICTION, UNCHECKED = "contradiction", "could-not-check"
# S3 answers ServerSideEncryptionConfigurationNotFoundError or NoSuch<Thing>Configuration when a
# bucket has no encryption or public-access-block configuration at all: that is evidence against
# the promise, not a failure to look.
_MISSING_CONFIGURATION = re.compile(r"NoSuch\w*Configuration|\w+ConfigurationNotFoundError")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str        # one line: why it holds, or the first thing that does not
    output: str         # pytest's whole output (its digest is stored with the evidence)
    ran: str            # the command line and the tests it ran
    checked: bool = True  # False: the environment could not be looked at (not evidence either way)


@dataclass(frozen=True)
class Case:
    name: str           # tests/live/x.py::test_y
    outcome: str        # passed | failure | error | skipped
    message: str
    verdict: str = ""   # a failure's VERDICT_PROPERTY; "" when no hook classified it


def _raised_in(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    while tb and tb.tb_next:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}{package}{os.sep}" in tb.tb_frame.f_code.co_filename


def verdict(exc: BaseException) -> str:
    """Whether a live check's exception contradicts the promise or only means it could not look.
    By class, never by message: CouldNotCheck, a connection or endpoint problem and any other S3
    error, and a testinfra backend's RuntimeError (ssh failed) mean could-not-check; a wait that ran out (NotSettled), an S3 NoSuch*Configuration and
    everything else (a bare assert, pytest.fail, a ValueError on a malformed header) contradict."""
    from trustops.controls.evidence import CouldNotCheck
    from trustops.wait import NotSettled

    if isinstance(exc, CouldNotCheck):
        return UNCHECKED
    if isinstance(exc, NotSettled):          # a TimeoutError, hence an OSError: decide it first
        return CONTRADICTION
    response = getattr(exc, "response", None)
    if type(exc).__name__ == "ClientError" and isinstance(response, dict):   # botocore, not imported here
        code = str((response.get("Error") or {}).get("Code", ""))
        return CONTRADICTION if _MISSING_CONFIGURATION.fullmatch(code) else UNCHECKED
    if isinstance(exc, (RuntimeError, AssertionError)) and _raised_in(exc, "testinfra"):
        return UNCHECKED   # testinfra's own: ssh failed (RuntimeError), or a command it ran failed
                           # (check_output's AssertionError, e.g. sysctl missing): not the check's assert
    if isinstance(exc, OSError) or any(k.__module__.startswith("botocore") and k.__name__ == "BotoCoreError"
                                       for k in type(exc).__mro__):
        return UNCHECKED
    return CONTRADICTION


@dataclass(frozen=True)
class LiveCheck:
    probes: tuple[str, ...]
    test: str           # tests/live/x.py::test_y
    doc: str            # its docstring's first sentence ("" when it has none)


def catalogue() -> list[LiveCheck]:
    """Every live check marked with a probe, read from the source (no pytest run, no import)."""
    found = []
    for path in sorted(LIVE_CHECKS.glob("test_*.py")):
        for fn in ast.parse(path.read_text()).body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")):
                continue
            names = tuple(ast.literal_eval(arg) for dec in fn.decorator_list if isinstance(dec, ast.Call)
                          and ast.unparse(dec.func) == f"pytest.mark.{PROBE_MARKER}" for arg in dec.args)
            if names:
                doc = " ".join((ast.get_docstring(fn) or "").split())
                found.append(LiveCheck(names, f"{path.relative_to(ROOT)}::{fn.name}",
                                       doc.split(". ")[0].rstrip(".")))
    return found


def describe(probe: str) -> str | None:
    """The probe in words: the first sentence of the first of its live checks that has a docstring."""
    return next((c.doc for c in catalogue() if probe in c.probes and c.doc), None)


def _cases(junit: Path) -> dict[str, list[Case]]:
    """probe name -> the test cases that carry it."""
    by_probe: dict[str, list[Case]] = {}
    for tc in ET.parse(junit).iter("testcase"):
        bad = [c for c in tc if c.tag in ("failure", "error", "skipped")]
        message = (bad[0].get("message") or (bad[0].text or "").strip()) if bad else ""
        props = [(p.get("name"), p.get("value", "")) for p in tc.iter("property")]
        case = Case(tc.get("classname", "").replace(".", "/") + ".py::" + tc.get("name", ""),
                    bad[0].tag if bad else "passed", " ".join(message.split())[:300],
                    next((v for n, v in props if n == VERDICT_PROPERTY), ""))
        for name, value in props:
            if name == PROBE_PROPERTY:
                by_probe.setdefault(value, []).append(case)
    return by_probe


def _contradicts(case: Case) -> bool:
    """A failure its hook judged a contradiction (see `verdict`); a setup error, a skip, or a
    failure judged could-not-check (or never judged) only means it was not checked."""
    return case.outcome == "failure" and case.verdict == CONTRADICTION


def _judge(cases: list[Case]) -> tuple[bool, bool, str]:
    """(holds, checked, summary) for one probe's test cases."""
    failed = [c for c in cases if _contradicts(c)]
    if failed:
        return False, True, f"{failed[0].name.split('::')[-1]}: {failed[0].message}"
    unchecked = [c for c in cases if c.outcome != "passed"]
    if unchecked:
        return False, False, f"{COULD_NOT_CHECK}: {unchecked[0].name.split('::')[-1]}: {unchecked[0].message}"
    return True, True, f"{len(cases)} live check(s) passed"


def run(probes: list[str], inventory: Path, progress: Callable[[str], None] = lambda m: None,
        settle: float = SETTLE_SECONDS) -> dict[str, ProbeResult]:
    """Runs the live checks of `probes` against `inventory` in one pytest process."""
    inventory = Path(inventory).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        selection = [str(LIVE_CHECKS.relative_to(ROOT)), f"--ansible-inventory={inventory}"]
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rfE", f"--junitxml={junit}",
                *selection, f"--settle-timeout={settle:g}", *(f"--probe={p}" for p in probes)]
        env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        timed_out = threading.Event()
        killer = threading.Timer(RUN_TIMEOUT, lambda: (timed_out.set(), proc.kill()))
        killer.start()
        lines = []
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if "::" in line and line.rstrip().endswith("%]"):     # one line per check as it ends
                    progress(f"  live check {line.rstrip()}")
            proc.wait()
        finally:
            killer.cancel()
        output = "".join(lines)
        try:
            by_probe = _cases(junit) if junit.exists() else {}
        except ET.ParseError:   # a run killed while writing it
            by_probe = {}
    ran = " ".join(shlex.quote(a) for a in ["pytest", *selection])
    tail = next((l.strip() for l in reversed(lines) if l.strip()), "(no output)")[:240]
    results = {}
    for probe in probes:
        cases = by_probe.get(probe)
        if cases:
            ok, checked, summary = _judge(cases)
            results[probe] = ProbeResult(ok, summary, output,
                                         f"{ran}: " + ", ".join(c.name.split("::")[-1] for c in cases), checked)
        elif proc.returncode in (0, 1, 5):
            results[probe] = ProbeResult(False, f"no live check in {selection[0]} is marked probe({probe!r})",
                                         output, ran)
        else:
            why = (f"timed out after {RUN_TIMEOUT}s" if timed_out.is_set() else
                   f"pytest killed by signal {-proc.returncode}" if proc.returncode < 0 else
                   f"pytest exit {proc.returncode}")
            results[probe] = ProbeResult(False, f"{COULD_NOT_CHECK}: {why}: {tail}", output, ran, checked=False)
    return results
