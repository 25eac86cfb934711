"""The catalogue covers every control of the security page, and its evidence points at things
that exist (policies, tests, files)."""
import re
from pathlib import Path

from trustops.controls.catalogue import load
from trustops.infra.policy.rules import RESOURCE_POLICIES, STACK_POLICIES

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "security-page.md"  # the published page, as the project received it


def _page_ids() -> dict[str, str]:
    rows = {}
    for line in PAGE.read_text().splitlines():
        m = re.match(r"^\| ([A-Z]+-\d\d) \|\s*([^|]+?)\s*\|\s*(.+?)\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(3)
    return rows


def test_catalogue_covers_all_35_controls_of_the_page():
    page = _page_ids()
    controls = {c.id: c for c in load()}
    assert len(page) == 35 and set(controls) == set(page)
    for cid, statement in page.items():
        assert controls[cid].statement == statement


def test_evidence_targets_exist():
    policies = set(RESOURCE_POLICIES) | set(STACK_POLICIES)
    for c in load():
        for check in c.checks:
            if check.kind == "pulumi_policy":
                assert check.target in policies, f"{c.id}: no policy {check.target}"
            elif check.kind == "pytest":
                file, _, test = check.target.partition("::")
                assert f"def {test}(" in (ROOT / file).read_text(), f"{c.id}: no test {check.target}"
            elif check.kind == "file":
                assert (ROOT / check.target).exists(), f"{c.id}: no file {check.target}"


def test_a_broken_catalogue_is_refused(tmp_path):
    """One line naming the file and the key path of the first problem, never a traceback."""
    import pytest

    from trustops.controls.catalogue import CatalogueError

    base = "controls:\n  - {id: %s, area: A, statement: S, owner: o, page_status: %s, refresh: %s, checks: %s}\n"
    cases = [("HOST-1", "Stated", "7d", "[]", r"controls\.0\.id: .*'HOST-1'"),
             ("HOST-01", "Done", "7d", "[]", r"controls\.0\.page_status: .*'Done'"),
             ("HOST-01", "Stated", "weekly", "[]", r"controls\.0\.refresh: .*'weekly'"),
             ("HOST-01", "Stated", "7d", "[{kind: vibes, target: x}]", r"controls\.0\.checks\.0\.kind: .*'vibes'"),
             ("HOST-01", "Stated", "7d", "[{kind: file, target: x, pattern: '(('}]",
              r"controls\.0\.checks\.0\.pattern: .*not a regular expression"),
             ("HOST-01", "Stated", "7d", "[{kind: file}]", r"controls\.0\.checks\.0\.target: Field required"),
             ("HOST-01", "Stated", "7d", "[{kind: manual, target: x, reviewed: 2026-02-30}]",
              r"c\.yaml: a value YAML cannot construct: day is out of range"),
             ("HOST-01", "Stated", "7d", "[{kind: manual, target: x, reviewed: soon}]",
              r"controls\.0\.checks\.0\.reviewed: .*'soon'"),
             ("HOST-01", "Stated", "7d", "[{kind: manual, target: x, reviewed: 2999-01-01}]",
              r"controls\.0\.checks\.0\.reviewed: .*a review date in the future \(2999-01-01\)"),
             ("HOST-01", "Stated", "7d", "[], colour: red", r"controls\.0\.colour: Extra inputs")]
    f = tmp_path / "c.yaml"
    for cid, status, refresh, checks, msg in cases:
        f.write_text(base % (cid, status, refresh, checks))
        with pytest.raises(CatalogueError, match=msg) as caught:
            load(f)
        assert "\n" not in str(caught.value)
    one = "  - {id: HOST-01, area: A, statement: S, owner: o, page_status: Stated, refresh: 7d}\n"
    for text, msg in [("controls:\n" + one + one, r"controls: .*HOST-01 is duplicated"),
                      ("controls: [ {id: x\n", r"line \d+: not valid YAML"), ("", "empty file"),
                      ("- just a list\n", r"\(top level\): Input should be a valid dictionary")]:
        f.write_text(text)
        with pytest.raises(CatalogueError, match=msg):
            load(f)
    with pytest.raises(CatalogueError, match="cannot read"):
        load(tmp_path / "missing.yaml")
