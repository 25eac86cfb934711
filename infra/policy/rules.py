"""The policies as plain functions, so CrossGuard (__main__.py) and pytest run the same code.

A resource policy takes (resource type, props) and returns violation messages; a stack policy
takes every resource as (type, name, props). Props use the engine's camelCase names.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable

from trustops.infra.config import EU_AWS_REGIONS, EU_AZURE_LOCATIONS

Resource = tuple[str, str, dict]
OPEN_SOURCES = {"*", "internet", "0.0.0.0/0", "any", "::/0"}
GUARDED_PORTS = {22: "SSH", 5432: "Postgres"}
REQUIRED_TAGS = ("environment", "owner", "data-classification")
# Azure types that carry tags in this program (child resources such as Subnet and Secret of a
# vault inherit governance from their parent).
TAGGED_TYPES = {"azure-native:resources:ResourceGroup", "azure-native:network:VirtualNetwork",
                "azure-native:network:NetworkSecurityGroup", "azure-native:network:NetworkInterface",
                "azure-native:network:PublicIPAddress", "azure-native:compute:VirtualMachine",
                "azure-native:keyvault:Vault", "azure-native:dbforpostgresql:Server",
                "aws:s3/bucket:Bucket", "aws:iam/user:User"}
BUCKET = "aws:s3/bucket:Bucket"


def _ports(rule: dict) -> set[int] | None:
    """The ports a rule covers; None means all."""
    specs = [rule.get("destinationPortRange")] + list(rule.get("destinationPortRanges") or [])
    out: set[int] = set()
    for spec in filter(None, specs):
        spec = str(spec)
        if spec == "*":
            return None
        lo, _, hi = spec.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _sources(rule: dict) -> set[str]:
    return {str(s).lower() for s in [rule.get("sourceAddressPrefix")] + list(rule.get("sourceAddressPrefixes") or [])
            if s}


def _nsg_rules(rtype: str, props: dict) -> list[dict]:
    if rtype == "azure-native:network:NetworkSecurityGroup":
        return list(props.get("securityRules") or [])
    if rtype == "azure-native:network:SecurityRule":
        return [props]
    return []


# -------------------------------------------------------------------------- resource policies

def eu_only_locations(rtype: str, props: dict) -> list[str]:
    """HOST-03: every Azure resource and provider in an EU location, every AWS one in an EU region."""
    out = []
    if rtype.startswith("azure-native:") or rtype == "pulumi:providers:azure-native":
        loc = props.get("location")
        if loc is not None and str(loc).replace(" ", "").lower() not in EU_AZURE_LOCATIONS:
            out.append(f"Azure location {loc!r} is outside the EU")
    if rtype.startswith("aws:") or rtype == "pulumi:providers:aws":
        region = props.get("region")
        if region is not None and region not in EU_AWS_REGIONS:
            out.append(f"AWS region {region!r} is outside the EU")
        if rtype == "pulumi:providers:aws" and region is None:
            out.append("AWS provider without an explicit EU region")
    return out


def no_internet_ssh_or_postgres(rtype: str, props: dict) -> list[str]:
    """TRANSIT-01, OPS-01: no inbound Allow of 22 or 5432 from anywhere/Internet."""
    out = []
    for rule in _nsg_rules(rtype, props):
        if str(rule.get("direction", "")).lower() != "inbound" or str(rule.get("access", "")).lower() != "allow":
            continue
        if not (_sources(rule) & OPEN_SOURCES):
            continue
        ports = _ports(rule)
        for port, what in GUARDED_PORTS.items():
            if ports is None or port in ports:
                out.append(f"NSG rule {rule.get('name')!r} allows {what} ({port}) from {sorted(_sources(rule))}")
    return out


def vm_ssh_keys_only(rtype: str, props: dict) -> list[str]:
    """AUTH/OPS-01: Linux VMs with password authentication disabled and no admin password."""
    if rtype != "azure-native:compute:VirtualMachine":
        return []
    osp = props.get("osProfile") or {}
    out = []
    if not (osp.get("linuxConfiguration") or {}).get("disablePasswordAuthentication"):
        out.append("VM allows password authentication (osProfile.linuxConfiguration.disablePasswordAuthentication)")
    if osp.get("adminPassword"):
        out.append("VM sets an admin password")
    return out


def vm_disk_encryption(rtype: str, props: dict) -> list[str]:
    """REST-01: encryption at host (temp disk and caches too), platform-managed keys."""
    if rtype == "azure-native:compute:VirtualMachine" and not (props.get("securityProfile") or {}).get(
            "encryptionAtHost"):
        return ["VM without encryption at host (securityProfile.encryptionAtHost)"]
    return []


def key_vault_hardened(rtype: str, props: dict) -> list[str]:
    """REST-03, AUTH-03: Key Vault with RBAC, soft delete, purge protection, deny-by-default network."""
    if rtype != "azure-native:keyvault:Vault":
        return []
    p = props.get("properties") or {}
    out = []
    for key, what in (("enableRbacAuthorization", "RBAC authorization"), ("enablePurgeProtection", "purge protection")):
        if not p.get(key):
            out.append(f"Key Vault without {what}")
    if p.get("enableSoftDelete") is False:
        out.append("Key Vault with soft delete off")
    if str((p.get("networkAcls") or {}).get("defaultAction", "Allow")).lower() != "deny":
        out.append("Key Vault network ACL does not deny by default")
    return out


def required_tags(rtype: str, props: dict) -> list[str]:
    """GOV: every taggable resource says its environment, owner and data classification."""
    if rtype not in TAGGED_TYPES:
        return []
    tags = props.get("tags") or {}
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    return [f"missing tags {missing}"] if missing else []


# -------------------------------------------------------------------------- stack policies

def _by_bucket(resources: Iterable[Resource], rtype: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t, _, props in resources:
        if t == rtype:
            out.setdefault(str(props.get("bucket")), []).append(props)
    return out


def _buckets(resources: Iterable[Resource]) -> dict[str, dict]:
    return {str(p.get("bucket") or n): p for t, n, p in resources if t == BUCKET}


def s3_encryption(resources: list[Resource]) -> list[str]:
    """REST-02: every bucket encrypts by default with SSE-S3 (AES256)."""
    sse = _by_bucket(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    out = []
    for name in _buckets(resources):
        algos = {((r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm"))
                 for c in sse.get(name, []) for r in (c.get("rules") or [])}
        if "AES256" not in algos:
            out.append(f"bucket {name} has no SSE-S3 (AES256) default encryption")
    return out


def s3_public_access_block(resources: list[Resource]) -> list[str]:
    """HOST-02: all four public-access blocks on every bucket."""
    blocks = _by_bucket(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [f"bucket {name} lacks a full public-access block"
            for name in _buckets(resources) if not any(all(b.get(k) for k in keys) for b in blocks.get(name, []))]


def s3_tls_only(resources: list[Resource]) -> list[str]:
    """TRANSIT: every bucket policy denies requests without TLS."""
    policies = _by_bucket(resources, "aws:s3/bucketPolicy:BucketPolicy")
    out = []
    for name in _buckets(resources):
        ok = False
        for p in policies.get(name, []):
            doc = p.get("policy")
            doc = json.loads(doc) if isinstance(doc, str) else (doc or {})
            for st in doc.get("Statement", []):
                cond = (st.get("Condition") or {}).get("Bool") or {}
                if st.get("Effect") == "Deny" and str(cond.get("aws:SecureTransport")).lower() == "false":
                    ok = True
        if not ok:
            out.append(f"bucket {name} does not deny non-TLS requests")
    return out


def backup_retention_7_days(resources: list[Resource]) -> list[str]:
    """REST-02: backups kept 7 days: the backups bucket expires objects after exactly 7 days."""
    lifecycles = _by_bucket(resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    out = []
    for name, props in _buckets(resources).items():
        if (props.get("tags") or {}).get("purpose") != "backups":
            continue
        days = {int((r.get("expiration") or {}).get("days", 0)) for lc in lifecycles.get(name, [])
                for r in (lc.get("rules") or []) if r.get("status") == "Enabled"}
        if 7 not in days:
            out.append(f"backups bucket {name} does not expire backups after 7 days (found {sorted(days)})")
    return out


def postgres_explicit_deny(resources: list[Resource]) -> list[str]:
    """TRANSIT-01: an NSG that lets anyone reach 5432 also denies 5432 from everywhere else."""
    out = []
    for t, name, props in resources:
        rules = _nsg_rules(t, props)
        allows = [r for r in rules if str(r.get("access")).lower() == "allow"
                  and str(r.get("direction")).lower() == "inbound" and 5432 in (_ports(r) or {5432})]
        if not allows:
            continue
        denies = [r for r in rules if str(r.get("access")).lower() == "deny" and "*" in _sources(r)
                  and 5432 in (_ports(r) or {5432})]
        if not denies:
            out.append(f"NSG {name} allows 5432 without an explicit deny from everywhere else")
        elif min(float(d.get("priority", 4096)) for d in denies) < max(float(a.get("priority", 0)) for a in allows):
            out.append(f"NSG {name}: the 5432 deny comes before an allow (lower priority number)")
    return out


RESOURCE_POLICIES: dict[str, tuple[Callable[[str, dict], list[str]], str]] = {
    "eu-only-locations": (eu_only_locations, "HOST-03"),
    "no-internet-ssh-or-postgres": (no_internet_ssh_or_postgres, "TRANSIT-01"),
    "vm-ssh-keys-only": (vm_ssh_keys_only, "OPS-01"),
    "vm-disk-encryption": (vm_disk_encryption, "REST-01"),
    "key-vault-hardened": (key_vault_hardened, "REST-03"),
    "required-tags": (required_tags, "GOV-02"),
}
STACK_POLICIES: dict[str, tuple[Callable[[list[Resource]], list[str]], str]] = {
    "s3-sse-s3-encryption": (s3_encryption, "REST-02"),
    "s3-public-access-block": (s3_public_access_block, "HOST-02"),
    "s3-tls-only": (s3_tls_only, "TRANSIT-03"),
    "backup-retention-7-days": (backup_retention_7_days, "REST-02"),
    "postgres-explicit-deny": (postgres_explicit_deny, "TRANSIT-01"),
}


def evaluate(resources: list[Resource]) -> dict[str, list[str]]:
    """Every policy over a stack's resources: {policy name: [violation, ...]}."""
    found: dict[str, list[str]] = {n: [] for n in (*RESOURCE_POLICIES, *STACK_POLICIES)}
    for name, (fn, _) in RESOURCE_POLICIES.items():
        for rtype, rname, props in resources:
            found[name] += [f"{rname}: {m}" for m in fn(rtype, props)]
    for name, (fn, _) in STACK_POLICIES.items():
        found[name] += fn(resources)
    return found
