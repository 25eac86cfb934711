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


def _run(tmp_path: Path, tasks: str, *extra: str, vars_: dict | None = None, strategy: str | None = None,
         hosts: str = "localhost,"):
    """ansible-playbook on a play of `tasks` for `hosts` (an inventory list), each connected locally."""
    (tmp_path / "play.yml").write_text(f"- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}")
    (tmp_path / "vars.json").write_text(json.dumps({"d": str(tmp_path / "out"), **(vars_ or {})}))
    env = {**ansible_env(), "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1"}
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", hosts, "-c", "local",
                           "-e", "@vars.json", "-e", f"ansible_python_interpreter={sys.executable}", *extra, "play.yml"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)


def _files(*entries: str) -> str:
    """A play's one trustops_files task with these entries (YAML flow mappings)."""
    return "    - name: Files\n      trustops_files:\n        files:\n" + "".join(f"          - {e}\n" for e in entries)


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
    tasks = _files('{path: "{{ d }}/content.conf", content: "new\\n", mode: "0644"}',
                   '{path: "{{ d }}/sub", state: directory, mode: "0700"}')
    proc = _run(playdir, tasks, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (out / "content.conf").read_text() == "old\n" and not (out / "sub").exists()
    assert "-old" in proc.stdout and "+new" in proc.stdout and _changed(proc) == 1


def test_the_diff_shows_no_content_that_is_not_world_readable(playdir):
    (playdir / "out").mkdir()
    proc = _run(playdir, _files('{path: "{{ d }}/key", content: "PRIVATE-abc\\n", mode: "0600"}',
                                '{path: "{{ d }}/conf", content: "public-xyz\\n", mode: "0644"}'), "--diff")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "PRIVATE-abc" not in proc.stdout and "+(the new content, 12 bytes: not shown, not world-readable)" in proc.stdout
    assert "+public-xyz" in proc.stdout


def test_no_content_reaches_the_hosts_log_or_verbose_output(playdir):
    """The contents travel in the module's no_log option: AnsibleModule logs the other arguments to
    the host's journal and -vvv prints them, never a key."""
    (playdir / "out").mkdir()
    proc = _run(playdir, _files('{path: "{{ d }}/key", content: "PRIVATE-KEY-abc\\n", mode: "0600"}'), "-vvv")
    import base64
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "PRIVATE-KEY-abc" not in proc.stdout
    assert base64.b64encode(b"PRIVATE-KEY-abc\n").decode() not in proc.stdout
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in proc.stdout   # the invocation, censored


def test_a_diff_hides_old_content_that_was_not_world_readable(playdir):
    out = playdir / "out"
    out.mkdir()
    (out / "was-secret").write_text("SECRET-OLD\n")
    (out / "was-secret").chmod(0o600)
    proc = _run(playdir, _files('{path: "{{ d }}/was-secret", content: "public now\\n", mode: "0644"}'), "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "SECRET-OLD" not in proc.stdout and "-(the old content, 11 bytes: not shown, not world-readable)" in proc.stdout


def test_validate_is_not_run_in_check_mode_and_takes_a_path_with_a_space(playdir):
    spaced = playdir / "out" / "a b"
    spaced.mkdir(parents=True)
    tasks = _files('{path: "{{ d }}/a b/x.conf", content: "good\\n", mode: "0644", validate: "grep -q good %s"}',
                   '{path: "{{ d }}/y.conf", content: "y\\n", mode: "0644", validate: "cp %s {{ d }}/validated"}')
    checked = _run(playdir, tasks, "--check")
    assert checked.returncode == 0, checked.stdout[-2000:]
    assert sorted(p.name for p in (playdir / "out").iterdir()) == ["a b"]   # nothing validated, nothing written
    applied = _run(playdir, tasks)
    assert applied.returncode == 0, applied.stdout[-2000:]
    assert (spaced / "x.conf").read_text() == "good\n" and (playdir / "out" / "validated").read_text() == "y\n"


def test_a_refused_validate_keeps_the_old_file_and_names_it(playdir):
    out = playdir / "out"
    out.mkdir()
    (out / "sshd.conf").write_text("good\n")
    tasks = _files('{path: "{{ d }}/sshd.conf", content: "bad\\n", mode: "0600", validate: "grep -q good %s"}')
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
    ('{path: "/tmp", state: absent}', "/tmp: a top-level path is never removed"),
    ('{path: "/tmp/", state: absent}', "/tmp/: path is not in normal form"),
    ('{path: "//", state: absent}', "//: path is not in normal form"),
    ('{path: "//etc", state: absent}', "//etc: path is not in normal form"),
    ('{path: "/var/lib/{{ empty }}", state: absent}', "/var/lib/: path is not in normal form"),
    ('{path: "{{ d }}/../out/f", content: "x"}', "path is not in normal form"),
])
def test_a_wrong_entry_fails_in_one_line_naming_it(playdir, entry, said):
    """In check mode: a refusal comes before anything is done, and a removal that got past its
    check would not touch this machine's /tmp or /etc."""
    (playdir / "out").mkdir()
    proc = _run(playdir, _files(entry), "--check", vars_={"empty": ""})
    assert proc.returncode != 0 and said in proc.stdout, proc.stdout[-2000:]
    assert not (playdir / "out" / "f").exists()


