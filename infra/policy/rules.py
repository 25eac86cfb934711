"""The policies as plain functions, so CrossGuard (__main__.py) and pytest run the same code.

A resource policy takes (resource type, props) and returns violation messages; a stack policy
takes every resource as (type, name, props). Props use the engine's camelCase names. A policy may
have both halves under one name (the resource half judges a resource's own values, the stack half
what must exist alongside it); the pack registers the stack half as `<name>-stack`.

Written against the ways a check gets sidestepped: exposure spelled another way (several CIDRs,
IPv6 halves, service tags), the same risk in another resource type (BucketV2, scale sets, managed
Postgres, Key Vault IP rules, API-versioned type tokens), identity that rests on a user-chosen tag,
values unknown at preview (a check that reads one cannot block; every value read here is known at
preview of this program), and false positives (`global` for private DNS).
"""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Iterable

from trustops.infra.config import EU_AWS_REGIONS, EU_AZURE_LOCATIONS, WIDEST_ADMIN_PREFIX

Resource = tuple[str, str, dict]
GUARDED_PORTS = {22: "SSH", 5432: "Postgres"}
REQUIRED_TAGS = ("environment", "owner", "data-classification")
BACKUP_PREFIX = "postgres/"          # where the backup tool writes (backups/pgbackup.py, infra/storage.py)
BACKUP_RETENTION_DAYS = 7
# Service tags that name only private space; every other tag (Internet, *, Any, AzureCloud[.region],
# Storage, AzureFrontDoor.*, ...) contains addresses anyone on the internet can hold.
PRIVATE_SERVICE_TAGS = {"virtualnetwork", "azureloadbalancer"}
# Resources whose location is `global` by design (Azure private DNS).
GLOBAL_LOCATION_TYPES = {"azure-native:privatedns:PrivateZone", "azure-native:privatedns:VirtualNetworkLink",
                         "azure-native:privatedns:PrivateRecordSet", "azure-native:network:PrivateZone",
                         "azure-native:network:VirtualNetworkLink", "azure-native:network:PrivateRecordSet"}

VM = "azure-native:compute:VirtualMachine"
VMSS = "azure-native:compute:VirtualMachineScaleSet"
NSG = "azure-native:network:NetworkSecurityGroup"
SECURITY_RULE = "azure-native:network:SecurityRule"
KEY_VAULT = "azure-native:keyvault:Vault"
PG_FLEXIBLE = "azure-native:dbforpostgresql:Server"
PG_SINGLE = "azure-native:dbforpostgresql:SingleServer"
PG_CLUSTER = "azure-native:dbforpostgresql:ServerGroupCluster"
PG_FIREWALL_RULES = {"azure-native:dbforpostgresql:FirewallRule", "azure-native:dbforpostgresql:SingleServerFirewallRule",
                     "azure-native:dbforpostgresql:ServerGroupFirewallRule"}
