"""Host authentication on the converged test lab, for real: failed SSH logins against every host's
sshd (keys only, hardened) and a sudo failure on db reach Alertmanager on the ops host, from
each host's own monitor (SshBruteForce, SudoFailure) and from Prometheus, which sees the same
source fail on two hosts (SshFailuresAcrossHosts)."""
from __future__ import annotations

import subprocess
import time

from tests.playbooks import host_of
from trustops import opsapi
from trustops.inventory import ROLES
from trustops.wait import until

USER = "trustops-drill"   # no such user on the hosts: each connection is one failed attempt


def _fail_ssh(port: int, key, times: int) -> None:
    for _ in range(times):
        proc = subprocess.run(["ssh", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
                               "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"{USER}@127.0.0.1", "true"],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


def test_ssh_and_sudo_failures_reach_alertmanager(lab, lab_config, converged, tmp_path):
    key = tmp_path / "not-a-deploy-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    started = time.time()
    def fail2ban(role: str, *args: str) -> None:
        subprocess.run(["docker", "exec", lab_config.container(role), "fail2ban-client", *args],
                       capture_output=True, text=True, timeout=60)
    # fail2ban on the hosts would ban this machine's address after five failures (the drill's later
    # attempts then hang, and so would every later SSH of the suite): it ignores everyone meanwhile
    for role in ROLES:
        fail2ban(role, "set", "sshd", "addignoreip", "0.0.0.0/0")
    try:
        _fail_ssh(lab_config.ports("app")[22], key, 10)      # SshBruteForce on app (10 in 10 m)
        # 3+ on two more hosts. On the twin, db and ops are reached only through the jump host (as
        # on Azure), so both see the app host's private address: the source the rule counts.
        _fail_ssh(lab_config.ports("db")[22], key, 3)
        _fail_ssh(lab_config.ports("ops")[22], key, 3)
    finally:
        # fail2ban on the hosts bans this machine's address for those failures, and every later
        # SSH of the suite (Ansible, testinfra) comes from it: lift the ban over docker, not SSH
        for role in ROLES:
            fail2ban(role, "set", "sshd", "delignoreip", "0.0.0.0/0")
            fail2ban(role, "unban", "--all")
    # a password typed (sudo -n would log nothing for a user not in sudoers: it stops before the policy)
    sudo = subprocess.run(["docker", "exec", lab_config.container("db"), "su", "-s", "/bin/bash", "nobody", "-c",
                           "echo wrong | sudo -S -p '' true"], capture_output=True, text=True, timeout=60)
    assert sudo.returncode != 0, sudo.stdout

    am, operator = opsapi.lab_urls(lab_config)[1] + "/api/v2/alerts", opsapi.session(lab_config.state_dir)

    def arrived():
        active = [a for a in operator.get(am, timeout=5).json() if a["status"]["state"] == "active"]

        def find(name, **labels):
            return [a for a in active if a["labels"].get("alertname") == name
                    and all(a["labels"].get(k) == v for k, v in labels.items())]
        found = {"SshBruteForce": find("SshBruteForce", instance=host_of(lab_config, "app")),
                 "SudoFailure": find("SudoFailure", instance=host_of(lab_config, "db"), source="nobody"),
                 "SshFailuresAcrossHosts": find("SshFailuresAcrossHosts")}
        return found if all(found.values()) else None

    found = until(arrived, 120, "SshBruteForce on app, SudoFailure on db and SshFailuresAcrossHosts at Alertmanager",
                  interval=2)
    assert {a["annotations"]["runbook_url"].rsplit("/", 1)[-1] for alerts in found.values() for a in alerts} == {
        "SshBruteForce.md", "SudoFailure.md", "SshFailuresAcrossHosts.md"}
    print(f"\n  host auth alerts at Alertmanager {time.time() - started:.1f}s after the first attempt")
