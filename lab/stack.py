"""The `lab` stack, read from the program itself: the Pulumi program runs under mocks (as in
trustops.mockrun) whose answers are the addresses the lab will really create, and every
declared resource becomes a typed `Plan` the twin materialises. No lab topology is written by
hand: subnets, NSG rules, VMs, public IPs, NAT gateways, buckets, IAM and Key Vault all come
from what the program declares.

The mock runtime is global state, so the program runs in a child process
(`python -m trustops.lab.stack`), which prints the plan as JSON.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trustops.lab.system import LabError

STACK = "lab"
PROJECT_DIR = Path(__file__).resolve().parent.parent
STACK_FILE = PROJECT_DIR / f"Pulumi.{STACK}.yaml"


@dataclass(frozen=True)
class NsgRule:
    """One security rule as Azure evaluates it (lists already merged: `*Prefix` + `*Prefixes`)."""

    name: str
    priority: int
    direction: str          # Inbound | Outbound
    access: str             # Allow | Deny
    protocol: str           # Tcp | Udp | Icmp | * (Esp, Ah: never matched in the lab)
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    ports: tuple[str, ...]  # destination port ranges: "*", "22", "9100-9470"
    source_ports: tuple[str, ...] = ("*",)


# Azure's default rules, evaluated after the user's (priorities 65000-65500).
DEFAULT_RULES = (
    NsgRule("AllowVnetInBound", 65000, "Inbound", "Allow", "*", ("VirtualNetwork",), ("VirtualNetwork",), ("*",)),
    NsgRule("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "*", ("AzureLoadBalancer",), ("*",), ("*",)),
    NsgRule("DenyAllInBound", 65500, "Inbound", "Deny", "*", ("*",), ("*",), ("*",)),
    NsgRule("AllowVnetOutBound", 65000, "Outbound", "Allow", "*", ("VirtualNetwork",), ("VirtualNetwork",), ("*",)),
    NsgRule("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", ("*",), ("Internet",), ("*",)),
    NsgRule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", ("*",), ("*",), ("*",)),
)


@dataclass(frozen=True)
class Subnet:
    name: str               # the Pulumi resource name
    cidr: str
    nsg: str | None         # NSG resource name
    nat_gateway: str | None
    default_outbound_access: bool


@dataclass(frozen=True)
class Vm:
    name: str               # the Pulumi resource name of the VM
    role: str               # the VM's `role` tag
    computer_name: str
    subnet: str             # Subnet.name
    private_ip: str
    public_ip: str | None   # the address the mocks gave its public IP
    principal_id: str
    nsg: str | None = None  # an NSG on the NIC itself (evaluated with the subnet's)
    # managed data disks: {name, lun, size_gb, delete_option, mount} (mount: where the VM's
    # cloud-init mounts it, None when nothing does)
    data_disks: list[dict] = field(default_factory=list, hash=False)

    @property
    def lab_key(self) -> str:
        """The lab's name for this VM's container and published ports: its role for the role's
        first VM (app, db, ops), its computer name for the next ones (ops-2)."""
        from trustops.lab.environment import host_key
        return host_key(self.role, self.computer_name)


@dataclass
class Plan:
    stack: str
    address_space: list[str]
    subnets: dict[str, Subnet]
    nsgs: dict[str, list[NsgRule]]             # name -> user rules sorted by direction, priority
    vms: dict[str, Vm]
    public_ips: dict[str, str]                 # resource name -> address
    nat_gateways: dict[str, list[str]]         # name -> its public addresses
    buckets: dict[str, dict]                   # bucket name -> {resource, settings by kind}
    iam_users: dict[str, dict]                 # resource name -> inputs
    iam_policies: dict[str, dict]              # resource name -> {user, policy}
    access_keys: dict[str, dict]               # resource name -> inputs
    secrets: dict[str, dict]                   # secret name -> {vault, resource}
    role_assignments: list[dict]
    inventory: dict
    outputs: dict
    resources: list[dict] = field(default_factory=list)   # every declared resource: type, name, inputs

    def rules(self, nsg: str | None, direction: str) -> list[NsgRule]:
        """The rules Azure evaluates, in order: the user's by priority, then the defaults."""
        user = [r for r in self.nsgs.get(nsg, []) if r.direction == direction] if nsg else []
        return sorted(user, key=lambda r: r.priority) + [r for r in DEFAULT_RULES if r.direction == direction]

    def egress(self, vm: Vm) -> str | None:
        """The public address `vm`'s outbound traffic leaves from, or None (no way out). A NAT
        gateway on the subnet wins over the VM's own public IP, as in Azure."""
        subnet = self.subnets[vm.subnet]
        if subnet.nat_gateway and self.nat_gateways.get(subnet.nat_gateway):
            return self.nat_gateways[subnet.nat_gateway][0]
        return vm.public_ip

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        d = json.loads(text)
        d["subnets"] = {k: Subnet(**v) for k, v in d["subnets"].items()}
        d["vms"] = {k: Vm(**v) for k, v in d["vms"].items()}
        d["nsgs"] = {k: [NsgRule(**{**r, **{f: tuple(r[f]) for f in ("sources", "destinations", "ports",
                                                                          "source_ports")}}) for r in v]
                     for k, v in d["nsgs"].items()}
        return cls(**d)


