"""A corpus of non-compliant programs (test fixture). Each variant declares, under resource names
that start with its id, a small stack that is compliant except for one way around one policy;
tests/infra/test_policy_corpus.py checks that exactly the policy named for it fires. `COMPLIANT`
variants are near misses that must pass every policy (false positives)."""
from __future__ import annotations

import json
from typing import Callable

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import Provider as AzureProvider
from pulumi_azure_native import compute, dbforpostgresql, keyvault, network, privatedns, resources

TAGS = {"environment": "dev", "owner": "platform-team", "data-classification": "internal"}
LOC = "westeurope"
RG = "corpus-rg"

_providers: dict[str, pulumi.ProviderResource] = {}


def _azure() -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(provider=_providers["azure"])


def _aws() -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(provider=_providers["aws"])


def _rule(name, priority, port, source, access="Allow", protocol="Tcp", sources=None):
    rule = {"name": name, "priority": priority, "direction": "Inbound", "access": access, "protocol": protocol,
            "source_port_range": "*", "destination_address_prefix": "*", "destination_port_range": port}
    if sources is not None:
        rule["source_address_prefixes"] = sources
    else:
        rule["source_address_prefix"] = source
    return rule


DENY_ALL = _rule("deny-all", 4000, "*", "*", access="Deny", protocol="*")


def _nsg(vid: str, *rules: dict, resource_type: str | None = None) -> None:
    args = dict(resource_group_name=RG, location=LOC, security_rules=list(rules) + [DENY_ALL], tags=TAGS)
    if resource_type:   # the same resource under an API-versioned type token
        pulumi.CustomResource(resource_type, f"{vid}-nsg", {
            "resourceGroupName": RG, "location": LOC, "tags": TAGS,
            "securityRules": [{_camel(k): v for k, v in r.items()} for r in args["security_rules"]]}, opts=_azure())
        return
    network.NetworkSecurityGroup(f"{vid}-nsg", **args, opts=_azure())


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def _linux(password_auth: bool = False, admin_password: str | None = None) -> dict:
    osp = {"computer_name": "vm", "admin_username": "deploy",
           "linux_configuration": {"disable_password_authentication": not password_auth}}
    if admin_password:
        osp["admin_password"] = admin_password
    return osp


def _vm(vid: str, encryption: bool = True, **os_kw) -> None:
    compute.VirtualMachine(f"{vid}-vm", resource_group_name=RG, location=LOC, os_profile=_linux(**os_kw),
                           security_profile={"encryption_at_host": encryption}, tags=TAGS, opts=_azure())


def _vmss(vid: str, encryption: bool = True, **os_kw) -> None:
    compute.VirtualMachineScaleSet(
        f"{vid}-vmss", resource_group_name=RG, location=LOC, sku={"name": "Standard_B2s", "capacity": 2},
        virtual_machine_profile={"os_profile": _linux(**os_kw), "security_profile": {"encryption_at_host": encryption}},
        tags=TAGS, opts=_azure())


def _vault(vid: str, **overrides) -> None:
    props = {"tenant_id": "t", "sku": {"family": "A", "name": "standard"}, "enable_rbac_authorization": True,
             "enable_purge_protection": True, "enable_soft_delete": True,
             "network_acls": {"default_action": "Deny", "bypass": "AzureServices"}}
    props.update(overrides)
    keyvault.Vault(f"{vid}-kv", resource_group_name=RG, location=LOC, properties=props, tags=TAGS, opts=_azure())


def _tls_policy(bucket: str, resources_: list[str] | None = None) -> str:
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyNonTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources_ or [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def _bucket(vid: str, suffix: str = "files", *, bucket_type=None, tags: dict | None = None, sse: str | None = "AES256",
            pab: dict | None = None, policy: str | None | bool = True, lifecycle: list | None = None) -> str:
    """A bucket with its config resources, compliant unless told otherwise; returns its name."""
    name = f"{vid}-{suffix}"
    opts = _aws()
    (bucket_type or aws.s3.Bucket)(f"{vid}-bucket", bucket=name, tags={**TAGS, **(tags or {})}, opts=opts)
    if sse:
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{vid}-sse", bucket=name, rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": sse}}],
            opts=opts)
    if pab is not False:
        flags = {"block_public_acls": True, "block_public_policy": True, "ignore_public_acls": True,
                 "restrict_public_buckets": True, **(pab or {})}
        aws.s3.BucketPublicAccessBlock(f"{vid}-pab", bucket=name, **flags, opts=opts)
    if policy:
        aws.s3.BucketPolicy(f"{vid}-policy", bucket=name,
                            policy=_tls_policy(name) if policy is True else policy, opts=opts)
    if lifecycle is not None:
        aws.s3.BucketLifecycleConfiguration(f"{vid}-lifecycle", bucket=name, rules=lifecycle, opts=opts)
    return name


