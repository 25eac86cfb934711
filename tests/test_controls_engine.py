"""The evidence engine derives every status from stored evidence: failing checks show failing,
old evidence shows stale, and nothing is reported as passing (or "Verified") without evidence."""
import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from trustops.controls import engine, report
from trustops.controls.catalogue import Check, Control, load

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def control(*checks: Check, gaps: str = "", page_status: str = "Stated") -> Control:
    return Control("TEST-01", "Testing", "A promise", "qa", page_status, "7d", tuple(checks), gaps)


def evidence(check: Check, ok: bool, age_days: float, result: str = "") -> engine.Evidence:
    started = (NOW - dt.timedelta(days=age_days)).isoformat(timespec="seconds")
    return engine.Evidence(check.key, check.kind, check.target, started, 0.1, ok, "s", "r", "0" * 64, result)


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
    appear exactly when both checks have ok evidence within the refresh period; a check that could
    not be made is never counted as passing, nor as failing."""
    a, b = Check("command", "a"), Check("command", "b")
    states = {"none": None, "ok": (True, 1), "bad": (False, 1), "old": (True, 30), "old-bad": (False, 30),
              "unknown": (False, 1, "unknown")}
    for (sa, ea), (sb, eb), gaps in itertools.product(states.items(), states.items(), ["", "gap"]):
        latest = {c.key: evidence(c, *e) for c, e in ((a, ea), (b, eb)) if e}
        st = engine.status(control(a, b, gaps=gaps), latest, NOW)
        really = sa == "ok" and sb == "ok" and not gaps
        assert (st.status == "passing") == really, (sa, sb, gaps, st)
        assert (st.status == "failing") == ("bad" in sa or "bad" in sb), (sa, sb, st)
        assert (st.status == "unknown") == ("unknown" in (sa, sb) and "bad" not in sa + sb), (sa, sb, st)
        md = report.public_markdown([st], NOW)
        row = next(line for line in md.splitlines() if line.startswith("| TEST-01 |"))
        assert ("Verified" in row) == really
        assert (f"Verified: {int(really)}" in md)
        page = report.public_html([st], NOW)
        assert ('data-category="verified"' in page.split("</ul>", 1)[1]) == really
        assert (st.overclaim is None) == really


def test_could_not_check_is_unknown_with_its_reason_never_failing(tmp_path, monkeypatch):
    """pip-audit, for real, with its vulnerability service unreachable (a proxy on a closed
    loopback port): the control is unknown, with the reason, and not "Verified"."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    audited, pinned = Check("code", "dependencies-audited"), Check("code", "dependencies-pinned")
    latest = run([audited, pinned], tmp_path).latest()
    ev = latest[audited.key]
    assert ev.result == "unknown" and not ev.ok and "could not" in ev.summary, ev
    assert latest[pinned.key].result == "pass"
    st = engine.status(control(audited, pinned), latest)
    assert st.status == "unknown" and "dependencies-audited" in st.reason and "could not" in st.reason
    assert report.public_label(st) == "Not verified: could not be checked" and st.overclaim
    lines = report.summary_lines([st])
    at = lines.index(next(l for l in lines if l.startswith("  Could not be checked (1)")))
    assert "code:dependencies-audited" in lines[at + 1] and not any("Failing" in l for l in lines)


