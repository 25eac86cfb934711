"""The Prometheus alerting rules (the monitor's health beside the monitor in monitors/prometheus/, the
platform's backups, certificates and firewalls in the alerting role that installs them), checked and
unit-tested by promtool."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Each rule file with its promtool test beside it.
RULE_PATHS = {"monitor-rules.yml": ROOT / "monitors" / "prometheus" / "monitor-rules.yml",
              "platform-rules.yml": ROOT / "ansible" / "roles" / "alerting" / "files" / "platform-rules.yml",
              "patch-rules.yml": ROOT / "ansible" / "roles" / "alerting" / "files" / "patch-rules.yml"}
RULE_PATHS["meta-rules.yml"] = ROOT / "ansible" / "roles" / "alerting" / "files" / "meta-rules.yml"


@pytest.fixture(scope="module")
def promtool():
    tool = shutil.which("promtool")
    assert tool, "promtool missing: `make test` installs Debian's prometheus package"
    return tool


RULE_FILES = sorted(RULE_PATHS)


def test_rule_files_are_found():
    assert all(p.exists() and p.with_name(p.name.replace(".yml", ".test.yml")).exists() for p in RULE_PATHS.values())
    found = sorted(p.name for d in {p.parent for p in RULE_PATHS.values()} for p in d.glob("*-rules.yml"))
    assert found == RULE_FILES, "a rule file nobody installs or tests"


@pytest.mark.parametrize("rules", RULE_FILES)
def test_promtool_unit_tests_pass(promtool, rules):
    proc = subprocess.run([promtool, "test", "rules", rules.replace(".yml", ".test.yml")], cwd=RULE_PATHS[rules].parent,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rules_file", RULE_FILES)
def test_every_rule_is_tested_and_documented(rules_file):
    import re

    path = RULE_PATHS[rules_file]
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load(path.with_name(rules_file.replace(".yml", ".test.yml")).read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    for r in rules:
        # Watchdog: the dead man's switch's conventional one-word name (issue 19, kube-prometheus)
        assert r["alert"] == "Watchdog" or re.match(r"^[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+$", r["alert"]), \
            f"{r['alert']}: CamelCase"
        assert r["alert"] in tested, f"{r['alert']} has no firing promtool test"
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert set(r["annotations"]) >= {"summary", "description", "runbook_url"}
        assert r["annotations"]["runbook_url"].endswith(f"/runbooks/{r['alert']}.md")
