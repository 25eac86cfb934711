"""Typed, validated stack configuration. Every stack (dev, staging, prod) must keep its data in
the EU: a non-EU region is refused before any resource is declared."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Azure regions in the EU/EEA (not UK, not Switzerland), and AWS regions in the EU.
EU_AZURE_LOCATIONS = frozenset({
    "westeurope", "northeurope", "francecentral", "francesouth", "germanywestcentral", "germanynorth",
    "swedencentral", "swedensouth", "italynorth", "polandcentral", "spaincentral", "austriaeast",
    "belgiumcentral"})
EU_AWS_REGIONS = frozenset({"eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1"})
ENVIRONMENTS = ("dev", "staging", "prod")
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
        for c in self.admin_cidrs:
            cidr = ipaddress.ip_network(c)
            if cidr.prefixlen == 0:
                raise StackConfigError("adminCidrs: 0.0.0.0/0 would open SSH to the internet")
        if not self.ssh_public_key.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
            raise StackConfigError("sshPublicKey: an OpenSSH public key (pulumi config set sshPublicKey "
                                   "\"$(cat ~/.ssh/id_ed25519.pub)\")")
        if self.data_classification not in DATA_CLASSIFICATIONS:
            raise StackConfigError(f"dataClassification: one of {DATA_CLASSIFICATIONS}")
        if not self.owner:
            raise StackConfigError("owner: the team that owns this stack")

    def subnet(self, role: str) -> str:
        """app, db, ops (and postgres for the flexible server) get /24s in that order."""
        index = {"app": 1, "db": 2, "ops": 3, "postgres": 4}[role]
        return str(list(ipaddress.ip_network(self.address_space).subnets(new_prefix=24))[index])

    def host_ip(self, role: str) -> str:
        return str(ipaddress.ip_network(self.subnet(role))[4])  # Azure reserves .0-.3

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
                admin_cidrs=tuple(c.get_object("adminCidrs") or ()), ssh_public_key=c.require("sshPublicKey"),
                vm_size=c.get("vmSize") or "Standard_B2s", db_vm_size=c.get("dbVmSize") or "Standard_B2ms",
                use_flexible_server=c.get_bool("useFlexibleServer") or False,
                data_classification=c.get("dataClassification") or "confidential",
            )
        except ValueError as exc:
            raise StackConfigError(f"stack {pulumi.get_stack()}: {exc}") from exc
