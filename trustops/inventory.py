"""The inventory contract: the one shape that both the lab and the Pulumi stack produce.

Ansible runs the same playbooks against the lab and against Azure, so both sides build their
inventory here, from the same `Host` and `Site` records, and nowhere else. The shape (YAML
inventory format) is:

    all:
      vars:
        trustops_environment: lab | dev | staging | prod
        trustops_cloud: lab | azure
        ansible_user: deploy
        ansible_ssh_private_key_file: <path>        # omitted when the agent holds the key
        ansible_ssh_common_args: <ssh options>      # known_hosts file, jump host
        trustops_networks: {app: CIDR, db: CIDR, ops: CIDR, admin: [CIDR, ...]}
        trustops_s3: {region, endpoint_url (null on AWS), backups_bucket, files_bucket}
      children:
        app: {hosts: {<name>: {ansible_host, ansible_port, private_ip, trustops_role: app,
                               trustops_ssh_sources: [CIDR, ...],
                               ansible_ssh_common_args (optional, per host)}}}
        db:  {hosts: {...}}
        ops: {hosts: {...}}

`trustops_ssh_sources` says where SSH (and the admin's tunnels) reach each host from: the admin
CIDRs for the jump host, the jump host's address for the hosts behind it. The firewall role
allows SSH from exactly these, so a converge never locks itself out.
With `trustops_managed_database: true` (Azure Database for PostgreSQL in place of the db VM) the
db group may be empty and `trustops_database_host` names the server.
Every host belongs to exactly one role group; `private_ip` is the address other hosts use
(pg_hba, UFW allow lists), `ansible_host`/`ansible_port` is how the control node reaches it.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

ROLES = ("app", "db", "ops")
CLOUDS = ("lab", "azure")


class InventoryError(ValueError):
    """An inventory that breaks the contract."""


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    ansible_host: str
    private_ip: str
    ansible_port: int = 22
    ssh_common_args: str | None = None   # per host, e.g. a ProxyJump through the app VM
    ssh_sources: tuple[str, ...] = ()    # networks SSH to this host comes from (the firewall allows these)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InventoryError(f"host {self.name!r}: role {self.role!r} is not one of {ROLES}")
        ipaddress.ip_address(self.private_ip)
        if isinstance(self.ssh_sources, str):
            raise InventoryError(f"host {self.name!r}: ssh_sources is a list of CIDRs, not a string")
        for cidr in self.ssh_sources:
            try:
                ipaddress.ip_network(str(cidr))
            except ValueError as exc:
                raise InventoryError(f"host {self.name!r}: ssh source {cidr!r}: {exc}") from None
        if not 0 < self.ansible_port < 65536:
            raise InventoryError(f"host {self.name!r}: port {self.ansible_port} out of range")


@dataclass(frozen=True)
class S3:
    region: str
    backups_bucket: str
    files_bucket: str
    endpoint_url: str | None = None  # None means real AWS


@dataclass(frozen=True)
class Site:
    environment: str
    cloud: str
    networks: dict[str, object]
    s3: S3
    ansible_user: str = "deploy"
    private_key_file: str | None = None
    ssh_common_args: str = ""
    extra_vars: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cloud not in CLOUDS:
            raise InventoryError(f"cloud {self.cloud!r} is not one of {CLOUDS}")
        for role in ROLES:
            if role not in self.networks:
                raise InventoryError(f"networks lacks the {role!r} subnet")
            ipaddress.ip_network(str(self.networks[role]))
        for cidr in self.networks.get("admin", []):  # type: ignore[union-attr]
            ipaddress.ip_network(str(cidr))


def build(site: Site, hosts: list[Host]) -> dict:
    """The YAML-format inventory for `site` and `hosts` (see the module docstring)."""
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InventoryError(f"duplicate host names: {names}")
    managed_db = bool(site.extra_vars.get("trustops_managed_database"))
    missing = [r for r in ROLES if not any(h.role == r for h in hosts) and not (r == "db" and managed_db)]
    if missing:
        raise InventoryError(f"no host for role(s) {missing}")
    blind = [h.name for h in hosts if not h.ssh_sources]
    if blind:
        raise InventoryError(f"host(s) {blind} name no ssh_sources: the firewall would lock Ansible out")
    all_vars: dict[str, object] = {
        "trustops_environment": site.environment,
        "trustops_cloud": site.cloud,
        "ansible_user": site.ansible_user,
        "trustops_networks": {
            "app": str(site.networks["app"]),
            "db": str(site.networks["db"]),
            "ops": str(site.networks["ops"]),
            "admin": [str(c) for c in site.networks.get("admin", [])],  # type: ignore[union-attr]
        },
        "trustops_s3": {
            "region": site.s3.region,
            "endpoint_url": site.s3.endpoint_url,
            "backups_bucket": site.s3.backups_bucket,
            "files_bucket": site.s3.files_bucket,
        },
    }
    if site.private_key_file:
        all_vars["ansible_ssh_private_key_file"] = site.private_key_file
    if site.ssh_common_args:
        all_vars["ansible_ssh_common_args"] = site.ssh_common_args
    all_vars.update(site.extra_vars)
    children: dict[str, dict] = {role: {"hosts": {}} for role in ROLES}
    for h in sorted(hosts, key=lambda h: h.name):
        hv = children[h.role]["hosts"][h.name] = {
            "ansible_host": h.ansible_host,
            "ansible_port": h.ansible_port,
            "private_ip": h.private_ip,
            "trustops_role": h.role,
            "trustops_ssh_sources": [str(c) for c in h.ssh_sources],
        }
        if h.ssh_common_args:
            hv["ansible_ssh_common_args"] = h.ssh_common_args
    return {"all": {"vars": all_vars, "children": children}}


def validate(inventory: dict) -> dict:
    """Check that an inventory read from anywhere (file, stack output) keeps the contract."""
    try:
        top = inventory["all"]
        all_vars, children = top["vars"], top["children"]
        site = Site(
            environment=all_vars["trustops_environment"],
            cloud=all_vars["trustops_cloud"],
            networks=all_vars["trustops_networks"],
            s3=S3(**all_vars["trustops_s3"]),
            ansible_user=all_vars["ansible_user"],
            extra_vars={"trustops_managed_database": all_vars.get("trustops_managed_database", False)},
        )
        hosts = [
            Host(name=name, role=role, ansible_host=hv["ansible_host"], private_ip=hv["private_ip"],
                 ansible_port=int(hv["ansible_port"]), ssh_common_args=hv.get("ansible_ssh_common_args"),
                 ssh_sources=tuple(hv["trustops_ssh_sources"]))
            for role in ROLES
            for name, hv in (children[role]["hosts"] or {}).items()
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InventoryError(f"inventory breaks the contract: {exc!r}") from exc
    build(site, hosts)  # raises on missing roles / duplicates
    return inventory


def to_ansible_json(inventory: dict) -> dict:
    """The same inventory in Ansible's dynamic-inventory JSON (`--list`) format."""
    validate(inventory)
    top = inventory["all"]
    out: dict[str, object] = {"all": {"vars": top["vars"], "children": list(ROLES)}}
    hostvars: dict[str, dict] = {}
    for role in ROLES:
        hosts = top["children"][role]["hosts"] or {}
        out[role] = {"hosts": sorted(hosts)}
        hostvars.update(hosts)
    out["_meta"] = {"hostvars": hostvars}
    return out


def dumps_json(inventory: dict) -> str:
    return json.dumps(to_ansible_json(inventory), indent=2, sort_keys=True)
