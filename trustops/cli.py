"""`trustops`: what the native tools (pulumi, ansible-playbook, docker) do not already do."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from trustops.controls import catalogue, engine, report
from trustops.controls.evidence import ChainError
from trustops import opsapi
from trustops.converge import ansible_ping, converge
from trustops.lab import environment
from trustops.lab.system import LabError, Progress


def cmd_up(args: argparse.Namespace) -> int:
    """The main job on the lab: hosts up, then (as they land) playbooks, app, monitors, report."""
    cfg = environment.LabConfig.from_env()
    progress = Progress()
    environment.up(cfg, progress)
    progress.step("checking that Ansible reaches every host")
    ansible_ping(cfg.inventory_file)
    converge(cfg.inventory_file, cfg.state_dir / "converge.log", progress)
    _print_reach(cfg)
    progress.step("checking the security page's controls against the lab (all kinds but pytest)")
    statuses = engine.run_controls(cfg.inventory_file, _evidence_file(cfg), skip={"pytest"})
    out = report.write(statuses, cfg.state_dir / "report", store=engine.EvidenceStore(_evidence_file(cfg)))
    converge(cfg.inventory_file, cfg.state_dir / "publish.log", progress, tags=["trust_page"], limit="app")
    print("\n".join(report.summary_lines(statuses)))
    print(f"  Trust page: {out[1]}, published at https://127.0.0.1:{cfg.ports('app')[443]}/trust/; "
          f"internal report: {out[2]}")
    return 0


def _print_reach(cfg: environment.LabConfig) -> None:
    print(f"Lab {cfg.name!r} is up. Inventory: {cfg.inventory_file}")
    for role in environment.ROLES:
        port = cfg.ports(role)[22]
        print(f"  {role:4} ssh -i {cfg.key_file} -o UserKnownHostsFile={cfg.known_hosts} -p {port} deploy@127.0.0.1")
    url, verify = environment.s3_local_endpoint(cfg)
    print(f"  s3   {url}  (credentials: {cfg.s3_credentials_file}" + (f"; CA {verify})" if verify is not True else ")"))
    print(f"  mail what the app sends (sign-in links, device notices): {cfg.maildir / 'new'}")
    print(f"  app  https://127.0.0.1:{cfg.ports('app')[443]}/login/  (trust {cfg.state_dir / 'pki' / 'ca.crt'}; "
          f"http://127.0.0.1:{cfg.ports('app')[80]} redirects)")
    prometheus, alertmanager = opsapi.lab_urls(cfg)
    print(f"  prometheus   {prometheus}   alertmanager {alertmanager}   (after the converge: user "
          f"{opsapi.OPERATOR_USER}, password {cfg.state_dir / opsapi.PASSWORD_NAME}, CA {opsapi.ca_file(cfg.state_dir)}; "
          "test the paging path: .venv/bin/trustops drill attack)")
    print(f"  ansible: ANSIBLE_CONFIG=ansible/ansible.cfg ansible -i {cfg.inventory_file} all -m ping")


def cmd_lab(args: argparse.Namespace) -> int:
    cfg = environment.LabConfig.from_env()
    if args.action == "up":
        environment.up(cfg)
        _print_reach(cfg)
    elif args.action == "down":
        removed = environment.down(cfg)
        print(f"Lab {cfg.name!r} removed ({len(removed)} items)" if removed else f"Lab {cfg.name!r}: nothing to remove")
    else:
        st = environment.status(cfg)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(f"lab {st['lab']}: docker {'running' if st['docker'] else 'NOT running'}")
            for role, h in st["hosts"].items():
                ports = ", ".join(f"127.0.0.1:{o}->{i}" for i, o in h["ports"].items())
                print(f"  {role:4} {h['state']:8} {h['container']:24} {ports}")
            print(f"  inventory: {st['inventory'] or '(none: run `trustops lab up`)'}")
        return 0 if all(h["state"] == "running" for h in st["hosts"].values()) else 3
    return 0


def _evidence_file(cfg: environment.LabConfig) -> Path:
    return Path(os.environ.get("TRUSTOPS_EVIDENCE") or cfg.state_dir / "evidence.jsonl")


def cmd_controls(args: argparse.Namespace) -> int:
    cfg = environment.LabConfig.from_env()
    evidence_file = Path(args.evidence) if args.evidence else _evidence_file(cfg)
    inventory_file = Path(args.inventory) if args.inventory else cfg.inventory_file
    if args.action == "verify":
        store = engine.EvidenceStore(evidence_file)
        report_dir = Path(args.out) if args.out else cfg.state_dir / "report"
        # by default the head the last report of this evidence published (the lab's, or --out's)
        head = args.head or (report.published_head(report_dir) if args.out or not args.evidence else None)
        try:
            print(store.verify(head).line(evidence_file)
                  + (f"; contains the head {head[:16]}... published in {report_dir / report.FEED}"
                     if head and not args.head else ""))
        except ChainError as exc:
            print(f"trustops: evidence chain broken: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "check":
        statuses = engine.run_controls(inventory_file, evidence_file, set(args.kind or []) or None,
                                       set(args.skip_kind or []), set(args.control or []) or None, args.jobs)
    else:
        statuses = engine.statuses(catalogue.load(), engine.EvidenceStore(evidence_file))
    if args.action == "report":
        for path in report.write(statuses, Path(args.out) if args.out else cfg.state_dir / "report",
                                 store=engine.EvidenceStore(evidence_file)):
            print(path)
    elif args.json:
        print(json.dumps([{"id": s.control.id, "status": s.status, "reason": s.reason,
                           "last_checked": s.last_checked.isoformat() if s.last_checked else None,
                           "overclaim": s.overclaim, "underclaim": s.underclaim} for s in statuses], indent=2))
    else:
        print("\n".join(report.summary_lines(statuses)))
    return 1 if args.action == "check" and any(s.status == "failing" for s in statuses) else 0


def cmd_drill(args: argparse.Namespace) -> int:
    from trustops import drill

    cfg = environment.LabConfig.from_env()
    result = drill.attack(cfg, Progress(), timeout=args.timeout)
    print(f"drill: of {len(result.expected)} expected alerts, {len(result.delivered)} delivered now, "
          f"{len(result.already_firing)} already firing (notified earlier), {len(result.missing)} missing")
    import time

    for name, why in result.held_back.items():
        print(f"  {name:28} not expected: {why}" + ("; DELIVERED ANYWAY: the lab let the attack through"
                                                     if name in result.leaked else ""))
    for name, (receiver, _) in result.expected.items():
        got, seen, old = result.delivered.get(name), result.at_alertmanager.get(name), result.already_firing.get(name)
        where = (f"delivered to {got[0]} {got[1]:+.1f}s" if got else
                 f"already firing, delivered to {old[0]} at {time.strftime('%H:%M:%S', time.localtime(old[1]))}"
                 " (not notified twice while it fires)" if old else f"NOT delivered to {receiver}")
        print(f"  {name:28} " + (f"at Alertmanager {seen:+.1f}s, " if seen is not None else "never at Alertmanager, ")
              + where)
    print("  (seconds after the attack ended; warnings wait group_wait 30s, critical 5s, unless the first "
          "event is older)")
    if result.missing or result.leaked:
        print("  missing alerts: check the monitors (runbooks/TrustopsMonitorDown.md) and Alertmanager "
              f"({opsapi.lab_urls(cfg)[1]})")
        return 1
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    from trustops import credentials

    creds = []
    if args.key_vault:
        try:
            creds += credentials.vault_ages(credentials.vault_listing(args.key_vault), args.max_age_days)
        except credentials.CredentialsError as exc:
            raise LabError(str(exc)) from None
    if args.secrets_dir or not args.key_vault:
        secrets_dir = Path(args.secrets_dir) if args.secrets_dir else environment.LabConfig.from_env().state_dir
        if not secrets_dir.is_dir():
            raise LabError(f"no secrets directory {secrets_dir} (the lab's state dir, or ~/.trustops/<env>)")
        creds += credentials.ages(secrets_dir, args.max_age_days)
        if not creds:
            raise LabError(f"no credentials found in {secrets_dir}: is this the right secrets directory?")
    creds.sort(key=lambda c: -c.age_days)
    print(credentials.report(creds, args.json))
    return 1 if any(c.status == "overdue" for c in creds) else 0


def cmd_staging(args: argparse.Namespace) -> int:
    from trustops import staging
    from trustops.anonymise import RuleError

    try:
        cfg = staging.load_config(Path(args.config))
        if args.action == "build":
            done = staging.build(cfg)
            print(f"staging: {done['database']} rebuilt from {done['backup']}: none of {done['originals']} production "
                  f"values in {done['cells']} cells; {done['receipts']} placeholder receipts"
                  + (f"; {done['undecryptable']} encrypted values did not decrypt and were replaced"
                     if done["undecryptable"] else ""))
            return 0
        problems, searched, cells = staging.check(cfg)
    except (staging.StagingError, RuleError) as exc:
        print(f"trustops staging: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - S3, Postgres or a key vault failing: one line, non-zero
        print(f"trustops staging: error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"  {p}")
    print(f"staging check: {len(problems)} production values found among {cells} cells "
          f"({searched} values of the newest production backup searched)")
    return 1 if problems else 0


def cmd_seed(args: argparse.Namespace) -> int:
    from trustops import seed
    from trustops.staging import StagingError

    try:
        made = seed.seed(args.companies, args.employees, args.expenses)
    except StagingError as exc:
        print(f"trustops seed: error: {exc}", file=sys.stderr)
        return 1
    print(f"seeded {made['companies']} companies, {made['employees']} people, {made['expenses']} expenses "
          "(generated; accounts have no password until `manage.py changepassword <username>`)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustops", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring up the main job on the lab (hosts, then the rest)")
    up.set_defaults(func=cmd_up)
    lab = sub.add_parser("lab", help="the local lab: Debian 12 hosts as systemd containers + S3")
    lab.add_argument("action", choices=["up", "down", "status"])
    lab.add_argument("--json", action="store_true", help="status as JSON")
    lab.set_defaults(func=cmd_lab)
    dr = sub.add_parser("drill", help="staged attacks on the lab, to watch alerts reach on-call")
    dr.add_argument("kind", choices=["attack"], help="attack: Postgres brute force and a port scan, lab to lab")
    dr.add_argument("--timeout", type=float, default=120, help="seconds to wait for every alert (default 120)")
    dr.set_defaults(func=cmd_drill)
    cr = sub.add_parser("credentials", help="age of every manual credential; exit 1 past the 90-day limit")
    cr.add_argument("--secrets-dir", help="default: the lab's state dir (cloud: ~/.trustops/<env>)")
    cr.add_argument("--max-age-days", type=int, default=90)
    cr.add_argument("--key-vault", help="cloud: the stack's vault name; ages of the keys the hosts read there "
                                        "(the writers' and the Bedrock key, the field key)")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(func=cmd_credentials)
    stg = sub.add_parser("staging", help="staging's data from production's newest backup, anonymised (PROD-04)")
    stg.add_argument("action", choices=["build", "check"],
                     help="build: restore, anonymise, verify, load and swap in; check: staging holds no value of "
                          "production's newest backup")
    stg.add_argument("--config", default="/etc/trustops/staging.json", help="the staging build's config (JSON)")
    stg.set_defaults(func=cmd_staging)
    sd = sub.add_parser("seed", help="generated data for dev, never a copy of production (the app's BENEFITS_* "
                                     "environment, as for manage.py; an empty database only)")
    sd.add_argument("--companies", type=int, default=2)
    sd.add_argument("--employees", type=int, default=6, help="per company (the first is HR)")
    sd.add_argument("--expenses", type=int, default=3, help="per employee (needs BENEFITS_RECEIPTS_BUCKET)")
    sd.set_defaults(func=cmd_seed)
    ctl = sub.add_parser("controls", help="the security page's controls: run their checks, show status, "
                                          "render the trust page")
    ctl.add_argument("action", choices=["check", "status", "report", "verify"],
                     help="check: run checks and store evidence; status: from stored evidence; report: write "
                          "the trust page (HTML, Markdown, JSON, OSCAL) and the internal report; verify: check "
                          "the evidence file's hash chain and name the first broken record")
    ctl.add_argument("--kind", action="append", choices=catalogue.CHECK_KINDS, help="only checks of this kind")
    ctl.add_argument("--skip-kind", action="append", choices=catalogue.CHECK_KINDS, help="not this kind")
    ctl.add_argument("--control", action="append", metavar="ID", help="only this control (e.g. TRANSIT-02)")
    ctl.add_argument("--evidence", help="evidence file (default: $TRUSTOPS_EVIDENCE or <lab dir>/evidence.jsonl)")
    ctl.add_argument("--inventory", help="inventory for probes (default: the lab's)")
    ctl.add_argument("--out", help="report directory (default: <lab dir>/report)")
    ctl.add_argument("--jobs", type=int, default=4, help="checks run in parallel (default 4)")
    ctl.add_argument("--head", help="verify: a chain head published earlier (trust page, trust.json) that the "
                                    "evidence must still contain (default: the head in --out's trust.json, or "
                                    "the lab report's when --evidence is not given)")
    ctl.add_argument("--json", action="store_true", help="statuses as JSON")
    ctl.set_defaults(func=cmd_controls)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LabError, catalogue.CatalogueError) as exc:
        print(f"trustops: error: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"trustops: error: permission denied on {exc.filename}: run as its owner or as root", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trustops: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
