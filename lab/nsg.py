"""Network security groups as Azure evaluates them, twice over: `allowed()` answers for one flow
(the reference the reachability tests compare the live lab with), `router_rules()` compiles the
same semantics to an iptables-restore ruleset for the twin's router namespace.

Azure's order for a new flow from VM A to VM B: A's NIC NSG outbound, A's subnet NSG outbound, then
B's subnet NSG inbound, B's NIC NSG inbound; in each, rules by priority, first match wins, then the
default rules (65000 VNet, 65001 load balancer / internet, 65500 deny). The answer to an allowed
flow is allowed (stateful). The same applies between two VMs of one subnet: the lab routes
intra-subnet traffic through the router too (hosts have no on-link route to their subnet).

In the lab, the internet is the machine: its traffic reaches the VMs from the admin address the
stack is given (the router rewrites the source), so `Internet` rules and the admin CIDRs match it
exactly as they would match an operator's office on Azure. Service tags the lab cannot model
(AzureCloud, Storage, ...) never match.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from trustops.lab import keyvault
from trustops.lab.stack import Plan, NsgRule, Vm
from trustops.lab.system import LabError

ANY = ("*", "any", "0.0.0.0/0")
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "esp": "esp", "ah": "ah"}
# Egress from a VM reaches public addresses (the package mirror) and the lab's internet network;
# never other private or special ranges the machine can reach.
NOT_INTERNET = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8")


def _net(prefix: str):
    try:
        return ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return None


def _prefix_matches(plan: Plan, prefix: str, address: str) -> bool:
    p = prefix.strip()
    ip = ipaddress.ip_address(address)
    in_vnet = any(ip in ipaddress.ip_network(c) for c in plan.address_space)
    if p.lower() in ANY:
        return True
    if p == "VirtualNetwork":
        return in_vnet
    if p == "Internet":
        return not in_vnet
    net = _net(p)
    return net is not None and ip in net


def _port_matches(ranges: tuple[str, ...], port: int) -> bool:
    for r in ranges:
        r = r.strip()
        if r == "*":
            return True
        lo, _, hi = r.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _rule_matches(plan: Plan, r: NsgRule, src: str, dst: str, proto: str, port: int) -> bool:
    if r.protocol != "*" and r.protocol.lower() != proto:
        return False
    if proto in ("tcp", "udp") and not _port_matches(r.ports, port):
        return False
    return (any(_prefix_matches(plan, s, src) for s in r.sources)
            and any(_prefix_matches(plan, d, dst) for d in r.destinations))


def verdict(plan: Plan, nsg: str | None, direction: str, src: str, dst: str, proto: str, port: int) -> NsgRule | None:
    """The rule that decides (None: no NSG there, so nothing filters)."""
    if not nsg:
        return None
    return next(r for r in plan.rules(nsg, direction) if _rule_matches(plan, r, src, dst, proto, port))


def dropped_by(plan: Plan, src: str, dst_vm: Vm, proto: str, port: int,
               src_vm: Vm | None = None) -> tuple[str, NsgRule] | None:
    """The first NSG on the path of a new flow from `src` (a VM's private address, or the admin
    address for the internet) to `dst_vm`'s private address on proto/port that denies it, with its
    deciding rule (None: every NSG on the path lets it through)."""
    checks: list[tuple[str | None, str]] = []
    if src_vm is not None:
        checks += [(src_vm.nsg, "Outbound"), (plan.subnets[src_vm.subnet].nsg, "Outbound")]
    checks += [(plan.subnets[dst_vm.subnet].nsg, "Inbound"), (dst_vm.nsg, "Inbound")]
    for nsg, direction in checks:
        rule = verdict(plan, nsg, direction, src, dst_vm.private_ip, proto, port)
        if rule is not None and rule.access != "Allow":
            return nsg, rule
    return None


def allowed(plan: Plan, src: str, dst_vm: Vm, proto: str, port: int, src_vm: Vm | None = None) -> bool:
    """Whether a new flow gets through every NSG on its path (see dropped_by)."""
    return dropped_by(plan, src, dst_vm, proto, port, src_vm) is None


# ---------------------------------------------------------------------------- the router's ruleset


@dataclass(frozen=True)
class RouterSite:
    """What the router needs besides the plan: its interfaces and the lab's internet side."""

    internet_if: str                  # interface on the lab's internet network
    subnet_ifs: dict[str, str]        # subnet name -> interface
    internet_cidr: str                # the lab's internet network
    machine_ip: str                   # the machine's address on it (where its traffic comes from)
    admin_ip: str                     # the address the VMs see that traffic arrive from
    router_ip: str                    # the router's own address on the internet network
    nameservers: tuple[str, ...]      # where the hosts' DNS goes (Azure DNS is not behind the NSG)
    # (router port, VM address, port): the operator's SSH tunnel through the jump host, short-cut:
    # the flow reaches the VM from the jump host's private address, through the NSGs as a tunnel would
    console: tuple[tuple[int, str, int], ...] = ()
    jump_ip: str | None = None
    # (router port, VM address, port): a published port on 127.0.0.1 standing for the VM's public IP
    published: tuple[tuple[int, str, int], ...] = ()
    # the lab's IMDS and Key Vault stand-in (trustops.lab.keyvault) runs in the router's namespace
    # on router_ip; the VMs whose subnet has the Microsoft.KeyVault service endpoint reach the vault
    # (after their outbound NSG rules, with their own address: what the vault's network rules see)
    keyvault: bool = False
    keyvault_endpoint_vms: tuple[str, ...] = ()


