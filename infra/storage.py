"""The two S3 buckets in the EU (database backups, uploaded files): SSE-S3 with a bucket key, all
four public-access blocks, versioning, owner-enforced objects, a policy that refuses non-TLS
requests and puts asking for another encryption than SSE-S3 (or a customer key), a 7-day lifecycle on backups, and one IAM user per purpose (backups
writer, files writer) that may touch its own bucket only, with an access key for the one host that
needs it (delivered through Key Vault, see vault.py).

Bucket names carry the AWS account id (`trustops-<env>-<purpose>-<account>`): globally unique
without a random suffix, and known at preview (the account comes from an invoke), so the bucket
policy and every S3 policy check read real values before anything exists.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from trustops.infra.config import StackConfig

BACKUP_RETENTION_DAYS = 7
BACKUP_PREFIX = "postgres/"
PURPOSES = ("backups", "files")


def bucket_name(environment: str, purpose: str, account_id: str) -> str:
    return f"trustops-{environment}-{purpose}-{account_id}"


def bucket_arn(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def bucket_policy(name: str) -> str:
    arn = bucket_arn(name)
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyNonTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        # A put that asks for another encryption than SSE-S3 is refused; one that asks for none gets
        # the bucket's default, SSE-S3. Not "refuse a put without the header": IAM makes
        # StringNotEquals hold for a request without the key, and UploadPart and
        # CompleteMultipartUpload are s3:PutObject without it, so every multipart upload (each
        # backup above 8 MB) would be refused at its first part (the twin enforces this policy).
        {"Sid": "DenyOtherEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{arn}/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption": "false"},
                       "StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
        # A customer-provided key (SSE-C) sends no x-amz-server-side-encryption header: refused on
        # its own, or a stolen writer's key could overwrite backups with objects only its holder reads.
        {"Sid": "DenyCustomerKeys", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{arn}/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}},
    ]})


def writer_policy(purpose: str, name: str) -> str:
    """Least privilege on the writer's own bucket: backups may list and read/write their prefix
    (the restore drill reads; the lifecycle deletes); files may put, get and delete objects."""
    arn = bucket_arn(name)
    if purpose == "backups":
        statements = [
            {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{BACKUP_PREFIX}*"]}}},
            {"Sid": "ReadWriteOwnPrefix", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
             "Resource": f"{arn}/{BACKUP_PREFIX}*"}]
    else:
        statements = [{"Sid": "ReadWriteDeleteObjects", "Effect": "Allow",
                       "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], "Resource": f"{arn}/*"}]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass
class BucketsArgs:
    cfg: StackConfig
    provider: aws.Provider


class Buckets(pulumi.ComponentResource):
    def __init__(self, name: str, args: BucketsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:Buckets", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=args.provider))
        self.buckets: dict[str, aws.s3.Bucket] = {}
        self.names: dict[str, pulumi.Output[str]] = {}
        self.writers: dict[str, aws.iam.User] = {}
        self.access_keys: dict[str, aws.iam.AccessKey] = {}
        for purpose in PURPOSES:
            bname = account.account_id.apply(lambda acct, p=purpose: bucket_name(cfg.environment, p, acct))
            self.names[purpose] = bname
            b = aws.s3.Bucket(f"{name}-{purpose}", bucket=bname, force_destroy=False,
                              tags={**cfg.tags, "purpose": purpose}, opts=child)
            self.buckets[purpose] = b
            # Every child names the bucket by the known name (not b.bucket/b.arn): policies read it at preview.
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-{purpose}-sse", bucket=bname, rules=[{
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True}], opts=_after(child, b))
            aws.s3.BucketPublicAccessBlock(
                f"{name}-{purpose}-public-access-block", bucket=bname, block_public_acls=True,
                block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                opts=_after(child, b))
            aws.s3.BucketVersioning(f"{name}-{purpose}-versioning", bucket=bname,
                                    versioning_configuration={"status": "Enabled"}, opts=_after(child, b))
            aws.s3.BucketOwnershipControls(f"{name}-{purpose}-ownership", bucket=bname,
                                           rule={"object_ownership": "BucketOwnerEnforced"}, opts=_after(child, b))
            aws.s3.BucketPolicy(f"{name}-{purpose}-policy", bucket=bname, policy=bname.apply(bucket_policy),
                                opts=_after(child, b))
            rules = [{"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                      "abort_incomplete_multipart_upload": {"days_after_initiation": 1}}]
            if purpose == "backups":
                rules = [{"id": "keep-backups-7-days", "status": "Enabled", "filter": {},
                          "expiration": {"days": BACKUP_RETENTION_DAYS},
                          "noncurrent_version_expiration": {"noncurrent_days": 1}}] + rules
            aws.s3.BucketLifecycleConfiguration(f"{name}-{purpose}-lifecycle", bucket=bname, rules=rules,
                                                opts=_after(child, b))
            writer = aws.iam.User(f"{name}-{purpose}-writer", path="/trustops/",
                                  tags={**cfg.tags, "purpose": purpose}, opts=child)
            aws.iam.UserPolicy(f"{name}-{purpose}-writer-policy", user=writer.name,
                               policy=bname.apply(lambda n, p=purpose: writer_policy(p, n)), opts=child)
            self.writers[purpose] = writer
            # The secret half is a Pulumi secret; it goes to Key Vault and nowhere else (vault.py).
            self.access_keys[purpose] = aws.iam.AccessKey(
                f"{name}-{purpose}-writer-key", user=writer.name,
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider,
                                            additional_secret_outputs=["secret"]))
        self.register_outputs({})

    def credentials_json(self, purpose: str) -> pulumi.Output[str]:
        return credentials_json(self.access_keys[purpose])


def credentials_json(key: aws.iam.AccessKey) -> pulumi.Output[str]:
    """The access key as the roles read it ({aws_access_key_id, aws_secret_access_key}), secret."""
    return pulumi.Output.secret(pulumi.Output.all(key.id, key.secret).apply(
        lambda a: json.dumps({"aws_access_key_id": a[0], "aws_secret_access_key": a[1]})))


def _after(opts: pulumi.ResourceOptions, bucket: aws.s3.Bucket) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[bucket]))
