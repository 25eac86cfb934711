"""Typed, validated stack configuration. Every stack (dev, staging, prod) must keep its data in
the EU: a non-EU region is refused before any resource is declared."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

# Azure regions in the EU/EEA (not UK, not Switzerland), and AWS regions in the EU.
EU_AZURE_LOCATIONS = frozenset({
    "westeurope", "northeurope", "francecentral", "francesouth", "germanywestcentral", "germanynorth",
    "swedencentral", "swedensouth", "italynorth", "polandcentral", "spaincentral", "austriaeast",
    "belgiumcentral"})
EU_AWS_REGIONS = frozenset({"eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1"})
ENVIRONMENTS = ("dev", "staging", "prod", "lab")   # lab: the lab twin runs this program under mocks
# Address space reserved for documentation (RFC 5737, RFC 3849): nobody's traffic comes from it.
DOCUMENTATION_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))
# The widest source a rule may name before it counts as "the internet" (config and policy pack alike).
WIDEST_ADMIN_PREFIX = {4: 16, 6: 48}
DATA_CLASSIFICATIONS = ("confidential", "internal", "public")


class StackConfigError(ValueError):
    pass


@dataclass(frozen=True)
class StackConfig:
    environment: str
    azure_location: str
    aws_region: str
    owner: str
    address_space: str
    admin_cidrs: tuple[str, ...]
    ssh_public_key: str
    vm_size: str = "Standard_B2s"
    db_vm_size: str = "Standard_B2ms"
    use_flexible_server: bool = False
    data_classification: str = "confidential"

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise StackConfigError(f"environment {self.environment!r}: one of {ENVIRONMENTS}")
        if self.azure_location not in EU_AZURE_LOCATIONS:
            raise StackConfigError(f"azureLocation {self.azure_location!r} is not an EU region; use one of "
                                   f"{sorted(EU_AZURE_LOCATIONS)}")
        if self.aws_region not in EU_AWS_REGIONS:
            raise StackConfigError(f"awsRegion {self.aws_region!r} is not an EU region; use one of "
                                   f"{sorted(EU_AWS_REGIONS)}")
        net = ipaddress.ip_network(self.address_space)
        if not net.is_private or net.prefixlen > 20:
            raise StackConfigError(f"addressSpace {self.address_space}: a private /20 or larger")
        _check_admin_cidrs(self.admin_cidrs)
        if self.use_flexible_server:
            raise StackConfigError("useFlexibleServer: not supported (no private DNS zone, roles or backups for a "
                                   "managed server); remove the key to run Postgres on the db VM")
        if not self.ssh_public_key.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
            raise StackConfigError("sshPublicKey: an OpenSSH public key (pulumi config set sshPublicKey "
                                   "\"$(cat ~/.ssh/id_ed25519.pub)\")")
        if self.data_classification not in DATA_CLASSIFICATIONS:
            raise StackConfigError(f"dataClassification: one of {DATA_CLASSIFICATIONS}")
        if not self.owner:
            raise StackConfigError("owner: the team that owns this stack")

    def subnet(self, role: str) -> str:
        """app, db, ops get /24s in that order."""
        index = {"app": 1, "db": 2, "ops": 3}[role]
        return str(list(ipaddress.ip_network(self.address_space).subnets(new_prefix=24))[index])

    def host_ip(self, role: str, index: int = 1) -> str:
        """The role's index-th VM (1, 2, ...): .4, .5, ... of its subnet (Azure reserves .0-.3)."""
        return str(ipaddress.ip_network(self.subnet(role))[3 + index])

    @property
    def tags(self) -> dict[str, str]:
        return {"environment": self.environment, "owner": self.owner,
                "data-classification": self.data_classification, "managed-by": "pulumi-trustops"}

    @classmethod
    def from_pulumi(cls) -> "StackConfig":
        import pulumi

        c = pulumi.Config("trustops")
        try:
            return cls(
                environment=c.require("environment"), azure_location=c.require("azureLocation"),
                aws_region=c.require("awsRegion"), owner=c.require("owner"),
                address_space=c.get("addressSpace") or "10.10.0.0/16",
                admin_cidrs=_admin_cidrs_from(c.get("adminCidrs")),
                ssh_public_key=c.require("sshPublicKey"),
                vm_size=c.get("vmSize") or "Standard_B2s", db_vm_size=c.get("dbVmSize") or "Standard_B2ms",
                use_flexible_server=c.get_bool("useFlexibleServer") or False,
                data_classification=c.get("dataClassification") or "confidential",
            )
        except ValueError as exc:
            raise StackConfigError(f"stack {pulumi.get_stack()}: {exc}") from exc


SET_ADMIN_CIDRS = "pulumi config set --path 'adminCidrs[0]' <your office's public egress range, e.g. a /32>"


def _admin_cidrs_from(raw: str | None) -> tuple[str, ...]:
    """The raw config value: a JSON list (`pulumi config set --path 'adminCidrs[0]' ...`)."""
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        value = raw
    if value is None:
        raise StackConfigError(f"adminCidrs: not set; the public ranges SSH comes from ({SET_ADMIN_CIDRS})")
    if isinstance(value, str) or not isinstance(value, list):
        raise StackConfigError(f"adminCidrs: a list of CIDRs, got {value!r} ({SET_ADMIN_CIDRS})")
    return tuple(str(v) for v in value)


def _check_admin_cidrs(cidrs: tuple[str, ...]) -> None:
    """Admin ranges are where SSH to the jump host's public address comes from: globally routable,
    narrow, and not a documentation range (a stack file's placeholder locks everyone out)."""
    if not cidrs:
        raise StackConfigError(f"adminCidrs: empty; nobody could reach SSH ({SET_ADMIN_CIDRS})")
    for c in cidrs:
        try:
            cidr = ipaddress.ip_network(c, strict=True)
        except ValueError as exc:
            raise StackConfigError(f"adminCidrs: {c!r} is not a CIDR ({exc})") from None
        if cidr.prefixlen == 0:
            raise StackConfigError(f"adminCidrs: {c} would open SSH to the internet")
        if any(cidr.overlaps(d) for d in DOCUMENTATION_RANGES if d.version == cidr.version):
            raise StackConfigError(f"adminCidrs: {c} is a documentation range (RFC 5737/3849), not a real "
                                   f"network ({SET_ADMIN_CIDRS})")
        if not cidr.is_global:
            raise StackConfigError(f"adminCidrs: {c} is not a public range; SSH reaches the jump host's public "
                                   f"address, so only public sources ever match ({SET_ADMIN_CIDRS})")
        if cidr.prefixlen < WIDEST_ADMIN_PREFIX[cidr.version]:
            raise StackConfigError(f"adminCidrs: {c} is wider than /{WIDEST_ADMIN_PREFIX[cidr.version]}; name "
                                   f"the admin networks, not a slice of the internet")
    for version, widest in WIDEST_ADMIN_PREFIX.items():
        nets = [ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == version]
        total = sum(n.num_addresses for n in ipaddress.collapse_addresses(nets))  # type: ignore[arg-type]
        if total > 2 ** ((32 if version == 4 else 128) - widest):
            raise StackConfigError(f"adminCidrs: together wider than one /{widest}; name the admin networks, "
                                   f"not a slice of the internet")
