"""The hardening role's drift filters (ansible/filter_plugins/drift.py): what a host lacks, from one
read. Unit cases, then the same filters through Ansible's own templating, as the role calls them."""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ANSIBLE_DIR = Path(__file__).resolve().parent.parent / "ansible"
_spec = importlib.util.spec_from_file_location("drift_filters", ANSIBLE_DIR / "filter_plugins" / "drift.py")
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)

FILES = [{"path": "/etc/crontab", "mode": "0600"}, {"path": "/etc/shadow", "mode": "0640", "group": "shadow"},
         {"path": "/etc/ssh/sshd_config", "mode": "0600"}]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_login_defs_keys_whose_last_matching_line_differs():
    content = _b64("#UMASK\t022\nUMASK\t022\nPASS_MAX_DAYS\t365\n# PASS_MIN_DAYS 0\nPASS_WARN_AGE\t14\nUMASK\t027\n")
    wanted = {"PASS_MAX_DAYS": "365", "PASS_MIN_DAYS": "1", "UMASK": "027", "LOGIN_RETRIES": "3",
              "PASS_WARN_AGE": "7"}
    # UMASK's last line is right; a commented or absent key, or another value, is to change
    assert drift.login_defs_drift(wanted, content) == ["PASS_MIN_DAYS", "LOGIN_RETRIES", "PASS_WARN_AGE"]
    assert drift.login_defs_drift({"UMASK": "027"}, _b64("UMASK\t027\nUMASK\t022\n")) == ["UMASK"]
    # a key is matched whole: PASS_MAX_DAYS_X is not PASS_MAX_DAYS
    assert drift.login_defs_drift({"PASS_MAX": "1"}, _b64("PASS_MAX_DAYS\t1\n")) == ["PASS_MAX"]


def test_sensitive_files_not_as_wanted_all_of_them_when_several():
    lines = ["/etc/crontab 644 root root", "/etc/shadow 640 root shadow", "/etc/ssh/sshd_config 600 root root"]
    assert drift.stat_drift(FILES, lines) == [FILES[0]]
    # several wrong, one missing (stat printed no line for it): every one of them
    assert drift.stat_drift(FILES, ["/etc/crontab 755 root root", "/etc/shadow 640 root root"]) == FILES
    assert drift.stat_drift(FILES, ["/etc/crontab 600 root root", "/etc/shadow 640 root shadow",
                                    "/etc/ssh/sshd_config 600 root root"]) == []
    assert drift.stat_drift([{"path": "/x", "mode": "0000"}], ["/x 0 root root"]) == []
    assert drift.stat_drift(FILES, None) == FILES


def test_sysctls_named_with_the_value_in_force():
    wanted = {"net.ipv4.ip_forward": 0, "net.ipv4.tcp_syncookies": 1, "net.ipv6.conf.all.accept_ra": 0}
    assert drift.sysctl_drift(wanted, ["0", "1\n", "0"]) == []
    assert drift.sysctl_drift(wanted, ["1", "1"]) == ["net.ipv4.ip_forward is 1, want 0",
                                                      "net.ipv6.conf.all.accept_ra is unread, want 0"]


def test_the_filters_through_ansible_templating_as_the_role_uses_them(tmp_path):
    """Ansible 2.19 hands the filters its own types and templates their lists back: the loops and
    the assert see real lists (an empty one when nothing drifted)."""
    (tmp_path / "vars.json").write_text(json.dumps({
        "files": FILES, "stat_lines": ["/etc/crontab 644 root root", "/etc/shadow 640 root shadow"],
        "login_defs": {"UMASK": "027", "PASS_MAX_DAYS": "365"}, "content": _b64("UMASK\t022\nPASS_MAX_DAYS\t365\n"),
        "sysctls": {"net.ipv4.ip_forward": 0}, "out": str(tmp_path / "result.json")}))
    (tmp_path / "drift.yml").write_text(_PLAYBOOK)
    env = {**os.environ, "ANSIBLE_FILTER_PLUGINS": str(ANSIBLE_DIR / "filter_plugins"),
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "@vars.json", "-e", f"ansible_python_interpreter={sys.executable}", "drift.yml"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((tmp_path / "result.json").read_text()) == {
        "looped": ["/etc/crontab", "/etc/ssh/sshd_config"], "keys": ["UMASK"],
        "refused": "net.ipv4.ip_forward is 1, want 0"}


_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Loop over what drifted
      ansible.builtin.debug:
        msg: "{{ item.path }}"
      loop: "{{ files | stat_drift(stat_lines) }}"
      register: looped
    - name: Keys to change
      ansible.builtin.set_fact:
        keys: "{{ login_defs | dict2items | selectattr('key', 'in', login_defs | login_defs_drift(content))
                  | map(attribute='key') }}"
    - name: Nothing wrong passes the role's assert
      ansible.builtin.assert:
        that: wrong == []
      vars:
        wrong: "{{ sysctls | sysctl_drift(['0']) }}"
    - name: Something wrong fails it
      ansible.builtin.assert:
        that: wrong == []
        fail_msg: "{{ wrong | join('; ') }}"
      vars:
        wrong: "{{ sysctls | sysctl_drift(['1']) }}"
      ignore_errors: true
      register: refused
    - name: What the tasks saw
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'looped': looped.results | map(attribute='item.path') | list, 'keys': keys,
                      'refused': refused.msg | default('')} | to_json }}"
        mode: "0600"
"""
