"""The VNet, one subnet per role, one NSG per role that says who may reach what, and a NAT gateway
that gives the private subnets (db, ops) their only way out.

Every inbound flow is written once, in FLOWS, and is exactly what the Ansible roles configure
(the firewall role's allow lists, Prometheus's scrapes, the monitors' alerts, SSH through the jump
host); tests/infra/test_flows.py holds the NSGs and UFW to the same list. Postgres 5432 also gets
an explicit Deny from everywhere else, so a later broad rule cannot open it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network

from trustops.infra.config import StackConfig

DENY_ALL_INBOUND_PRIORITY = 4000
PRIVATE_ROLES = ("db", "ops")        # no public IP, no default outbound: egress through the NAT gateway
NAT_IDLE_TIMEOUT_MINUTES = 10


@dataclass(frozen=True)
class Flow:
    """Inbound to `to` on `port` from `source`: internet, admin (the adminCidrs), jump (the app VM's
    private address: SSH and the admin's tunnels behind it) or a role's subnet."""
    to: str
    port: int
    source: str
    what: str
    protocol: str = "Tcp"


FLOWS: tuple[Flow, ...] = (
    Flow("app", 443, "internet", "https"),
    Flow("app", 80, "internet", "http-redirect"),
    Flow("app", 22, "admin", "ssh"),
    Flow("app", 9100, "ops", "node-metrics"),
    Flow("app", 9469, "ops", "monitor-metrics"),
    Flow("app", 9470, "ops", "app-metrics"),
    Flow("db", 5432, "app", "postgres"),
    Flow("db", 22, "jump", "ssh"),
    Flow("db", 9100, "ops", "node-metrics"),
    Flow("db", 9469, "ops", "monitor-metrics"),
    Flow("db", 9097, "ops", "heartbeat"),
    Flow("ops", 22, "jump", "ssh"),
    Flow("ops", 9090, "jump", "prometheus-tunnel"),
    Flow("ops", 9093, "jump", "alertmanager-tunnel"),
    Flow("ops", 9093, "app", "alerts"),
    Flow("ops", 9093, "db", "alerts"),
    Flow("ops", 19532, "app", "journal-upload"),
    Flow("ops", 19532, "db", "journal-upload"),
    # Between the ops hosts: each Prometheus scrapes the other host's exporters and sends its alerts
    # to every Alertmanager; the Alertmanagers gossip as one cluster (mutual TLS, so TCP only); each
    # keeps the others' journals.
    Flow("ops", 9100, "ops", "node-metrics"),
    Flow("ops", 9469, "ops", "monitor-metrics"),
    Flow("ops", 9093, "ops", "alerts"),
    Flow("ops", 9094, "ops", "alertmanager-gossip"),
    Flow("ops", 19532, "ops", "journal-upload"),
)


def flow_sources(cfg: StackConfig, source: str) -> list[str]:
    """The NSG source prefixes of a flow's symbolic source."""
    if source == "internet":
        return ["Internet"]
    if source == "admin":
        return list(cfg.admin_cidrs)
    if source == "jump":
        return [f"{cfg.host_ip('app')}/32"]
    return [cfg.subnet(source)]


def _rule(name: str, priority: int, port: str, sources: list[str], access: str = "Allow", protocol: str = "Tcp",
          destination: str = "*") -> dict:
    rule = {"name": name, "priority": priority, "direction": "Inbound", "access": access, "protocol": protocol,
            "source_port_range": "*", "destination_address_prefix": destination, "destination_port_range": port}
    if len(sources) == 1:
        rule["source_address_prefix"] = sources[0]
    else:
        rule["source_address_prefixes"] = sources
    return rule


def nsg_rules(cfg: StackConfig, role: str) -> list[dict]:
    """The inbound rules of a role's NSG (plain data, so tests and policies can read them)."""
    rules: list[dict] = []
    if role == "db":
        # the allow from the app subnet comes first (100), then the explicit deny (110)
        rules.append(_rule("deny-postgres-from-anywhere-else", 110, "5432", ["*"], access="Deny", protocol="*"))
    priority = 200
    for flow in FLOWS:
        if flow.to != role:
            continue
        if flow.port == 5432:
            rules.insert(0, _rule(f"{flow.what}-from-{flow.source}", 100, "5432", flow_sources(cfg, flow.source)))
            continue
        priority += 10
        rules.append(_rule(f"{flow.what}-from-{flow.source}", priority, str(flow.port),
                           flow_sources(cfg, flow.source), protocol=flow.protocol))
    rules.append(_rule("deny-all-other-inbound", DENY_ALL_INBOUND_PRIORITY, "*", ["*"], access="Deny",
                       protocol="*"))
    return rules


@dataclass
class NetworkArgs:
    cfg: StackConfig
    resource_group_name: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:Network", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self)
        self.nsgs: dict[str, network.NetworkSecurityGroup] = {}
        for role in ("app", "db", "ops"):
            self.nsgs[role] = network.NetworkSecurityGroup(
                f"{name}-{role}-nsg", resource_group_name=args.resource_group_name, location=cfg.azure_location,
                security_rules=nsg_rules(cfg, role), tags=cfg.tags, opts=child)
        # Controlled egress for the private subnets: one static Standard public IP on a NAT gateway,
        # in the stack's EU region. apt, cloud-init, unattended upgrades and pg_dump to S3 leave here.
        self.nat_ip = network.PublicIPAddress(
            f"{name}-nat-pip", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            public_ip_allocation_method="Static", public_ip_address_version="IPv4", sku={"name": "Standard"},
            tags={**cfg.tags, "role": "nat"}, opts=child)
        self.nat = network.NatGateway(
            f"{name}-nat", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            sku={"name": "Standard"}, public_ip_addresses=[{"id": self.nat_ip.id}],
            idle_timeout_in_minutes=NAT_IDLE_TIMEOUT_MINUTES, tags=cfg.tags, opts=child)
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            address_space={"address_prefixes": [cfg.address_space]}, tags=cfg.tags, opts=child)
        # Subnets of one VNet are written one at a time: Azure refuses concurrent writes to a VNet
        # (AnotherOperationInProgress), so each subnet depends on the one before it.
        self.subnets: dict[str, network.Subnet] = {}
        previous: list[pulumi.Resource] = []
        for role in ("app", "db", "ops"):
            private = role in PRIVATE_ROLES
            self.subnets[role] = network.Subnet(
                f"{name}-{role}-subnet", resource_group_name=args.resource_group_name,
                virtual_network_name=self.vnet.name, address_prefix=cfg.subnet(role),
                network_security_group={"id": self.nsgs[role].id},
                service_endpoints=[{"service": "Microsoft.KeyVault"}],
                nat_gateway={"id": self.nat.id} if private else None,
                default_outbound_access=False if private else None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous))
            previous = [self.subnets[role]]
        self.register_outputs({"vnet_id": self.vnet.id, "nat_ip": self.nat_ip.id})
