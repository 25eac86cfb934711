"""Every alert has a runbook named after it, with every required section, and every command a
runbook tells ops to run exists (a project command with a real subcommand, a project file, or a
standard tool of the hosts). Shell blocks marked runnable (```sh on=<host>) run on the converged lab
as written, so a runbook cannot drift from the system (runbooks/README.md)."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.playbooks import private_ip_of
from trustops.inventory import ROLES

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"
RULE_FILES = [ROOT / "monitors" / "prometheus" / "monitor-rules.yml", ROOT / "ansible" / "roles" / "alerting" / "files" /
              "platform-rules.yml", ROOT / "ansible" / "roles" / "alerting" / "files" / "patch-rules.yml"]
RULE_FILES.append(ROOT / "ansible" / "roles" / "alerting" / "files" / "meta-rules.yml")
RUNNABLE = re.compile(r"^[ \t]*```sh on=(\w+)\n(.*?)^[ \t]*```", re.S | re.M)
SECTIONS = ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Escalation", "## Verification"]
HOST_TOOLS = {"sudo", "psql", "journalctl", "systemctl", "ufw", "ss", "curl", "grep", "az", "nmap", "top", "tail",
              "ANSIBLE_CONFIG=ansible/ansible.cfg", "pulumi", "ansible-playbook", "ansible-inventory", "openssl", "head", "date", "rm", "docker", "cat",
              "apt-get", "apt-cache", "unattended-upgrade", "trustops-host-metrics"}
HOST_TOOLS |= {"pg_lsclusters", "df", "promtool", "amtool"}   # meta-monitoring runbooks
def _subcommands(parser) -> set[str]:
    import argparse
    return {n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}


def _project_commands() -> dict[str, set[str]]:
    """The project's commands and their real subcommands, read from their argument parsers."""
    from trustops import cli
    from trustops.backups import pgbackup
    from trustops.monitors import cli as monitor_cli

    return {"trustops": _subcommands(cli.build_parser()), "trustops-monitor": _subcommands(monitor_cli.build_parser()),
            "trustops-pgbackup": _subcommands(pgbackup.build_parser())}


PROJECT = _project_commands()


def alerts() -> list[str]:
    names = [r["name"] for r in yaml.safe_load((ROOT / "monitors" / "rules.yaml").read_text())["rules"]]
    for f in RULE_FILES:
        names += [r["alert"] for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]
    from trustops.heartbeat import PAGE_ALERT   # paged by the dead man's switch itself, not by a rule
    return names + [PAGE_ALERT]


@pytest.mark.parametrize("name", alerts())
def test_alert_has_a_complete_runbook(name):
    path = RUNBOOKS / f"{name}.md"
    assert path.exists(), f"runbooks/{name}.md missing"
    text = path.read_text()
    assert text.startswith(f"# {name}\n")
    positions = [text.find(s) for s in SECTIONS]
    assert all(p > 0 for p in positions) and positions == sorted(positions), f"{name}: sections {SECTIONS}"
    header = re.search(r"\| (critical|warning|info) \| [^|]+ \| ([A-Z]+-\d\d) \| (\d{4}-\d\d-\d\d) \|", text)
    assert header, f"{name}: header table with severity, owner, control id, last reviewed"


def _commands(text: str):
    for block in re.findall(r"```sh[^\n]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line:
                yield line
    for inline in re.findall(r"`((?:sudo |ANSIBLE_CONFIG=\S+ )?(?:trustops|trustops-monitor|ansible-playbook) [^`]+)`",
                             text):
                yield inline


def _pipeline(cmd: str) -> list[list[str]]:
    """The words of each command in a shell line (split at |, ||, && and ; outside quotes)."""
    lex = shlex.shlex(cmd.replace("<", "").replace(">", ""), posix=True, punctuation_chars="|&;")
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lex:
        if token in ("|", "||", "&&", ";"):
            out.append([])
        else:
            out[-1].append(token)
    return out


def test_pipeline_splits_outside_quotes_only():
    assert _pipeline("curl -s x | grep -E 'a_(b|c)' && ufw status") == [["curl", "-s", "x"], ["grep", "-E", "a_(b|c)"],
                                                                       ["ufw", "status"]]


@pytest.mark.parametrize("path", sorted(RUNBOOKS.glob("*.md")), ids=lambda p: p.name)
def test_every_command_exists(path):
    for cmd in _commands(path.read_text()):
        for words in _pipeline(cmd):
            while words and (words[0] == "sudo" or "=" in words[0] and not words[0].startswith("-")):
                words = words[3:] if words[0] == "sudo" and words[1:2] == ["-u"] else words[1:]
            if not words:
                continue
            tool = words[0]
            if tool in PROJECT:
                assert len(words) > 1 and words[1] in PROJECT[tool], f"{path.name}: {cmd!r}"
            else:
                assert tool in HOST_TOOLS, f"{path.name}: unknown command {tool!r} in {cmd!r}"
            for w in words[1:]:
                if re.match(r"^(ansible|infra|monitors|runbooks|lab)/", w):
                    assert (ROOT / w).exists(), f"{path.name}: {w} does not exist"


def test_monitor_runbook_urls_point_here():
    from trustops.monitors.monitor import DEFAULT_RUNBOOKS
    assert DEFAULT_RUNBOOKS.endswith("/runbooks")


def test_rule_files_exist():
    assert all(f.exists() for f in RULE_FILES), RULE_FILES


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(runbook, host, script) for every shell block marked ```sh on=<host>."""
    out = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for host, body in RUNNABLE.findall(path.read_text()):
            out.append((path.name, host, "\n".join(line.strip() for line in body.splitlines() if line.strip())))
    return out


def test_the_operator_paths_are_marked_runnable():
    """The restore drill's and the backup alerts' commands are among what runs (issue 19)."""
    marked = {(name, line) for name, _, script in runnable_blocks() for line in script.splitlines()}
    for name in ("restore-drill.md", "BackupFailed.md", "RestoreDrillFailed.md"):
        assert (name, "sudo -u postgres trustops-pgbackup list") in marked, name
    assert ("restore-drill.md", "sudo -u postgres trustops-pgbackup drill") in marked
    assert {role for _, role, _ in runnable_blocks()} <= set(ROLES)


@pytest.mark.parametrize("runbook, host, script", runnable_blocks(),
                         ids=[f"{n}:{i}" for i, (n, _, _) in enumerate(runnable_blocks())])
def test_runnable_block_runs_on_the_lab(converged, lab, lab_config, runbook, host, script):
    import subprocess

    ip = private_ip_of(lab_config, host)
    script = script.replace("<db-host>", ip).replace("<host>", ip)
    assert "<" not in script.replace("<<", ""), f"{runbook}: a placeholder left in a runnable block: {script!r}"
    proc = subprocess.run(["docker", "exec", lab_config.container(host), "bash", "-o", "pipefail", "-ec", script],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"{runbook} on {host}: {script!r} exit {proc.returncode}\n"
                                  f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
