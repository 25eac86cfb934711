"""The converge's fact use (no lab): facts only under `ansible_facts` (ansible.cfg turns off their
injection as top-level variables, so `ansible_virtualization_type` would be undefined, and with a
`default` silently false: a lab container would be taken for a VM), and the filter that lets each
role's apt task skip when dpkg has its packages installed (ansible/filter_plugins/packages.py)."""
from __future__ import annotations

import configparser
import importlib.util
import re
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parent.parent / "ansible"

# Ansible's own variables that are not facts (magic and connection variables, result keys).
NOT_FACTS = {"ansible_facts", "ansible_host", "ansible_port", "ansible_user", "ansible_playbook_python",
             "ansible_managed", "ansible_job_id", "ansible_check_mode", "ansible_connection",
             "ansible_python_interpreter", "ansible_become", "ansible_ssh_common_args",
             "ansible_ssh_private_key_file", "ansible_loop", "ansible_loop_var", "ansible_search_path",
             "ansible_play_hosts", "ansible_play_batch", "ansible_run_tags", "ansible_skip_tags",
             "ansible_version", "ansible_parent_role_names", "ansible_role_name", "ansible_collection_name"}


def _packages_filters():
    spec = importlib.util.spec_from_file_location("packages_filters", ANSIBLE_DIR / "filter_plugins" / "packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_facts_are_not_injected_as_variables():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ANSIBLE_DIR / "ansible.cfg")
    assert cfg.getboolean("defaults", "inject_facts_as_vars") is False


def test_no_role_or_template_reads_an_injected_fact():
    found = {}
    for path in sorted(ANSIBLE_DIR.rglob("*")):
        if path.suffix not in {".yml", ".yaml", ".j2"} or not path.is_file():
            continue
        for name in set(re.findall(r"\bansible_[a-z0-9_]+", path.read_text())) - NOT_FACTS:
            found.setdefault(name, []).append(str(path.relative_to(ANSIBLE_DIR)))
    assert found == {}, f"read these as ansible_facts.<name> (facts are not injected): {found}"


def _dpkg(*lines: str) -> dict:
    """A registered result of hardening's `dpkg-query --show` read."""
    return {"changed": False, "rc": 0, "stdout_lines": list(lines)}


@pytest.mark.parametrize("names, status, missing", [
    (["nginx", "ufw"], _dpkg("ii  nginx", "ii  openssl"), ["ufw"]),
    ("nginx", _dpkg("ii  nginx"), []),                                          # one name, as a string
    (["postgresql-15"], _dpkg("ii  postgresql-15-foo"), ["postgresql-15"]),     # names, not prefixes
    (["nginx"], _dpkg("iF  nginx"), ["nginx"]),      # half-configured by a failed run: apt finishes it
    (["nginx"], _dpkg("iU  nginx"), ["nginx"]),      # unpacked only
    (["exim4"], _dpkg("rc  exim4"), ["exim4"]),      # removed, its config left
    (["nginx=1.22*", "libc6:i386"], _dpkg("ii  nginx", "ii  libc6"), ["nginx=1.22*", "libc6:i386"]),  # apt judges
])
def test_only_what_dpkg_has_fully_installed_is_skipped(names, status, missing):
    assert _packages_filters().packages_missing(names, status) == missing


@pytest.mark.parametrize("status, present", [
    (_dpkg("ii  telnet", "rc  exim4-base", "un  talk", "pn  nis"), ["telnet", "exim4-base"]),
    (_dpkg("iU  telnet", "iF  rkhunter"), ["telnet", "rkhunter"]),
    (_dpkg(), []),
    ({"skipped": True, "changed": False}, ["telnet", "exim4-base", "talk", "nis", "rkhunter"]),
    (None, ["telnet", "exim4-base", "talk", "nis", "rkhunter"]),
])
def test_a_removal_runs_for_what_dpkg_has_even_as_configuration_only(status, present):
    """Purge: a package dpkg knows in any state but not-installed (`rc`: its configuration left) is
    removed; unread, apt decides for all."""
    names = ["telnet", "exim4-base", "talk", "nis", "rkhunter"]
    assert _packages_filters().packages_present(names, status) == present


def test_without_the_read_apt_decides():
    """A run tagged so that the read was skipped, or where it failed: every package counts as
    missing, so the install runs and apt decides, never a skip on no evidence."""
    filters = _packages_filters()
    for status in (None, {}, {"skipped": True, "changed": False}, {"failed": True, "stdout_lines": ["ii  ufw"]}):
        assert filters.packages_missing(["ufw"], status) == ["ufw"]


def test_every_install_task_skips_only_on_its_own_list():
    """Each apt install task's `when` names the same packages as its `name` (a copied condition
    would skip one role's install because another's packages are there)."""
    tasks = 0
    for path in sorted((ANSIBLE_DIR / "roles").glob("*/tasks/*.yml")):
        for block in re.split(r"(?m)^(?=- name:)", path.read_text()):
            apt = re.search(r'(?m)^  ansible\.builtin\.apt:\n    name: "\{\{ (\w+) \}\}"\n', block)
            if not apt or "state: absent" in block:
                continue
            tasks += 1
            assert f"  when: {apt.group(1)} | packages_missing(hardening_installed_packages | default(none)) | length > 0" in block, \
                f"{path.relative_to(ANSIBLE_DIR)}: {block.splitlines()[0]}"
    assert tasks >= 15
