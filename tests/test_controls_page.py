"""The trust page, its JSON feed and its OSCAL export, from the real catalogue and evidence of every
kind of outcome: the feed and OSCAL validate (pydantic, compliance-trestle), and the page is read
in headless Chromium at phone and desktop widths and in print, with screenshots kept."""
import argparse
import base64
import datetime as dt
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from trustops.controls import describe, engine, feed, oscal, report
from trustops.controls.catalogue import load
from trustops.controls.evidence import Evidence, EvidenceStore

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / ".lab" / "screenshots"
NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.timezone.utc)
# per control, by position: every check passes, one fails, one could not be checked, old, never ran
SCENARIOS = ("pass", "fail", "unknown", "old", "none", "pass", "pass")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> tuple[Path, list[engine.ControlStatus]]:
    tmp = tmp_path_factory.mktemp("report")
    store = EvidenceStore(tmp / "evidence.jsonl")
    records = {}
    for i, control in enumerate(load()):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        for j, check in enumerate(control.checks):
            if scenario == "none" or check.key in records:
                continue
            bad = j == 0 and scenario in ("fail", "unknown") or (check.kind == "manual" and not check.reviewed)
            age = dt.timedelta(days=400 if scenario == "old" else 0, minutes=j)
            records[check.key] = Evidence(check.key, check.kind, check.target, (NOW - age).isoformat(), 1.5,
                                          not bad, "could not check: service unreachable" if bad else "fine",
                                          check.key, "0" * 64, ("unknown" if scenario == "unknown" else "fail")
                                          if bad else "pass")
    store.append(records.values())
    statuses = engine.statuses(load(), store, NOW)
    report.write(statuses, tmp / "site", NOW, store)
    return tmp / "site", statuses


def test_the_feed_validates_and_matches_the_statuses(out):
    site, statuses = out
    data = feed.Feed.model_validate_json((site / report.FEED).read_text())
    assert [c.id for c in data.controls] == [s.control.id for s in statuses]
    assert {c.id: c.status for c in data.controls} == {s.control.id: s.status for s in statuses}
    assert data.summary == {cat: sum(describe.category(s) == cat for s in statuses) for cat in describe.CATEGORIES}
    assert {"Verified", "Not verified", "Planned", "Partly verified"} <= {k for k, v in data.summary.items() if v}
    assert data.evidence_chain.intact and data.evidence_chain.head == EvidenceStore(site.parent / "evidence.jsonl").head()
    unknown = [c for c in data.controls if c.status == "unknown"]
    assert unknown and all(any(k.result == "unknown" and k.reason == "could not be checked" for k in c.checks)
                           for c in unknown)
    assert data.last_full_check is None and data.checks_never_run > 0
    raw = json.loads((site / report.FEED).read_text())
    raw["controls"][0]["status"] = "fine, trust us"
    with pytest.raises(ValueError, match="controls.0.status"):
        feed.Feed.model_validate(raw)


HOSTILE_SUMMARY = "test_x: AssertionError: db-7.internal: Postgres listens on 10.20.0.4:5432 (ssh 203.0.113.9)"
HOSTILE_RAN = "pytest tests/live --ansible-inventory=/root/secret-stack/.lab-prod/inventory.yml: test_x"
SECRETS = ("db-7", "10.20.0.4", "203.0.113.9", "secret-stack", "/root/", "inventory.yml")


def _hostile_report(tmp_path, break_chain: bool) -> tuple[Path, list[engine.ControlStatus], EvidenceStore]:
    """Every check's evidence names a host, addresses and the inventory path (as live checks do)."""
    store = EvidenceStore(tmp_path / "secret-evidence.jsonl")
    records = []
    for i, check in enumerate(engine.select(load())):
        result = ("fail", "unknown", "pass")[i % 3]
        records.append(Evidence(check.key, check.kind, check.target, NOW.isoformat(), 1.0, result == "pass",
                                HOSTILE_SUMMARY, HOSTILE_RAN, "0" * 64, result))
    store.append(records)
    if break_chain:
        lines = store.path.read_text().splitlines()
        first = json.loads(lines[0])
        first["summary"] = "edited"
        store.path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    statuses = engine.statuses(load(), store, NOW)
    report.write(statuses, tmp_path / "site", NOW, store)
    return tmp_path / "site", statuses, store


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken-chain"])
def test_no_host_address_or_path_reaches_a_published_file(tmp_path, broken):
    site, _, store = _hostile_report(tmp_path, broken)
    for name in report.PUBLISHED:
        text = (site / name).read_text()
        for secret in (*SECRETS, str(store.path), str(tmp_path)):
            assert secret not in text, f"{name} publishes {secret!r}"
    internal = (site / report.INTERNAL).read_text()   # the details are kept for the people who act on them
    assert "10.20.0.4" in internal and "secret-stack" in internal