def _addr_match(plan: Plan, flag: str, prefix: str) -> list[str] | None:
    """iptables arguments for one address prefix; None when it can never match in the lab."""
    p = prefix.strip()
    if p.lower() in ANY:
        return []
    if p == "VirtualNetwork":
        return [flag, ",".join(plan.address_space)]
    if p == "Internet":
        if len(plan.address_space) != 1:
            raise LabError("the lab models the Internet tag for a VNet with one address prefix only")
        return ["!", flag, plan.address_space[0]]
    net = _net(p)
    return [flag, str(net)] if net is not None else None


def _proto_port_args(r: NsgRule) -> list[list[str]]:
    proto = r.protocol.lower()
    ports = [p for p in r.ports if p != "*"]
    sports = [p for p in r.source_ports if p != "*"]
    protos = [PROTOCOLS[proto]] if proto in PROTOCOLS else (["tcp", "udp"] if ports or sports else [None])
    out = []
    for pr in protos:
        if pr is None:
            out.append([])
            continue
        for dp in ports or [None]:
            for sp in sports or [None]:
                a = ["-p", pr]
                if pr in ("tcp", "udp"):
                    a += ["--sport", sp.replace("-", ":")] if sp else []
                    a += ["--dport", dp.replace("-", ":")] if dp else []
                out.append(a)
    return out


def _nsg_chain(plan: Plan, chain: str, nsg: str, direction: str, fixed_source: str | None) -> list[str]:
    """One NSG direction as a chain: Allow returns (the next check decides), Deny drops.
    `fixed_source`: the flow's source is known (the internet side = the admin address), so source
    prefixes are decided here rather than matched on a packet whose source is rewritten later."""
    lines = [f":{chain} - [0:0]"]
    for r in plan.rules(nsg, direction):
        target = "RETURN" if r.access == "Allow" else "DROP"
        if fixed_source is not None:
            if not any(_prefix_matches(plan, s, fixed_source) for s in r.sources):
                continue
            srcs: list[list[str] | None] = [[]]
        else:
            srcs = [_addr_match(plan, "-s", s) for s in r.sources]
        dsts = [_addr_match(plan, "-d", d) for d in r.destinations]
        for s in srcs:
            for d in dsts:
                if s is None or d is None:
                    continue
                for pp in _proto_port_args(r):
                    lines.append(" ".join([f"-A {chain}", *s, *d, *pp, "-m comment --comment",
                                           f'"{nsg} {r.priority} {r.name}"', "-j", target]))
    return lines


def _chain_name(kind: str, name: str) -> str:
    return f"{kind}-{name}"[:28]