# ---------------------------------------------------------------------------- reading the declarations


def _ref(value) -> str | None:
    """The resource name a mock id points at (the mocks answer `<name>_id`)."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        return None
    return value[:-3] if value.endswith("_id") else value


def _merged(rule: dict, one: str, many: str) -> tuple[str, ...]:
    values = list(rule.get(many) or [])
    if rule.get(one) not in (None, ""):
        values.insert(0, rule[one])
    return tuple(str(v) for v in values) or ("*",)


def _nsg_rule(r: dict) -> NsgRule:
    return NsgRule(name=r.get("name", "?"), priority=int(r["priority"]), direction=r.get("direction", "Inbound"),
                   access=r.get("access", "Allow"), protocol=r.get("protocol", "*"),
                   sources=_merged(r, "sourceAddressPrefix", "sourceAddressPrefixes"),
                   destinations=_merged(r, "destinationAddressPrefix", "destinationAddressPrefixes"),
                   ports=_merged(r, "destinationPortRange", "destinationPortRanges"),
                   source_ports=_merged(r, "sourcePortRange", "sourcePortRanges"))


def _cloud_config(vm: str, inputs: dict) -> dict:
    import base64

    import yaml

    data = (inputs.get("osProfile") or {}).get("customData")
    if not data:
        return {}
    try:
        doc = yaml.safe_load(base64.b64decode(data, validate=True).decode())
    except (ValueError, yaml.YAMLError) as exc:
        raise LabError(f"lab stack: VM {vm}'s customData is not base64 cloud-config YAML: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def _data_disks(vm: str, inputs: dict) -> list[dict]:
    """The VM's managed data disks, each with the mount point its cloud-init gives it (by device,
    or by the label its fs_setup puts on that device), as the VM would see them at first boot."""
    from trustops.infra.compute import AZURE_LUN_DEVICE

    cloud = _cloud_config(vm, inputs)
    device_of_label = {str(fs.get("label")): str(fs.get("device")) for fs in cloud.get("fs_setup") or []
                       if isinstance(fs, dict) and fs.get("label")}
    mount_of_device = {}
    for entry in cloud.get("mounts") or []:
        if isinstance(entry, list) and len(entry) >= 2:
            spec = str(entry[0])
            device = device_of_label.get(spec[len("LABEL="):]) if spec.startswith("LABEL=") else spec
            mount_of_device[device] = str(entry[1])
    disks = []
    for d in (inputs.get("storageProfile") or {}).get("dataDisks") or []:
        lun = int(d.get("lun", 0))
        disks.append({"name": str(d.get("name") or f"{vm}-lun{lun}"), "lun": lun,
                      "size_gb": int(d.get("diskSizeGB") or 0), "delete_option": str(d.get("deleteOption", "Detach")),
                      "mount": mount_of_device.get(AZURE_LUN_DEVICE.format(lun=lun))})
    return disks


def build_plan(declared: list[tuple[str, str, dict]], outputs: dict, public_ips: dict[str, str]) -> Plan:
    """The typed plan from the declared resources (type, name, inputs) and the stack's outputs."""
    by_type: dict[str, list[tuple[str, dict]]] = {}
    for typ, name, inputs in declared:
        by_type.setdefault(typ, []).append((name, inputs))

    def of(suffix: str) -> list[tuple[str, dict]]:
        return [x for t, xs in by_type.items() if t.split(":")[-1] == suffix and t.startswith("azure-native:")
                for x in xs]

    nsgs: dict[str, list[NsgRule]] = {}
    for name, inputs in of("NetworkSecurityGroup"):
        nsgs[name] = sorted((_nsg_rule(r) for r in inputs.get("securityRules") or []),
                            key=lambda r: (r.direction, r.priority))
    for name, inputs in of("SecurityRule"):   # rules declared as their own resources
        nsg = str(inputs.get("networkSecurityGroupName", ""))
        nsgs.setdefault(nsg, []).append(_nsg_rule({"name": inputs.get("securityRuleName", name), **inputs}))
    nat_gateways = {name: [public_ips[p] for p in (_ref(x) for x in inputs.get("publicIpAddresses") or [])
                           if p in public_ips]
                    for name, inputs in of("NatGateway")}

    subnets: dict[str, Subnet] = {}

    def add_subnet(name: str, s: dict) -> None:
        prefix = s.get("addressPrefix") or (s.get("addressPrefixes") or [None])[0]
        if prefix:
            subnets[name] = Subnet(name=name, cidr=str(prefix), nsg=_ref(s.get("networkSecurityGroup")),
                                   nat_gateway=_ref(s.get("natGateway")),
                                   default_outbound_access=s.get("defaultOutboundAccess") is not False)
    address_space: list[str] = []
    for vnet, inputs in of("VirtualNetwork"):
        address_space += list((inputs.get("addressSpace") or {}).get("addressPrefixes") or [])
        for s in inputs.get("subnets") or []:   # subnets declared inline in the VNet
            add_subnet(s.get("name", f"{vnet}-subnet"), s)
    for name, inputs in of("Subnet"):
        add_subnet(name, inputs)

    nics = {name: inputs for name, inputs in of("NetworkInterface")}
    vms: dict[str, Vm] = {}
    for name, inputs in of("VirtualMachine"):
        nic_ids = [_ref(n) for n in (inputs.get("networkProfile") or {}).get("networkInterfaces") or []]
        nic = nics.get(nic_ids[0]) if nic_ids else None
        if nic is None:
            raise LabError(f"lab stack: VM {name} has no network interface the lab can find")
        ipconf = next((c for c in nic.get("ipConfigurations") or [] if c.get("primary")),
                      (nic.get("ipConfigurations") or [{}])[0])
        subnet = _ref(ipconf.get("subnet"))
        if subnet not in subnets:   # an inline subnet's id: <vnet>_id/subnets/<name>, or the name itself
            subnet = next((s for s in subnets if str(subnet).endswith(s)), subnet)
        if subnet not in subnets:
            raise LabError(f"lab stack: VM {name} is in subnet {subnet!r}, which the program does not declare")
        private_ip = ipconf.get("privateIPAddress")
        if not private_ip:
            raise LabError(f"lab stack: VM {name} has no static private address; the lab needs one per VM")
        pip = _ref(ipconf.get("publicIPAddress"))
        tags = inputs.get("tags") or {}
        vms[name] = Vm(name=name, role=str(tags.get("role", name)),
                       computer_name=str((inputs.get("osProfile") or {}).get("computerName", name)),
                       subnet=subnet, private_ip=str(private_ip), public_ip=public_ips.get(pip) if pip else None,
                       principal_id=f"principal-{name}", nsg=_ref(nic.get("networkSecurityGroup")),
                       data_disks=_data_disks(name, inputs))

    buckets: dict[str, dict] = {}
    bucket_of: dict[str, str] = {}
    for typ, name, inputs in declared:
        if typ.startswith("aws:s3/bucket:") or typ.startswith("aws:s3/bucketV2:"):
            bucket = str(inputs.get("bucket") or name)
            buckets[bucket] = {"resource": name, "tags": inputs.get("tags") or {}, "settings": {}}
            bucket_of[name] = bucket
    for typ, name, inputs in declared:
        if typ.startswith("aws:s3/") and not typ.startswith(("aws:s3/bucket:", "aws:s3/bucketV2:")):
            bucket = str(inputs.get("bucket", ""))
            if bucket in buckets:
                kind = typ.split(":")[-1]
                buckets[bucket]["settings"][kind] = {k: v for k, v in inputs.items() if k != "bucket"}
    iam_users = {name: inputs for typ, name, inputs in declared if typ == "aws:iam/user:User"}
    iam_policies = {name: {"user": inputs.get("user"), "policy": inputs.get("policy")}
                    for typ, name, inputs in declared if typ == "aws:iam/userPolicy:UserPolicy"}
    iam_policies.update({name: {"user": None, "policy": inputs.get("policy"), "managed": True}
                         for typ, name, inputs in declared if typ == "aws:iam/policy:Policy"})
    access_keys = {name: {k: v for k, v in inputs.items() if k != "pgpKey"}
                   for typ, name, inputs in declared if typ == "aws:iam/accessKey:AccessKey"}
    secrets = {str(inputs.get("secretName", name)): {"vault": inputs.get("vaultName"), "resource": name}
               for name, inputs in of("Secret")}
    role_assignments = [{"name": name, "principal_id": inputs.get("principalId"), "scope": _ref(inputs.get("scope")),
                         "role": str(inputs.get("roleDefinitionId", "")).rsplit("/", 1)[-1]}
                        for name, inputs in of("RoleAssignment")]
    return Plan(stack=STACK, address_space=address_space, subnets=subnets, nsgs=nsgs, vms=vms,
                public_ips=dict(public_ips), nat_gateways=nat_gateways, buckets=buckets, iam_users=iam_users,
                iam_policies=iam_policies, access_keys=access_keys, secrets=secrets,
                role_assignments=role_assignments, inventory=outputs.get("inventory") or {},
                outputs={k: v for k, v in outputs.items() if k not in ("inventory", "secrets")},
                resources=[{"type": t, "name": n, "inputs": _redacted(t, i)} for t, n, i in declared])


