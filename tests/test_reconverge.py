"""A converge repairs drift with the shortcuts that make a converge with nothing to change fast
(issue 19): each role's apt task runs only when dpkg's status says one of its packages is not fully
installed, and the login.defs, sensitive-file and UFW-default loops carry only the items not yet as
wanted. So on the db host a removed hardening package, a loosened /etc/crontab and a weakened UMASK
are put back by one hardening run, and the run after it changes nothing. And a package run killed
inside dpkg (SIGKILL, as a converge cut short or a VM stopped mid-upgrade) is finished by the next
converge, where apt alone refuses to run.

The repairs rewrite files AIDE watches, so the host's AIDE baseline is retaken once after both (the
service takes one when there is none, as at the end of a converge)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.playbooks import host_of, playbook, recap, task_output

# From the hardening role: a package of hardening_install_packages with nothing depending on it,
# a file of its sensitive files, a key of its login.defs settings.
PACKAGE = "apt-show-versions"
CRONTAB = "/etc/crontab"
ASSEMBLER = "/usr/bin/as"          # binutils', on every host; a link the role follows to its file
HOME = "/home/deploy"
LEGACY = "telnet"                  # of its legacy packages: installed here, removed by the run
SSH_USER = "drifter"               # given to the role beside deploy, made outside its group


def _sh(container: str, script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def aide_retaken(lab_config):
    """db's AIDE baseline retaken once, after this file's repairs."""
    yield
    retake = _sh(lab_config.container("db"), "rm -f /var/lib/aide/aide.db && systemctl start trustops-aide-check"
                                              ".service && test -s /var/lib/aide/aide.db", timeout=900)
    assert retake.returncode == 0, retake.stdout + retake.stderr


def test_one_run_repairs_a_removed_package_a_loose_file_and_a_weak_login_default(lab, lab_config, converged,
                                                                                  aide_retaken):
    """Also a legacy package installed, an assembler, a home directory and an SSH user gone astray:
    their reads name only what is not as wanted, so once repaired their loops are empty (and cost no
    worker)."""
    db, container = host_of(lab_config, "db"), lab_config.container("db")
    drift = _sh(container, f"set -e; DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq {PACKAGE} >/dev/null; "
                           f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {LEGACY} >/dev/null; "
                           f"chmod 0644 {CRONTAB}; sed -i 's/^UMASK\\t027$/UMASK\\t022/' /etc/login.defs; "
                           f"chmod 0755 {ASSEMBLER} {HOME}; useradd --no-create-home {SSH_USER}; "
                           "grep -c '^UMASK\t022$' /etc/login.defs")
    assert drift.returncode == 0 and drift.stdout.strip() == "1", drift.stdout + drift.stderr
    extra = ("--tags", "hardening", "--limit", db, "-e", json.dumps({"hardening_ssh_users": ["deploy", SSH_USER]}))
    try:
        repair = playbook(lab_config.inventory_file, *extra)
        assert repair.returncode == 0, repair.stdout[-4000:]
        for task in ("Remove legacy network services and clients", "Install audit and hardening tools",
                     "Sensitive files get their modes and owners",
                     "Password ageing, umask and hashing set in login.defs", "Compilers and assemblers for root only",
                     "Home directories are private (0750)",
                     "Users who log in by SSH are in it (before sshd starts requiring it)"):
            after = task_output(repair.stdout, f"hardening : {task}]")
            assert f"changed: [{db}]" in after, f"{task} did not repair:\n{after}"
        state = _sh(container, f"dpkg-query -W -f='${{Status}}\\n' {PACKAGE}; stat -c %a {CRONTAB}; "
                               f"grep -E '^UMASK' /etc/login.defs; stat -L -c %a {ASSEMBLER} {HOME}; id -nG {SSH_USER}; "
                               f"dpkg-query -W -f='${{db:Status-Abbrev}}\\n' {LEGACY} 2>/dev/null | grep -q '^i' "
                               "&& echo installed || echo removed")
        assert state.stdout.split("\n")[:7] == ["install ok installed", "600", "UMASK\t027", "700", "750",
                                                f"{SSH_USER} ssh-users", "removed"], state.stdout
        # the roles read dpkg's status again after the removal (the removal may take others along)
        assert f"ok: [{db}]" in task_output(repair.stdout, "hardening : Installed packages after the removals]")
        again = playbook(lab_config.inventory_file, *extra)
        assert again.returncode == 0 and recap(again.stdout)[db]["changed"] == 0, again.stdout[-4000:]
    finally:
        _sh(container, f"userdel {SSH_USER}")


# Reinstall the package and SIGKILL dpkg (and apt) at dpkg's first journal entry: the package is
# left half-installed or unpacked with "reinstall required", the journal unreplayed. apt-get refuses
# every run after it, and Ansible's apt module (python-apt) calls the package installed, reports ok
# and leaves it so.
_KILL_INSIDE_DPKG = f"""
export DEBIAN_FRONTEND=noninteractive
(apt-get install -y -qq --reinstall {PACKAGE} > /dev/null 2>&1 &)
for i in $(seq 1 3000); do
  set -- /var/lib/dpkg/updates/[0-9]*
  if [ -e "$1" ]; then pkill -9 -x dpkg; pkill -9 -x apt-get; break; fi
  sleep 0.01
