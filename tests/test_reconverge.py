"""A converge repairs drift with the shortcuts that make a converge with nothing to change fast
(issue 19): each role's apt task runs only when package_facts says one of its packages is missing,
and the login.defs, sensitive-file and UFW-default loops carry only the items not yet as wanted.
So on the db host a removed hardening package, a loosened /etc/crontab and a weakened UMASK are put
back by one hardening run, and the run after it changes nothing.

The repair rewrites files AIDE watches, so the host's AIDE baseline is retaken after it (the
service takes one when there is none, as at the end of a converge)."""
from __future__ import annotations

import subprocess

from tests.playbooks import host_of, playbook, recap

# From the hardening role: a package of hardening_install_packages with nothing depending on it,
# a file of its sensitive files, a key of its login.defs settings.
PACKAGE = "apt-show-versions"
CRONTAB = "/etc/crontab"


def _sh(container: str, script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True,
                          text=True, timeout=timeout)


def test_one_run_repairs_a_removed_package_a_loose_file_and_a_weak_login_default(lab, lab_config, converged):
    db, container = host_of(lab_config, "db"), lab_config.container("db")
    drift = _sh(container, f"set -e; DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq {PACKAGE} >/dev/null; "
                           f"chmod 0644 {CRONTAB}; sed -i 's/^UMASK\\t027$/UMASK\\t022/' /etc/login.defs; "
                           "grep -c '^UMASK\t022$' /etc/login.defs")
    assert drift.returncode == 0 and drift.stdout.strip() == "1", drift.stdout + drift.stderr
    try:
        repair = playbook(lab_config.inventory_file, "--tags", "hardening", "--limit", db)
        assert repair.returncode == 0, repair.stdout[-4000:]
        for task in ("Install audit and hardening tools", "Sensitive files get their modes and owners",
                     "Password ageing, umask and hashing set in login.defs"):
            assert f"TASK [hardening : {task}]" in repair.stdout
            after = repair.stdout.split(f"TASK [hardening : {task}]", 1)[1].split("\nTASK [", 1)[0]
            assert f"changed: [{db}]" in after, f"{task} did not repair:\n{after}"
        state = _sh(container, f"dpkg-query -W -f='${{Status}}\\n' {PACKAGE}; stat -c %a {CRONTAB}; "
                               "grep -E '^UMASK' /etc/login.defs")
        assert state.stdout.split("\n")[:3] == ["install ok installed", "600", "UMASK\t027"], state.stdout
        again = playbook(lab_config.inventory_file, "--tags", "hardening", "--limit", db)
        assert again.returncode == 0 and recap(again.stdout)[db]["changed"] == 0, again.stdout[-4000:]
    finally:
        retake = _sh(container, "rm -f /var/lib/aide/aide.db && systemctl start trustops-aide-check.service "
                                "&& test -s /var/lib/aide/aide.db", timeout=900)
        assert retake.returncode == 0, retake.stdout + retake.stderr
