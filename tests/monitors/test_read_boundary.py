"""Where reads split the stream does not change the result (issue 17, defect 6): a password
failure waits for its DETAIL line across reads; before, a FATAL at the very end of one read was
decided as a bad password, and role enumeration was under-counted."""
import pytest

from trustops.monitors import speedups
from trustops.monitors.monitor import InputSpec, Pipeline
from trustops.monitors.rules import load_rules
from trustops.monitors.speedups import make_engine

PREFIX = "%m [%p] %h%q %u@%d "


@pytest.fixture(params=["1", "0"], ids=["pure", "c"])
def pipe(request, monkeypatch):
    """A Postgres pipeline on the pure-Python path, then on the C one (skipped where it is not built)."""
    if request.param == "0" and speedups._speedups is None:
        pytest.skip("C extension not built")
    monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", request.param)
    return Pipeline([InputSpec(name="pg", type="postgres", path="x", log_line_prefix=PREFIX)],
                    make_engine(load_rules()))


def _attempt(i: int) -> list[bytes]:
    t = f"2026-11-24 19:32:{20 + i:02d}.067 UTC"
    return [f"{t} [{100 + i}] 203.0.113.5 [unknown]@[unknown] LOG:  connection received: host=203.0.113.5".encode(),
            f'{t} [{100 + i}] 203.0.113.5 r{i}@db FATAL:  password authentication failed for user "r{i}"'.encode(),
            f'{t} [{100 + i}] 203.0.113.5 r{i}@db DETAIL:  Role "r{i}" does not exist.'.encode()]


def test_a_detail_line_in_the_next_read_still_decides_the_failure(pipe):
    lines = [line for i in range(4) for line in _attempt(i)]
    reads = [lines[0:2], lines[2:5], lines[5:8], lines[8:11], lines[11:]]
    assert all(b" FATAL:  " in r[-1] for r in reads[:4])
    for read in reads:
        pipe.process("pg", read)
    pipe.finish("pg")
    assert pipe.events[("postgres", "pg_auth_failed:unknown_role")] == 4
    assert ("postgres", "pg_auth_failed:bad_password") not in pipe.events
    assert [d.rule for d in pipe.detections] == ["PostgresRoleEnumeration"]


def test_a_failure_without_detail_is_released_at_the_end(pipe):
    pipe.process("pg", _attempt(0)[:2])
    failures = ("postgres", "pg_auth_failed:bad_password")
    assert failures not in pipe.events
    pipe.finish("pg", idle=3600)       # the input gave lines just now: it still waits
    assert failures not in pipe.events
    pipe.finish("pg")
    assert pipe.events[failures] == 1