def test_a_symlink_at_the_path_is_replaced_not_written_through(playdir):
    out = playdir / "out"
    out.mkdir()
    victim = playdir / "victim"
    victim.write_text("keep\n")
    (out / "conf").symlink_to(victim)
    proc = _run(playdir, _files('{path: "{{ d }}/conf", content: "mine\\n", mode: "0644"}'))
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
    proc = _run(playdir, _files('{path: "{{ d }}/site.conf", content: "mine\\n"}'))
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
    - name: Include skipped
      ansible.builtin.include_tasks: inc.yml
      when: flag | bool
    - name: Include taken
      ansible.builtin.include_tasks: inc.yml
      when: not (flag | bool)
    - name: Role skipped
      ansible.builtin.include_role:
        name: included
      when: flag | bool
    - name: Role taken
      ansible.builtin.include_role:
        name: included
      when: not (flag | bool)
    - name: Runs
      ansible.builtin.command: /bin/true
      when: not (flag | bool)
      changed_when: false
      register: ran
    - name: A loop with no items
      ansible.builtin.command: /bin/false
      loop: "{{ [1, 2] | reject('in', [1, 2]) }}"
      when: never_set_either | bool
      register: none_left
    - name: A loop with items
      ansible.builtin.command: "echo {{ item }}"
      loop: "{{ [1, 2] | reject('in', [1]) }}"
      changed_when: false
      register: one_left
    - name: Tasks whose loop and when look for files beside them (the task's search path)
      ansible.builtin.include_tasks: sub/globbed.yml
    - name: Results
      ansible.builtin.copy:
        dest: "{{ d }}-{{ tag }}.json"
        content: "{{ {'plain': plain, 'inner': inner, 'secret': secret, 'ran': ran.rc, 'none_left': none_left,
                      'one_left': one_left.results | map(attribute='stdout') | list,
                      'globbed': globbed.results | map(attribute='stdout') | list} | to_json }}"
"""


# Beside the tasks file, not the playbook: found through the task's search path, which a worker
# sets before it templates the loop and the when.
GLOBBED_TASKS = """
- name: Each file beside this tasks file
  ansible.builtin.command: "echo {{ item | basename }}"
  loop: "{{ query('ansible.builtin.fileglob', '*.conf') }}"
  changed_when: false
  register: globbed
- name: A role when a file is beside this tasks file
  ansible.builtin.include_role:
    name: globbed
  when: query('ansible.builtin.fileglob', '*.conf') | length > 0