def test_a_broken_chain_verifies_nothing_on_the_page_or_in_the_feed(tmp_path):
    site, statuses, _ = _hostile_report(tmp_path, break_chain=True)
    assert not [s for s in statuses if s.status in ("passing", "manual", "partial")]
    assert all(s.status in ("unknown", "not implemented") for s in statuses)
    assert ">Verified 2" not in (site / report.PAGE_HTML).read_text() and "<b>0</b>Verified" in (site / report.PAGE_HTML).read_text()
    assert "Verified 2" not in (site / report.PAGE_MD).read_text()
    data = feed.Feed.model_validate_json((site / report.FEED).read_text())
    assert data.summary["Verified"] == 0 and data.summary["Documented"] == 0
    assert not data.evidence_chain.intact and data.evidence_chain.problem == feed.CHAIN_PROBLEM
    assert {c.reason for c in data.controls if c.checks} == {"could not be checked: evidence chain broken"}
    summary = "\n".join(report.summary_lines(statuses))
    assert "Nothing counts: could not be checked: evidence chain broken" in summary and "Verified now (0)" in summary
    assert "10.20.0.4" not in summary.split("Nothing counts")[0]   # no check's own result is listed
    results = json.loads((site / oscal.RESULTS_FILE).read_text())["assessment-results"]["results"][0]
    assert {f["target"]["status"]["state"] for f in results["findings"]} == {"not-satisfied"}


def test_an_area_name_with_any_characters_exports_to_oscal(tmp_path):
    from trestle.oscal import catalog as cat
    from trustops.controls.catalogue import Check, Control
    c = Control("HOST-09", "Hosting & data (EU)", "A promise", "qa", "Stated", "7d",
                (Check("file", "README.md"),), "")
    doc = oscal.catalog([engine.status(c, {}, NOW)], NOW)
    (tmp_path / "c.json").write_text(oscal.to_json(doc))
    group = cat.Catalog.oscal_read(tmp_path / "c.json").groups[0]
    assert group.title == "Hosting & data (EU)" and group.id == "hosting-data-eu"


