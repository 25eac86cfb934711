"""Backups on the converged test lab, for real: pg_dump streamed into the lab's S3 with SSE-S3,
a restore drill that verifies checksum and row counts, a corrupted object caught, S3 down caught,
and the 7-day prune the lab's S3 needs."""
from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess

import pytest

from tests.playbooks import host_of
from trustops.lab import environment


def sh(lab_config, role: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", "exec", lab_config.container(role), "sh", "-c", command],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{command!r} exit {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return proc


def as_postgres(cmd: str) -> str:
    """A pgbackup command as on-call types it (runbooks/restore-drill.md): user postgres, nothing in the
    environment; the tool finds its config and the writer's key file itself."""
    return f"sudo -u postgres {cmd}"


def psql(lab_config, sql: str, db: str = "benefits") -> str:
    return sh(lab_config, "db", f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"").stdout.strip()


@pytest.fixture(scope="module")
def data(lab, lab_config, converged):
    """A table of random rows, made now: what a backup must bring back exactly."""
    rows = 500 + secrets.randbelow(500)
    psql(lab_config, "drop table if exists benefits.backup_probe; create table benefits.backup_probe "
                     "(id int primary key, note text); insert into benefits.backup_probe select g, "
                     f"md5(random()::text) from generate_series(1, {rows}) g")
    digest = psql(lab_config, "select md5(string_agg(id || ':' || note, ',' order by id)) from benefits.backup_probe")
    return {"rows": rows, "digest": digest}


def backup_now(lab_config) -> None:
    sh(lab_config, "db", "systemctl start trustops-backup.service")


def newest(lab_config) -> dict:
    s3 = environment.s3_client(lab_config)
    bucket = environment.bucket_names(lab_config)["backups_bucket"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"postgres/{host_of(lab_config, 'db')}/").get("Contents", [])
                  if o["Key"].endswith(".dump"))
    assert keys, "no backup in the bucket"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=keys[-1] + ".manifest.json")["Body"].read())
    return {"s3": s3, "bucket": bucket, "key": keys[-1], "manifest": manifest}


