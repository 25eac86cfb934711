"""The rules file's shape (monitors/rules.py, RuleModel): every bad rules file is one line naming
the file, the key path and what is allowed; before, a `threshold: 2.7` became 2, a `dport: "22"`
never matched, and a `{bogus}` placeholder raised KeyError at the first detection."""
import re

import pytest
import yaml

from trustops.monitors.cli import main
from trustops.monitors.rules import DEFAULT_RULES, RuleError, load_rules

GOOD = {"name": "UfwSomething", "match": {"type": "ufw"}, "severity": "warning", "summary": "from {source}"}


def _rule(**kw) -> dict:
    return {**GOOD, **kw}


CASES = [
    ({"rules": [_rule(threshold=2.7)]}, r"rules\[0\] \(UfwSomething\)\.threshold: Input should be a valid integer"),
    ({"rules": [_rule(threshold=0)]}, r"rules\[0\] \(UfwSomething\)\.threshold: Input should be greater than or equal to 1"),
    ({"rules": [_rule(match={"type": "pg_auth_fail"})]}, r"\.match\.type: Input should be .*'pg_auth_failed'"),
    ({"rules": [_rule(match={"type": "ufw", "port": 22})]}, r"\.match\.port: Extra inputs are not permitted"),
    ({"rules": [_rule(match={"type": "ufw", "dport": "22"})]}, r"\.match\.dport: Input should be a valid integer"),
    ({"rules": [_rule(match={"dport": 22})]}, r"\.match\.type: Field required"),
    ({"rules": [_rule(summary="{bogus} from {source}")]}, r"\.summary: placeholder \{bogus\} is not one of \{group\}"),
    ({"rules": [_rule(description="{source")]}, r"\.description: a text with \{placeholders\}"),
    ({"rules": [_rule(group_by="address")]}, r"\.group_by: Input should be 'source'"),
    ({"rules": [_rule(after={"count": 3})]}, r"\.after\.match: Field required"),
    ({"rules": [_rule(after={"match": {"type": "ufw"}, "count": 0})]}, r"\.after\.count: Input should be greater"),
    ({"rules": [_rule(after={"match": {"type": "ufw"}}, distinct="user")]}, r"\(UfwSomething\): distinct: a sequence rule"),
    ({"rules": [_rule(window="0s")]}, r"\(UfwSomething\): window: must be more than 0"),
    ({"rules": [_rule(window="soon")]}, r"\.window: a duration such as 30s"),
    ({"rules": [_rule(severity="loud")]}, r"\.severity: Input should be 'critical', 'warning' or 'info'"),
    ({"rules": [_rule(name="lower")]}, r"rules\[0\] \(lower\)\.name: CamelCase"),
    ({"rules": [_rule(thresold=5)]}, r"\.thresold: Extra inputs are not permitted"),
    ({"rules": [_rule(allowlist=["10.0.0.0/33"])]}, r"\.allowlist\[0\]: a CIDR"),
    ({"rules": [_rule(mitre="brute force")]}, r"\.mitre: String should match pattern"),
    ({"rules": [_rule(enabled="no")]}, r"\.enabled: Input should be a valid boolean"),
    ({"rules": [GOOD, GOOD]}, r"rules\[1\] \(UfwSomething\)\.name: UfwSomething is defined twice"),
    ({"defaults": {"window": "soon"}, "rules": [GOOD]}, r"defaults\.window: a duration"),
    ({"rules": []}, r"rules: List should have at least 1 item"),
    ({"rules": ["UfwSomething"]}, r"rules\[0\]: Input should be a valid dictionary"),
    ({"rule": [GOOD]}, r"rules: Field required"),
    (["not", "a", "mapping"], r"\(top\): expected a mapping"),
]


@pytest.mark.parametrize("doc,where", CASES, ids=[str(i) for i in range(len(CASES))])
def test_each_bad_rules_file_is_one_line_naming_file_and_key(tmp_path, capsys, doc, where):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(doc))
    cfg = tmp_path / "monitor.yml"
    cfg.write_text(yaml.safe_dump({"inputs": [{"name": "ufw", "type": "ufw", "path": "/var/log/ufw.log"}],
                                   "rules_file": str(rules)}))
    rc = main(["check-config", "-c", str(cfg)])
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert re.search(f"^trustops-monitor: error: {re.escape(str(rules))}: (.*)?{where}", lines[0]), lines[0]
    assert len(lines[0]) < 600, lines[0]


def test_a_file_that_is_no_yaml_or_missing_is_one_line(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules: [\n  - {name: X")
    with pytest.raises(RuleError, match=rf"^{re.escape(str(bad))}: not valid YAML \(.*line \d") as e:
        load_rules(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(RuleError, match=rf"^{re.escape(str(tmp_path))}/nope.yaml: cannot be read"):
        load_rules(tmp_path / "nope.yaml")


def test_a_bad_override_names_the_config_key(tmp_path, capsys):
    cfg = tmp_path / "monitor.yml"
    cfg.write_text(yaml.safe_dump({"inputs": [{"name": "ufw", "type": "ufw", "path": "/var/log/ufw.log"}],
                                   "rules": {"UfwPortScan": {"distinct": "address"}}}))
    assert main(["check-config", "-c", str(cfg)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert re.search(rf"^trustops-monitor: error: {re.escape(str(cfg))}: rules\.UfwPortScan\.distinct: Input should be",
                     line), line


def test_the_shipped_rules_file_is_valid_and_every_kind_is_in_it():
    rules = load_rules(DEFAULT_RULES)
    assert any(r.after for r in rules) and any(r.distinct for r in rules) and any(r.outside_allowed for r in rules)
