"""trustops-pgbackup: Postgres backups streamed to S3 (SSE-S3), their retention, and restore drills.

Runs on the db host as `postgres` (peer authentication), with Debian's python3-boto3 and
python3-psycopg. Nothing is staged on local disk: pg_dump's output goes straight into a multipart
upload, and a drill streams the object straight into pg_restore.

  backup   pg_dump -Fc of each database, in the same snapshot as the row counts its manifest records
  list     the backups in the bucket, newest first
  prune    delete backups (every version) older than --keep-days; the cloud's bucket lifecycle does
           the same, the lab's S3 cannot expire objects
  check-config  read the config and the S3 key file it names, contact nothing (the role runs it)
  drill    restore the newest (or --key) backup into a scratch database, verify its checksum and row
           counts against the manifest, report RTO (restore time) and RPO (backup age), drop it

Every run writes Prometheus metrics to a node-exporter textfile and exits non-zero on failure.
The config (/etc/trustops/backup.json) names the S3 key file; both are readable by postgres, so the
commands work by hand exactly as the systemd units run them (trustops.backups.config).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from trustops.backups.config import CONFIG, BackupConfig, ConfigError, load

CHUNK = 8 * 1024 * 1024


class BackupError(RuntimeError):
    pass


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def s3_client(cfg: BackupConfig):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=cfg.region, endpoint_url=cfg.endpoint_url or None, **cfg.credentials(),
                        config=Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3}))


class Hashing:
    """A read()-able wrapper that counts and hashes what passes through it."""

    def __init__(self, raw) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


HELP = {
    "last_success_timestamp_seconds": "When the last successful run finished.",
    "last_failure_timestamp_seconds": "When the last failed run finished.",
    "last_run_success": "1 when the last run succeeded, 0 when it failed.",
    "last_size_bytes": "Size of the last backup.",
    "last_duration_seconds": "How long the last run took.",
    "last_backup_age_seconds": "Age of the backup the last drill restored (the RPO).",
}


def write_metrics(path: str, name: str, samples: dict[str, float], labels: dict[str, str]) -> None:
    """Replaces this job's textfile atomically (prometheus_client writes a temporary file and renames it)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    if not path:
        return
    registry = CollectorRegistry()
    for metric, value in samples.items():
        Gauge(f"trustops_{name}_{metric}", HELP.get(metric, metric.replace("_", " ")), sorted(labels),
              registry=registry).labels(**labels).set(value)
    write_to_textfile(path, registry)


def _merge_metrics(path: str, database: str, samples: dict[str, float]) -> None:
    """Keeps the last success of each database when a later run fails (one file per database)."""
    from prometheus_client.parser import text_string_to_metric_families

    if not path:
        return
    p = Path(path)
    target = p.with_name(f"{p.stem}-{database}{p.suffix}")
    old: dict[str, float] = {}
    if target.exists():
        try:
            for family in text_string_to_metric_families(target.read_text()):
                for sample in family.samples:
                    if sample.name.startswith("trustops_backup_"):
                        old[sample.name[len("trustops_backup_"):]] = sample.value
        except ValueError:   # a damaged file: start again rather than never write metrics
            old = {}
    old.update(samples)
    write_metrics(str(target), "backup", old, {"database": database, "host": socket.gethostname()})


def key_for(cfg: BackupConfig, database: str, started: dt.datetime) -> str:
    return f"{cfg.prefix.rstrip('/')}/{database}/{started:%Y-%m-%dT%H%M%SZ}.dump"


