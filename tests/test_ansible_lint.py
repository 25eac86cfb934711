"""ansible-lint's production profile passes on the whole ansible/ tree."""
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
