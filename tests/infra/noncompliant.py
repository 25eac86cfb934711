"""A deliberately non-compliant program (test fixture): each resource breaks at least one policy,
so a test can prove that no policy passes vacuously."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import Provider as AzureProvider
from pulumi_azure_native import compute, keyvault, network, resources


def main() -> dict:
    azure = AzureProvider("azure-us", location="eastus")                 # eu-only-locations
    aws_us = aws.Provider("aws-us", region="us-east-1")                  # eu-only-locations
    opts = pulumi.ResourceOptions(provider=azure)
    rg = resources.ResourceGroup("rg", location="eastus", tags={"environment": "dev"}, opts=opts)  # required-tags
    network.NetworkSecurityGroup(
        "open-nsg", resource_group_name=rg.name, location="westeurope",
        security_rules=[
            {"name": "ssh-anywhere", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
             "source_address_prefix": "*", "source_port_range": "*", "destination_address_prefix": "*",
             "destination_port_range": "22"},                               # no-internet-ssh-or-postgres
            {"name": "pg-internet", "priority": 110, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
             "source_address_prefix": "Internet", "source_port_range": "*", "destination_address_prefix": "*",
             "destination_port_range": "5000-6000"},                        # ... and postgres-explicit-deny
        ], tags={"environment": "dev", "owner": "x", "data-classification": "internal"}, opts=opts)
    compute.VirtualMachine(
        "password-vm", resource_group_name=rg.name, location="westeurope",
        os_profile={"computer_name": "vm", "admin_username": "azureuser", "admin_password": "not-a-real-one",  # pragma: allowlist secret
                    "linux_configuration": {"disable_password_authentication": False}},   # vm-ssh-keys-only
        security_profile={"encryption_at_host": False},                                  # vm-disk-encryption
        tags={"environment": "dev", "owner": "x", "data-classification": "internal"}, opts=opts)
    keyvault.Vault("loose-kv", resource_group_name=rg.name, location="westeurope",
                   properties={"tenant_id": "t", "sku": {"family": "A", "name": "standard"},
                               "enable_rbac_authorization": False, "enable_purge_protection": False,
                               "network_acls": {"default_action": "Allow"}},          # key-vault-hardened
                   tags={"environment": "dev", "owner": "x", "data-classification": "internal"}, opts=opts)
    child = pulumi.ResourceOptions(provider=aws_us)
    b = aws.s3.Bucket("backups", bucket="bad-backups",
                      tags={"purpose": "backups", "environment": "dev", "owner": "x", "data-classification": "c"},
                      opts=child)
    aws.s3.BucketServerSideEncryptionConfiguration(                      # s3-sse-s3-encryption (KMS, not SSE-S3)
        "backups-sse", bucket=b.bucket,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}}], opts=child)
    aws.s3.BucketPublicAccessBlock("backups-pab", bucket=b.bucket, block_public_acls=True,
                                   block_public_policy=False, opts=child)  # s3-public-access-block
    aws.s3.BucketPolicy("backups-policy", bucket=b.bucket, policy=json.dumps(
        {"Version": "2012-10-17", "Statement": []}), opts=child)          # s3-tls-only
    aws.s3.BucketLifecycleConfiguration("backups-lc", bucket=b.bucket, rules=[
        {"id": "keep-30", "status": "Enabled", "filter": {}, "expiration": {"days": 30}}],
        opts=child)                                                       # backup-retention-7-days
    return {}
