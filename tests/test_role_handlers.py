"""Every handler a task notifies exists in its role (or a role it depends on), templated names
included: Ansible finds a missing one only when the notify fires, which on a kept lab may be
never and on a new one is mid-converge (CI simulation 7: a renamed handler, notified by a
certificate task only when the certificate is new, stopped the first converge)."""
from __future__ import annotations

import re

import yaml

from trustops.converge import ANSIBLE_DIR

ROLES = ANSIBLE_DIR / "roles"


def _tasks(node):
    """Every task mapping in a task file, blocks and rescues included."""
    for task in node or []:
        if isinstance(task, dict):
            yield task
            for key in ("block", "rescue", "always"):
                yield from _tasks(task.get(key))


def _names(notify) -> set[str]:
    """The handler names a notify can give: plain names, and every quoted name in a template."""
    names = set()
    for entry in [notify] if isinstance(notify, str) else notify or []:
        if "{{" in entry:
            quoted = {a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", entry)}
            names |= quoted - {"ops", "db", "app"}   # group names compared in the condition
        else:
            names.add(entry)
    return names


def _handlers(role: str, seen: set[str] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if role in seen:
        return set()
    seen.add(role)
    found = set()
    path = ROLES / role / "handlers" / "main.yml"
    if path.exists():
        for h in _tasks(yaml.safe_load(path.read_text())):
            found.add(h["name"])
            listen = h.get("listen", [])
            found |= {listen} if isinstance(listen, str) else set(listen)
    meta = ROLES / role / "meta" / "main.yml"
    for dep in (yaml.safe_load(meta.read_text()) or {}).get("dependencies", []) if meta.exists() else []:
        found |= _handlers(dep["role"] if isinstance(dep, dict) else dep, seen)
    return found


def test_every_notified_handler_exists():
    missing = []
    for role_dir in sorted(p for p in ROLES.iterdir() if (p / "tasks").is_dir()):
        known = _handlers(role_dir.name)
        for tasks_file in sorted((role_dir / "tasks").glob("*.yml")):
            for task in _tasks(yaml.safe_load(tasks_file.read_text())):
                for name in _names(task.get("notify")) - known:
                    missing.append(f"{tasks_file.relative_to(ANSIBLE_DIR)}: {task.get('name')!r} notifies {name!r}")
    assert not missing, "\n".join(missing)


def test_the_check_sees_a_templated_name_that_is_missing():
    assert _names("{{ 'Reload front' if 'ops' in group_names else 'Restart upload' }}") == {"Reload front",
                                                                                             "Restart upload"}
    assert _names(["A", "B"]) == {"A", "B"}
