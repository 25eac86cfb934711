"""The evidence engine derives every status from stored evidence: failing checks show failing,
old evidence shows stale, and nothing is reported as passing (or "Verified") without evidence."""
import datetime as dt
import itertools
import json

import pytest

from trustops.controls import engine, report
from trustops.controls.catalogue import Check, Control, load

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def control(*checks: Check, gaps: str = "", page_status: str = "Stated") -> Control:
    return Control("TEST-01", "Testing", "A promise", "qa", page_status, "7d", tuple(checks), gaps)


def evidence(check: Check, ok: bool, age_days: float) -> engine.Evidence:
    started = (NOW - dt.timedelta(days=age_days)).isoformat(timespec="seconds")
    return engine.Evidence(check.key, check.kind, check.target, started, 0.1, ok, "s", "r", "0" * 64)


def run(checks, tmp_path):
    store = engine.EvidenceStore(tmp_path / "ev.jsonl")
    engine.run_checks(list(checks), store, engine.Context(progress=lambda m: None))
    return store


def test_a_failing_check_makes_the_control_failing(tmp_path):
    good = Check("command", "true")
    bad = Check("command", "sh -c 'echo disk on fire; exit 3'")
    store = run([good, bad], tmp_path)
    st = engine.status(control(good, bad), store.latest())
    assert st.status == "failing" and bad.key in st.reason
    ev = store.latest()[bad.key]
    assert not ev.ok and ev.summary == "exit 3: disk on fire"
    assert st.overclaim  # the page states it; the evidence does not hold it up
    assert engine.status(control(good), store.latest()).status == "passing"


def test_evidence_older_than_the_refresh_period_is_stale(tmp_path):
    check = Check("command", "true")
    fresh = {check.key: evidence(check, True, 1)}
    old = {check.key: evidence(check, True, 8)}
    assert engine.status(control(check), fresh, NOW).status == "passing"
    st = engine.status(control(check), old, NOW)
    assert st.status == "stale" and "older than 7d" in st.reason
    assert report.public_label(st) == "Not yet verified"


def test_statuses_for_missing_gaps_manual_and_nothing(tmp_path):
    a, b = Check("command", "true"), Check("file", "README.md")
    assert engine.status(control(), {}).status == "not implemented"
    assert engine.status(control(a, b), {}, NOW).status == "stale"          # never checked
    assert engine.status(control(a, b), {a.key: evidence(a, True, 0)}, NOW).status == "partial"
    both = {a.key: evidence(a, True, 0), b.key: evidence(b, True, 0)}
    assert engine.status(control(a, b, gaps="the app"), both, NOW).status == "partial"
    doc = Check("manual", "README.md", reviewed="2026-11-20")
    assert engine.status(control(doc), {doc.key: evidence(doc, True, 0)}, NOW).status == "manual"
    old_review = Check("manual", "README.md", reviewed="2025-01-01")
    assert engine.status(control(old_review), {old_review.key: evidence(old_review, True, 0)}, NOW).status == "stale"


def test_the_report_never_says_verified_without_passing_evidence():
    """Every combination of evidence states for a two-check control: "Verified" and "passing"
    appear exactly when both checks have ok evidence within the refresh period."""
    a, b = Check("command", "a"), Check("command", "b")
    states = {"none": None, "ok": (True, 1), "bad": (False, 1), "old": (True, 30), "old-bad": (False, 30)}
    for (sa, ea), (sb, eb), gaps in itertools.product(states.items(), states.items(), ["", "gap"]):
        latest = {c.key: evidence(c, *e) for c, e in ((a, ea), (b, eb)) if e}
        st = engine.status(control(a, b, gaps=gaps), latest, NOW)
        really = sa == "ok" and sb == "ok" and not gaps
        assert (st.status == "passing") == really, (sa, sb, gaps, st)
        md = report.public_markdown([st], NOW)
        assert ("Verified" in md) == really
        assert (st.overclaim is None) == really