def _redacted(typ: str, inputs: dict) -> dict:
    """What goes to the state dir: secret values stay out of it (the plan records that they exist)."""
    if typ.endswith(":Secret") or "random" in typ:
        return {k: ("<secret>" if k in ("properties", "value") else v) for k, v in inputs.items()}
    return inputs


# ---------------------------------------------------------------------------- running the program


def _run_in_this_process(address_space: str, admin_cidrs: list[str], public_pool: list[str],
                         ssh_public_key: str, remove_rules: list[str], detach_nat: bool = False) -> Plan:
    import asyncio

    import pulumi

    from trustops import mockrun

    assigned: dict[str, str] = {}

    class LabMocks(mockrun.RecordingMocks):
        """The recording mocks, answering with the lab's addresses."""

        def new_resource(self, args):
            rid, state = super().new_resource(args)
            if args.typ == "azure-native:network:PublicIPAddress":
                if not public_pool:
                    raise LabError("lab stack: more public IPs declared than the lab's internet network holds")
                assigned[args.name] = public_pool.pop(0)
                state["ipAddress"] = assigned[args.name]
            if args.typ == "azure-native:network:NetworkSecurityGroup" and remove_rules:
                # a broken stack on purpose (tests): the rules named are left out of what is recorded
                kept = [r for r in args.inputs.get("securityRules") or [] if r.get("name") not in remove_rules]
                self.resources[-1].inputs["securityRules"] = kept
            if args.typ == "azure-native:network:Subnet" and detach_nat:
                self.resources[-1].inputs.pop("natGateway", None)
            return rid, state

    mocks = LabMocks()
    pulumi.runtime.set_mocks(mocks, project="trustops", stack=STACK, preview=False)
    config = {**mockrun.stack_config(STACK), "trustops:addressSpace": address_space,
              "trustops:adminCidrs": json.dumps(admin_cidrs), "trustops:sshPublicKey": ssh_public_key}
    pulumi.runtime.set_all_config(config)
    from trustops.infra.program import main as program

    outputs = program()
    resolved: dict = {}

    async def collect():
        for k, v in (outputs or {}).items():
            if k != "secrets":
                resolved[k] = await v.future()
    asyncio.get_event_loop().run_until_complete(collect())
    mockrun._settle()
    return build_plan([(r.type, r.name, r.inputs) for r in mocks.resources], resolved, assigned)


