"""The monitor's Prometheus alerting rules, checked and unit-tested by promtool."""
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


def test_promtool_unit_tests_pass(promtool):
    proc = subprocess.run([promtool, "test", "rules", "monitor-rules.test.yml"], cwd=RULES,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_is_tested_and_documented():
    rules = [r for g in yaml.safe_load((RULES / "monitor-rules.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((RULES / "monitor-rules.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    for r in rules:
        assert r["alert"] in tested, f"{r['alert']} has no firing promtool test"
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert set(r["annotations"]) >= {"summary", "description", "runbook_url"}
        assert r["annotations"]["runbook_url"].endswith(f"/runbooks/{r['alert']}.md")
