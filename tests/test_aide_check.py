"""trustops-aide-check: AIDE's summary read into metrics, on AIDE 0.18's real report text; a failed or
garbled run is a failed check (never "no changes"), and the metrics file is replaced whole."""
from __future__ import annotations

import pytest

from trustops import aide_check

# AIDE 0.18.3's report on a lab host after a file was added to /usr/local/bin (summary and lists)
CHANGED = """Start timestamp: 2026-12-02 11:49:18 +0000 (AIDE 0.18.3)
AIDE found differences between database and filesystem!!
Ignored e2fs attributes: EINV

Summary:
  Total number of entries:\t17660
  Added entries:\t\t1
  Removed entries:\t\t0
  Changed entries:\t\t3

---------------------------------------------------
Added entries:
---------------------------------------------------

f+++++++++++++++++: /usr/local/bin/evil-test

---------------------------------------------------
Changed entries:
---------------------------------------------------

d =.... .c.. .. . : /usr
d =b... .c.. .. . : /usr/local
d =.... mc.n .. . : /usr/local/bin

"""
CLEAN = """Start timestamp: 2026-12-02 03:40:01 +0000 (AIDE 0.18.3)
AIDE found NO differences between database and filesystem. Looks okay!!
"""


@pytest.mark.parametrize("code, output, want", [
    (5, CHANGED, {"added": 1, "removed": 0, "changed": 3}),
    (0, CLEAN, {"added": 0, "removed": 0, "changed": 0}),
    (17, "Configuration error", None),            # aide(1): 14 and up are errors
    (18, CLEAN, None),
    (0, "", None),                                  # killed or truncated: no summary, not "clean"
    (4, CHANGED.split("Summary:")[0], None),        # changes said, counts missing
    (-9, CHANGED, None),                            # SIGKILL
])
def test_parse(code, output, want):
    assert aide_check.parse(code, output) == want


def test_render_a_failed_run_has_no_counts_but_a_time():
    text = aide_check.render(None, 1_700_000_000)
    assert "trustops_aide_last_run_success 0" in text and "trustops_aide_last_run_timestamp_seconds 1700000000" in text
    assert "trustops_aide_changed_entries{" not in text


def test_main_writes_the_metrics_file_atomically(tmp_path, monkeypatch):
    out = tmp_path / "aide.prom"
    out.write_text("old\n")
    db = tmp_path / "aide.db"
    db.write_text("baseline")
    monkeypatch.setattr(aide_check, "check", lambda config: {"added": 0, "removed": 3, "changed": 0})
    assert aide_check.main([str(out), "--db", str(db)]) == 0
    assert 'trustops_aide_changed_entries{kind="removed"} 3' in out.read_text()
    assert {p.name for p in tmp_path.iterdir()} == {"aide.prom", "aide.db"}   # no temporary file left


def test_no_baseline_takes_one(tmp_path, monkeypatch):
    db = tmp_path / "aide.db"
    calls = []
    monkeypatch.setattr(aide_check, "baseline", lambda config, path: calls.append(path) or dict.fromkeys(aide_check.KINDS, 0))
    monkeypatch.setattr(aide_check, "check", lambda config: pytest.fail("checked against no baseline"))
    assert aide_check.main([str(tmp_path / "aide.prom"), "--db", str(db)]) == 0
    assert calls == [db]


def test_a_missing_metrics_directory_is_one_line(tmp_path, capsys):
    assert aide_check.main([str(tmp_path / "no" / "aide.prom")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
