"""Running Ansible from the control node: the environment it needs, reachability, and a converge of
ansible/site.yml that shows each task as it starts (the full output goes to a log)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trustops.lab.system import LabError, Progress

PROJECT_DIR = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = PROJECT_DIR / "ansible"


def tool(name: str) -> str:
    """A tool installed beside this Python (the project's virtualenv), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def role_default(role: str, key: str):
    """A role's default, as ansible/roles/<role>/defaults/main.yml defines it (the one place a port
    or path of a role is written down; Python reads it from there)."""
    import yaml

    return yaml.safe_load((ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml").read_text())[key]


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"))


def ansible_ping(inventory_file: Path) -> None:
    proc = subprocess.run([tool("ansible"), "-i", str(inventory_file), "all", "-m", "ansible.builtin.ping",
                           "-o"], env=ansible_env(), capture_output=True, text=True)
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        raise LabError(f"ansible cannot reach every lab host (exit {proc.returncode}): "
                       f"{(proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:]}")


def converge(inventory_file: Path, log_file: Path, progress: Progress, tags: list[str] | None = None,
             limit: str | None = None) -> None:
    """ansible-playbook site.yml (optionally only some tags or hosts), showing each task as it starts;
    the full output goes to a log."""
    extra = (["--tags", ",".join(tags)] if tags else []) + (["--limit", limit] if limit else [])
    progress.step(f"converging the hosts with ansible/site.yml{''.join(' ' + a for a in extra)} (full log: {log_file})")
    with open(log_file, "w") as log:
        proc = subprocess.Popen([tool("ansible-playbook"), "-i", str(inventory_file), str(ANSIBLE_DIR / "site.yml"),
                                 *extra], env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        recap = False
        for line in proc.stdout:  # type: ignore[union-attr]
            log.write(line)
            if line.startswith("TASK ["):
                progress.step("  " + line[6:].split("]")[0])
            elif line.startswith("PLAY RECAP"):
                recap = True
            elif recap and line.strip():
                print("  " + line.rstrip(), file=sys.stderr)
        code = proc.wait()
    if code != 0:
        tail = [l for l in log_file.read_text().splitlines() if "fatal:" in l or "ERROR" in l][-3:]
        raise LabError(f"ansible-playbook site.yml failed (exit {code}): {' | '.join(tail)[:600]}; see {log_file}")
