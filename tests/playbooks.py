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