def test_the_oscal_export_validates_with_trestle(out, tmp_path):
    from trestle.common import const
    from trestle.core.validator_factory import validator_factory   # imports the validators in trestle's order
    from trestle.oscal.assessment_results import AssessmentResults
    from trestle.oscal.catalog import Catalog

    site, statuses = out
    validator = validator_factory.get(argparse.Namespace(mode=const.VAL_MODE_ALL))
    cat = Catalog.oscal_read(site / oscal.CATALOG_FILE)
    results = AssessmentResults.oscal_read(site / oscal.RESULTS_FILE)
    assert validator.model_is_valid(cat, True, tmp_path)
    assert validator.model_is_valid(results, True, tmp_path)
    ids = [c.id for g in cat.groups for c in g.controls]
    assert ids == [s.control.id.lower() for s in statuses]
    findings = results.results[0].findings
    statements = {p.id for g in cat.groups for c in g.controls for p in c.parts if p.name == "statement"}
    assert all(getattr(f.target.type, "value", f.target.type) == "statement-id" and f.target.target_id in statements
               for f in findings)
    by_id = {f.target.target_id: f.target.status for f in findings}
    for s in statuses:
        state = by_id[s.control.id.lower() + "_smt"].state.value
        assert (state == "satisfied") == (s.status == "passing"), s
    observed = {o.uuid for o in results.results[0].observations}
    assert all(r.observation_uuid in observed for f in findings for r in f.related_observations or [])
    # the validator can fail: two findings with one uuid
    broken = json.loads((site / oscal.RESULTS_FILE).read_text())
    fs = broken["assessment-results"]["results"][0]["findings"]
    fs[1]["uuid"] = fs[0]["uuid"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert not validator.model_is_valid(AssessmentResults.oscal_read(tmp_path / "broken.json"), True, tmp_path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(out):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out[0])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        driver.quit()
        server.shutdown()


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_the_page_on_a_phone_counts_right_loads_nothing_external_and_does_not_scroll_sideways(out, browser):
    from selenium.webdriver.common.by import By

    site, statuses = out
    driver, base = browser
    driver.set_window_size(375, 812)
    driver.get_log("performance")
    driver.get(base + report.PAGE_HTML)
    width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"horizontal scroll at 375px: content {width[0]}px wide"
    requested = _requests(driver)
    assert requested and all(u.startswith(base) for u in requested), requested
    summary = {li.get_attribute("data-category"): int(li.find_element(By.TAG_NAME, "b").text)
               for li in driver.find_elements(By.CSS_SELECTOR, ".summary li")}
    cards = driver.find_elements(By.CSS_SELECTOR, "article.control")
    assert len(cards) == len(statuses)
    shown = {cat: sum(c.get_attribute("data-category") == cat for c in cards) for cat in summary}
    expected = {cat.lower().replace(" ", "-"): sum(describe.category(s) == cat for s in statuses)
                for cat in describe.CATEGORIES}
    assert summary == shown == expected
    for card, s in zip(cards, statuses):
        badge = card.find_element(By.CSS_SELECTOR, ".badge").text
        assert badge.startswith("Verified") == (s.status == "passing"), (s.control.id, badge)
        assert card.size["width"] <= 375
        if s.status == "unknown":
            assert "could not be checked" in card.text and s.public_reason in card.text.replace("\n", " ").lower()
            assert "unreachable" not in card.text      # the check's own words stay in the internal report
    font = driver.execute_script("return parseFloat(getComputedStyle(document.querySelector('.how li')).fontSize)")
    assert font >= 13, f"check lines at {font}px are too small to read on a phone"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / "trust-page-375.png"))
    driver.set_window_size(1280, 900)
    driver.get(base + report.PAGE_HTML)
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    rows = driver.execute_script("return new Set([...document.querySelectorAll('.summary li')]"
                                 ".map(li => li.offsetTop)).size")
    assert rows == 1     # the summary tiles in one row on a desktop
    driver.save_screenshot(str(SCREENSHOTS / "trust-page-1280.png"))


def test_the_page_prints_cleanly(out, browser):
    site, statuses = out
    driver, base = browser
    driver.get(base + report.PAGE_HTML)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    style = driver.execute_script("""const c = getComputedStyle(document.querySelector('.control'));
        const b = getComputedStyle(document.querySelector('.badge'));
        return [c.breakInside, b.backgroundColor, b.color]""")
    assert style == ["avoid", "rgba(0, 0, 0, 0)", "rgb(0, 0, 0)"], style
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = base64.b64decode(driver.print_page())
    pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
    assert pdf.startswith(b"%PDF") and pages >= 3, pages    # 35 controls, none cut off into nothing
    (SCREENSHOTS / "trust-page.pdf").write_bytes(pdf)


def test_the_role_publishes_exactly_the_public_files():
    """The web_front role copies report.PUBLISHED and nothing else from the report directory (a
    glob of *.json would publish any other JSON that lands there)."""
    import re

    import yaml

    tasks = yaml.safe_load((ROOT / "ansible/roles/web_front/tasks/trust_page.yml").read_text())
    copy = next(t for t in tasks if "ansible.builtin.copy" in t and "report" in t["name"])
    assert "fileglob" not in copy["loop"]
    assert tuple(re.findall(r"'([\w.-]+)'", copy["loop"].split("|")[0])) == report.PUBLISHED
    removed = next(t for t in tasks if t.get("ansible.builtin.file", {}).get("state") == "absent")
    assert ("trust-page.html", *removed["loop"]) == report.PUBLISHED


def test_a_documented_control_is_not_claimed_satisfied_in_oscal():
    from trustops.controls.catalogue import Check, Control
    check = Check("manual", "README.md", None, NOW.date().isoformat())
    c = Control("DOC-01", "Process", "A process exists", "qa", "Stated", "7d", (check,), "")
    ev = Evidence(check.key, "manual", "README.md", NOW.isoformat(), 0.1, True, "document present", "read", "0" * 64)
    s = engine.status(c, {check.key: ev}, NOW)
    assert s.status == "manual"
    status = oscal.assessment_results([s], NOW, None).results[0].findings[0].target.status
    value = lambda v: getattr(v, "value", v)  # noqa: E731 - trestle gives enums or strings
    assert value(status.state) == "not-satisfied" and value(status.reason) == "other" and "Documented" in status.remarks
