"""The VNet, one subnet per role, and one NSG per role that says who may reach what.

Internet -> app: 443 and 80 (the redirect) only. SSH: from the admin CIDRs to the app VM (the
jump host), and from the app and ops subnets to db and ops. Postgres 5432: from the app subnet
only, then an explicit Deny from everywhere else, so a later broad rule cannot open it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network

from trustops.infra.config import StackConfig

DENY_ALL_INBOUND_PRIORITY = 4000


def _rule(name: str, priority: int, port: str, source: str, access: str = "Allow", protocol: str = "Tcp",
          destination: str = "*") -> dict:
    return {"name": name, "priority": priority, "direction": "Inbound", "access": access, "protocol": protocol,
            "source_address_prefix": source, "source_port_range": "*",
            "destination_address_prefix": destination, "destination_port_range": port}


def nsg_rules(cfg: StackConfig, role: str) -> list[dict]:
    """The inbound rules of a role's NSG (plain data, so tests and policies can read them)."""
    app, db, ops = cfg.subnet("app"), cfg.subnet("db"), cfg.subnet("ops")
    rules: list[dict] = []
    if role == "app":
        rules += [_rule("https-from-internet", 100, "443", "Internet"),
                  _rule("http-redirect-from-internet", 110, "80", "Internet")]
        rules += [_rule(f"ssh-from-admin-{i}", 200 + i, "22", c) for i, c in enumerate(cfg.admin_cidrs)]
        rules += [_rule("metrics-from-ops", 300, "9100-9470", ops)]
    if role == "db":
        rules += [_rule("postgres-from-app", 100, "5432", app),
                  _rule("deny-postgres-from-anywhere-else", 110, "5432", "*", access="Deny", protocol="*"),
                  _rule("ssh-from-jump", 200, "22", app), _rule("ssh-from-ops", 210, "22", ops),
                  _rule("metrics-from-ops", 300, "9100-9470", ops)]
    if role == "ops":
        rules += [_rule("ssh-from-jump", 200, "22", app),
                  _rule("prometheus-alertmanager-from-app", 300, "9090-9093", app)]
    rules.append(_rule("deny-all-other-inbound", DENY_ALL_INBOUND_PRIORITY, "*", "*", access="Deny",
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
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            address_space={"address_prefixes": [cfg.address_space]}, tags=cfg.tags, opts=child)
        self.subnets: dict[str, network.Subnet] = {}
        roles = ["app", "db", "ops"] + (["postgres"] if cfg.use_flexible_server else [])
        for role in roles:
            extra: dict = {}
            if role == "postgres":
                extra["delegations"] = [{"name": "flexible-server",
                                         "service_name": "Microsoft.DBforPostgreSQL/flexibleServers"}]
                nsg = self.nsgs["db"]
            else:
                nsg = self.nsgs[role]
            self.subnets[role] = network.Subnet(
                f"{name}-{role}-subnet", resource_group_name=args.resource_group_name,
                virtual_network_name=self.vnet.name, address_prefix=cfg.subnet(role),
                network_security_group={"id": nsg.id},
                service_endpoints=[{"service": "Microsoft.KeyVault"}] if role != "postgres" else None,
                default_outbound_access=False if role != "app" else None, opts=child, **extra)
        self.register_outputs({"vnet_id": self.vnet.id})
