"""The suite's background bring-up (tests/bringup.py): a failure reaches the lab's tests as one
error with the log's tail, and a session that stops first leaves no bring-up running."""
from __future__ import annotations

import json
import subprocess
import sys
import time

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