def test_backup_restores_to_identical_data(lab_config, data):
    backup_now(lab_config)
    b = newest(lab_config)
    head = b["s3"].head_object(Bucket=b["bucket"], Key=b["key"])
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == b["manifest"]["size"]
    mhead = b["s3"].head_object(Bucket=b["bucket"], Key=b["key"] + ".manifest.json")
    assert mhead["ServerSideEncryption"] == "AES256"
    assert b["manifest"]["row_counts"]["benefits.backup_probe"] == data["rows"]
    assert b["manifest"]["postgres_version"].startswith("15.")
    drill = sh(lab_config, "db", as_postgres("trustops-pgbackup drill --keep"))
    report = json.loads(drill.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["key"] == b["key"] and report["problems"] == []
    assert report["restore_seconds"] > 0 and report["backup_age_seconds"] < 600
    scratch = report["scratch_database"]
    try:
        restored = psql(lab_config, "select md5(string_agg(id || ':' || note, ',' order by id)) "
                                    "from benefits.backup_probe", db=scratch)
        assert restored == data["digest"]
    finally:
        psql(lab_config, f'drop database if exists "{scratch}"', db="postgres")
    metrics = sh(lab_config, "db", "cat /var/lib/trustops/metrics/backup-benefits.prom").stdout
    assert f'trustops_backup_last_run_success{{database="benefits",host="{host_of(lab_config, "db")}"}} 1' in metrics
    assert "trustops_backup_last_success_timestamp_seconds" in metrics


def test_a_corrupted_backup_is_detected(lab_config, data):
    backup_now(lab_config)
    b = newest(lab_config)
    body = bytearray(b["s3"].get_object(Bucket=b["bucket"], Key=b["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    b["s3"].put_object(Bucket=b["bucket"], Key=b["key"], Body=bytes(body), ServerSideEncryption="AES256")
    drill = sh(lab_config, "db", as_postgres(f"trustops-pgbackup drill --key {b['key']}"), check=False)
    assert drill.returncode == 1
    report = json.loads(drill.stdout.strip().splitlines()[-1])
    assert not report["ok"] and any(p.startswith("checksum mismatch") for p in report["problems"])
    metrics = sh(lab_config, "db", "cat /var/lib/trustops/metrics/drill-benefits.prom").stdout
    assert f'trustops_restore_drill_last_run_success{{database="benefits",host="{host_of(lab_config, "db")}"}} 0' in metrics
    backup_now(lab_config)   # leave a good newest backup behind


def test_the_job_fails_loudly_when_s3_is_unreachable(lab_config, data):
    before = sh(lab_config, "db", "cat /var/lib/trustops/metrics/backup-benefits.prom").stdout
    run = sh(lab_config, "db", as_postgres("trustops-pgbackup --endpoint-url http://127.0.0.1:9 backup"), check=False)
    assert run.returncode == 1 and "backup benefits: FAILED" in run.stderr
    after = sh(lab_config, "db", "cat /var/lib/trustops/metrics/backup-benefits.prom").stdout
    assert f'trustops_backup_last_run_success{{database="benefits",host="{host_of(lab_config, "db")}"}} 0' in after
    assert "trustops_backup_last_failure_timestamp_seconds" in after

    def last_success(text: str) -> str:
        return next(l for l in text.splitlines() if l.startswith("trustops_backup_last_success_timestamp_seconds"))
    assert last_success(after) == last_success(before)   # the last good backup is still what counts
    backup_now(lab_config)


def test_backups_older_than_seven_days_go(lab_config, data):
    """The flat lab prunes with its own key (its S3 runs no lifecycle rules). On the twin, as on AWS,
    the bucket's lifecycle rule expires backups after BACKUP_RETENTION_DAYS and the db host's writer
    key cannot delete one: prune is refused in one line and the old backup stays (the role does not
    run prune there)."""
    b = newest(lab_config)
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)).strftime("%Y-%m-%dT%H%M%SZ")
    old_key = f"postgres/{host_of(lab_config, 'db')}/benefits/{old}.dump"
    for key in (old_key, old_key + ".manifest.json"):
        b["s3"].put_object(Bucket=b["bucket"], Key=key, Body=b"old", ServerSideEncryption="AES256")
    if lab_config.kind == "twin":
        from trustops.infra.storage import BACKUP_RETENTION_DAYS

        rules = b["s3"].get_bucket_lifecycle_configuration(Bucket=b["bucket"])["Rules"]
        assert any(r["Status"] == "Enabled" and r.get("Expiration", {}).get("Days") == BACKUP_RETENTION_DAYS
                   and "NoncurrentVersionExpiration" in r for r in rules), rules
        run = sh(lab_config, "db", as_postgres("trustops-pgbackup prune"), check=False)
        assert run.returncode == 1 and run.stderr.strip().splitlines() == [
            "trustops-pgbackup: error: ClientError: An error occurred (AccessDenied) when calling the "
            "ListObjectVersions operation: Access Denied"], run.stderr
        assert b["s3"].head_object(Bucket=b["bucket"], Key=old_key)["ContentLength"] == 3   # still there
        for key in (old_key, old_key + ".manifest.json"):    # the lifecycle's work, done with the lab's key
            for v in b["s3"].list_object_versions(Bucket=b["bucket"], Prefix=key).get("Versions", []):
                b["s3"].delete_object(Bucket=b["bucket"], Key=key, VersionId=v["VersionId"])
        return
    out = sh(lab_config, "db", as_postgres("trustops-pgbackup prune")).stdout
    assert f"pruned {old_key}" in out
    versions = b["s3"].list_object_versions(Bucket=b["bucket"], Prefix=old_key)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")   # gone, every version
    assert b["s3"].head_object(Bucket=b["bucket"], Key=b["key"])["ContentLength"] > 0   # the fresh one stays


def test_the_tool_says_in_one_line_when_run_as_a_user_who_cannot_read_its_config(lab_config, converged):
    run = sh(lab_config, "db", "sudo -u nobody trustops-pgbackup list", check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "trustops-pgbackup: error: cannot read config /etc/trustops/backup.json (Permission denied): "
        "it is readable by root and postgres"], run.stderr
    ok = sh(lab_config, "db", as_postgres("trustops-pgbackup check-config"))
    assert "config /etc/trustops/backup.json ok: benefits to s3://" in ok.stdout
