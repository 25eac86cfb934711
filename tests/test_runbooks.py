"""Every alert has a runbook named after it, with every required section, and every command a
runbook tells ops to run exists (a project command with a real subcommand, a project file, or a
standard tool of the hosts)."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"
SECTIONS = ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Escalation", "## Verification"]
HOST_TOOLS = {"sudo", "psql", "journalctl", "systemctl", "ufw", "ss", "curl", "grep", "az", "nmap", "top", "tail",
              "ANSIBLE_CONFIG=ansible/ansible.cfg", "pulumi", "ansible-playbook", "ansible-inventory", "openssl", "head", "date", "rm", "docker", "cat"}
def _subcommands(parser) -> set[str]:
    import argparse
    return {n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}


def _project_commands() -> dict[str, set[str]]:
    """The project's commands and their real subcommands, read from their argument parsers."""
    import runpy

    from trustops.monitors import cli as monitor_cli
    from trustops import cli

    pgbackup = runpy.run_path(str(ROOT / "backups" / "pgbackup.py"), run_name="pgbackup")
    return {"trustops": _subcommands(cli.build_parser()), "trustops-monitor": _subcommands(monitor_cli.build_parser()),
            "trustops-pgbackup": _subcommands(pgbackup["build_parser"]())}


PROJECT = _project_commands()


def alerts() -> list[str]:
    names = [r["name"] for r in yaml.safe_load((ROOT / "monitors" / "rules.yaml").read_text())["rules"]]
    for f in (ROOT / "monitors" / "prometheus").glob("*rules.yml"):
        names += [r["alert"] for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]
    return names


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
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line:
                yield line
    for inline in re.findall(r"`((?:sudo |ANSIBLE_CONFIG=\S+ )?(?:trustops|trustops-monitor|ansible-playbook) [^`]+)`",
                             text):
                yield inline


@pytest.mark.parametrize("path", sorted(RUNBOOKS.glob("*.md")), ids=lambda p: p.name)
def test_every_command_exists(path):
    for cmd in _commands(path.read_text()):
        for part in cmd.split("|"):
            words = shlex.split(part.replace("<", "").replace(">", ""))
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