"""


@pytest.mark.parametrize("ours_name, theirs_name", [(None, "ansible.builtin.linear"), ("mitogen_free", "ansible.builtin.free")])
def test_a_task_skipped_without_a_worker_registers_what_ansibles_own_strategy_does(tmp_path, ours_name, theirs_name):
    """Both of the project's strategies (linear, ansible.cfg's; free, site.yml's play of each group's
    own services) against Ansible's own."""
    (tmp_path / "inc.yml").write_text("- name: Included\n  ansible.builtin.shell: echo included >> {{ d }}-{{ tag }}.included\n"
                                      "  changed_when: false\n")
    (tmp_path / "roles" / "included" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "included" / "tasks" / "main.yml").write_text(
        "- name: In the role\n  ansible.builtin.shell: echo role >> {{ d }}-{{ tag }}.included\n  changed_when: false\n")
    (tmp_path / "sub" / "files").mkdir(parents=True)
    (tmp_path / "sub" / "files" / "a.conf").write_text("")
    (tmp_path / "sub" / "globbed.yml").write_text(GLOBBED_TASKS)
    (tmp_path / "roles" / "globbed" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "globbed" / "tasks" / "main.yml").write_text(
        "- name: In the role\n  ansible.builtin.shell: echo globbed >> {{ d }}-{{ tag }}.included\n  changed_when: false\n")
    ours = _run(tmp_path, SKIP_TASKS, "-e", "tag=ours", vars_={"flag": False}, strategy=ours_name)
    theirs = _run(tmp_path, SKIP_TASKS, "-e", "tag=theirs", vars_={"flag": False}, strategy=theirs_name)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stdout[-2000:] + theirs.stdout[-2000:]
    results = json.loads((tmp_path / "out-ours.json").read_text())
    assert results == json.loads((tmp_path / "out-theirs.json").read_text())
    assert results["plain"] == {"changed": False, "skipped": True, "skip_reason": "Conditional result was False",
                                "false_condition": "flag | bool"}
    assert results["inner"]["false_condition"] == "never_set is defined" and results["ran"] == 0
    assert results["none_left"] == {"changed": False, "skipped": True, "skipped_reason": "No items in the list",
                                    "results": []} and results["one_left"] == ["2"]
    # once each: the skipped includes added nothing
    assert (tmp_path / "out-ours.included").read_text() == "included\nrole\nglobbed\n"
    assert results["globbed"] == ["a.conf"]
    recap = lambda p: [line.split(":", 1)[1].split() for line in p.stdout.splitlines() if line.startswith("localhost")]  # noqa: E731
    assert recap(ours) == recap(theirs)


def test_the_free_strategy_names_each_result_by_its_own_task(tmp_path):
    """site.yml's free play: h1 is still in First when h2 starts Second, and h1's result must still
    be shown under First (the log, and the converge's progress, read the task from it)."""
    proc = _run(tmp_path, "    - name: First\n      ansible.builtin.command: sleep {{ 1.5 if inventory_hostname == 'h1' else 0 }}\n"
                          "      changed_when: false\n"
                          "    - name: Second\n      ansible.builtin.command: /bin/true\n      changed_when: false\n",
                strategy="mitogen_free", hosts="h1,h2,")
    assert proc.returncode == 0, proc.stdout[-3000:]
    shown, task = set(), None
    for line in proc.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.index("]")]
        elif line.startswith("ok: ["):
            shown.add((task, line[5:line.index("]")]))
    assert shown == {("First", "h1"), ("First", "h2"), ("Second", "h1"), ("Second", "h2")}, proc.stdout


@pytest.mark.parametrize("judged", ["when: not_defined_anywhere | bool", "loop: \"{{ not_defined_anywhere }}\""])
def test_a_when_or_loop_that_cannot_be_judged_fails_as_before(tmp_path, judged):
    proc = _run(tmp_path, f"""
    - name: Undefined in the condition or the loop
      ansible.builtin.command: /bin/true
      {judged}
""")
    assert proc.returncode != 0 and "not_defined_anywhere" in proc.stdout and "is undefined" in proc.stdout


