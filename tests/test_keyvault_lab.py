"""Issues 15 and 16 on the twin: each host gets exactly its own keys by the stack's path. The
converged hosts read them from the lab's Key Vault stand-in with their identity (IMDS through the
router, as on Azure), nothing of the key passes through the control node, moto enforces each
key's IAM policy on the real path, and a vault that is down fails the converge in one line."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.playbooks import app_live_slot, host_of, lab_root_held_out, playbook, recap
from trustops.infra import host_secret
from trustops.infra.bedrock import PURPOSE as BEDROCK
from trustops.infra.vault import access_key_secret
from trustops.lab import twin

pytestmark = pytest.mark.lab
VENV_PYTHON = "/opt/trustops/venv/bin/python"


@pytest.fixture(scope="module")
def twin_cfg(lab, lab_config, converged):
    if lab_config.kind != "twin":
        pytest.skip("the Key Vault path exists on the twin (the flat lab copies the lab's key)")
    return lab_config


def sh(cfg, role: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", cfg.container(role), "sh", "-c", command], capture_output=True,
                          text=True, timeout=300)


def _key_of(cfg, purpose: str) -> dict:
    plan = twin.load_plan(cfg)
    user = next(u for u, i in plan.iam_users.items() if (i.get("tags") or {}).get("purpose") == purpose)
    return json.loads(twin.iam_key_file(cfg, user).read_text())


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _read_as(cfg, role: str, secret: str) -> subprocess.CompletedProcess:
    inv = json.loads(json.dumps(__import__("yaml").safe_load(cfg.inventory_file.read_text())))
    uri = inv["all"]["vars"]["trustops_key_vault_uri"]
    return sh(cfg, role, f"{VENV_PYTHON} -m trustops.infra.host_secret --vault {uri} --secret {secret} "
                         f"--out /root/probe.env --format aws-env")


def test_each_host_holds_its_own_purposes_key_and_no_other(twin_cfg):
    cfg = twin_cfg
    backups, files, admin = _key_of(cfg, "backups"), _key_of(cfg, "files"), json.loads(
        cfg.s3_credentials_file.read_text())
    db = _env(sh(cfg, "db", "cat /etc/trustops/backup.env").stdout)
    assert db["AWS_ACCESS_KEY_ID"] == backups["aws_access_key_id"]
    assert db["AWS_SECRET_ACCESS_KEY"] == backups["aws_secret_access_key"]
    assert sh(cfg, "db", "stat -c '%U:%G %a' /etc/trustops/backup.env").stdout.strip() == "root:postgres 640"
    app = _env(sh(cfg, "app", "cat /etc/trustops/app.env").stdout)
    assert app["AWS_ACCESS_KEY_ID"] == files["aws_access_key_id"]
    others = {backups["aws_access_key_id"], admin["aws_access_key_id"]}
    assert not others & set(app.values()) and not {files["aws_access_key_id"], admin["aws_access_key_id"]} & set(db.values())
    # the lab's admin key is on no host at all
    for role in ("app", "db", "ops"):
        found = sh(cfg, role, f"grep -rl {admin['aws_access_key_id']} /etc /root 2>/dev/null")
        assert found.stdout.strip() == "", f"{role}: the lab's admin key in {found.stdout.split()}"


def test_a_host_asking_for_another_hosts_secret_gets_403_in_one_line(twin_cfg):
    cfg = twin_cfg
    for role, secret in (("db", access_key_secret("files")), ("ops", access_key_secret("backups")),
                         ("app", access_key_secret("backups"))):
        proc = _read_as(cfg, role, secret)
        assert proc.returncode == 1, (role, proc.stdout)
        assert proc.stderr.strip() == (f"host_secret: Key Vault secret {secret}: HTTP 403 "
                                       "(this VM's identity has no role on the secret)"), (role, proc.stderr)
    mine = _read_as(cfg, "app", access_key_secret(BEDROCK))   # the app's own Bedrock key: granted
    assert mine.returncode == 0 and mine.stdout.strip() in (host_secret.CHANGED, host_secret.UNCHANGED), mine.stderr
    sh(cfg, "app", "rm -f /root/probe.env")


def test_the_vault_is_https_and_a_host_without_the_lab_root_refuses_it(twin_cfg):
    """The hosts check the vault's certificate with their system store, no lab-only option: with
    the lab's public root taken out of the store (an image without the endpoint's CA) the read
    stops in one line; put back, it works again."""
    cfg = twin_cfg
    uri = __import__("yaml").safe_load(cfg.inventory_file.read_text())["all"]["vars"]["trustops_key_vault_uri"]
    assert uri.startswith("https://"), uri
    with lab_root_held_out(cfg, "app"):
        proc = _read_as(cfg, "app", access_key_secret(BEDROCK))
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stdout + proc.stderr
        assert "the endpoint's TLS certificate is not trusted here" in proc.stderr, proc.stderr
    again = _read_as(cfg, "app", access_key_secret(BEDROCK))
    assert again.returncode == 0, again.stderr
    sh(cfg, "app", "rm -f /root/probe.env")


def test_backups_work_with_the_writers_key_under_iam(twin_cfg):
    """The real path: the backup job on db with the key it read (moto checks its policy); the same
    key cannot erase a backup (no prune in the twin, a stolen key erases nothing)."""
    cfg = twin_cfg
    run = sh(cfg, "db", "systemctl start trustops-backup.service && systemctl show -p Result trustops-backup.service")
    assert run.returncode == 0 and "Result=success" in run.stdout, run.stdout + run.stderr
    import datetime as dt

    from trustops.lab import environment

    s3, bucket = environment.s3_client(cfg), cfg_bucket(cfg, "backups")
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)).strftime("%Y-%m-%dT%H%M%SZ")
    old_key = f"postgres/{host_of(cfg, 'db')}/benefits/{old}.dump"
    for key in (old_key, old_key + ".manifest.json"):      # with the lab's admin key, from the machine
        s3.put_object(Bucket=bucket, Key=key, Body=b"old", ServerSideEncryption="AES256")
    try:
        prune = sh(cfg, "db", "sudo -u postgres trustops-pgbackup prune")
        assert prune.returncode != 0 and "AccessDenied" in prune.stdout + prune.stderr, prune.stdout + prune.stderr
        assert s3.head_object(Bucket=bucket, Key=old_key)["ContentLength"] == 3   # still there
    finally:
        for key in (old_key, old_key + ".manifest.json"):
            for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []):
                s3.delete_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])


# As postgres on db: the backup job's own upload (pgbackup.backup_one) of a scratch database whose
# dump is above one part, then a put asking for another encryption than SSE-S3.
_BIG_BACKUP = """/opt/trustops/venv/bin/python - <<'PY'
from botocore.exceptions import ClientError
from trustops.backups import config, pgbackup
cfg = config.load()
s3 = pgbackup.s3_client(cfg)
m = pgbackup.backup_one(cfg, s3, "trustops_big")
print("backup", m["size"], m["key"])
try:
    s3.put_object(Bucket=cfg.bucket, Key=m["key"] + ".kms", Body=b"x", ServerSideEncryption="aws:kms")
    print("kms stored")