def plan(address_space: str, admin_cidrs: list[str], public_pool: list[str], ssh_public_key: str,
         remove_rules: list[str] | None = None, detach_nat: bool = False) -> Plan:
    """Run the program for the lab stack in a child process; the plan it declared. `remove_rules`
    (NSG rule names) and `detach_nat` break the stack on purpose, for the tests that show the lab
    failing where Azure would."""
    request = json.dumps({"address_space": address_space, "admin_cidrs": admin_cidrs, "public_pool": public_pool,
                          "ssh_public_key": ssh_public_key, "remove_rules": remove_rules or [],
                          "detach_nat": detach_nat})
    proc = subprocess.run([sys.executable, "-m", "trustops.lab.stack"], input=request, capture_output=True,
                          text=True, timeout=300, cwd=PROJECT_DIR)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        last = next((l for l in reversed(lines) if "Error" in l or "error" in l), lines[-1] if lines else "?")
        raise LabError(f"the Pulumi program failed for stack {STACK!r} under mocks: {last.strip()}")
    return Plan.from_json(proc.stdout)


def main() -> int:
    req = json.loads(sys.stdin.read())
    p = _run_in_this_process(req["address_space"], req["admin_cidrs"], list(req["public_pool"]),
                             req["ssh_public_key"], req.get("remove_rules") or [], bool(req.get("detach_nat")))
    sys.stdout.write(p.to_json())
    return 0


def vnet_contains(plan: Plan, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in plan.address_space)


if __name__ == "__main__":
    raise SystemExit(main())
