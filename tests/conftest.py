"""Shared fixtures. The `lab` fixture brings up a lab of its own (name trustops-test, ports
2300+) so tests never touch an operator's running lab; CI runs it for real. It is the twin (the
`lab` Pulumi stack materialised) unless TRUSTOPS_LAB_KIND=flat."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
# the project's tools (ansible, trustops) run from its virtualenv even when it is not activated
os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"

from trustops.lab import environment  # noqa: E402  (after the PATH above)
from trustops.lab.system import Progress  # noqa: E402

# Two test runs on one machine (two checkouts, or two people) each name their own lab.
_TEST_LAB_NAME = os.environ.get("TRUSTOPS_TEST_LAB", "trustops-test")
# The suite runs on the flat lab (twin tests on a twin beside it) until the whole suite passes on
# the twin within CI's budget: TRUSTOPS_TEST_LAB_KIND=twin runs it there (issue 16).
TEST_LAB = environment.LabConfig(name=_TEST_LAB_NAME, port_base=int(os.environ.get("TRUSTOPS_TEST_PORT_BASE", "2300")),
                                 state_dir=PROJECT_DIR / f".lab-{_TEST_LAB_NAME}",
                                 kind=os.environ.get("TRUSTOPS_TEST_LAB_KIND", "flat"))


@pytest.fixture(scope="session")
def lab_config() -> environment.LabConfig:
    return TEST_LAB


@pytest.fixture(scope="session")
def lab(lab_config):
    """A running lab; removed at the end unless TRUSTOPS_KEEP_LAB=1."""
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
    for item in items:
        if {"lab", "twin_lab"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def converged(lab, lab_config):
    """The test lab converged with site.yml, twice (the second run's recap proves idempotence).
    TRUSTOPS_TEST_ASSUME_CONVERGED=1 (a lab kept with TRUSTOPS_KEEP_LAB=1 and converged since the
    last change): no converge, so a file group can be re-run in minutes; the tests that read the
    two runs' recaps skip."""
    from tests.playbooks import converge_twice

    if os.environ.get("TRUSTOPS_TEST_ASSUME_CONVERGED") == "1":
        return _NoRecaps()
    return converge_twice(lab_config.inventory_file)


class _NoRecaps(dict):
    def __missing__(self, key):
        pytest.skip(f"TRUSTOPS_TEST_ASSUME_CONVERGED=1: no converge was run, so no {key!r} recap")
