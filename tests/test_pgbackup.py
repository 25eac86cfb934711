"""The backup tool's S3 side without a lab (moto in-process): listing, completeness, prune of every
version past the retention, metrics files, config errors, the key file the config names. The lab
tests run it for real."""
import datetime as dt
import json
import os

import boto3
import pytest
from moto import mock_aws

from trustops.backups import pgbackup
from trustops.backups.config import BackupConfig


@pytest.fixture
def s3(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="eu-central-1")
        client.create_bucket(Bucket="trustops-backups", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        client.put_bucket_versioning(Bucket="trustops-backups", VersioningConfiguration={"Status": "Enabled"})
        yield client


def cfg(tmp_path, **kw):
    return BackupConfig(**{"databases": ["benefits"], "bucket": "trustops-backups", "prefix": "postgres/db",
                           "region": "eu-central-1", "endpoint_url": None, "keep_days": 7,
                           "metrics_file": str(tmp_path / "backup.prom"), **kw})


def put(s3, days_ago: float, manifest: bool = True) -> str:
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)
    key = f"postgres/db/benefits/{when:%Y-%m-%dT%H%M%SZ}.dump"
    s3.put_object(Bucket="trustops-backups", Key=key, Body=b"x", ServerSideEncryption="AES256")
    s3.put_object(Bucket="trustops-backups", Key=key, Body=b"xy", ServerSideEncryption="AES256")   # a second version
    if manifest:
        s3.put_object(Bucket="trustops-backups", Key=key + ".manifest.json", Body=b"{}", ServerSideEncryption="AES256")
    return key


def test_list_marks_incomplete_backups_and_sorts_newest_first(s3, tmp_path):
    old, new, broken = put(s3, 3), put(s3, 1), put(s3, 0.5, manifest=False)
    got = pgbackup.backups(cfg(tmp_path), s3)
    assert [b["key"] for b in got] == [broken, new, old]
    assert [b["complete"] for b in got] == [False, True, True]


def test_prune_deletes_every_version_past_retention_and_keeps_the_rest(s3, tmp_path, monkeypatch, capsys):
    put(s3, 8)   # past the 7 days
    new = put(s3, 6)
    monkeypatch.setattr(pgbackup, "s3_client", lambda c: s3)
    assert pgbackup.cmd_prune(cfg(tmp_path)) == 0
    remaining = s3.list_object_versions(Bucket="trustops-backups", Prefix="postgres/")
    keys = {v["Key"] for v in remaining.get("Versions", []) + remaining.get("DeleteMarkers", [])}
    assert keys == {new, new + ".manifest.json"}
    assert "1 removed, 1 kept" in capsys.readouterr().out


def test_metrics_keep_the_last_success_when_a_run_fails(tmp_path):
    path = str(tmp_path / "backup.prom")
    pgbackup._merge_metrics(path, "benefits", {"last_success_timestamp_seconds": 1000.0, "last_run_success": 1})
    pgbackup._merge_metrics(path, "benefits", {"last_failure_timestamp_seconds": 2000.0, "last_run_success": 0})
    text = (tmp_path / "backup-benefits.prom").read_text()
    assert 'trustops_backup_last_success_timestamp_seconds{database="benefits"' in text and "} 1000.0" in text
    assert "trustops_backup_last_run_success{" in text and text.count("# TYPE") == 3


def test_bad_config_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "backup.json"
    bad.write_text(json.dumps({"databases": ["benefits"]}))
    assert pgbackup.main(["--config", str(bad), "list"]) == 1
    assert "lacks bucket, prefix, region" in capsys.readouterr().err
    assert pgbackup.main(["--config", str(tmp_path / "missing.json"), "list"]) == 1
    assert "cannot read config" in capsys.readouterr().err


def test_metrics_file_is_valid_exposition_and_survives_a_damaged_one(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    path = str(tmp_path / "backup.prom")
    (tmp_path / "backup-benefits.prom").write_text("trustops_backup_last_run_success{oops\n")
    pgbackup._merge_metrics(path, "benefits", {"last_run_success": 1})
    families = list(text_string_to_metric_families((tmp_path / "backup-benefits.prom").read_text()))
    assert [(f.name, f.type, f.samples[0].value) for f in families] == [("trustops_backup_last_run_success", "gauge", 1)]
    assert families[0].documentation.startswith("1 when the last run succeeded")


@pytest.mark.parametrize("change, says", [
    ({"keep_days": "seven"}, "keep_days: Input should be a valid integer"),
    ({"keep_days": 0}, "keep_days: Input should be greater than or equal to 1"),
    ({"databases": []}, "databases: List should have at least 1 item"),
    ({"bucket": ""}, "bucket: String should have at least 1 character"),
    ({"buckte": "x"}, "buckte: Extra inputs are not permitted"),
])
def test_a_wrong_value_is_one_line_naming_the_key(tmp_path, capsys, change, says):
    good = cfg(tmp_path).model_dump(mode="json")
    path = tmp_path / "backup.json"
    path.write_text(json.dumps({**good, **change}))
    assert pgbackup.main(["--config", str(path), "check-config"]) == 1
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_the_config_names_the_key_file_the_tool_reads_itself(s3, tmp_path, monkeypatch, capsys):
    """What `sudo -u postgres trustops-pgbackup list` needs: no environment, the key from the config's file."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    key = tmp_path / "backup.env"
    key.write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({**cfg(tmp_path).model_dump(mode="json"), "credentials_file": str(key)}))
    put(s3, 1)
    assert pgbackup.main(["--config", str(config), "list"]) == 0
    assert "postgres/db/benefits/" in capsys.readouterr().out
    key.write_text("AWS_ACCESS_KEY_ID=testing\n")
    assert pgbackup.main(["--config", str(config), "list"]) == 1
    assert "lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY" in capsys.readouterr().err
    key.chmod(0)
    if os.geteuid() != 0:   # root reads a 0000 file
        assert pgbackup.main(["--config", str(config), "list"]) == 1
        assert "run as postgres" in capsys.readouterr().err
    key.unlink()
    assert pgbackup.main(["--config", str(config), "check-config"]) == 1
    assert f"cannot read the S3 key file {key}" in capsys.readouterr().err
