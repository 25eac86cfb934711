"""Which of a role's Debian packages still need apt, from one `package_facts` read per converge.

An apt task that has nothing to do still opens apt's cache: about 2 s per task and host, and
the converge has a dozen of them (28 s of a 129 s converge with nothing to change). With the facts
read once (hardening's packages.yml), each role's apt task runs only when one of its packages is
missing, or, for a removal, present. Without the facts (a run tagged so that the read is skipped)
every package counts as missing and present, so apt decides, as it did before.
"""
from __future__ import annotations


def _installed(facts):
    packages = facts.get("packages") if hasattr(facts, "get") else None
    return None if packages is None else set(packages)


def _name(spec: str) -> str:
    """`nginx`, `nginx=1.22*`, `nginx:amd64` -> `nginx` (the name package_facts keys by)."""
    return str(spec).split("=", 1)[0].split(":", 1)[0]


def packages_missing(names, facts) -> list:
    """The packages of `names` not installed according to `facts` (ansible_facts); all when unread."""
    names = [names] if isinstance(names, str) else list(names)
    installed = _installed(facts)
    return names if installed is None else [n for n in names if _name(n) not in installed]


def packages_present(names, facts) -> list:
    """The packages of `names` installed according to `facts`; all when unread (apt removes or not)."""
    names = [names] if isinstance(names, str) else list(names)
    installed = _installed(facts)
    return names if installed is None else [n for n in names if _name(n) in installed]


class FilterModule:
    def filters(self):
        return {"packages_missing": packages_missing, "packages_present": packages_present}