def test_a_crashing_check_is_failing_evidence_and_a_torn_line_is_skipped(tmp_path, monkeypatch):
    def boom(check, ctx):
        raise RuntimeError("probe exploded")
    monkeypatch.setitem(engine.SINGLE_RUNNERS, "probe", boom)
    check = Check("probe", "anything")
    store = run([check], tmp_path)
    with open(store.path, "a") as f:
        f.write('{"check": "half a rec')   # a crash mid-write
    ev = store.latest()[check.key]
    assert not ev.ok and "probe exploded" in ev.summary


def test_probes_without_an_inventory_fail_with_a_hint(tmp_path):
    store = run([Check("probe", "ufw-active")], tmp_path)
    assert "trustops lab up" in store.latest()["probe:ufw-active"].summary


def test_file_pattern_and_unknown_names_fail(tmp_path):
    checks = [Check("file", "README.md", pattern=r"^make up"), Check("file", "README.md", pattern="no such words"),
              Check("code", "no-such-property"), Check("file", "nope.md")]
    latest = run(checks, tmp_path).latest()
    assert [latest[c.key].ok for c in checks] == [True, False, False, False]


def test_policies_are_evaluated_on_every_stack(tmp_path):
    checks = [Check("pulumi_policy", "eu-only-locations"), Check("pulumi_policy", "no-such-policy")]
    latest = run(checks, tmp_path).latest()
    assert latest[checks[0].key].ok and latest[checks[0].key].summary == "0 violations on 3 stacks"
    assert not latest[checks[1].key].ok


def test_pytest_checks_read_each_tests_outcome(tmp_path):
    passing = Check("pytest", "tests/test_controls_catalogue.py::test_a_broken_catalogue_is_refused")
    missing = Check("pytest", "tests/test_controls_catalogue.py::test_that_does_not_exist")
    latest = run([passing, missing], tmp_path).latest()
    assert latest[passing.key].ok and latest[passing.key].summary == "1 passed"
    assert not latest[missing.key].ok


def test_the_cli_writes_the_trust_page_and_flags_overclaims(tmp_path, capsys):
    from trustops import cli

    ev = tmp_path / "ev.jsonl"
    code = cli.main(["controls", "check", "--kind", "file", "--kind", "manual", "--evidence", str(ev)])
    out = capsys.readouterr().out
    assert code == 1 and "failing" in out      # the manual documents are not in the repo yet
    assert cli.main(["controls", "report", "--evidence", str(ev), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "trust-page.html").read_text()
    internal = (tmp_path / "r" / "internal-report.md").read_text()
    assert page.count("<h2>") == len({c.area for c in load()})
    assert "## Where the page claims more than the evidence shows" in internal and "**AUTH-01**" in internal
    capsys.readouterr()
    assert cli.main(["controls", "status", "--json", "--evidence", str(ev)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 35 and {r["status"] for r in rows} <= set(engine.STATUSES)
    import re
    for r in rows:   # each control's row on the public page says "Verified" exactly when it passes
        row = re.search(rf"<tr><td>{r['id']}</td>.*?</tr>", page).group(0)
        assert ("Verified" in row) == (r["status"] == "passing"), (r, row)
    with pytest.raises(SystemExit):
        cli.main(["controls", "check", "--kind", "vibes"])
    assert cli.main(["controls", "check", "--control", "NOPE-99", "--evidence", str(ev)]) == 1


def test_no_secrets_finds_a_committed_key(tmp_path):
    import secrets
    import string
    import subprocess

    from trustops.controls import properties

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "clean.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert properties.no_secrets(tmp_path)[0] == []
    key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    (tmp_path / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{key}"\n')   # made now, never committed here
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    problems, _ = properties.no_secrets(tmp_path)
    assert any(p.startswith("settings.py:1: AWS Access Key") for p in problems), problems


def test_the_repository_itself_has_no_secrets():
    from trustops.controls import properties

    problems, _ = properties.no_secrets()
    assert problems == [], "detect-secrets findings (a real secret, or a reviewed false positive for "\
                           "controls/secrets-allowlist.yaml): " + "; ".join(problems)