def _counts(cur) -> dict[str, int]:
    from psycopg import sql

    cur.execute("""select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                   where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
                   and n.nspname not like 'pg_toast%' order by 1, 2""")
    out = {}
    for schema, table in cur.fetchall():
        cur.execute(sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        out[f"{schema}.{table}"] = cur.fetchone()[0]
    return out


def backup_one(cfg: BackupConfig, s3, database: str) -> dict:
    import psycopg
    from boto3.s3.transfer import TransferConfig

    started = now()
    key = key_for(cfg, database, started)
    # The manifest's row counts and the dump come from one exported snapshot: they agree exactly.
    with psycopg.connect(dbname=database, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("set transaction isolation level repeatable read, read only")
        cur.execute("select pg_export_snapshot(), current_setting('server_version')")
        snapshot, version = cur.fetchone()
        counts = _counts(cur)
        proc = subprocess.Popen(["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--dbname", database],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stream = Hashing(proc.stdout)
        try:
            s3.upload_fileobj(stream, cfg.bucket, key, ExtraArgs={"ServerSideEncryption": "AES256"},
                              Config=TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK,
                                                    max_concurrency=2))
        except Exception:
            proc.kill()
            proc.wait()
            raise
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            try:   # best effort: the cloud's writer may not delete; without a manifest it is incomplete
                _delete_all_versions(s3, cfg.bucket, key)
            except Exception:  # noqa: BLE001
                pass
            raise BackupError(f"pg_dump {database} failed (exit {proc.returncode}): {err.strip()[-300:]}")
    head = s3.head_object(Bucket=cfg.bucket, Key=key)
    if head["ContentLength"] != stream.size or head.get("ServerSideEncryption") != "AES256":
        raise BackupError(f"{key}: stored {head['ContentLength']} bytes with {head.get('ServerSideEncryption')!r}, "
                          f"sent {stream.size} for AES256")
    manifest = {"format": 1, "database": database, "key": key, "size": stream.size,
                "sha256": stream.sha256.hexdigest(), "postgres_version": version, "host": socket.gethostname(),
                "started": started.isoformat(), "finished": now().isoformat(), "row_counts": counts}
    s3.put_object(Bucket=cfg.bucket, Key=key + ".manifest.json", Body=json.dumps(manifest, indent=2).encode(),
                  ServerSideEncryption="AES256", ContentType="application/json")
    return manifest


def cmd_backup(cfg: BackupConfig) -> int:
    s3, failed = s3_client(cfg), 0
    for database in cfg.databases:
        t0 = time.monotonic()
        try:
            m = backup_one(cfg, s3, database)
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same loud way
            failed += 1
            print(f"backup {database}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            _merge_metrics(cfg.metrics_file, database, {"last_failure_timestamp_seconds": time.time(),
                                                           "last_run_success": 0})
            continue
        took = time.monotonic() - t0
        print(f"backup {database}: s3://{cfg.bucket}/{m['key']} {m['size']} bytes sha256 {m['sha256'][:16]} "
              f"in {took:.1f}s; {sum(m['row_counts'].values())} rows in {len(m['row_counts'])} tables")
        _merge_metrics(cfg.metrics_file, database, {
            "last_success_timestamp_seconds": time.time(), "last_size_bytes": m["size"],
            "last_duration_seconds": round(took, 3), "last_run_success": 1})
    return 1 if failed else 0


def backups(cfg: BackupConfig, s3, database: str | None = None) -> list[dict]:
    """Backups with their manifests, newest first. A dump without a manifest is incomplete."""
    out = []
    prefix = cfg.prefix.rstrip("/") + "/" + (f"{database}/" if database else "")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.bucket, Prefix=prefix):
        keys = {o["Key"]: o for o in page.get("Contents", [])}
        for key, obj in keys.items():
            if key.endswith(".dump"):
                out.append({"key": key, "size": obj["Size"], "complete": key + ".manifest.json" in keys,
                            "when": dt.datetime.strptime(key.rsplit("/", 1)[1], "%Y-%m-%dT%H%M%SZ.dump")
                            .replace(tzinfo=dt.timezone.utc)})
    return sorted(out, key=lambda b: b["when"], reverse=True)


def cmd_list(cfg: BackupConfig) -> int:
    for b in backups(cfg, s3_client(cfg)):
        print(f"{b['when']:%Y-%m-%d %H:%M:%S}Z  {b['size']:>12}  {'ok        ' if b['complete'] else 'INCOMPLETE'}"
              f"  {b['key']}")
    return 0


def _delete_all_versions(s3, bucket: str, key: str) -> int:
    n = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if v["Key"] == key:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
                n += 1
    return n


def cmd_prune(cfg: BackupConfig) -> int:
    s3 = s3_client(cfg)
    cutoff = now() - dt.timedelta(days=int(cfg.keep_days))
    kept = pruned = 0
    for b in backups(cfg, s3):
        if b["when"] < cutoff:
            for key in (b["key"], b["key"] + ".manifest.json"):
                _delete_all_versions(s3, cfg.bucket, key)
            pruned += 1
            print(f"pruned {b['key']} ({b['when']:%Y-%m-%d}, older than {cfg.keep_days} days)")
        else:
            kept += 1
    print(f"prune: {pruned} removed, {kept} kept (keep {cfg.keep_days} days)")
    return 0