def _load(relative: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(Path(relative).stem, Path(__file__).resolve().parent.parent / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("params, unit, verbs", [
    ({"state": "started", "enabled": True, "masked": None},
     {"ActiveState": "active", "UnitFileState": "enabled"}, []),
    ({"state": "started", "enabled": True, "masked": None},
     {"ActiveState": "inactive", "UnitFileState": "disabled"}, ["enable", "start"]),
    ({"state": "started", "enabled": True, "masked": None},
     {"ActiveState": "activating", "UnitFileState": "static"}, []),
    ({"state": "stopped", "enabled": False, "masked": True},
     {"ActiveState": "active", "UnitFileState": "enabled"}, ["mask", "disable", "stop"]),
    ({"state": "stopped", "enabled": False, "masked": True},
     {"ActiveState": "inactive", "UnitFileState": "masked"}, []),
    ({"state": None, "enabled": None, "masked": False},
     {"ActiveState": "inactive", "UnitFileState": "masked"}, ["unmask"]),
    ({"state": "stopped", "enabled": False, "masked": None},
     {"ActiveState": "failed", "UnitFileState": "disabled"}, []),
])
def test_units_get_only_the_systemctl_verbs_that_differ(params, unit, verbs):
    """trustops_units (ansible/library): what it runs for a unit as `systemctl show` reads it (the
    module itself runs on the lab's hosts, in every converge)."""
    assert _load("ansible/library/trustops_units.py").wanted_actions(params, unit) == verbs


def test_name_entries_make_one_entry_per_name():
    name_entries = _load("ansible/filter_plugins/entries.py").name_entries
    assert name_entries(["a", "b"], path="/usr/local/bin/{}", src="/opt/v/bin/{}", state="link") == [
        {"path": "/usr/local/bin/a", "src": "/opt/v/bin/a", "state": "link"},
        {"path": "/usr/local/bin/b", "src": "/opt/v/bin/b", "state": "link"}]
    assert name_entries("solo", path="/x/{}.conf", mode="0644") == [{"path": "/x/solo.conf", "mode": "0644"}]


LOCAL_TASKS = """
    - name: Facts
      ansible.builtin.set_fact:
        one: "{{ 40 + 2 }}"
    - name: Variables from a file, per item
      ansible.builtin.include_vars: "{{ item }}"
      loop: [a.yml, b.yml]
    - name: Holds
      ansible.builtin.assert:
        that: [one | int == 42, from_a == 'a', from_b == 'b']
      register: held
    - name: Fails, ignored
      ansible.builtin.assert:
        that: [one | int == 41]
        fail_msg: one is not 41
      ignore_errors: true
      register: refused
    - name: Says
      ansible.builtin.debug:
        msg: "one is {{ one }}"
      register: said
    - name: Results
      ansible.builtin.copy:
        dest: "{{ d }}-{{ tag }}.json"
        content: "{{ {'held': held.msg, 'refused': refused.msg, 'said': said.msg, 'one': one} | to_json }}"
    - name: A role whose argument is wrong (its check fails the host)
      ansible.builtin.include_role:
        name: checked
      vars:
        listen_port: not-a-number
"""


def test_with_first_found_works_for_an_action_run_in_the_main_process(tmp_path):
    (tmp_path / "Debian.yml").write_text("picked: debian\n")
    proc = _run(tmp_path, """
    - name: OS variables
      ansible.builtin.include_vars: "{{ item }}"
      with_first_found: [Nope.yml, Debian.yml]
    - name: Picked
      ansible.builtin.assert:
        that: [picked == 'debian']
""")
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_control_node_actions_in_the_main_process_give_what_a_worker_gives(tmp_path):
    """set_fact, include_vars, assert, debug and a role's argument check run in the strategy's own
    process (no worker forked): the same results, failures and recap as Ansible's own strategy."""
    (tmp_path / "a.yml").write_text("from_a: a\n")
    (tmp_path / "b.yml").write_text("from_b: b\n")
    role = tmp_path / "roles" / "checked"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      listen_port: {type: int, required: true}\n")
    (role / "tasks" / "main.yml").write_text("- name: Never reached\n  ansible.builtin.command: /bin/false\n")
    runs = {tag: _run(tmp_path, LOCAL_TASKS, "-e", f"tag={tag}", strategy=strategy)
            for tag, strategy in (("ours", None), ("theirs", "ansible.builtin.linear"))}
    for proc in runs.values():
        assert proc.returncode == 2, proc.stdout[-3000:]
    ours, theirs = (json.loads((tmp_path / f"out-{tag}.json").read_text()) for tag in ("ours", "theirs"))
    assert ours == theirs == {"held": "All assertions passed", "refused": "one is not 41", "said": "one is 42",
                              "one": 42}
    recap = lambda p: [line.split(":", 1)[1].split() for line in p.stdout.splitlines() if line.startswith("localhost")]  # noqa: E731
    assert recap(runs["ours"]) == recap(runs["theirs"])
    assert "argument 'listen_port' is of type str and we were unable to convert to int" in runs["ours"].stdout
