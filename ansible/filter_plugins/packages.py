"""Which of a role's Debian packages still need apt, from one read of dpkg's status per converge.

An apt task that has nothing to do still opens apt's cache: about 2 s per task and host, and
the converge has a dozen of them (28 s of a 129 s converge with nothing to change). With dpkg's
status read once (hardening's packages.yml registers it as hardening_installed_packages), each role's
apt task runs only when one of its packages is not fully installed. Only dpkg's `ii` counts: a
package left unpacked or half-configured by a failed run is missing, so apt finishes it (package_facts
would list it as installed). Without the read (a run tagged so that it is skipped), or for a name
with a version or architecture (`nginx=1.22*`, `foo:i386`), apt decides, as it did before.
"""
from __future__ import annotations

import re

_SPEC = re.compile(r"[=:<>*]")


def _packages(status, counts) -> set[str] | None:
    """The packages in a registered `dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n'` result
    whose status abbreviation `counts` accepts; None when there is none (never read, skipped, failed)."""
    if not hasattr(status, "get") or status.get("skipped") or status.get("failed") or "stdout_lines" not in status:
        return None
    return {line.split()[-1] for line in status["stdout_lines"] if counts(line[:3])}


def _judged(names, status, counts, keep_counted: bool) -> list:
    """The names whose package `counts` accepts (keep_counted) or does not; all of them when unread,
    and a name with a version or architecture always (apt decides)."""
    names = [names] if isinstance(names, str) else list(names)
    found = _packages(status, counts)
    if found is None:
        return names
    return [n for n in names if _SPEC.search(str(n)) or (str(n) in found) == keep_counted]


def packages_missing(names, status) -> list:
    """The packages of `names` that dpkg does not have fully installed (`ii`); all of them when unread."""
    return _judged(names, status, lambda abbrev: abbrev == "ii ", keep_counted=False)


def packages_present(names, status) -> list:
    """The packages of `names` dpkg has in any state but not-installed (configuration files left count:
    a purge removes them); all of them when unread, so apt decides."""
    return _judged(names, status, lambda abbrev: len(abbrev) > 1 and abbrev[1] != "n", keep_counted=True)


class FilterModule:
    def filters(self):
        return {"packages_missing": packages_missing, "packages_present": packages_present}