def restore(s3, bucket: str, key: str, manifest: dict, dbname: str, *extra: str) -> list[str]:
    """Streams the backup object into pg_restore (`dbname`: a database name or a connection string);
    the problems found: a checksum that is not the manifest's, pg_restore's failure. The drill and
    the staging build (trustops/staging.py) restore through here."""
    problems = []
    stream = Hashing(s3.get_object(Bucket=bucket, Key=key)["Body"])
    proc = subprocess.Popen(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", *extra,
                             "--dbname", dbname], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    broken = False
    while chunk := stream.read(CHUNK):
        if not broken:
            try:
                proc.stdin.write(chunk)
            except BrokenPipeError:
                broken = True   # keep reading: the checksum is still worth reporting
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    if stream.sha256.hexdigest() != manifest["sha256"] or stream.size != manifest["size"]:
        problems.append(f"checksum mismatch: object has {stream.size} bytes sha256 "
                        f"{stream.sha256.hexdigest()[:16]}, manifest says {manifest['size']} bytes "
                        f"sha256 {manifest['sha256'][:16]}")
    if proc.wait() != 0:
        problems.append(f"pg_restore failed (exit {proc.returncode}): {err.strip()[-300:]}")
    return problems


def cmd_drill(cfg: BackupConfig, key: str | None, database: str | None, keep: bool) -> int:
    import psycopg

    s3 = s3_client(cfg)
    if key is None:
        complete = [b for b in backups(cfg, s3, database) if b["complete"]]
        if not complete:
            raise BackupError(f"no complete backup under s3://{cfg.bucket}/{cfg.prefix}")
        key = complete[0]["key"]
    t0 = time.monotonic()
    manifest = json.loads(s3.get_object(Bucket=cfg.bucket, Key=key + ".manifest.json")["Body"].read())
    scratch = f"trustops_drill_{now():%Y%m%d%H%M%S}"
    problems: list[str] = []
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f'create database "{scratch}"')
        try:
            problems += restore(s3, cfg.bucket, key, manifest, scratch)
            if not problems:
                with psycopg.connect(dbname=scratch) as conn, conn.cursor() as cur:
                    restored = _counts(cur)
                for table, n in manifest["row_counts"].items():
                    if restored.get(table) != n:
                        problems.append(f"{table}: {restored.get(table)} rows restored, manifest says {n}")
        finally:
            if not keep:
                admin.execute(f'drop database if exists "{scratch}" with (force)')
    rto = time.monotonic() - t0
    rpo = (now() - dt.datetime.fromisoformat(manifest["started"])).total_seconds()
    result = {"ok": not problems, "key": key, "database": manifest["database"], "restore_seconds": round(rto, 2),
              "backup_age_seconds": round(rpo), "tables": len(manifest["row_counts"]),
              "rows": sum(manifest["row_counts"].values()), "problems": problems,
              "scratch_database": scratch if keep else None}
    print(json.dumps(result))
    if problems:
        print(f"drill FAILED for {key}: " + "; ".join(problems), file=sys.stderr)
    else:
        print(f"drill ok: {key} restored and verified ({result['rows']} rows in {result['tables']} tables); "
              f"RTO {rto:.1f}s, RPO {rpo / 3600:.1f}h", file=sys.stderr)
    samples = {"last_run_success": int(not problems), "last_duration_seconds": round(rto, 3),
               "last_backup_age_seconds": round(rpo)}
    if not problems:
        samples["last_success_timestamp_seconds"] = time.time()
    if cfg.metrics_file:
        p = Path(cfg.metrics_file)
        write_metrics(str(p.with_name(f"drill-{manifest['database']}{p.suffix}")), "restore_drill", samples,
                      {"database": manifest["database"], "host": socket.gethostname()})
    return 0 if not problems else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustops-pgbackup", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(CONFIG),
                   help=f"config file (default {CONFIG}, readable by postgres; it names the S3 key file)")
    p.add_argument("--endpoint-url", help="override the S3 endpoint (tests, a regional endpoint)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check-config", help="read the config and the key file it names; contact nothing")
    sub.add_parser("backup")
    sub.add_parser("list")
    pr = sub.add_parser("prune")
    pr.add_argument("--keep-days", type=int)
    d = sub.add_parser("drill")
    d.add_argument("--key", help="the backup object to restore (default: the newest complete one)")
    d.add_argument("--database", help="the newest backup of this database")
    d.add_argument("--keep", action="store_true", help="keep the scratch database for inspection")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load(Path(args.config), {"endpoint_url": args.endpoint_url,
                                       "keep_days": getattr(args, "keep_days", None)})
        if args.command == "check-config":
            cfg.credentials()
            print(f"config {args.config} ok: {', '.join(cfg.databases)} to s3://{cfg.bucket}/{cfg.prefix}")
            return 0
        if args.command == "backup":
            return cmd_backup(cfg)
        if args.command == "list":
            return cmd_list(cfg)
        if args.command == "prune":
            return cmd_prune(cfg)
        return cmd_drill(cfg, args.key, args.database, args.keep)
    except (BackupError, ConfigError) as exc:
        print(f"trustops-pgbackup: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - S3 or Postgres unreachable: one line, non-zero
        print(f"trustops-pgbackup: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
