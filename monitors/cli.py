"""trustops-monitor: run the daemon, replay logs for incident response, check a config."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from trustops.monitors.monitor import ConfigError, Monitor, load_config, replay
from trustops.monitors.pg import DEBIAN_PREFIX
from trustops.monitors.rules import DEFAULT_RULES, RuleError


def _fmt_ts(ts: float) -> str:
    from trustops.monitors.alerts import rfc3339
    return rfc3339(ts)


def cmd_replay(a: argparse.Namespace) -> int:
    for p in a.files:
        if str(p) != "-" and not p.is_file():
            print(f"trustops-monitor: error: {p}: no such file", file=sys.stderr)
            return 2
    by_rule: Counter = Counter()

    def show(d) -> None:  # streamed, so a long replay shows progress and holds no list
        by_rule[d.rule] += 1
        if not a.json and not a.counts_by_source:
            print(f"{_fmt_ts(d.last_ts)}  {d.severity:8} {d.rule:44} {d.group:40} {d.summary}")

    pipe = replay(a.files, a.rules, a.allowed_network, a.allowlist, None, a.log_line_prefix, a.type,
                  by_source=a.counts_by_source, on_detection=None if a.json else show)
    if a.counts_by_source:
        counts = {kind: dict(sorted(per.items())) for kind, per in sorted(pipe.by_source.items())}  # type: ignore[union-attr]
        print(json.dumps(counts, indent=1))
        return 0
    if a.json:
        print(json.dumps({"lines": pipe.lines, "errors": {f"{k[0]}:{k[1]}": v for k, v in pipe.errors.items()},
                          "events": {f"{k[0]}:{k[1]}": v for k, v in pipe.events.items()},
                          "detections": [d.as_dict() for d in pipe.detections]}, indent=2))
        return 0
    total = sum(pipe.lines.values())
    errs = sum(pipe.errors.values())
    print(f"\n{total} lines, {sum(pipe.events.values())} events, {errs} skipped lines, "
          f"{sum(by_rule.values())} detections" + (f" ({', '.join(f'{r}: {n}' for r, n in by_rule.most_common())})"
                                                  if by_rule else ""), file=sys.stderr)
    return 1 if by_rule and a.fail_on_detection else 0


def cmd_check(a: argparse.Namespace) -> int:
    cfg = load_config(a.config)
    print(f"config {a.config}: OK ({len(cfg.inputs)} inputs, rules from {cfg.rules_file}, "
          f"alertmanager {', '.join(cfg.alertmanager_urls) or 'not set'})")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config)
    print(f"trustops-monitor: {len(cfg.inputs)} inputs, metrics on {cfg.metrics_listen}, "
          f"alertmanager {', '.join(cfg.alertmanager_urls) or 'not set'}", file=sys.stderr, flush=True)
    Monitor(cfg).run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="trustops-monitor", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run as a daemon from a YAML config")
    r.add_argument("-c", "--config", required=True, type=Path)
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check-config", help="check a config and its rules, then exit")
    c.add_argument("-c", "--config", required=True, type=Path)
    c.set_defaults(func=cmd_check)
    rp = sub.add_parser("replay", help="scan existing logs and print detections")
    rp.add_argument("files", nargs="+", type=Path, help="log files, or - for standard input (with --type)")
    rp.add_argument("--type", choices=["postgres", "postgres-json", "ufw", "app", "hostauth"],
                    help="default: sniffed per file (hostauth: journalctl -o json of sshd, sudo, user and group tools)")
    rp.add_argument("--log-line-prefix", default=DEBIAN_PREFIX)
    rp.add_argument("--rules", default=str(DEFAULT_RULES))
    rp.add_argument("--allowed-network", action="append", default=[], help="CIDR allowed to reach Postgres")
    rp.add_argument("--allowlist", action="append", default=[], help="CIDR never alerted on")
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--counts-by-source", action="store_true",
                    help="print attack events (auth failures, blocked packets) per source as JSON")
    rp.add_argument("--fail-on-detection", action="store_true", help="exit 1 when anything is detected")
    rp.set_defaults(func=cmd_replay)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except (ConfigError, RuleError, ValueError) as exc:
        print(f"trustops-monitor: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