def test_an_audit_that_finds_a_vulnerability_fails_even_if_some_could_not_be_looked_up(monkeypatch):
    import subprocess
    import types

    from trustops.controls import properties

    out = json.dumps({"dependencies": [{"name": "a", "skip_reason": "service unreachable"},
                                       {"name": "b", "version": "1", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2"]}]}]})
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout=out, stderr="", returncode=1))
    problems, _ = properties.dependencies_audited()
    assert problems == ["b 1: PYSEC-1 (fixed in 2)"]


def test_a_planned_control_whose_checks_pass_is_flagged_as_an_underclaim():
    a = Check("command", "a")
    fresh = {a.key: evidence(a, True, 1)}
    planned = engine.status(control(a, page_status="Planned", gaps="the cloud key provider"), fresh, NOW)
    assert planned.underclaim and "ready to be promised" in planned.underclaim and not planned.overclaim
    assert report.public_label(planned) == "Planned"     # the page says what the page says
    internal = report.internal_markdown([planned], NOW)
    assert "## Where the page claims less than the evidence shows\n\n- **TEST-01**" in internal
    assert "under-claims TEST-01" in "\n".join(report.summary_lines([planned]))
    assert engine.status(control(a, page_status="Planned"), {a.key: evidence(a, False, 1)}, NOW).underclaim is None
    assert engine.status(control(a), fresh, NOW).underclaim is None


def test_the_closing_summary_reads_in_order_verified_full_check_person():
    ok, test, doc = Check("command", "a"), Check("pytest", "tests/x.py::test_y"), Check("manual", "docs/e.md")
    statuses = [engine.status(Control("A-01", "X", "p", "o", "Stated", "7d", (ok,)), {ok.key: evidence(ok, True, 0)}, NOW),
                engine.status(Control("B-01", "X", "p", "o", "Stated", "7d", (ok, test)), {ok.key: evidence(ok, True, 0)}, NOW),
                engine.status(Control("C-01", "X", "p", "o", "Stated", "365d", (doc,)),
                              {doc.key: evidence(doc, False, 0)}, NOW)]
    lines = report.summary_lines(statuses)
    starts = [next(i for i, l in enumerate(lines) if l.startswith(p)) for p in
              ("  Verified now (1): A-01", "  Need the full check (1)", "  Need a person (1")]
    assert starts == sorted(starts), lines
    assert "B-01" in lines[starts[1]] and "about 15 minutes" in lines[starts[1]]
    assert lines[starts[2] + 1].split() == ["docs/e.md", "for", "C-01"]
    assert not any(l.lstrip().startswith("Failing") for l in lines)   # a missing document is a person's job


def test_a_crashing_check_is_failing_evidence_and_a_torn_line_is_skipped(tmp_path, monkeypatch):
    def boom(check, ctx):
        raise RuntimeError("check exploded")
    monkeypatch.setitem(engine.SINGLE_RUNNERS, "code", boom)
    check = Check("code", "anything")
    store = run([check], tmp_path)
    with open(store.path, "a") as f:
        f.write('{"check": "half a rec')   # a crash mid-write
    ev = store.latest()[check.key]
    assert not ev.ok and ev.result == "fail" and "check exploded" in ev.summary
    monkeypatch.undo()
    run([check], tmp_path)          # the next record is not glued onto the torn line
    assert store.latest()[check.key].summary == "no code property named anything"
    assert store.verify().torn == () and store.verify().records == 2   # the append cut the torn line


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
    stacks = len(list(engine.ROOT.glob("Pulumi.*.yaml")))
    assert latest[checks[0].key].ok and latest[checks[0].key].summary == f"0 violations on {stacks} stacks"
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
    assert page.count("<h2 ") == len({c.area for c in load()})
    assert "## Where the page claims more than the evidence shows" in internal and "**AUTH-01**" in internal
    capsys.readouterr()
    assert cli.main(["controls", "status", "--json", "--evidence", str(ev)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 35 and {r["status"] for r in rows} <= set(engine.STATUSES)
    import re
    for r in rows:   # each control's card on the public page says "Verified" exactly when it passes
        card = re.search(rf'<article class="control" id="{r["id"].lower()}".*?</article>', page, re.S).group(0)
        badge = re.search(r'<span class="badge [^"]*">([^<]*)</span>', card).group(1)
        assert badge.startswith("Verified") == (r["status"] == "passing"), (r, badge)
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


def test_a_command_missing_timed_out_or_killed_could_not_be_checked(tmp_path, monkeypatch):
    missing = Check("command", "no-such-command-anywhere --flag")
    killed = Check("command", "sh -c 'kill -9 $$'")
    latest = run([missing, killed], tmp_path).latest()
    assert latest[missing.key].result == "unknown" and "not installed" in latest[missing.key].summary
    assert latest[killed.key].result == "unknown" and "signal 9" in latest[killed.key].summary
    monkeypatch.setattr(engine, "COMMAND_TIMEOUT", 0.2)
    slow = Check("command", "sleep 5")
    assert run([slow], tmp_path).latest()[slow.key].result == "unknown"


def test_a_skipped_or_torn_pytest_check_could_not_be_checked(tmp_path, monkeypatch):
    real = engine.subprocess.Popen

    def junit(xml: str):
        def popen(argv, **kw):
            path = next(a.split("=", 1)[1] for a in argv if a.startswith("--junitxml="))
            Path(path).write_text(xml)
            return real(["true"], **kw)
        return popen

    check = Check("pytest", "tests/test_controls_catalogue.py::test_a_broken_catalogue_is_refused")
    for xml in ('<testsuites><testsuite><testcase classname="tests.test_controls_catalogue" '
                'name="test_a_broken_catalogue_is_refused"><skipped message="no lab"/></testcase>'
                '</testsuite></testsuites>',
                '<testsuites><testsuite><testcase classname="tests.test_con'):   # torn: killed mid-write
        monkeypatch.setattr(engine.subprocess, "Popen", junit(xml))
        ev = run([check], tmp_path).latest()[check.key]
        assert ev.result == "unknown" and "could not check" in ev.summary, ev


def test_future_dated_evidence_proves_nothing():
    check = Check("file", "README.md")
    ev = evidence(check, True, -1)    # dated a day ahead
    s = engine.status(control(check), {check.key: ev}, NOW)
    assert s.status == "unknown" and "future" in s.reason and "future" in s.public_reason
    assert engine.status(control(check), {check.key: evidence(check, True, -2 / 24 / 60)}, NOW).status == "passing"
