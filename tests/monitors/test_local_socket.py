"""Brute force over Postgres's Unix socket (issue 17, defect 10): failures with no client
address were dropped by every rule; they are grouped as the source "[local]", on both paths."""
import pytest

from trustops.monitors import speedups
from trustops.monitors.monitor import replay


@pytest.mark.parametrize("pure", ["1", "0"])
def test_brute_force_over_the_local_socket_is_detected(monkeypatch, tmp_path, pure):
    if pure == "0" and speedups._speedups is None:
        pytest.skip("C extension not built")
    monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", pure)
    log = tmp_path / "pg.log"
    out = []
    for i in range(12):
        t = f"2026-11-24 19:32:{20 + i:02d}.067 UTC"
        out += [f"{t} [{100 + i}] [unknown]@[unknown] LOG:  connection received: host=[local]",
                f'{t} [{100 + i}] postgres@postgres FATAL:  password authentication failed for user "postgres"',
                f'{t} [{100 + i}] postgres@postgres DETAIL:  Connection matched pg_hba.conf line 3: "local all all md5"']
    log.write_text("\n".join(out) + "\n")
    pipe = replay([log], input_type="postgres", by_source=True)
    assert [(d.rule, d.group) for d in pipe.detections if d.rule == "PostgresBruteForce"] == [
        ("PostgresBruteForce", "[local]")]
    assert {d.group for d in pipe.detections} == {"[local]"}  # PostgresSlowBruteForce too
    assert pipe.by_source == {"pg_auth_failed:bad_password": {"[local]": 12}}