def _expire(days: int, prefix: str | None = None) -> list[dict]:
    return [{"id": "expire", "status": "Enabled", "filter": {"prefix": prefix} if prefix else {},
             "expiration": {"days": days}}]


# ------------------------------------------------------------------------------ the variants
# id -> (the one policy that must fire, what to declare)
VARIANTS: dict[str, tuple[str, Callable[[str], None]]] = {
    # EU only
    "eu-azure-provider": ("eu-only-locations", lambda v: AzureProvider(f"{v}-azure", location="eastus")),
    "eu-aws-provider": ("eu-only-locations", lambda v: aws.Provider(f"{v}-aws", region="eu-west-2")),  # London
    "eu-resource-group-ch": ("eu-only-locations", lambda v: resources.ResourceGroup(
        f"{v}-rg", location="Switzerland North", tags=TAGS, opts=_azure())),
    # internet exposure written another way
    "ssh-union-of-halves": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("ssh", 200, "22", None, sources=["0.0.0.0/1", "128.0.0.0/1"]))),
    "ssh-many-slash8s": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("ssh", 200, "22", None, sources=[f"{n}.0.0.0/8" for n in (20, 40, 51, 52)]))),
    "ssh-ipv6-any": ("no-internet-ssh-or-postgres", lambda v: _nsg(v, _rule("ssh", 200, "22", "::/0"))),
    "ssh-ipv6-halves": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("ssh", 200, "22", None, sources=["::/1", "8000::/1"]))),
    "ssh-azurecloud-tag": ("no-internet-ssh-or-postgres", lambda v: _nsg(v, _rule("ssh", 200, "22", "AzureCloud"))),
    "ssh-regional-tag-in-range": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("mgmt", 200, "20-30", "AzureCloud.WestEurope"))),
    "all-ports-from-any": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("everything", 200, "*", "Any"),
        _rule("deny-postgres", 300, "5432", "*", access="Deny", protocol="*"))),
    "postgres-range-before-deny": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("db-range", 100, "5000-6000", "Internet"),
        _rule("deny-postgres", 110, "5432", "*", access="Deny", protocol="*"))),
    "ssh-versioned-type-token": ("no-internet-ssh-or-postgres", lambda v: _nsg(
        v, _rule("ssh", 200, "22", "Internet"),
        resource_type="azure-native:network/v20240501:NetworkSecurityGroup")),
    "ssh-standalone-rule": ("no-internet-ssh-or-postgres", lambda v: network.SecurityRule(
        f"{v}-rule", resource_group_name=RG, network_security_group_name="corpus-nsg", name="ssh", priority=200,
        direction="Inbound", access="Allow", protocol="Tcp", source_address_prefix="*", source_port_range="*",
        destination_address_prefix="*", destination_port_range="22", opts=_azure())),
    # the same risk in other resource types
    "flexible-server-public": ("no-internet-ssh-or-postgres", lambda v: dbforpostgresql.Server(
        f"{v}-pg", resource_group_name=RG, location=LOC, version="16", tags=TAGS,
        network={"public_network_access": "Enabled"}, opts=_azure())),
    "flexible-server-firewall-rule": ("no-internet-ssh-or-postgres", lambda v: dbforpostgresql.FirewallRule(
        f"{v}-fw", resource_group_name=RG, server_name="corpus-pg", start_ip_address="0.0.0.0",
        end_ip_address="255.255.255.255", opts=_azure())),
    "vm-password": ("vm-ssh-keys-only", lambda v: _vm(v, password_auth=True)),
    "vmss-password": ("vm-ssh-keys-only", lambda v: _vmss(v, password_auth=True)),
    "vm-no-encryption-at-host": ("vm-disk-encryption", lambda v: _vm(v, encryption=False)),
    "vmss-no-encryption-at-host": ("vm-disk-encryption", lambda v: _vmss(v, encryption=False)),
    "key-vault-no-rbac": ("key-vault-hardened", lambda v: _vault(v, enable_rbac_authorization=False)),
    "key-vault-ip-rules-open": ("key-vault-hardened", lambda v: _vault(v, network_acls={
        "default_action": "Deny", "bypass": "AzureServices",
        "ip_rules": [{"value": "0.0.0.0/1"}, {"value": "128.0.0.0/1"}]})),
    "resource-group-no-owner": ("required-tags", lambda v: resources.ResourceGroup(
        f"{v}-rg", location=LOC, tags={"environment": "dev"}, opts=_azure())),
    "nat-gateway-untagged": ("required-tags", lambda v: network.NatGateway(
        f"{v}-nat", resource_group_name=RG, location=LOC, sku={"name": "Standard"}, opts=_azure())),
    # S3: every bucket type, each check a resource check on values known at preview
    "bucket-kms-not-sse-s3": ("s3-sse-s3-encryption", lambda v: _bucket(v, sse="aws:kms")),
    "bucketv2-without-encryption": ("s3-sse-s3-encryption", lambda v: _bucket(v, bucket_type=aws.s3.BucketV2,
                                                                              sse=None)),
    "bucket-block-partly-off": ("s3-public-access-block", lambda v: _bucket(v, pab={"block_public_policy": False})),
    "bucketv2-without-block": ("s3-public-access-block", lambda v: _bucket(v, bucket_type=aws.s3.BucketV2,
                                                                           pab=False)),
    "bucket-policy-without-tls-deny": ("s3-tls-only", lambda v: _bucket(v, policy=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))),
    "bucket-tls-deny-objects-only": ("s3-tls-only", lambda v: _bucket(
        v, policy=_tls_policy(f"{v}-files", [f"arn:aws:s3:::{v}-files/*"]))),
    "bucketv2-without-policy": ("s3-tls-only", lambda v: _bucket(v, bucket_type=aws.s3.BucketV2, policy=None)),
    # backups known by more than a tag
    "backups-tag-changed-30-days": ("backup-retention-7-days", lambda v: _bucket(
        v, "backups", tags={"purpose": "files"}, lifecycle=_expire(30))),
    "backups-renamed-untagged-no-lifecycle": ("backup-retention-7-days", lambda v: (
        _bucket(v, "archive"),
        aws.iam.UserPolicy(f"{v}-writer-policy", user="corpus-writer", policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject",
                                                    "Resource": f"arn:aws:s3:::{v}-archive/postgres/*"}]}),
                           opts=_aws()))),
    "backups-expiry-on-another-prefix": ("backup-retention-7-days", lambda v: _bucket(
        v, "backups", tags={"purpose": "backups"}, lifecycle=_expire(7, prefix="tmp/"))),
    # Postgres deny order
    "postgres-deny-before-allow": ("postgres-explicit-deny", lambda v: _nsg(
        v, _rule("deny-postgres", 100, "5432", "*", access="Deny", protocol="*"),
        _rule("postgres-from-app", 200, "5432", "10.10.1.0/24"))),
}

