"""Shared fixtures. The `lab` fixture brings up a lab of its own (name trustops-test, ports
2300+) so tests never touch an operator's running lab; CI runs it for real. It is a twin unless
TRUSTOPS_TEST_LAB_KIND=flat. Its bring-up and converge start with the session, in a process
of their own (tests/bringup.py), and the tests that need no lab run first, meanwhile."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
# the project's tools (ansible, trustops) run from its virtualenv even when it is not activated
os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"

from trustops.lab import environment  # noqa: E402  (after the PATH above)
from trustops.lab.system import Progress  # noqa: E402

from tests.bringup import TEST_LAB, Background  # noqa: E402

# The lab's bring-up and converge, started when collection ends (when any lab test is selected).
_BRINGUP: Background | None = None


@pytest.fixture(scope="session")
def lab_config() -> environment.LabConfig:
    return TEST_LAB


def _say(request):
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    return (lambda line: reporter.write_line(line)) if reporter else (lambda line: None)


@pytest.fixture(scope="session")
def lab(lab_config, request):
    """A running lab (converged too when the session has converged tests: its tests never run
    beside a converge); removed at the end unless TRUSTOPS_KEEP_LAB=1."""
    if _BRINGUP is not None:   # its inventory as written (a JSON round trip would make int keys strings)
        _BRINGUP.wait(_say(request))
        inv = yaml.safe_load(lab_config.inventory_file.read_text())
    else:
        inv = environment.up(lab_config, Progress())
    yield inv
    if os.environ.get("TRUSTOPS_KEEP_LAB") != "1":
        environment.down(lab_config, Progress(quiet=True))


@pytest.fixture(scope="session")
def twin_lab(lab_config, request):
    """A twin lab (built from the `lab` Pulumi stack): the test lab itself (the default kind), so
    the suite has one lab; only when the suite runs on the flat lab (TRUSTOPS_LAB_KIND=flat) a twin
    of its own beside it (name <test lab>-twin, ports +700)."""
    if lab_config.kind == "twin":
        request.getfixturevalue("lab")
        yield lab_config
        return
    name = f"{lab_config.name}-twin"
    cfg = environment.LabConfig(name=name, port_base=lab_config.port_base + 700,
                                state_dir=PROJECT_DIR / f".lab-{name}", kind="twin")
    environment.up(cfg, Progress())
    yield cfg
    if os.environ.get("TRUSTOPS_KEEP_LAB") != "1":
        environment.down(cfg, Progress(quiet=True))


def pytest_configure(config):
    from trustops.controls.live import PROBE_MARKER
    config.addinivalue_line("markers", f"{PROBE_MARKER}(*names): the catalogue probes a live check (tests/live) "
                                       "gives evidence for")


def pytest_collection_modifyitems(items):
    """Lab tests are marked and go last (in their order): the others run while the lab comes up."""
    for item in items:
        if {"lab", "twin_lab"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker("lab") is not None)


def pytest_collection_finish(session):
    global _BRINGUP
    lab_tests = [item for item in session.items if "lab" in getattr(item, "fixturenames", ())]
    if not lab_tests or session.config.option.collectonly:
        return
    converge = os.environ.get("TRUSTOPS_TEST_ASSUME_CONVERGED") != "1" and \
        any("converged" in item.fixturenames for item in lab_tests)
    _BRINGUP = Background(TEST_LAB, converge)
    _BRINGUP.start()


def pytest_sessionfinish(session):
    """A bring-up no lab test waited for (the session stopped first), or still running (its wait
    was interrupted), is stopped and its lab removed; the session's niceness is its own again."""
    if _BRINGUP is None:
        return
    running = _BRINGUP.proc is not None and _BRINGUP.proc.poll() is None
    if not _BRINGUP.waited or running:
        _BRINGUP.stop()
        if os.environ.get("TRUSTOPS_KEEP_LAB") != "1":
            environment.down(TEST_LAB, Progress(quiet=True))
    _BRINGUP.step_forward()


@pytest.fixture(scope="session")
def converged(lab, lab_config, request, tmp_path_factory):
    """The test lab converged with site.yml, patched host by host, converged again (the second
    converge's recap proves idempotence and that patching undid nothing).
    TRUSTOPS_TEST_ASSUME_CONVERGED=1 (a lab kept with TRUSTOPS_KEEP_LAB=1 and converged since the
    last change): no converge, so a file group can be re-run in minutes; the tests that read the
    two runs' recaps skip."""
    from tests.playbooks import converge_patch_converge

    if os.environ.get("TRUSTOPS_TEST_ASSUME_CONVERGED") == "1":
        return _NoRecaps()
    if _BRINGUP is not None and _BRINGUP.converge:
        return _BRINGUP.wait(_say(request))["converged"]
    return converge_patch_converge(lab_config.inventory_file, tmp_path_factory.mktemp("patch-reports"))


class _NoRecaps(dict):
    def __missing__(self, key):
        pytest.skip(f"TRUSTOPS_TEST_ASSUME_CONVERGED=1: no converge was run, so no {key!r} recap")