done
while pgrep -r D,R,S -x apt-get >/dev/null || pgrep -r D,R,S -x dpkg >/dev/null; do sleep 0.2; done
dpkg-query -W -f='${{db:Status-Abbrev}}' {PACKAGE}
"""
def _mid_install(status_abbrev: str) -> bool:
    """dpkg's abbreviated status says half-installed, or reinstall required (`iHR`, `iUR`)."""
    return status_abbrev[1:2] == "H" or status_abbrev[2:3] == "R"


_CLEAN_UP = f"DEBIAN_FRONTEND=noninteractive dpkg --configure -a; apt-get install -y -qq --reinstall {PACKAGE}"


def test_a_converge_finishes_a_package_run_killed_inside_dpkg(lab, lab_config, converged, aide_retaken):
    db, container = host_of(lab_config, "db"), lab_config.container("db")
    repaired = False
    try:
        for _ in range(5):     # a kill that lands after the unpack leaves no reinstall to do: again
            state = _sh(container, _KILL_INSIDE_DPKG, timeout=120).stdout.strip()
            if _mid_install(state):
                break
            _sh(container, _CLEAN_UP)
        assert _mid_install(state), f"{PACKAGE} is {state!r} after five kills, not left mid-install"
        refused = _sh(container, f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PACKAGE}", timeout=120)
        assert "dpkg was interrupted" in refused.stderr, refused.stdout + refused.stderr
        repair = playbook(lab_config.inventory_file, "--tags", "packages", "--limit", db)
        assert repair.returncode == 0, repair.stdout[-4000:]
        after = _sh(container, f"dpkg-query -W -f='${{Status}}\\n' {PACKAGE}; "
                               "find /var/lib/dpkg/updates -name '[0-9]*'; dpkg --audit")
        # without the repair the run passes too: apt's module calls the package installed and leaves it
        assert after.stdout.strip() == "install ok installed", f"{state!r} before the converge: {after.stdout}"
        shown = task_output(repair.stdout, "hardening : A package run cut short is finished")
        assert f"changed: [{db}]" in shown, shown   # (on a clean host it is not: the bring-up's second converge)
        repaired = True
    finally:
        if not repaired:
            _sh(container, _CLEAN_UP)   # a failed run's mess


def test_the_metrics_units_stopped_are_started_again_by_one_start(lab, lab_config, converged):
    """The metrics role starts the node exporter and its two timers' units in one task after one
    flush (each had its own): stopped, all three run again after a converge of the role alone."""
    db, container = host_of(lab_config, "db"), lab_config.container("db")
    units = "prometheus-node-exporter trustops-host-metrics.timer trustops-pending-updates.path"
    assert _sh(container, f"systemctl stop {units}").returncode == 0
    run = playbook(lab_config.inventory_file, "--tags", "metrics", "--limit", db)
    assert run.returncode == 0, run.stdout[-4000:]
    assert f"changed: [{db}]" in task_output(run.stdout, "metrics : The node exporter, the host facts timer and the")
    state = _sh(container, f"systemctl is-active {units}")
    assert state.stdout.split() == ["active"] * 3, state.stdout + state.stderr
