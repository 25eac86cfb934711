"""Benchmark (not a test): Lynis hardening index of a bare lab host against a hardened one, with
converge time (first run) and re-run time. The peer is the same Debian 12 image before the
playbooks. Also checks that sshd and Postgres still answer on the hardened hosts.

    .venv/bin/python -m tests.bench.lynis_bench
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from trustops.lab import environment
from trustops.lab.system import Progress
from trustops.converge import ansible_env

CFG = environment.LabConfig(name="trustops-lynis", port_base=2700, state_dir=ROOT / ".lab-trustops-lynis")


def lynis(container: str) -> tuple[int, list[str]]:
    subprocess.run(["docker", "exec", container, "sh", "-c",
                    "command -v lynis >/dev/null || (apt-get update -qq && apt-get install -y -qq lynis >/dev/null)"],
                   check=True, capture_output=True)
    out = subprocess.run(["docker", "exec", container, "lynis", "audit", "system", "--quick", "--no-colors"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Hardening index : (\d+)", out)
    suggestions = re.findall(r"^\s+\* (.+?) \[(\S+)\]", out, re.M)
    return (int(m.group(1)) if m else -1), [f"{sid}: {text}" for text, sid in suggestions]


def playbook(name: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(CFG.inventory_file),
                           str(ROOT / "ansible" / name)], env=ansible_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:])
    return time.perf_counter() - t


def main() -> None:
    environment.down(CFG, Progress(quiet=True))
    environment.up(CFG, Progress(quiet=True))
    try:
        bare, _ = lynis(CFG.container("app"))
        first = playbook("site.yml")
        rerun = playbook("site.yml")
        playbook("patch.yml")  # a hardened host is also a patched one
        hardened = {role: lynis(CFG.container(role)) for role in ("app", "db", "ops")}
        sshd = subprocess.run(["docker", "exec", CFG.container("db"), "systemctl", "is-active", "ssh"],
                              capture_output=True, text=True).stdout.strip()
        pg = subprocess.run(["docker", "exec", CFG.container("db"), "systemctl", "is-active", "postgresql@15-main"],
                            capture_output=True, text=True).stdout.strip()
        print(f"Lynis hardening index, bare lab host (peer: same image, no playbooks): {bare}")
        for role, (index, _) in hardened.items():
            print(f"Lynis hardening index, hardened {role:3}: {index}   (+{index - bare} over bare)")
        print(f"converge, first run: {first:6.1f} s; re-run (0 changed): {rerun:6.1f} s  ({first / rerun:.1f}x)")
        print(f"after hardening: sshd {sshd}, postgres {pg}")
        print("top remaining Lynis suggestions on the hardened app host:")
        for s in hardened["app"][1][:15]:
            print(f"  {s}")
    finally:
        environment.down(CFG, Progress(quiet=True))


if __name__ == "__main__":
    main()