except ClientError as exc:
    print("kms", exc.response["Error"]["Code"], exc.response["Error"]["Message"])
PY"""


def test_a_backup_above_one_part_passes_the_buckets_policy_and_other_encryption_is_refused(twin_cfg):
    """The stack's bucket policy holds in the twin (its S3 front), on the backup job's own path:
    a dump above 8 MB goes up in parts, which carry no encryption header (the policy that refused
    a put without one refused every such backup at its first part), and is stored SSE-S3; a put
    asking for another encryption is refused by the policy."""
    from trustops.backups.pgbackup import CHUNK
    from trustops.lab import environment

    cfg = twin_cfg
    fill = ("createdb trustops_big && psql -q -d trustops_big -c \"create table t as select "
            "md5(random()::text) || md5(random()::text) as v from generate_series(1, 400000)\"")
    made = sh(cfg, "db", f"sudo -u postgres sh -c '{fill}'")
    assert made.returncode == 0, made.stderr
    s3, bucket = environment.s3_client(cfg), cfg_bucket(cfg, "backups")
    try:
        got = sh(cfg, "db", f"sudo -u postgres sh -c {__import__('shlex').quote(_BIG_BACKUP)}")
        lines = dict(line.split(" ", 1) for line in got.stdout.splitlines() if " " in line)
        assert "backup" in lines, got.stdout + got.stderr
        size, key = lines["backup"].split()
        assert int(size) > CHUNK
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
        assert lines.get("kms", "").startswith("AccessDenied") and "DenyOtherEncryption" in lines["kms"], got.stdout
    finally:
        sh(cfg, "db", "sudo -u postgres dropdb --if-exists trustops_big")
        prefix = f"postgres/{host_of(cfg, 'db')}/trustops_big/"
        for v in s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def cfg_bucket(cfg, purpose: str) -> str:
    return next(b for b, spec in twin.load_plan(cfg).buckets.items() if spec["tags"]["purpose"] == purpose)


# the app's key from its environment file, used from the app host as the app uses it (SSE-S3 puts)
_APP_PUT = """set -a; . /etc/trustops/app.env; set +a; python3 - <<'PY'
import boto3, os, sys
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=os.environ["BENEFITS_S3_ENDPOINT_URL"], region_name=os.environ["BENEFITS_S3_REGION"])
def put(bucket, key):
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.4 probe", ServerSideEncryption="AES256")
        return "ok"
    except ClientError as exc:
        return exc.response["Error"]["Code"]