# Near misses that must pass every policy.
COMPLIANT: dict[str, Callable[[str], None]] = {
    "ok-private-dns-zone-global": lambda v: (
        privatedns.PrivateZone(f"{v}-zone", resource_group_name=RG, location="global",
                               private_zone_name="privatelink.postgres.database.azure.com", tags=TAGS, opts=_azure()),
        privatedns.VirtualNetworkLink(f"{v}-link", resource_group_name=RG, location="global",
                                      private_zone_name="privatelink.postgres.database.azure.com",
                                      registration_enabled=False, virtual_network={"id": "vnet-id"},
                                      tags=TAGS, opts=_azure())),
    "ok-admin-range-and-vnet-tag": lambda v: _nsg(
        v, _rule("ssh-admin", 200, "22", None, sources=["20.50.60.0/28", "51.10.0.0/17"]),
        _rule("ssh-vnet", 210, "22", "VirtualNetwork"), _rule("https", 220, "443", "Internet")),
    "ok-backups-bucket": lambda v: _bucket(v, "backups", tags={"purpose": "backups"}, lifecycle=_expire(7)),
    "ok-bucketv2": lambda v: _bucket(v, bucket_type=aws.s3.BucketV2),
    "ok-vmss": lambda v: _vmss(v),
    "ok-vault-with-narrow-ip-rule": lambda v: _vault(v, network_acls={
        "default_action": "Deny", "bypass": "AzureServices", "ip_rules": [{"value": "20.50.60.7"}]}),
}


def main() -> dict:
    _providers["azure"] = AzureProvider("shared-azure", location=LOC)
    _providers["aws"] = aws.Provider("shared-aws", region="eu-central-1")
    for vid, (_, declare) in VARIANTS.items():
        declare(vid)
    for vid, declare in COMPLIANT.items():
        declare(vid)
    return {}
