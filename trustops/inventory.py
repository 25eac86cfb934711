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

import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, IPvAnyAddress, IPvAnyNetwork, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

ROLES = ("app", "db", "ops")
CLOUDS = ("lab", "azure")


class InventoryError(ValueError):
    """An inventory that breaks the contract; the message is one line naming the key."""


@dataclass(frozen=True)
class Host:
    """One host as the lab or the stack knows it; build() checks it through the contract's model."""
    name: str
    role: str
    ansible_host: str
    private_ip: str
    ansible_port: int = 22
    ssh_common_args: str | None = None   # per host, e.g. a ProxyJump through the app VM
    ssh_sources: tuple[str, ...] = ()    # networks SSH to this host comes from (the firewall allows these)


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


# The contract as pydantic models. Variables beyond the contract (the lab's own, per-host extras)
# are allowed where Ansible reads variables; the S3 and network records are closed.
Network = IPvAnyNetwork


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _HostVars(BaseModel):
    model_config = ConfigDict(extra="allow")

    ansible_host: str = Field(min_length=1)
    ansible_port: int = Field(gt=0, lt=65536)
    private_ip: IPvAnyAddress
    trustops_role: Literal["app", "db", "ops"]
    trustops_ssh_sources: list[Network]
    ansible_ssh_common_args: str | None = None

    @field_validator("trustops_ssh_sources")
    @classmethod
    def _someone_reaches_it(cls, value: list) -> list:
        if not value:
            raise PydanticCustomError("no_ssh_sources", "empty: the firewall would lock Ansible out")
        return value


class _Group(_Closed):
    hosts: dict[str, _HostVars] | None = None


class _Children(_Closed):
    app: _Group
    db: _Group
    ops: _Group


class _Networks(_Closed):
    app: Network
    db: Network
    ops: Network
    admin: list[Network] = []


class _S3(_Closed):
    region: str = Field(min_length=1)
    endpoint_url: str | None
    backups_bucket: str = Field(min_length=1)
    files_bucket: str = Field(min_length=1)


class _AllVars(BaseModel):
    model_config = ConfigDict(extra="allow")

    trustops_environment: str = Field(min_length=1)
    trustops_cloud: Literal["lab", "azure"]
    ansible_user: str = Field(min_length=1)
    trustops_networks: _Networks
    trustops_s3: _S3
    trustops_managed_database: bool = False


class _All(_Closed):
    vars: _AllVars
    children: _Children

    @model_validator(mode="after")
    def _every_role_once(self) -> "_All":
        names: list[str] = []
        for role in ROLES:
            hosts = getattr(self.children, role).hosts or {}
            names += hosts
            wrong = [n for n, hv in hosts.items() if hv.trustops_role != role]
            if wrong:
                raise PydanticCustomError("role", "host(s) {wrong} in the {role} group say another trustops_role",
                                          {"wrong": wrong, "role": role})
        missing = [r for r in ROLES if not getattr(self.children, r).hosts
                   and not (r == "db" and self.vars.trustops_managed_database)]
        if missing:
            raise PydanticCustomError("roles", "no host for role(s) {missing}", {"missing": missing})
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise PydanticCustomError("names", "host(s) {twice} in more than one group", {"twice": twice})
        return self


class _Inventory(_Closed):
    all: _All


def _one_line(exc: ValidationError) -> str:
    """pydantic's errors as one line, each led by the key path (all.children.db.hosts.db-1.private_ip)."""
    def one(e) -> str:
        got = f" (got {e['input']!r})" if isinstance(e["input"], str | int | float) and e["type"] != "missing" else ""
        return f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}{got}"
    return "inventory breaks the contract: " + "; ".join(one(e) for e in exc.errors())


def build(site: Site, hosts: list[Host]) -> dict:
    """The YAML-format inventory for `site` and `hosts` (see the module docstring), validated."""
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InventoryError(f"duplicate host names: {names}")
    all_vars: dict[str, object] = {
        "trustops_environment": site.environment,
        "trustops_cloud": site.cloud,
        "ansible_user": site.ansible_user,
        "trustops_networks": {
            **{role: str(site.networks[role]) for role in ROLES if role in site.networks},
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
        hv = children.setdefault(h.role, {"hosts": {}})["hosts"][h.name] = {
            "ansible_host": h.ansible_host,
            "ansible_port": h.ansible_port,
            "private_ip": h.private_ip,
            "trustops_role": h.role,
            # a string stays one, so the contract refuses it (a list of its characters would be no better)
            "trustops_ssh_sources": (h.ssh_sources if isinstance(h.ssh_sources, str)
                                     else [str(c) for c in h.ssh_sources]),
        }
        if h.ssh_common_args:
            hv["ansible_ssh_common_args"] = h.ssh_common_args
    return validate({"all": {"vars": all_vars, "children": children}})


def validate(inventory: object) -> dict:
    """Check that an inventory read from anywhere (file, stack output) keeps the contract; returns it."""
    try:
        _Inventory.model_validate(inventory)
    except ValidationError as exc:
        raise InventoryError(_one_line(exc)) from None
    return inventory  # type: ignore[return-value]


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
