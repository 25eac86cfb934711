"""AIDE's file-integrity check as Prometheus textfile metrics for the node exporter: how many entries
were added, removed or changed against the baseline, whether the check ran, and when (alerts
AideChangesDetected and AideCheckNotRunning). With no baseline database yet, it takes the
baseline instead, so the converge and the daily timer run the same unit under the same sandbox
(a baseline taken outside it would differ in what it sees of /dev and /tmp).

A deploy of the trustops package (its role force-reinstalls the wheels into the virtualenv, then
writes their checksums to VENV/.trustops-wheels) rewrites ~500 files there. Before checking, a run
that finds a wheel set the baseline does not hold yet updates the baseline for exactly what that
deploy wrote: the files the installed wheels' RECORDs list (modules, byte code, console scripts,
metadata), the directories above them, the stamp and the wheels. Anything else in the tree (a .pth
or module planted beside them, an edited pip, pyvenv.cfg) is still reported, deploy or not; a
package file edited outside a deploy is reported until the next deploy writes it back from the wheel.
Usage: trustops-aide-check OUT.prom [--config PATH] [--db PATH] [--venv DIR --wheels DIR]"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("added", "removed", "changed")
SUMMARY = re.compile(r"^\s*(Added|Removed|Changed) entries:\s*(\d+)\s*$", re.M)
NO_CHANGES = "found NO differences"
REPORT_LINES = 2000          # the report goes to the journal; past this, say how to see the rest
# The aide role's aide_config (tests/test_aide_check.py holds the two equal).
DEFAULT_CONFIG = "/etc/aide/aide.conf"
ERROR_CODES_FROM = 14        # aide(1): 0-7 are bit sets of added/removed/changed, 14 and up are errors
WHEELS_STAMP = ".trustops-wheels"   # the trustops_package role's record of the wheel set it installed
DEPLOYED = "deployed-wheels"         # beside the baseline: the wheel set the baseline holds
LIMIT_MAX = 120_000                  # one argument to aide; Linux takes at most 128 KiB


def parse(code: int, output: str) -> dict[str, int] | None:
    """The counts of a check, or None when AIDE failed (or its summary is missing)."""
    if code >= ERROR_CODES_FROM or code < 0:
        return None
    counts = {kind.lower(): int(n) for kind, n in SUMMARY.findall(output)}
    if code == 0 and not counts:
        return dict.fromkeys(KINDS, 0) if NO_CHANGES in output else None
    if set(counts) != set(KINDS):
        return None
    return counts


def render(counts: dict[str, int] | None, finished: float) -> str:
    lines = ["# HELP trustops_aide_changed_entries Entries AIDE's last check found added, removed or changed "
             "against the baseline.",
             "# TYPE trustops_aide_changed_entries gauge"]
    lines += [f'trustops_aide_changed_entries{{kind="{k}"}} {counts[k]}' for k in KINDS] if counts else []
    lines += ["# HELP trustops_aide_last_run_success 1 when AIDE's last check (or baseline) completed.",
              "# TYPE trustops_aide_last_run_success gauge",
              f"trustops_aide_last_run_success {int(counts is not None)}",
              "# HELP trustops_aide_last_run_timestamp_seconds When AIDE's last check (or baseline) finished.",
              "# TYPE trustops_aide_last_run_timestamp_seconds gauge",
              f"trustops_aide_last_run_timestamp_seconds {int(finished)}"]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def baseline(config: str, db: Path) -> dict[str, int] | None:
    """aide --init, then the new database becomes the baseline (what Debian's aideinit does)."""
    proc = subprocess.run(["aide", "--config", config, "--init"], capture_output=True, text=True)
    new = db.with_name(db.name + ".new")
    if proc.returncode != 0 or not new.exists():
        print(f"AIDE baseline failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
        return None
    os.replace(new, db)
    print(f"AIDE baseline taken: {db}")
    return dict.fromkeys(KINDS, 0)


def deployed_paths(venv: Path, wheels: Path) -> list[Path]:
    """Every path a deploy of the wheels in `wheels` writes into `venv`, from the RECORD of each
    wheel's installed distribution (a wheel named name-version-...whl installs name-version.dist-info)."""
    dists = {"-".join(w.name.split("-")[:2]).lower() + ".dist-info" for w in wheels.glob("*.whl")}
    paths = {venv / WHEELS_STAMP, wheels, *wheels.glob("*.whl")}
    for site in venv.glob("lib/python*/site-packages"):
        for info in site.iterdir():
            if info.name.lower() not in dists or not (info / "RECORD").is_file():
                continue
            with open(info / "RECORD", newline="") as f:
                for row in csv.reader(f):
                    path = Path(os.path.normpath(site / row[0])) if row else None
                    while path is not None and path.is_relative_to(venv) and path != venv:
                        paths.add(path)
                        path = path.parent
    return sorted(paths)


def limit_regex(paths: list[Path]) -> str:
    """An AIDE --limit (anchored at the start) matching exactly these paths, one group per directory."""
    by_dir: dict[str, list[str]] = {}
    for path in paths:
        by_dir.setdefault(str(path.parent), []).append(path.name)
    groups = [f"{re.escape(d)}/({'|'.join(re.escape(n) for n in sorted(names))})" for d, names in sorted(by_dir.items())]
    return f"({'|'.join(groups)})$"


def absorb_deploy(config: str, db: Path, venv: Path, wheels: Path) -> bool:
    """Updates the baseline for what the last deploy wrote, once per new wheel set; False when AIDE failed."""
    stamp, held = venv / WHEELS_STAMP, db.with_name(DEPLOYED)
    if not stamp.is_file() or (held.is_file() and held.read_text() == stamp.read_text()):
        return True
    want = stamp.read_text()
    limit = limit_regex(deployed_paths(venv, wheels))
    if len(limit) > LIMIT_MAX:
        print(f"AIDE: the deploy's {len(limit)}-character path list is over {LIMIT_MAX}: retake the baseline by hand")
        return False
    proc = subprocess.run(["aide", "--config", config, "--update", "--limit", limit], capture_output=True, text=True)
    new = db.with_name(db.name + ".new")
    if proc.returncode >= ERROR_CODES_FROM or proc.returncode < 0 or not new.exists():
        print(f"AIDE deploy update failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
        return False
    print(f"AIDE baseline updated for the deploy of {wheels} into {venv}:")
    print("\n".join(proc.stdout.splitlines()[:REPORT_LINES]))
    os.replace(new, db)
    held.write_text(want)
    return True


def check(config: str) -> dict[str, int] | None:
    proc = subprocess.run(["aide", "--config", config, "--check"], capture_output=True, text=True)
    report = proc.stdout.splitlines()
    print("\n".join(report[:REPORT_LINES]))
    if len(report) > REPORT_LINES:
        print(f"... {len(report) - REPORT_LINES} more lines: sudo aide --config {config} --check")
    if proc.stderr.strip():
        print(proc.stderr.strip()[-2000:])
    counts = parse(proc.returncode, proc.stdout)
    if counts is None:
        print(f"AIDE check failed (exit {proc.returncode})")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trustops-aide-check", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="the .prom file in the node exporter's textfile directory")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--db", type=Path, default=Path("/var/lib/aide/aide.db"), help="the baseline (database_in)")
    p.add_argument("--venv", type=Path, help="the trustops package's virtualenv (its deploys update the baseline)")
    p.add_argument("--wheels", type=Path, help="the wheels that virtualenv was installed from")
    args = p.parse_args(argv)
    if (args.venv is None) != (args.wheels is None):
        print("trustops-aide-check: --venv and --wheels go together", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():
        print(f"trustops-aide-check: {args.out.parent} is not a directory", file=sys.stderr)
        return 2
    if not args.db.exists():
        counts = baseline(args.config, args.db)
        if counts is not None and args.venv is not None and (args.venv / WHEELS_STAMP).is_file():
            args.db.with_name(DEPLOYED).write_text((args.venv / WHEELS_STAMP).read_text())
    elif args.venv is None or absorb_deploy(args.config, args.db, args.venv, args.wheels):
        counts = check(args.config)
    else:
        counts = None
    write_atomically(args.out, render(counts, time.time()))
    return 0 if counts is not None else 1


if __name__ == "__main__":
    sys.exit(main())
