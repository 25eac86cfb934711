"""ansible-lint's production profile passes on the whole ansible/ tree, and a mistake it cannot see."""
import re
import subprocess
import sys
from pathlib import Path

ANSIBLE = Path(__file__).resolve().parent.parent / "ansible"


def test_ansible_lint_production_profile():
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-lint"), "--offline", "--profile", "production",
                           "--nocolor"], cwd=ANSIBLE, capture_output=True, text=True, timeout=600,
                          env={"ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                               "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Passed" in proc.stdout + proc.stderr


# A regex literal in a Jinja expression whose text (after YAML's own unescaping) holds a doubled
# backslash: Jinja keeps string literals as written, so `\\{` looks for a backslash. Written that
# way in a folded scalar, patch.yml's image regex never matched and no image was ever rebuilt.
_DOUBLED_IN_REGEX = re.compile(r"""(regex_\w+|search|match)\(\s*'[^']*\\\\""")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def test_no_regex_in_a_jinja_expression_looks_for_a_backslash_by_mistake(tmp_path):
    import yaml
    bad = [f"{path.relative_to(ANSIBLE)}: {s.strip()[:120]}"
           for path in sorted(ANSIBLE.rglob("*.yml")) if "/files/" not in str(path)
           for doc in [yaml.safe_load(path.read_text())] for s in _strings(doc) if _DOUBLED_IN_REGEX.search(s)]
    assert bad == []
    # the check itself sees the mistake it is for
    (tmp_path / "t.yml").write_text("x: >-\n  {{ t | regex_findall('a\\\\{b') }}\n")
    assert _DOUBLED_IN_REGEX.search(yaml.safe_load((tmp_path / "t.yml").read_text())["x"])