def _keyvault_input(plan: Plan, site: RouterSite, filt: list[str]) -> list[str]:
    """INPUT rules for the stand-in in the router's namespace: IMDS from any VM (the host's link,
    no NSG on Azure either), the vault from VMs behind a Key Vault service endpoint, through their
    outbound NSG rules. A VM without the endpoint is dropped (on Azure: 403 from the vault's firewall)."""
    out = [f"-A INPUT ! -i {site.internet_if} -p tcp --dport {keyvault.IMDS_PORT} -m conntrack --ctstate DNAT "
           f"--ctorigdst {keyvault.IMDS_ADDRESS} -j ACCEPT"]
    for vm in plan.vms.values():
        if vm.name not in site.keyvault_endpoint_vms:
            continue
        chain = _chain_name("KV", vm.name)
        filt.append(f":{chain} - [0:0]")
        out.append(f"-A INPUT -i {site.subnet_ifs[vm.subnet]} -s {vm.private_ip}/32 -d {site.router_ip}/32 -p tcp "
                   f"--dport {keyvault.VAULT_PORT} -j {chain}")
        for nsg in (vm.nsg, plan.subnets[vm.subnet].nsg):
            if nsg:
                out.append(f"-A {chain} -j {_chain_name('OUT', nsg)}")
        out.append(f"-A {chain} -m comment --comment \"{vm.name}: Key Vault service endpoint\" -j ACCEPT")
    return out


