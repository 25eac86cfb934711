"""The trustops_files action and module (ansible/action_plugins, ansible/library) and the strategy's
skip without a worker (ansible/strategy_plugins/mitogen_linear.py), run by ansible-playbook with the
project's ansible.cfg against this machine (connection local, into a temporary directory): the
converge's own path, Mitogen included, without the lab."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trustops.converge import ansible_env

TEMPLATE = "# {{ ansible_managed | default('none') | length > 0 }}\n{% for n in names %}\nname {{ n }}\n{% endfor %}\nlast\n"


def _run(tmp_path: Path, tasks: str, *extra: str, vars_: dict | None = None, strategy: str | None = None):
    (tmp_path / "play.yml").write_text(f"- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}")
    (tmp_path / "vars.json").write_text(json.dumps({"d": str(tmp_path / "out"), **(vars_ or {})}))
    env = {**ansible_env(), "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1"}
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "@vars.json", "-e", f"ansible_python_interpreter={sys.executable}", *extra, "play.yml"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)


def _changed(proc) -> int:
    line = next(line for line in proc.stdout.splitlines() if line.startswith("localhost") and "ok=" in line)
    return int(line.split("changed=")[1].split()[0])


FILES_TASK = """
    - name: Files
      trustops_files:
        owner: root
        group: root
        files:
          - path: "{{ d }}"
            state: directory
            mode: "0750"
          - path: "{{ d }}/content.conf"
            content: "a = {{ 40 + 2 }}\\n"
            mode: "0640"
          - path: "{{ d }}/template.conf"
            template: t.j2
            mode: "0644"
          - path: "{{ d }}/src.bin"
            src: blob.bin
            group: nogroup
            mode: "0600"
          - path: "{{ d }}/link"
            state: link
            src: content.conf
          - path: "{{ d }}/gone"
            state: absent
      register: r
    - name: What changed
      ansible.builtin.copy:
        dest: "{{ d }}/../changed.json"
        content: "{{ r.changed_paths | to_json }}"
"""


@pytest.fixture()
def playdir(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text(TEMPLATE)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    return tmp_path


def test_files_directories_links_and_absences_then_nothing_to_change(playdir):
    out = playdir / "out"
    out.mkdir(mode=0o755)
    (out / "gone").mkdir()
    (out / "gone" / "inside").write_text("x")
    first = _run(playdir, FILES_TASK, vars_={"names": ["a", "b"]})
    assert first.returncode == 0, first.stdout[-3000:]
    assert (out / "content.conf").read_text() == "a = 42\n"
    assert (out / "template.conf").read_text() == "# True\nname a\nname b\nlast\n"
    assert (out / "src.bin").read_bytes() == bytes(range(256)) * 4
    assert os.readlink(out / "link") == "content.conf" and not (out / "gone").exists()
    modes = {p.name: oct(p.stat().st_mode & 0o7777) for p in [out, *out.iterdir()] if not p.is_symlink()}
    assert modes == {"out": "0o750", "content.conf": "0o640", "template.conf": "0o644", "src.bin": "0o600"}
    assert (out / "src.bin").stat().st_gid != 0 and (out / "content.conf").stat().st_gid == 0
    assert json.loads((playdir / "changed.json").read_text()) == [
        str(out), str(out / "content.conf"), str(out / "template.conf"), str(out / "src.bin"), str(out / "link"),
        str(out / "gone")]

    (out / "content.conf").chmod(0o666)
    second = _run(playdir, FILES_TASK, vars_={"names": ["a", "b"]})
    assert second.returncode == 0, second.stdout[-3000:]
    assert json.loads((playdir / "changed.json").read_text()) == [str(out / "content.conf")]
    assert oct((out / "content.conf").stat().st_mode & 0o7777) == "0o640"

    third = _run(playdir, FILES_TASK, vars_={"names": ["a", "b"]})
    assert json.loads((playdir / "changed.json").read_text()) == [] and _changed(third) == 1  # the report's copy


def test_a_template_renders_byte_for_byte_as_the_template_module(playdir):
    tasks = """
    - name: Directory
      ansible.builtin.file: {path: "{{ d }}", state: directory, mode: "0755"}
    - name: By the template module
      ansible.builtin.template: {src: t.j2, dest: "{{ d }}/by-module", mode: "0644"}
    - name: By trustops_files
      trustops_files:
        files:
          - {path: "{{ d }}/by-action", template: t.j2, mode: "0644"}
"""
    proc = _run(playdir, tasks, vars_={"names": ["x", "y", "z"]})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (playdir / "out" / "by-action").read_bytes() == (playdir / "out" / "by-module").read_bytes()


def test_check_mode_writes_nothing_and_says_what_would_change(playdir):
    out = playdir / "out"
    out.mkdir()
    (out / "content.conf").write_text("old\n")
    tasks = """
    - name: Files
      trustops_files:
        files:
          - {path: "{{ d }}/content.conf", content: "new\\n", mode: "0644"}
          - {path: "{{ d }}/sub", state: directory, mode: "0700"}
"""
    proc = _run(playdir, tasks, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (out / "content.conf").read_text() == "old\n" and not (out / "sub").exists()
    assert "-old" in proc.stdout and "+new" in proc.stdout and _changed(proc) == 1


def test_the_diff_shows_no_content_that_is_not_world_readable(playdir):
    (playdir / "out").mkdir()
    proc = _run(playdir, """
    - name: Files
      trustops_files:
        files:
          - {path: "{{ d }}/key", content: "PRIVATE-abc\\n", mode: "0600"}
          - {path: "{{ d }}/conf", content: "public-xyz\\n", mode: "0644"}
