"""Running the playbooks against the test lab, shared by the lab tests (ansible, backups, alerting)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from trustops.converge import ansible_env

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "ansible" / "site.yml"
GLOBAL_SYSCTLS = ["kernel/randomize_va_space", "kernel/kptr_restrict", "kernel/dmesg_restrict", "kernel/sysrq",
                  "kernel/yama/ptrace_scope", "fs/suid_dumpable", "fs/protected_hardlinks", "kernel/perf_event_paranoid",
                  "net/netfilter/nf_log_all_netns"]


def machine_sysctls() -> dict[str, str]:
    out = {}
    for key in GLOBAL_SYSCTLS:
        p = Path("/proc/sys") / key
        out[key] = p.read_text().strip() if p.exists() else "absent"
    return out


def playbook(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(PLAYBOOK), *extra], env=ansible_env(), capture_output=True, text=True, timeout=1500)


def recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M):
        recap[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                             "failed": int(m.group(5))}
    return recap


def converge_twice(inventory: Path) -> dict:
    before = machine_sysctls()
    first = playbook(inventory)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = playbook(inventory)
    assert second.returncode == 0, second.stdout[-4000:]
    return {"first": recap(first.stdout), "second": recap(second.stdout), "second_out": second.stdout,
            "sysctls_before": before, "sysctls_after": machine_sysctls()}


def app_monitor_lines_read(lab: dict, lab_config) -> float:
    """Lines the app host's monitor has read from the app's sign-in log, from its metrics (asked
    on the app host, at the host's private address)."""
    from trustops.converge import role_default

    host_ip = next(iter(lab["all"]["children"]["app"]["hosts"].values()))["private_ip"]
    metrics = f"http://{host_ip}:{role_default('monitors', 'monitors_metrics_port')}/metrics"
    out = subprocess.run(["docker", "exec", lab_config.container("app"), "python3", "-c",
                          "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                          f"'{metrics}', timeout=5).read().decode())"],
                         capture_output=True, text=True, timeout=30).stdout
    m = re.search(r'^trustops_monitor_lines_read_total\{input="app"\} (\S+)$', out, re.M)
    return float(m.group(1)) if m else 0.0
