"""The two S3 buckets in the EU (database backups, uploaded files): SSE-S3 with a bucket key, all
four public-access blocks, versioning, owner-enforced objects, a policy that refuses non-TLS
requests and unencrypted puts, a 7-day lifecycle on backups, and a least-privilege backup writer."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from trustops.infra.config import StackConfig

BACKUP_RETENTION_DAYS = 7
BACKUP_PREFIX = "postgres/"


def bucket_policy(bucket_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyNonTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyUnencryptedPuts", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
    ]})


def backup_writer_policy(bucket_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{BACKUP_PREFIX}*"]}}},
        {"Sid": "ReadWriteOwnPrefix", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"{bucket_arn}/{BACKUP_PREFIX}*"},
    ]})


@dataclass
class BucketsArgs:
    cfg: StackConfig
    provider: aws.Provider


class Buckets(pulumi.ComponentResource):
    def __init__(self, name: str, args: BucketsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:Buckets", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.buckets: dict[str, aws.s3.Bucket] = {}
        for purpose in ("backups", "files"):
            bucket_name = f"{name}-{cfg.environment}-{purpose}"
            b = aws.s3.Bucket(f"{name}-{purpose}", bucket=bucket_name, force_destroy=False,
                              tags={**cfg.tags, "purpose": purpose}, opts=child)
            self.buckets[purpose] = b
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-{purpose}-sse", bucket=b.bucket, rules=[{
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True}], opts=child)
            aws.s3.BucketPublicAccessBlock(
                f"{name}-{purpose}-public-access-block", bucket=b.bucket, block_public_acls=True,
                block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child)
            aws.s3.BucketVersioning(f"{name}-{purpose}-versioning", bucket=b.bucket,
                                    versioning_configuration={"status": "Enabled"}, opts=child)
            aws.s3.BucketOwnershipControls(f"{name}-{purpose}-ownership", bucket=b.bucket,
                                           rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
            aws.s3.BucketPolicy(f"{name}-{purpose}-policy", bucket=b.bucket, policy=b.arn.apply(bucket_policy),
                                opts=child)
            rules = [{"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                      "abort_incomplete_multipart_upload": {"days_after_initiation": 1}}]
            if purpose == "backups":
                rules = [{"id": "keep-backups-7-days", "status": "Enabled", "filter": {},
                          "expiration": {"days": BACKUP_RETENTION_DAYS},
                          "noncurrent_version_expiration": {"noncurrent_days": 1}}] + rules
            aws.s3.BucketLifecycleConfiguration(f"{name}-{purpose}-lifecycle", bucket=b.bucket, rules=rules,
                                                opts=child)
        backups = self.buckets["backups"]
        self.backup_writer = aws.iam.User(f"{name}-backup-writer", path="/trustops/",
                                          tags={**cfg.tags, "purpose": "backups"}, opts=child)
        aws.iam.UserPolicy(f"{name}-backup-writer-policy", user=self.backup_writer.name,
                           policy=backups.arn.apply(backup_writer_policy), opts=child)
        self.register_outputs({})
