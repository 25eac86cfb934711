"""The Prometheus alerting rules (the monitor's health, the platform's backups, certificates and
firewalls), checked and unit-tested by promtool."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "monitors" / "prometheus"


@pytest.fixture(scope="module")
def promtool():
    tool = shutil.which("promtool")
    assert tool, "promtool missing: `make test` installs Debian's prometheus package"
    return tool


RULE_FILES = sorted(p.name for p in RULES.glob("*-rules.yml"))


def test_rule_files_are_found():
    assert RULE_FILES == ["monitor-rules.yml", "platform-rules.yml"]


@pytest.mark.parametrize("rules", RULE_FILES)
def test_promtool_unit_tests_pass(promtool, rules):
    proc = subprocess.run([promtool, "test", "rules", rules.replace(".yml", ".test.yml")], cwd=RULES,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rules_file", RULE_FILES)
def test_every_rule_is_tested_and_documented(rules_file):
    import re

    rules = [r for g in yaml.safe_load((RULES / rules_file).read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((RULES / rules_file.replace(".yml", ".test.yml")).read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    for r in rules:
        assert re.match(r"^[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+$", r["alert"]), f"{r['alert']}: CamelCase"
        assert r["alert"] in tested, f"{r['alert']} has no firing promtool test"
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert set(r["annotations"]) >= {"summary", "description", "runbook_url"}
        assert r["annotations"]["runbook_url"].endswith(f"/runbooks/{r['alert']}.md")