print(put(os.environ["BENEFITS_RECEIPTS_BUCKET"], "receipts/987654/probe"), put(sys.argv[1], "postgres/probe.dump"))
PY"""


def test_the_apps_key_writes_receipts_and_nothing_else_under_iam(twin_cfg):
    """From the app host with the key in its environment file: a receipt put in the files bucket
    works, the backups bucket refuses it; the live app's own receipts code does the same."""
    cfg = twin_cfg
    backups_bucket = cfg_bucket(cfg, "backups")
    got = sh(cfg, "app", _APP_PUT.replace("sys.argv[1]", repr(backups_bucket)))
    assert got.stdout.split() == ["ok", "AccessDenied"], got.stdout + got.stderr
    slot = app_live_slot(cfg)
    probe = ("from core import receipts; k = receipts.put(987654, b'%PDF-1.4 probe', 'application/pdf'); "
             "assert receipts.get(k) == b'%PDF-1.4 probe'; receipts.delete(k); print('receipt-ok')")
    up = sh(cfg, "app", f"docker exec benefits-{slot} python3 manage.py shell -c \"{probe}\"")
    assert "receipt-ok" in up.stdout, up.stdout[-1500:] + up.stderr[-1500:]


def test_vault_down_fails_the_converge_in_one_line_and_back_it_passes(twin_cfg):
    cfg = twin_cfg
    stand_in = cfg.container(twin.KEYVAULT_ROLE)
    db = host_of(cfg, "db")
    subprocess.run(["docker", "stop", "-t", "2", stand_in], check=True, capture_output=True)
    try:
        down = playbook(cfg.inventory_file, "--tags", "backups", "--limit", db)
        assert down.returncode != 0
        failed = [l for l in down.stdout.splitlines() if "host_secret:" in l]
        assert failed and "managed identity token (IMDS): unreachable" in failed[0], down.stdout[-3000:]
        assert "AWS_SECRET_ACCESS_KEY" not in down.stdout and _key_of(cfg, "backups")["aws_secret_access_key"] \
            not in down.stdout
    finally:
        subprocess.run(["docker", "start", stand_in], check=True, capture_output=True)
    back = playbook(cfg.inventory_file, "--tags", "backups", "--limit", db)
    assert back.returncode == 0, back.stdout[-3000:]
    assert recap(back.stdout)[db]["failed"] == 0
    from trustops.converge import role_default
    key_task = f"read with this VM's identity into {role_default('backups', 'backups_key_file')}"
    assert _status_after(back.stdout, key_task) == "ok"   # the same key: the file is left alone


def _status_after(output: str, task: str) -> str:
    """ok | changed | ...: the first host status line after the task's header."""
    lines = output.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("TASK [") and task in l)
    return next(l.split(":")[0] for l in lines[start + 1:] if l.split(":")[0] in ("ok", "changed", "fatal", "skipping"))
