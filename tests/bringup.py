"""The suite's lab, brought up and converged in a process of its own that starts with the session,
so the tests that need no lab run meanwhile (they come first; the lab's tests wait for it).

A process, not a thread: tests monkeypatch trustops.lab's functions, and a thread would run the
patched ones. What the process leaves beside the lab's state directory: `<state>.bringup.json`
({"converged": ...} with --converge, {} without, or {"error": ...}) and its full output in
`<state>.bringup.log`, the rolling patch's reports in `<state>.patch-reports/`; the inventory is
the lab's own file.

    python -m tests.bringup [--converge]     (the lab named by TRUSTOPS_TEST_LAB* as in conftest)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from trustops.lab import environment
from trustops.lab.system import Progress

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Two test runs on one machine (two checkouts, or two people) each name their own lab.
_TEST_LAB_NAME = os.environ.get("TRUSTOPS_TEST_LAB", "trustops-test")
# The suite runs on a twin, as `make up` does (TRUSTOPS_TEST_LAB_KIND=flat: on the flat lab, the
# twin's own tests on a twin beside it).
TEST_LAB = environment.LabConfig(name=_TEST_LAB_NAME, port_base=int(os.environ.get("TRUSTOPS_TEST_PORT_BASE", "2300")),
                                 state_dir=PROJECT_DIR / f".lab-{_TEST_LAB_NAME}",
                                 kind=os.environ.get("TRUSTOPS_TEST_LAB_KIND", "twin"))


def _paths(cfg: environment.LabConfig) -> tuple[Path, Path]:
    return (cfg.state_dir.parent / f"{cfg.state_dir.name}.bringup.json",
            cfg.state_dir.parent / f"{cfg.state_dir.name}.bringup.log")


def _patch_reports(cfg: environment.LabConfig) -> Path:
    """Where the bring-up's rolling patch writes its reports (beside the lab's state, as the log)."""
    return cfg.state_dir.parent / f"{cfg.state_dir.name}.patch-reports"


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    from tests.playbooks import converge_patch_converge

    result, _ = _paths(TEST_LAB)
    try:
        environment.up(TEST_LAB, Progress())
        doc: dict = {}
        if "--converge" in argv:
            # each task's and role's time, for the log (the suite's budget is mostly this converge)
            os.environ["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks,ansible.posix.profile_roles"
            doc["converged"] = converge_patch_converge(TEST_LAB.inventory_file, _patch_reports(TEST_LAB))
            for run in ("first", "patch", "second"):
                out = doc["converged"][f"{run}_out"]
                print(f"--- {run}: {out[out.rfind('PLAY RECAP'):]}", flush=True)
        _write(result, doc)
        return 0
    except BaseException as exc:  # noqa: BLE001 - whatever stopped it is the fixture's error
        traceback.print_exc()
        _write(result, {"error": f"{type(exc).__name__}: {str(exc)[-3000:]}"})
        return 1


# The tests that need no lab share the machine's two cores with the bring-up, the session's
# critical path (the lab's tests wait for its converge). The scheduler weighs each session's
# autogroup (and Docker's cgroup, all the lab's hosts together) as one: a busy test took a core
# from four hosts' dpkg. So the session's autogroup steps back to this niceness while the bring-up,
# a session of its own, runs, and returns to its own after (measured here: a busy loop beside four
# in containers got 93 % of a core at 0, 10 % at 10).
SESSION_NICE_WHILE_BRINGING_UP = 10
_AUTOGROUP = Path("/proc/self/autogroup")


def session_nice(nice: int | None = None) -> int:
    """This session's niceness as the scheduler weighs it against others (its autogroup's; the
    process's where the kernel has no autogroups), set to `nice` when given; the old value. A
    session killed before it steps forward again keeps the niceness until it ends."""
    try:
        old = int(_AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        old = os.getpriority(os.PRIO_PROCESS, 0)
        if nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        return old
    if nice is not None:
        for _ in range(30):
            try:
                _AUTOGROUP.write_text(f"{nice}\n")
                break
            except BlockingIOError:     # without CAP_SYS_ADMIN, one autogroup change per 100 ms machine-wide
                time.sleep(0.11)
        else:
            raise BlockingIOError(f"{_AUTOGROUP}: the kernel refused the niceness change for 3 s")
    return old


class Background:
    """The bring-up process, seen from the test session."""

    def __init__(self, cfg: environment.LabConfig, converge: bool):
        self.cfg, self.converge = cfg, converge
        self.result, self.log = _paths(cfg)
        self.proc: subprocess.Popen | None = None
        self.waited = False
        self._own_nice: int | None = None

    def start(self, argv: list[str] | None = None) -> None:
        """Start the bring-up (`argv`: another command in its place, for tests), then step the
        session back (SESSION_NICE_WHILE_BRINGING_UP) until it is done."""
        self.result.parent.mkdir(parents=True, exist_ok=True)
        self.result.unlink(missing_ok=True)
        argv = argv or [sys.executable, "-m", "tests.bringup", *(["--converge"] if self.converge else [])]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)   # its ansible-playbook goes with it
        try:
            own = session_nice()
            if own < SESSION_NICE_WHILE_BRINGING_UP:
                session_nice(SESSION_NICE_WHILE_BRINGING_UP)
                self._own_nice = own
        except OSError:     # the session keeps its weight: slower, not wrong
            self._own_nice = None

    def step_forward(self) -> None:
        """The session's own niceness again, once the bring-up is over (or the session ends)."""
        if self._own_nice is not None:
            try:
                session_nice(self._own_nice)
            except OSError:     # without the autogroup, only root lowers a process's niceness again
                pass
            self._own_nice = None

    def stop(self) -> None:
        """The session ends before any lab test waited (aborted, or -x), or while one waited
        (Ctrl-C): stop it, children too."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.step_forward()

    def wait(self, say=lambda line: None) -> dict:
        """Everything the process does (the lab's tests need it converged, not converging)."""
        assert self.proc is not None, "the bring-up was never started"
        self.waited = True
        try:
            if self.proc.poll() is None:
                started = time.monotonic()
                say(f"[lab] waiting for the test lab's bring-up and converge (log: {self.log})")
                self.proc.wait()
                say(f"[lab] bring-up done after {time.monotonic() - started:.0f} s more")
        finally:            # an interrupted wait too (Ctrl-C): the terminal's session is this one
            self.step_forward()
        doc = json.loads(self.result.read_text()) if self.result.exists() else \
            {"error": f"the bring-up process exited {self.proc.returncode} and wrote no result"}
        if "error" in doc:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-15:]
            raise RuntimeError(f"the test lab's bring-up failed: {doc['error']}\n" + "\n".join(tail))
        return doc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