""", "--diff")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "PRIVATE-abc" not in proc.stdout and "(not world-readable, 12 bytes: not shown)" in proc.stdout
    assert "+public-xyz" in proc.stdout


def test_a_refused_validate_keeps_the_old_file_and_names_it(playdir):
    out = playdir / "out"
    out.mkdir()
    (out / "sshd.conf").write_text("good\n")
    tasks = """
    - name: Files
      trustops_files:
        files:
          - {path: "{{ d }}/sshd.conf", content: "bad\\n", mode: "0600", validate: "grep -q good %s"}
"""
    proc = _run(playdir, tasks)
    assert proc.returncode != 0
    assert f"{out}/sshd.conf: validate 'grep -q good %s' refused the new content (exit 1)" in proc.stdout
    assert (out / "sshd.conf").read_text() == "good\n" and [p.name for p in out.iterdir()] == ["sshd.conf"]


@pytest.mark.parametrize("entry, said", [
    ('{path: "{{ d }}/f", content: "x", mode: 0644}', "mode 420 must be a quoted octal string like '0644'"),
    ('{path: "{{ d }}/f", content: "x", mode: "rw"}', "mode 'rw' is not an octal string like '0644'"),
    ('{path: "f", content: "x"}', "f: path must be an absolute path"),
    ('{path: "{{ d }}/f", content: "x", src: y}', "a file needs exactly one of content, template, src"),
    ('{path: "{{ d }}/f", content: "x", owner: no-such-user}', "no user 'no-such-user' on this host"),
    ('{path: "{{ d }}/f", contnet: "x"}', "unknown keys contnet"),
    ('{path: "{{ d }}/missing/f", content: "x"}', "missing does not exist"),
    ('{path: "{{ d }}/f", template: nope.j2}', "nope.j2"),
    ('{path: "/tmp/", state: absent}', "/tmp/: a top-level path is never removed"),
])
def test_a_wrong_entry_fails_in_one_line_naming_it(playdir, entry, said):
    (playdir / "out").mkdir()
    proc = _run(playdir, f"""
    - name: Files
      trustops_files:
        files:
          - {entry}
""")
    assert proc.returncode != 0 and said in proc.stdout, proc.stdout[-2000:]
    assert not (playdir / "out" / "f").exists()


def test_a_symlink_at_the_path_is_replaced_not_written_through(playdir):
    out = playdir / "out"
    out.mkdir()
    victim = playdir / "victim"
    victim.write_text("keep\n")
    (out / "conf").symlink_to(victim)
    proc = _run(playdir, """
    - name: Files
      trustops_files:
        files:
          - {path: "{{ d }}/conf", content: "mine\\n", mode: "0644"}
""")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert victim.read_text() == "keep\n"
    assert not (out / "conf").is_symlink() and (out / "conf").read_text() == "mine\n"


def test_what_a_killed_write_left_is_removed(playdir):
    """A write killed before its rename leaves `.<name>.trustops-*` beside the file (a service reading
    its directory with `*`, nginx's sites-enabled, would take it in): the next run removes it."""
    out = playdir / "out"
    out.mkdir()
    (out / "site.conf").write_text("mine\n")
    (out / ".site.conf.trustops-k1ll3d").write_text("half")
    (out / ".site.conf.trustops-validate-x").write_text("half")
    proc = _run(playdir, """
    - name: Files
      trustops_files:
        files:
          - {path: "{{ d }}/site.conf", content: "mine\\n"}
""")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["site.conf"] and _changed(proc) == 0


SKIP_TASKS = """
    - name: Skipped by its when
      ansible.builtin.command: /bin/false
      when: flag | bool
      register: plain
    - name: Skipped in a block
      when: not (flag | bool)
      block:
        - name: Inside
          ansible.builtin.command: /bin/false
          when: never_set is defined
          register: inner
    - name: Skipped, no_log
      ansible.builtin.command: /bin/false
      when: flag | bool
      no_log: true
      register: secret
    - name: Runs
      ansible.builtin.command: /bin/true
      when: not (flag | bool)
      changed_when: false
      register: ran
    - name: Results
      ansible.builtin.copy:
        dest: "{{ d }}-{{ tag }}.json"
        content: "{{ {'plain': plain, 'inner': inner, 'secret': secret, 'ran': ran.rc} | to_json }}"
"""


def test_a_task_skipped_without_a_worker_registers_what_ansibles_own_strategy_does(tmp_path):
    ours = _run(tmp_path, SKIP_TASKS, "-e", "tag=ours", vars_={"flag": False})
    theirs = _run(tmp_path, SKIP_TASKS, "-e", "tag=theirs", vars_={"flag": False}, strategy="ansible.builtin.linear")
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stdout[-2000:] + theirs.stdout[-2000:]
    results = json.loads((tmp_path / "out-ours.json").read_text())
    assert results == json.loads((tmp_path / "out-theirs.json").read_text())
    assert results["plain"] == {"changed": False, "skipped": True, "skip_reason": "Conditional result was False",
                                "false_condition": "flag | bool"}
    assert results["inner"]["false_condition"] == "never_set is defined" and results["ran"] == 0
    recap = lambda p: [line.split(":", 1)[1].split() for line in p.stdout.splitlines() if line.startswith("localhost")]  # noqa: E731
    assert recap(ours) == recap(theirs)


def test_a_when_that_cannot_be_judged_fails_as_before(tmp_path):
    proc = _run(tmp_path, """
    - name: Undefined in the condition
      ansible.builtin.command: /bin/true
      when: not_defined_anywhere | bool
""")
    assert proc.returncode != 0 and "not_defined_anywhere" in proc.stdout and "is undefined" in proc.stdout