def router_rules(plan: Plan, site: RouterSite) -> str:
    """The router's whole ruleset (filter, nat, mangle) for `iptables-restore` in its namespace."""
    vms = list(plan.vms.values())
    nsgs = sorted({n for n in [s.nsg for s in plan.subnets.values()] + [v.nsg for v in vms] if n})
    filt = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":FROM-INTERNET - [0:0]"]
    body: list[str] = []
    for nsg in nsgs:
        body += _nsg_chain(plan, _chain_name("OUT", nsg), nsg, "Outbound", None)
        body += _nsg_chain(plan, _chain_name("IN", nsg), nsg, "Inbound", None)
        body += _nsg_chain(plan, _chain_name("INX", nsg), nsg, "Inbound", site.admin_ip)
        if site.jump_ip:
            body += _nsg_chain(plan, _chain_name("INJ", nsg), nsg, "Inbound", site.jump_ip)
            body += _nsg_chain(plan, _chain_name("OUTJ", nsg), nsg, "Outbound", site.jump_ip)
    rules_pre: list[str] = []
    rules = ["-A INPUT -i lo -j ACCEPT", "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
             "-A INPUT -p icmp -j ACCEPT",
             *(_keyvault_input(plan, site, filt) if site.keyvault else []),
             "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
             "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
             ]
    jump_vm = next((v for v in vms if v.private_ip == site.jump_ip), None)
    for _port, address, _inner in site.console:
        dst = next((v for v in vms if v.private_ip == address), None)
        if dst is None or jump_vm is None:
            raise LabError(f"console path to {address}: no such VM, or no jump host")
        chain = _chain_name("TOJ", dst.name)
        if f":{chain} - [0:0]" not in filt:
            filt.append(f":{chain} - [0:0]")
            for nsg, kind in ((jump_vm.nsg, "OUTJ"), (plan.subnets[jump_vm.subnet].nsg, "OUTJ"),
                              (plan.subnets[dst.subnet].nsg, "INJ"), (dst.nsg, "INJ")):
                if nsg:
                    rules_pre.append(f"-A {chain} -j {_chain_name(kind, nsg)}")
            rules_pre.append(f"-A {chain} -j ACCEPT")
        rules.append(f"-A FORWARD -i {site.internet_if} -m mark --mark 0x1 -d {address}/32 -j {chain}")
    for ns in site.nameservers:   # platform DNS: not subject to NSGs on Azure either
        for proto in ("udp", "tcp"):
            rules.append(f"-A FORWARD ! -i {site.internet_if} -o {site.internet_if} -d {ns}/32 -p {proto} "
                         f"--dport 53 -j ACCEPT")
    rules.append(f"-A FORWARD -i {site.internet_if} -j FROM-INTERNET")
    for vm in vms:
        subnet = plan.subnets[vm.subnet]
        frm, to, tox = (_chain_name(k, vm.name) for k in ("FROM", "TO", "TOX"))
        egress = _chain_name("EGRESS", vm.name)
        filt += [f":{frm} - [0:0]", f":{to} - [0:0]", f":{tox} - [0:0]", f":{egress} - [0:0]"]
        rules.append(f"-A FORWARD -i {site.subnet_ifs[vm.subnet]} -s {vm.private_ip}/32 -j {frm}")
        rules.append(f"-A FROM-INTERNET -d {vm.private_ip}/32 -j {tox}")
        for chain, kind in ((to, "IN"), (tox, "INX")):
            for nsg in (subnet.nsg, vm.nsg):
                if nsg:
                    rules.append(f"-A {chain} -j {_chain_name(kind, nsg)}")
            rules.append(f"-A {chain} -j ACCEPT")
        for nsg in (vm.nsg, subnet.nsg):
            if nsg:
                rules.append(f"-A {frm} -j {_chain_name('OUT', nsg)}")
        for other in vms:
            if other is not vm:
                rules.append(f"-A {frm} -d {other.private_ip}/32 -j {_chain_name('TO', other.name)}")
        rules.append(f"-A {frm} -o {site.internet_if} -j {egress}")
        rules.append(f"-A {frm} -j DROP")
        if plan.egress(vm) is None:
            rules.append(f"-A {egress} -m comment --comment \"{vm.name}: no NAT gateway, no public IP\" -j DROP")
        else:
            rules.append(f"-A {egress} -d {site.admin_ip}/32 -j DROP")
            rules.append(f"-A {egress} -d {site.internet_cidr} -j ACCEPT")
            rules += [f"-A {egress} -d {n} -j DROP" for n in NOT_INTERNET]
            rules.append(f"-A {egress} -j ACCEPT")
    rules.append("-A FROM-INTERNET -j DROP")
    filt += body + rules_pre + rules + ["COMMIT"]

    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]"]
    for port, address, inner in site.console:
        nat.append(f"-A PREROUTING -i {site.internet_if} -d {site.router_ip}/32 -p tcp --dport {port} "
                   f"-j DNAT --to-destination {address}:{inner}")
    for port, address, inner in site.published:
        nat.append(f"-A PREROUTING -i {site.internet_if} -d {site.router_ip}/32 -p tcp --dport {port} "
                   f"-j DNAT --to-destination {address}:{inner}")
    for vm in vms:
        if vm.public_ip:
            nat.append(f"-A PREROUTING -i {site.internet_if} -d {vm.public_ip}/32 -j DNAT "
                       f"--to-destination {vm.private_ip}")
    if site.keyvault:   # IMDS: the router plays the host's link, as on Azure
        for vm in vms:
            nat.append(f"-A PREROUTING -s {vm.private_ip}/32 -d {keyvault.IMDS_ADDRESS}/32 -p tcp --dport 80 "
                       f"-j DNAT --to-destination {site.router_ip}:{keyvault.IMDS_PORT}")
    if site.jump_ip:
        nat.append(f"-A POSTROUTING -m mark --mark 0x1 -j SNAT --to-source {site.jump_ip}")
    # the machine's traffic arrives from the admin address (the operator's public address on Azure)
    nat.append(f"-A POSTROUTING -s {site.machine_ip}/32 ! -o {site.internet_if} -j SNAT --to-source {site.admin_ip}")
    for vm in vms:
        out = plan.egress(vm)
        source = out or site.router_ip   # DNS only, when the VM has no way out
        nat.append(f"-A POSTROUTING -s {vm.private_ip}/32 -o {site.internet_if} -j SNAT --to-source {source}")
    nat.append("COMMIT")

    mangle = ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
              ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    for port, _address, _inner in site.console:
        mangle.append(f"-A PREROUTING -i {site.internet_if} -s {site.machine_ip}/32 -d {site.router_ip}/32 "
                      f"-p tcp --dport {port} -j MARK --set-mark 0x1")
    mangle.append("COMMIT")
    return "\n".join(filt + nat + mangle) + "\n"
