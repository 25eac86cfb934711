"""AIDE's file-integrity check as Prometheus textfile metrics for the node exporter: how many entries
were added, removed or changed against the baseline, whether the check ran, and when (alerts
AideChangesDetected and AideCheckNotRunning). With no baseline database yet, it takes the
baseline instead, so the converge and the daily timer run the same unit under the same sandbox
(a baseline taken outside it would differ in what it sees of /dev and /tmp).
Usage: trustops-aide-check OUT.prom [--config PATH] [--db PATH]"""
from __future__ import annotations

import argparse
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
ERROR_CODES_FROM = 14        # aide(1): 0-7 are bit sets of added/removed/changed, 14 and up are errors


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
    p.add_argument("--config", default="/etc/aide/aide.conf")
    p.add_argument("--db", type=Path, default=Path("/var/lib/aide/aide.db"), help="the baseline (database_in)")
    args = p.parse_args(argv)
    if not args.out.parent.is_dir():
        print(f"trustops-aide-check: {args.out.parent} is not a directory", file=sys.stderr)
        return 2
    counts = check(args.config) if args.db.exists() else baseline(args.config, args.db)
    write_atomically(args.out, render(counts, time.time()))
    return 0 if counts is not None else 1


if __name__ == "__main__":
    sys.exit(main())
