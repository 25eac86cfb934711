"""Running the playbooks against the test lab, shared by the lab tests (ansible, backups, alerting)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml

from trustops.converge import ansible_env, role_default
from trustops.inventory import ROLES

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "ansible" / "site.yml"
PATCH_PLAYBOOK = ROOT / "ansible" / "patch.yml"
GLOBAL_SYSCTLS = ["kernel/randomize_va_space", "kernel/kptr_restrict", "kernel/dmesg_restrict", "kernel/sysrq",
                  "kernel/yama/ptrace_scope", "fs/suid_dumpable", "fs/protected_hardlinks", "kernel/perf_event_paranoid",
                  "net/netfilter/nf_log_all_netns"]


def role_template(role: str, name: str):
    """A role's template as Ansible's template module renders it (trim_blocks; an undefined variable
    fails; the filters the roles' templates use)."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined,
                             loader=jinja2.FileSystemLoader(str(ROOT / "ansible" / "roles" / role / "templates")))
    env.filters["regex_replace"] = lambda value, pattern, replacement: re.sub(pattern, replacement, value)
    return env.get_template(name)


def machine_sysctls() -> dict[str, str]:
    out = {}
    for key in GLOBAL_SYSCTLS:
        p = Path("/proc/sys") / key
        out[key] = p.read_text().strip() if p.exists() else "absent"
    return out


def playbook(inventory: Path, *extra: str, book: Path = PLAYBOOK) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(book), *extra], env=ansible_env(), capture_output=True, text=True, timeout=1500)


def recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M):
        recap[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                             "failed": int(m.group(5))}
    return recap


def task_output(output: str, header: str) -> str:
    """What a run printed for its first task whose `TASK [...]` header starts with `header` (e.g.
    `hardening : Install auditd`), up to the next task's header."""
    marker = f"TASK [{header}"
    assert marker in output, f"no task {header!r} in the run's output"
    return output.split(marker, 1)[1].split("\nTASK [", 1)[0]


def patch(inventory: Path, report_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """The rolling patch (patch.yml, one host at a time), its reports written to `report_dir`."""
    return playbook(inventory, "-e", f"patch_report_dir={report_dir}", *extra, book=PATCH_PLAYBOOK)


def converge_patch_converge(inventory: Path, report_dir: Path) -> dict:
    """The suite's converges: site.yml, the rolling patch, site.yml again. The second converge's
    recap (changed=0 on every host) shows both that site.yml is idempotent and that a patch run
    leaves the hosts as the converge made them: one converge fewer on the suite's critical path
    than converging twice, patching, and converging a third time (90 s with four hosts)."""
    before = machine_sysctls()
    first = playbook(inventory)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    for stale in report_dir.glob("*.json"):   # a kept lab's earlier bring-up
        stale.unlink()
    patched = patch(inventory, report_dir)
    assert patched.returncode == 0, patched.stdout[-4000:] + patched.stderr[-2000:]
    second = playbook(inventory)
    assert second.returncode == 0, second.stdout[-4000:]
    return {"first": recap(first.stdout), "second": recap(second.stdout), "first_out": first.stdout,
            "second_out": second.stdout, "patch_out": patched.stdout,
            "patch_reports": {p.stem: json.loads(p.read_text()) for p in sorted(report_dir.glob("*.json"))},
            "sysctls_before": before, "sysctls_after": machine_sysctls()}


def _role_hosts(lab_config, role: str) -> dict[str, dict]:
    return yaml.safe_load(lab_config.inventory_file.read_text())["all"]["children"][role]["hosts"]


def host_of(lab_config, role: str) -> str:
    """The inventory name of the lab's first host of `role` (`db` on the flat lab, `db-1` on the
    twin, whatever the stack calls it; the twin's ops-1 of two), the one whose container is
    lab_config.container(role): lab tests name a host by its role, never by a literal."""
    return next(iter(_role_hosts(lab_config, role)))


def private_ip_of(lab_config, role: str) -> str:
    """The private address of the lab's first host of `role`, as the inventory gives it."""
    return next(iter(_role_hosts(lab_config, role).values()))["private_ip"]


def lab_hosts(lab_config) -> set[str]:
    """The inventory names of all the lab's hosts (the twin has two ops hosts)."""
    return {name for role in ROLES for name in _role_hosts(lab_config, role)}


def monitor_metrics(lab_config, role: str) -> str:
    """The monitor's metrics on the lab's host of `role`, asked on that host at its private
    address (where the monitor listens; from the machine only ops may ask, as on Azure)."""
    from trustops.converge import role_default

    metrics = f"http://{private_ip_of(lab_config, role)}:{role_default('monitors', 'monitors_metrics_port')}/metrics"
    return subprocess.run(["docker", "exec", lab_config.container(role), "python3", "-c",
                           "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                           f"'{metrics}', timeout=5).read().decode())"],
                          capture_output=True, text=True, timeout=30).stdout


def monitor_metric(lab_config, role: str, sample: str) -> float:
    """One sample of a host's monitor metrics (name and labels as exposed), 0 when absent."""
    m = re.search(rf"^{re.escape(sample)} (\S+)$", monitor_metrics(lab_config, role), re.M)
    return float(m.group(1)) if m else 0.0


def app_monitor_lines_read(lab_config) -> float:
    """Lines the app host's monitor has read from the app's sign-in log."""
    return monitor_metric(lab_config, "app", 'trustops_monitor_lines_read_total{input="app"}')


def app_live_slot(lab_config) -> str:
    """The app's live blue/green slot, as the app role recorded it on the app host."""
    return subprocess.run(["docker", "exec", lab_config.container("app"), "cat", role_default("app", "app_live_slot_file")],
                          capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def lab_root_held_out(lab_config, role: str):
    """The host of `role` without the lab's public root in its system store (an image without the
    endpoint's CA) for the block; put back after it, whatever the block did."""
    from trustops.lab import webpki

    def store(command: str) -> None:
        done = subprocess.run(["docker", "exec", lab_config.container(role), "sh", "-c",
                               f"{command} && update-ca-certificates --fresh >/dev/null"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    held = "/root/.lab-root-held"
    store(f"mv {webpki.HOST_TRUST_PATH} {held}")
    try:
        yield
    finally:
        store(f"mv {held} {webpki.HOST_TRUST_PATH}")