# Every bucket type the AWS provider still offers, and the config resources that attach to one.
BUCKET_TYPES = {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}
SSE_TYPES = {"aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"}
PAB_TYPES = {"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"}
BUCKET_POLICY_TYPES = {"aws:s3/bucketPolicy:BucketPolicy"}
LIFECYCLE_TYPES = {"aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                   "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2"}
ACL_TYPES = {"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"}
IAM_POLICY_TYPES = {"aws:iam/userPolicy:UserPolicy", "aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy",
                    "aws:iam/groupPolicy:GroupPolicy"}
PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
TAGGED_TYPES = {"azure-native:resources:ResourceGroup", "azure-native:network:VirtualNetwork", NSG,
                "azure-native:network:NetworkInterface", "azure-native:network:PublicIPAddress",
                "azure-native:network:NatGateway", VM, VMSS, KEY_VAULT, PG_FLEXIBLE, PG_SINGLE, PG_CLUSTER,
                "azure-native:privatedns:PrivateZone", *BUCKET_TYPES, "aws:iam/user:User"}


# -------------------------------------------------------------------------- reading props

class Undecidable(Exception):
    """A policy needed a value that is unknown (a preview of a new stack): it cannot block."""


# The engine's markers for values unknown at preview (string, boolean, number, array, asset, archive,
# object), as pulumi_policy.proxy names them.
UNKNOWN_SENTINELS = frozenset({
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421", "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
    "030794c1-ac77-496b-92df-f27374a8bd58", "e48ece36-62e2-4504-bad9-02848725956a",
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff"})


def _is_unknown(value: Any) -> bool:
    """pulumi.output.Unknown under mocks; the engine's sentinel strings under CrossGuard."""
    return type(value).__name__ == "Unknown" or (isinstance(value, str) and value in UNKNOWN_SENTINELS)


class _Props(dict):
    """Props that raise Undecidable when a policy reads an unknown value (as CrossGuard's proxy does)."""

    def __getitem__(self, key):
        return _checked(super().__getitem__(key), key)

    def get(self, key, default=None):
        return _checked(super().get(key, default), key)

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def values(self):
        return [self[k] for k in self.keys()]


class _List(list):
    def __iter__(self):
        for i, v in enumerate(list.__iter__(self)):
            yield _checked(v, f"[{i}]")

    def __getitem__(self, i):
        return _checked(list.__getitem__(self, i), f"[{i}]")


def _checked(value: Any, where: object) -> Any:
    if _is_unknown(value):
        raise Undecidable(f"{where} is unknown at preview")
    if isinstance(value, dict) and not isinstance(value, _Props):
        return _Props(value)
    if isinstance(value, list) and not isinstance(value, _List):
        return _List(value)
    return value


def canonical_type(rtype: str) -> str:
    """`azure-native:network/v20240501:NetworkSecurityGroup` is a NetworkSecurityGroup too."""
    return re.sub(r"^(azure-native:[A-Za-z]+)/v\d{8}(?:preview)?:", r"\1:", rtype)


def _lower(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


# -------------------------------------------------------------------------- address space

def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def internet_exposure(sources: Iterable[Any]) -> str | None:
    """Why these sources, taken together, are the internet (None if they are not): any service tag
    but the private ones, or more public addresses than the widest admin range allowed."""
    nets: dict[int, list] = {4: [], 6: []}
    for raw in sources:
        text = _lower(raw)
        if not text:
            continue
        net = _network(text)
        if net is None:
            if text not in PRIVATE_SERVICE_TAGS:
                return f"service tag {raw!r} includes internet addresses"
            continue
        nets[net.version].append(net)
    for version, found in nets.items():
        public = 0
        for net in ipaddress.collapse_addresses(found):
            if net.is_global or not (net.is_private or net.is_reserved or net.is_loopback or net.is_link_local):
                public += net.num_addresses
        limit = 2 ** ((32 if version == 4 else 128) - WIDEST_ADMIN_PREFIX[version])
        if public > limit:
            return (f"IPv{version} sources {sorted(str(n) for n in found)} cover {public} public addresses "
                    f"(more than a /{WIDEST_ADMIN_PREFIX[version]})")
    return None


def _ports(rule: dict) -> set[int] | None:
    """The ports a rule covers; None means all (and anything unreadable counts as all)."""
    specs = [rule.get("destinationPortRange")] + list(rule.get("destinationPortRanges") or [])
    out: set[int] = set()
    for spec in filter(lambda s: s not in (None, ""), specs):
        spec = str(spec).replace(" ", "")
        if spec in ("*", "any"):
            return None
        lo, _, hi = spec.partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return None
    return out if out or any(s for s in specs) else None


def _sources(rule: dict) -> list[str]:
    return [str(s) for s in [rule.get("sourceAddressPrefix")] + list(rule.get("sourceAddressPrefixes") or [])
            if s not in (None, "")]


def _nsg_rules(rtype: str, props: dict) -> list[dict]:
    rtype = canonical_type(rtype)
    if rtype == NSG:
        return list(props.get("securityRules") or [])
    if rtype == SECURITY_RULE:
        return [props]
    return []


def _inbound_allow(rule: dict) -> bool:
    return _lower(rule.get("direction") or "inbound") == "inbound" and _lower(rule.get("access")) == "allow"


# -------------------------------------------------------------------------- resource policies

def eu_only_locations(rtype: str, props: dict) -> list[str]:
    """HOST-03: every Azure resource and provider in an EU location, every AWS one in an EU region."""
    out = []
    ctype = canonical_type(rtype)
    if rtype.startswith("azure-native:") or rtype == "pulumi:providers:azure-native":
        loc = props.get("location")
        norm = _lower(loc).replace(" ", "")
        if loc is not None and norm not in EU_AZURE_LOCATIONS and not (
                norm == "global" and ctype in GLOBAL_LOCATION_TYPES):
            out.append(f"Azure location {loc!r} is outside the EU")
        if rtype == "pulumi:providers:azure-native" and loc is None:
            out.append("Azure provider without an explicit EU location")
    if rtype.startswith("aws:") or rtype == "pulumi:providers:aws":
        region = props.get("region")
        if region is not None and _lower(region) not in EU_AWS_REGIONS:
            out.append(f"AWS region {region!r} is outside the EU")
        if rtype == "pulumi:providers:aws" and region is None:
            out.append("AWS provider without an explicit EU region")
    return out


def no_internet_ssh_or_postgres(rtype: str, props: dict) -> list[str]:
    """TRANSIT-01, OPS-01: nothing lets the internet reach 22 or 5432: no inbound NSG Allow from
    sources that together are the internet, no managed Postgres with public access or firewall rules."""
    out = []
    for rule in _nsg_rules(rtype, props):
        if not _inbound_allow(rule) or _lower(rule.get("protocol")) == "icmp":
            continue
        why = internet_exposure(_sources(rule))
        if why is None:
            continue
        ports = _ports(rule)
        for port, what in GUARDED_PORTS.items():
            if ports is None or port in ports:
                out.append(f"NSG rule {rule.get('name')!r} allows {what} ({port}) from the internet: {why}")
    ctype = canonical_type(rtype)
    if ctype == PG_FLEXIBLE:
        network = props.get("network") or {}
        access = _lower(network.get("publicNetworkAccess"))
        if access == "enabled" or (not network.get("delegatedSubnetResourceId") and access != "disabled"):
            out.append("Postgres flexible server with public network access (network.publicNetworkAccess)")
    if ctype == PG_SINGLE and _lower((props.get("properties") or {}).get("publicNetworkAccess")) != "disabled":
        out.append("Postgres single server with public network access (properties.publicNetworkAccess)")
    if ctype == PG_CLUSTER and (props.get("coordinatorEnablePublicIpAccess") is not False
                                or props.get("nodeEnablePublicIpAccess")):
        out.append("Postgres cluster with public IP access")
    if ctype in PG_FIREWALL_RULES:
        out.append(f"Postgres firewall rule {props.get('firewallRuleName') or ''} opens the server to "
                   f"{props.get('startIpAddress')}-{props.get('endIpAddress')}")
    return out


def _os_profiles(rtype: str, props: dict) -> tuple[dict, dict] | None:
    ctype = canonical_type(rtype)
    if ctype == VM:
        return props.get("osProfile") or {}, props.get("securityProfile") or {}
    if ctype == VMSS:
        profile = props.get("virtualMachineProfile") or {}
        return profile.get("osProfile") or {}, profile.get("securityProfile") or {}
    return None


def vm_ssh_keys_only(rtype: str, props: dict) -> list[str]:
    """AUTH/OPS-01: Linux VMs and scale sets with password authentication disabled, no admin password."""
    profiles = _os_profiles(rtype, props)
    if profiles is None:
        return []
    osp = profiles[0]
    out = []
    if (osp.get("linuxConfiguration") or {}).get("disablePasswordAuthentication") is not True:
        out.append("password authentication allowed (osProfile.linuxConfiguration.disablePasswordAuthentication)")
    if osp.get("adminPassword"):
        out.append("an admin password is set")
    return out


def vm_disk_encryption(rtype: str, props: dict) -> list[str]:
    """REST-01: encryption at host (temp disk and caches too), platform-managed keys, VMs and scale sets."""
    profiles = _os_profiles(rtype, props)
    if profiles is not None and profiles[1].get("encryptionAtHost") is not True:
        return ["no encryption at host (securityProfile.encryptionAtHost)"]
    return []


def key_vault_hardened(rtype: str, props: dict) -> list[str]:
    """REST-03, AUTH-03: Key Vault with RBAC, soft delete, purge protection, a deny-by-default
    network whose IP rules do not let the internet back in."""
    if canonical_type(rtype) != KEY_VAULT:
        return []
    p = props.get("properties") or {}
    out = []
    for key, what in (("enableRbacAuthorization", "RBAC authorization"), ("enablePurgeProtection", "purge protection")):
        if p.get(key) is not True:
            out.append(f"Key Vault without {what}")
    if p.get("enableSoftDelete") is False:
        out.append("Key Vault with soft delete off")
    acls = p.get("networkAcls") or {}
    if _lower(acls.get("defaultAction") or "allow") != "deny":
        out.append("Key Vault network ACL does not deny by default")
    why = internet_exposure([r.get("value") for r in (acls.get("ipRules") or [])])
    if why:
        out.append(f"Key Vault IP rules let the internet in: {why}")
    return out


def required_tags(rtype: str, props: dict) -> list[str]:
    """GOV: every taggable resource says its environment, owner and data classification."""
    if canonical_type(rtype) not in TAGGED_TYPES:
        return []
    tags = props.get("tags") or {}
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    return [f"missing tags {missing}"] if missing else []


def s3_encryption_values(rtype: str, props: dict) -> list[str]:
    """REST-02: a bucket's default encryption is SSE-S3 (AES256), in a config resource or inline."""
    if rtype in SSE_TYPES:
        rules = list(props.get("rules") or [])
    elif rtype in BUCKET_TYPES and props.get("serverSideEncryptionConfiguration"):
        rules = list((props.get("serverSideEncryptionConfiguration") or {}).get("rules") or [])
        rules = [r for rule in rules for r in ([rule] if isinstance(rule, dict) else [])]
        rules = [{"applyServerSideEncryptionByDefault": (r.get("applyServerSideEncryptionByDefault") or {})}
                 for r in rules]
    else:
        return []
    algos = [_lower((r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")) for r in rules]
    if not algos or any(a != "aes256" for a in algos):
        return [f"bucket {props.get('bucket')} encrypts with {algos or 'nothing'}, not SSE-S3 (AES256)"]
    return []


def s3_public_access_values(rtype: str, props: dict) -> list[str]:
    """HOST-02: public-access blocks all four on; no public canned ACL."""
    if rtype in PAB_TYPES:
        off = [k for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
               if props.get(k) is not True]
        return [f"bucket {props.get('bucket')} public-access block leaves {off} off"] if off else []
    if rtype in ACL_TYPES | BUCKET_TYPES and _lower(props.get("acl")) in PUBLIC_ACLS:
        return [f"bucket {props.get('bucket')} has the public canned ACL {props.get('acl')!r}"]
    return []


def _denies_non_tls(doc: Any, bucket: str) -> bool:
    doc = json.loads(doc) if isinstance(doc, str) else (doc or {})
    arn = f"arn:aws:s3:::{bucket}"
    statements = doc.get("Statement") or []
    for st in statements if isinstance(statements, list) else [statements]:
        cond = {k.lower(): v for k, v in (st.get("Condition") or {}).items()}
        secure = {k.lower(): v for k, v in (cond.get("bool") or {}).items()}.get("aws:securetransport")
        resources = st.get("Resource") or []
        resources = {resources} if isinstance(resources, str) else set(resources)
        actions = st.get("Action") or []
        actions = {actions} if isinstance(actions, str) else set(actions)
        if (st.get("Effect") == "Deny" and str(secure).lower() == "false" and st.get("Principal") in ("*", {"AWS": "*"})
                and actions & {"s3:*", "*"} and {arn, f"{arn}/*"} <= resources):
            return True
    return False


def s3_tls_only_values(rtype: str, props: dict) -> list[str]:
    """TRANSIT: a bucket policy denies every request without TLS, on the bucket and its objects."""
    if rtype not in BUCKET_POLICY_TYPES and not (rtype in BUCKET_TYPES and props.get("policy")):
        return []
    bucket = props.get("bucket")
    if not _denies_non_tls(props.get("policy"), str(bucket)):
        return [f"bucket {bucket}: policy does not deny non-TLS requests (s3:* on the bucket and /*)"]
    return []


def _covers_backup_prefix(rule: dict) -> bool:
    flt = rule.get("filter") or {}
    prefix = flt.get("prefix") if flt.get("prefix") is not None else rule.get("prefix")
    if flt.get("and") or flt.get("tag") or flt.get("objectSizeGreaterThan") or flt.get("objectSizeLessThan"):
        return False
    return not prefix or BACKUP_PREFIX.startswith(str(prefix))


def _expiry_days(lifecycle: dict) -> set[int]:
    return {int((r.get("expiration") or {}).get("days") or 0) for r in (lifecycle.get("rules") or [])
            if _lower(r.get("status")) == "enabled" and _covers_backup_prefix(r)}


def _backup_named(bucket: Any) -> bool:
    return "backup" in _lower(bucket)


def backup_retention_values(rtype: str, props: dict) -> list[str]:
    """REST-02: a lifecycle on a backups bucket expires every backup after exactly 7 days."""
    if rtype in LIFECYCLE_TYPES and _backup_named(props.get("bucket")):
        days = _expiry_days(props)
        if BACKUP_RETENTION_DAYS not in days:
            return [f"backups bucket {props.get('bucket')}: no enabled rule expires {BACKUP_PREFIX} after "
                    f"{BACKUP_RETENTION_DAYS} days (found {sorted(days)})"]
    return []


# -------------------------------------------------------------------------- stack policies

def _by_bucket(resources: Iterable[Resource], rtypes: set[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t, _, props in resources:
        if t in rtypes:
            out.setdefault(str(props.get("bucket")), []).append(props)
    return out


def _buckets(resources: Iterable[Resource]) -> dict[str, dict]:
    return {str(p.get("bucket") or n): p for t, n, p in resources if t in BUCKET_TYPES}


def s3_encryption(resources: list[Resource]) -> list[str]:
    """REST-02: every bucket has a default-encryption configuration (its values: the resource half)."""
    sse = _by_bucket(resources, SSE_TYPES)
    return [f"bucket {name} has no default-encryption configuration" for name, props in _buckets(resources).items()
            if name not in sse and not props.get("serverSideEncryptionConfiguration")]


def s3_public_access_block(resources: list[Resource]) -> list[str]:
    """HOST-02: every bucket has a public-access block."""
    blocks = _by_bucket(resources, PAB_TYPES)
    return [f"bucket {name} has no public-access block" for name in _buckets(resources) if name not in blocks]


def s3_tls_only(resources: list[Resource]) -> list[str]:
    """TRANSIT: every bucket has a policy (that it denies non-TLS: the resource half)."""
    policies = _by_bucket(resources, BUCKET_POLICY_TYPES)
    return [f"bucket {name} has no bucket policy denying non-TLS requests" for name, props in
            _buckets(resources).items() if name not in policies and not props.get("policy")]


def _backup_buckets(resources: list[Resource]) -> set[str]:
    """Backups buckets, known by any of three independent signals so that changing one (a tag, a
    name) does not hide a bucket: the `purpose: backups` tag, `backup` in the name, or an IAM policy
    that lets someone write the backup prefix into it."""
    names = set(_buckets(resources))
    found = {n for n, p in _buckets(resources).items()
             if _lower((p.get("tags") or {}).get("purpose")) == "backups" or _backup_named(n)}
    for t, _, props in resources:
        if t not in IAM_POLICY_TYPES:
            continue
        doc = props.get("policy")
        doc = json.loads(doc) if isinstance(doc, str) else (doc or {})
        for st in doc.get("Statement") or []:
            res = st.get("Resource") or []
            for r in [res] if isinstance(res, str) else res:
                m = re.fullmatch(r"arn:aws:s3:::([^/]+)/" + re.escape(BACKUP_PREFIX) + r"\*?", str(r))
                if m and m.group(1) in names:
                    found.add(m.group(1))
    return found


def backup_retention_7_days(resources: list[Resource]) -> list[str]:
    """REST-02: backups kept 7 days: every backups bucket expires objects after exactly 7 days."""
    lifecycles = _by_bucket(resources, LIFECYCLE_TYPES)
    out = []
    for name in sorted(_backup_buckets(resources)):
        days = {d for lc in lifecycles.get(name, []) for d in _expiry_days(lc)}
        if BACKUP_RETENTION_DAYS not in days:
            out.append(f"backups bucket {name} does not expire backups after {BACKUP_RETENTION_DAYS} days "
                       f"(found {sorted(days)})")
    return out


def postgres_explicit_deny(resources: list[Resource]) -> list[str]:
    """TRANSIT-01: an NSG that lets anyone reach 5432 also denies 5432 from everywhere else, after the allows."""
    out = []
    for t, name, props in resources:
        rules = _nsg_rules(t, props)
        allows = [r for r in rules if _inbound_allow(r) and 5432 in (_ports(r) or {5432})]
        if not allows:
            continue
        denies = [r for r in rules if _lower(r.get("access")) == "deny"
                  and _lower(r.get("direction") or "inbound") == "inbound"
                  and {"*", "0.0.0.0/0", "internet", "any"} & {_lower(s) for s in _sources(r)}
                  and 5432 in (_ports(r) or {5432})]
        if not denies:
            out.append(f"NSG {name} allows 5432 without an explicit deny from everywhere else")
            continue
        try:
            first_deny = min(float(d.get("priority", 4096)) for d in denies)
            last_allow = max(float(a.get("priority", 0)) for a in allows)
        except (TypeError, ValueError):
            out.append(f"NSG {name}: a 5432 rule has an unreadable priority")
            continue
        if first_deny < last_allow:
            out.append(f"NSG {name}: the 5432 deny comes before an allow (lower priority number)")
    return out


RESOURCE_POLICIES: dict[str, tuple[Callable[[str, dict], list[str]], str]] = {
    "eu-only-locations": (eu_only_locations, "HOST-03"),
    "no-internet-ssh-or-postgres": (no_internet_ssh_or_postgres, "TRANSIT-01"),
    "vm-ssh-keys-only": (vm_ssh_keys_only, "OPS-01"),
    "vm-disk-encryption": (vm_disk_encryption, "REST-01"),
    "key-vault-hardened": (key_vault_hardened, "REST-03"),
    "required-tags": (required_tags, "GOV-02"),
    "s3-sse-s3-encryption": (s3_encryption_values, "REST-02"),
    "s3-public-access-block": (s3_public_access_values, "HOST-02"),
    "s3-tls-only": (s3_tls_only_values, "TRANSIT-03"),
    "backup-retention-7-days": (backup_retention_values, "REST-02"),
}
STACK_POLICIES: dict[str, tuple[Callable[[list[Resource]], list[str]], str]] = {
    "s3-sse-s3-encryption": (s3_encryption, "REST-02"),
    "s3-public-access-block": (s3_public_access_block, "HOST-02"),
    "s3-tls-only": (s3_tls_only, "TRANSIT-03"),
    "backup-retention-7-days": (backup_retention_7_days, "REST-02"),
    "postgres-explicit-deny": (postgres_explicit_deny, "TRANSIT-01"),
}


def run_resource_policy(fn: Callable[[str, dict], list[str]], rtype: str, props: dict) -> list[str]:
    return fn(rtype, _Props(props))


def run_stack_policy(fn: Callable[[list[Resource]], list[str]], resources: list[Resource]) -> list[str]:
    return fn([(t, n, _Props(p)) for t, n, p in resources])


def evaluate_all(resources: list[Resource]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Every policy over a stack's resources: ({policy: [violation]}, {policy: [why it could not decide]})."""
    names = (*RESOURCE_POLICIES, *[n for n in STACK_POLICIES if n not in RESOURCE_POLICIES])
    found: dict[str, list[str]] = {n: [] for n in names}
    undecided: dict[str, list[str]] = {n: [] for n in names}
    for name, (fn, _) in RESOURCE_POLICIES.items():
        for rtype, rname, props in resources:
            try:
                found[name] += [f"{rname}: {m}" for m in run_resource_policy(fn, rtype, props)]
            except Undecidable as exc:
                undecided[name].append(f"{rname}: {exc}")
    for name, (sfn, _) in STACK_POLICIES.items():
        try:
            found[name] += run_stack_policy(sfn, resources)
        except Undecidable as exc:
            undecided[name].append(str(exc))
    return found, undecided


def evaluate(resources: list[Resource]) -> dict[str, list[str]]:
    """Every policy over a stack's resources: {policy name: [violation, ...]}; a policy that cannot
    decide (an unknown value) counts as a violation here, as it would not block a real preview."""
    found, undecided = evaluate_all(resources)
    return {n: found[n] + [f"cannot decide: {u}" for u in undecided[n]] for n in found}
