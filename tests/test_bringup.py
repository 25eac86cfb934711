"""The suite's background bring-up (tests/bringup.py): a failure reaches the lab's tests as one
error with the log's tail, and a session that stops first leaves no bring-up running."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import bringup
from trustops.lab import environment
from trustops.wait import until


@pytest.fixture
def cfg(tmp_path):
    return environment.LabConfig(name="trustops-bringuptest", port_base=2600, state_dir=tmp_path / ".lab-x", kind="flat")


def test_a_failed_bring_up_is_one_error_naming_the_cause(monkeypatch, cfg):
    def refuse(c, progress):
        raise environment.LabError("port 127.0.0.1:2622 (for x:22) is already in use")
    monkeypatch.setattr(bringup, "TEST_LAB", cfg)
    monkeypatch.setattr(bringup.environment, "up", refuse)
    assert bringup.main(["--converge"]) == 1
    result, _ = bringup._paths(cfg)
    assert json.loads(result.read_text()) == {"error": "LabError: port 127.0.0.1:2622 (for x:22) is already in use"}

    bg = bringup.Background(cfg, converge=True)
    bg.proc = subprocess.Popen([sys.executable, "-c", "print('the log says why')"], stdout=subprocess.DEVNULL)
    bg.log.write_text("step one\nthe log says why\n")
    with pytest.raises(RuntimeError, match=r"(?s)bring-up failed: LabError: port .*already in use\n.*the log says why"):
        bg.wait()


def test_a_process_that_dies_without_a_result_is_named(cfg):
    bg = bringup.Background(cfg, converge=False)
    cfg.state_dir.parent.mkdir(parents=True, exist_ok=True)
    bg.log.write_text("")
    bg.proc = subprocess.Popen([sys.executable, "-c", "import os; os._exit(9)"])
    with pytest.raises(RuntimeError, match="exited 9 and wrote no result"):
        bg.wait()


def test_stop_ends_the_process_and_its_children(cfg):
    bg = bringup.Background(cfg, converge=False)
    bg.proc = subprocess.Popen([sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '300']); "
                                "time.sleep(300)"], start_new_session=True)
    time.sleep(0.5)
    bg.stop()
    assert bg.proc.returncode is not None
    assert until(lambda: subprocess.run(["pgrep", "-s", str(bg.proc.pid)]).returncode == 1, 5,
                 "the child sleep gone with its session", interval=0.1)


def test_the_session_steps_back_while_the_bring_up_runs_and_returns_after(tmp_path):
    """Run in a session of its own, so the suite's own niceness is not touched: while the bring-up
    runs, the session weighs less (its autogroup at SESSION_NICE_WHILE_BRINGING_UP) and the
    bring-up, a session of its own, keeps its weight; after the wait the session's is back, and
    after a wait interrupted by Ctrl-C and after stop() too."""
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("the kernel has no autogroups (the session steps back by its process's niceness)")
    script = f"""
import json, os, sys
from pathlib import Path
from tests import bringup
from trustops.lab import environment
cfg = environment.LabConfig(name="trustops-nicetest", port_base=2600, state_dir=Path({str(tmp_path / '.lab-x')!r}),
                            kind="flat")
seen = {{"before": bringup.session_nice()}}
bg = bringup.Background(cfg, converge=False)
bg.start([sys.executable, "-c", "import time; time.sleep(2); open({str(tmp_path / '.lab-x.bringup.json')!r}, 'w').write('{{}}')"])
seen["during"] = bringup.session_nice()
seen["child"] = int(Path(f"/proc/{{bg.proc.pid}}/autogroup").read_text().split()[-1])
bg.wait()
seen["after"] = bringup.session_nice()

bg = bringup.Background(cfg, converge=False)
bg.start([sys.executable, "-c", "import time; time.sleep(300)"])
def interrupted(*a, **k):
    raise KeyboardInterrupt
real_wait, bg.proc.wait = bg.proc.wait, interrupted
try:
    bg.wait()
except KeyboardInterrupt:
    seen["after_ctrl_c"] = bringup.session_nice()
bg.proc.wait = real_wait
bg.stop()
seen["stopped"] = bg.proc.returncode is not None

bg = bringup.Background(cfg, converge=False)
bg.start([sys.executable, "-c", "import time; time.sleep(300)"])
seen["during_again"] = bringup.session_nice()
bg.stop()
seen["after_stop"] = bringup.session_nice()
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                         cwd=bringup.PROJECT_DIR, start_new_session=True)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.splitlines()[-1])
    back = bringup.SESSION_NICE_WHILE_BRINGING_UP
    assert seen == {"before": 0, "during": back, "child": 0, "after": 0, "after_ctrl_c": 0, "stopped": True,
                    "during_again": back, "after_stop": 0}
