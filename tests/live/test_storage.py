"""The S3 buckets and the backups in them, asked from the control node with the inventory's S3
settings (the lab's moto endpoint and generated keys, or AWS's default credential chain)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from trustops.wait import until

BACKUP_MAX_AGE_H = 26   # a daily backup, with two hours' grace


# What each bucket's policy must refuse, whatever the caller's key allows: (what, action, context).
_ENC = "s3:x-amz-server-side-encryption"
POLICY_REQUESTS = [("plain HTTP", "s3:GetObject", {"aws:SecureTransport": "false"}),
                   ("a put with SSE-KMS", "s3:PutObject", {_ENC: "aws:kms"}),
                   ("a put with a customer key (SSE-C)", "s3:PutObject",
                    {"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}),
                   ("a put with SSE-S3", "s3:PutObject", {_ENC: "AES256"}),
                   ("a put asking for no encryption (the bucket's default, SSE-S3)", "s3:PutObject", {})]
POLICY_MUST_REFUSE = {what for what, _, _ in POLICY_REQUESTS[:3]}


def _refused_by_policy(bucket: str, policy: dict) -> set[str]:
    """Which of POLICY_REQUESTS the bucket's policy (as S3 holds it) refuses, evaluated with IAM's
    condition rules (trustops.lab.s3gate: the twin's S3 front, the same evaluator)."""
    from trustops.lab import s3gate

    return {what for what, action, context in POLICY_REQUESTS
            if s3gate.denying_statement(policy, action, f"arn:aws:s3:::{bucket}/probe",
                                        {"aws:SecureTransport": "true", **context}) is not None}


def _buckets(site) -> list[str]:
    cfg = site.vars["trustops_s3"]
    return [cfg["backups_bucket"], cfg["files_bucket"]]


@pytest.mark.probe("s3-encrypted")
def test_buckets_default_to_sse_s3_block_public_access_and_every_object_is_sse_s3(site):
    """Both buckets default to SSE-S3, block public access and refuse by policy plain HTTP and any
    other encryption (a multipart upload's parts, with no header, still pass), and every stored
    object is SSE-S3."""
    s3 = site.s3()
    for bucket in _buckets(site):
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        algos = [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules]
        assert algos == ["AES256"], f"{bucket}: default encryption is {algos}, not SSE-S3 (AES256)"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()), f"{bucket}: public access is not fully blocked: {block}"
        refused = _refused_by_policy(bucket, json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]))
        assert refused == POLICY_MUST_REFUSE, f"{bucket}: its policy does not refuse {POLICY_MUST_REFUSE - refused}"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                sse = s3.head_object(Bucket=bucket, Key=obj["Key"]).get("ServerSideEncryption")
                assert sse == "AES256", f"{bucket}/{obj['Key']} is stored with {sse!r}, not AES256"


@pytest.mark.probe("backup-fresh")
def test_the_newest_backup_is_complete_fresh_and_sse_s3(site, settle):
    """The newest database backup is complete (its manifest beside it), under 26 hours old and
    stored with SSE-S3. On a fresh environment the first backup may still be on its way, so the
    check waits (bounded) for one."""
    s3, bucket = site.s3(), site.vars["trustops_s3"]["backups_bucket"]

    def newest_complete():
        objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="postgres/")
                   for o in page.get("Contents", [])]
        keys = {o["Key"] for o in objects}
        dumps = [o for o in objects if o["Key"].endswith(".dump") and o["Key"] + ".manifest.json" in keys]
        return max(dumps, key=lambda o: o["LastModified"], default=None)
    newest = until(newest_complete, settle, f"a complete backup under s3://{bucket}/postgres/", interval=5)
    age_h = (dt.datetime.now(dt.timezone.utc) - newest["LastModified"]).total_seconds() / 3600
    assert age_h <= BACKUP_MAX_AGE_H, f"newest backup {newest['Key']} is {age_h:.1f} h old (limit {BACKUP_MAX_AGE_H} h)"
    sse = s3.head_object(Bucket=bucket, Key=newest["Key"]).get("ServerSideEncryption")
    assert sse == "AES256", f"{newest['Key']} is stored with {sse!r}, not AES256"
