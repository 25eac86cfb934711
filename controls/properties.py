"""Code properties: facts about the repository itself that a control rests on. Each returns
(problems, output); no problems means the property holds."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Callable

from trustops.controls.catalogue import ROOT
from trustops.controls.evidence import CouldNotCheck

Result = tuple[list[str], str]


def _tracked_files(root: Path = ROOT) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True).stdout
    return [root / p for p in out.split("\0") if p and (root / p).is_file()]


def no_secrets(root: Path = ROOT) -> Result:
    """detect-secrets over every tracked file: no key, token or password is committed."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    allowlist = root / "controls" / "secrets-allowlist.yaml"   # holds hashes of findings, nothing else
    files = [f for f in _tracked_files(root) if f != allowlist]
    found = SecretsCollection()
    with default_settings():
        for f in files:
            found.scan_file(str(f))
    import yaml

    allowed = {(a["path"], a["type"], a["secret_hash"])
               for a in (yaml.safe_load(allowlist.read_text()) if allowlist.exists() else None) or []}
    problems, reviewed = [], 0
    for name, secrets in found.data.items():
        rel = str(Path(name).relative_to(root))
        for s in secrets:
            if (rel, s.type, s.secret_hash) in allowed:
                reviewed += 1
            else:
                problems.append(f"{rel}:{s.line_number}: {s.type}")
    return problems, (f"scanned {len(files)} tracked files with detect-secrets; "
                      f"{reviewed} reviewed false positives (controls/secrets-allowlist.yaml)\n")


def dependencies_pinned() -> Result:
    """Every Python dependency is pinned to one version, so what is audited is what runs."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(meta["dependencies"]) + [d for group in meta.get("optional-dependencies", {}).values() for d in group]
    problems = [f"{d} is not pinned with ==" for d in deps if not re.match(r"^[A-Za-z0-9_.\-\[\]]+==[\w.]+$", d)]
    return problems, "\n".join(deps) + "\n"


def dependencies_audited() -> Result:
    """pip-audit over the installed, pinned environment. A dependency it could not look up is no
    finding either way: "no known vulnerabilities" means nothing unless every package was checked,
    so the property is then unknown (CouldNotCheck), not failing, unless a vulnerability was found."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--progress-spinner",
                               "off", "--format", "json"], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise CouldNotCheck("pip-audit did not finish in 600s (vulnerability service slow or unreachable?)") from None
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise CouldNotCheck(f"pip-audit could not run (exit {proc.returncode}): "
                            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][-200:]}") from None
    problems = []
    for d in report["dependencies"]:
        for v in d.get("vulns", []):
            problems.append(f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions', []))})")
    unaudited = [d for d in report["dependencies"] if d.get("skip_reason")]
    if unaudited and not problems:
        raise CouldNotCheck(f"{len(unaudited)} of {len(report['dependencies'])} packages could not be looked up "
                            f"(vulnerability service unreachable?), e.g. {unaudited[0]['skip_reason']}")
    return problems, proc.stdout


PROPERTIES: dict[str, Callable[[], Result]] = {
    "no-secrets": no_secrets,
    "dependencies-pinned": dependencies_pinned,
    "dependencies-audited": dependencies_audited,
}
