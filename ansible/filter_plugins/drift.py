"""Which items of a role's wanted state a host does not have yet, from one read of the host.

A loop with a `when` per item is judged, and reported, once per item on every converge; a task
that reads the host once and loops over only what differs costs one module run when nothing has
drifted. Each filter takes what the role wants and what the read returned, and gives the items
still to change. They are Python, not Jinja text to be split again: a separator written inside a
Jinja string literal arrives escaped under Ansible 2.19, and that once made a new host's list of
files to tighten come out empty.
"""
from __future__ import annotations

import base64
import re


def login_defs_drift(wanted: dict, content: str) -> list[str]:
    """The keys of `wanted` whose line in login.defs (`content`, base64 as slurp returns it) is not
    `KEY<tab>value`: the last line that `^#?\\s*KEY\\s` matches, the one lineinfile would replace."""
    lines = base64.b64decode(content).decode("utf-8", "replace").splitlines()
    todo = []
    for key, value in wanted.items():
        pattern = re.compile(rf"^#?\s*{re.escape(str(key))}\s")
        current = [line for line in lines if pattern.search(line)]
        if not current or current[-1] != f"{key}\t{value}":
            todo.append(key)
    return todo


def stat_drift(files: list, stat_lines: list) -> list:
    """The entries of `files` (path, mode, group; owner root) not matched by a line of
    `stat --dereference --format='%n %a %U %G'`: missing files too, so the file module says why."""
    now = set(stat_lines or [])
    return [f for f in files
            if " ".join([f["path"], str(f["mode"]).lstrip("0") or "0", "root", f.get("group") or "root"]) not in now]


def sysctl_drift(wanted: dict, values: list) -> list[str]:
    """`key is now, want value` for each key of `wanted` whose value in force (`values`, one line
    per key in the same order, as `cat` of their /proc/sys files prints them) differs."""
    values = list(values or [])
    wrong = []
    for i, (key, value) in enumerate(wanted.items()):
        now = values[i].strip() if i < len(values) else ""
        if now != str(value):
            wrong.append(f"{key} is {now or 'unread'}, want {value}")
    return wrong


class FilterModule:
    def filters(self):
        return {"login_defs_drift": login_defs_drift, "stat_drift": stat_drift, "sysctl_drift": sysctl_drift}
