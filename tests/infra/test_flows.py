"""Issue 15, defects 2 and 3: every flow the Ansible roles configure (UFW allow lists, SSH through
the jump host, scrapes, alerts) is allowed by the host's NSG, and the NSG allows nothing the roles
do not use. UFW's lists are rendered from the firewall role's defaults for each host of the
stack's own inventory, the way Ansible would."""
from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import jinja2
import pytest
import yaml

from trustops import mockrun as harness

ROOT = Path(__file__).resolve().parents[2]
FIREWALL_DEFAULTS = ROOT / "ansible" / "roles" / "firewall" / "defaults" / "main.yml"
GROUP_VARS = ROOT / "ansible" / "group_vars" / "all.yml"
ANY = "any"


@pytest.fixture
def staging(stack_run):
    resources, outputs = stack_run("staging")
    return resources, outputs["inventory"]["all"]


def _render(env: jinja2.Environment, value, context: dict) -> list[str]:
    if value == ANY:
        return [ANY]
    rendered = env.from_string(value).render(**context)
    out = ast.literal_eval(rendered)
    return [out] if isinstance(out, str) else list(out)


def ufw_allows(inv: dict, host: str) -> set[tuple[int, str]]:
    """(port, source) pairs the firewall role lets in on `host`."""
    hosts = {n: hv for g in inv["children"].values() for n, hv in g["hosts"].items()}
    by_role = {r: [hv["private_ip"] for hv in inv["children"][r]["hosts"].values()] for r in ("app", "db", "ops")}
    hv = {**inv["vars"], **hosts[host]}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    ports = {k: v for k, v in yaml.safe_load(GROUP_VARS.read_text()).items() if k.endswith("_port")}
    context = {**ports, **hv, "trustops_admin_cidrs": inv["vars"]["trustops_networks"]["admin"],
               "trustops_app_addresses": by_role["app"], "trustops_db_addresses": by_role["db"],
               "trustops_ops_addresses": by_role["ops"]}
    defaults = yaml.safe_load(FIREWALL_DEFAULTS.read_text())
    context["firewall_ssh_sources"] = _render(env, defaults["firewall_ssh_sources"], context)
    allows = {(22, src) for src in context["firewall_ssh_sources"]}
    rules = defaults["firewall_role_rules"]
    for rule in rules.get("all", []) + rules.get(hv["trustops_role"], []):
        for src in _render(env, rule["from"], context):
            allows.add((int(env.from_string(str(rule["port"])).render(**context)), src))
    return allows


def _nsg_allows(resources, role: str) -> list[tuple[set[int], list[str]]]:
    nsg = next(r for r in resources if r.type == "azure-native:network:NetworkSecurityGroup"
               and r.name == f"trustops-{role}-nsg")
    out = []
    for rule in nsg.inputs["securityRules"]:
        if rule["access"] != "Allow":
            continue
        lo, _, hi = rule["destinationPortRange"].partition("-")
        sources = [rule["sourceAddressPrefix"]] if "sourceAddressPrefix" in rule else rule["sourceAddressPrefixes"]
        out.append((set(range(int(lo), int(hi or lo) + 1)), sources))
    return out


def _within(src: str, nsg_source: str) -> bool:
    if src == ANY or nsg_source == "Internet":
        return src == ANY and nsg_source == "Internet"
    return ipaddress.ip_network(src).subnet_of(ipaddress.ip_network(nsg_source))  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["app-1", "db-1", "ops-1", "ops-2"])
def test_every_role_flow_is_allowed_by_the_nsg(staging, host):
    resources, inv = staging
    role = host.split("-")[0]
    nsg = _nsg_allows(resources, role)
    own = inv["children"][role]["hosts"][host]["private_ip"]   # a host's traffic to itself never crosses its NSG
    missing = [(port, src) for port, src in sorted(ufw_allows(inv, host)) if src != own
               and not any(port in ports and any(_within(src, s) for s in sources) for ports, sources in nsg)]
    assert missing == [], f"{host}: UFW lets these in, the NSG drops them"


@pytest.mark.parametrize("host", ["app-1", "db-1", "ops-1", "ops-2"])
def test_the_nsg_allows_nothing_the_roles_do_not_use(staging, host):
    resources, inv = staging
    role = host.split("-")[0]
    ufw = ufw_allows(inv, host)
    unused = [(sorted(ports), s) for ports, sources in _nsg_allows(resources, role) for s in sources
              if not any(p in ports and _within(src, s) for p, src in ufw)]
    assert unused == [], f"{host}: NSG allows with no role flow behind them"


def test_alerts_from_db_reach_alertmanager_on_ops(staging):
    resources, inv = staging
    db_ip = inv["children"]["db"]["hosts"]["db-1"]["private_ip"]
    assert (9093, db_ip) in ufw_allows(inv, "ops-1")
    assert any(9093 in ports and any(_within(db_ip, s) for s in sources)
               for ports, sources in _nsg_allows(resources, "ops"))


def test_ssh_behind_the_jump_host_is_allowed_from_the_jump_host_only(staging):
    _, inv = staging
    app_ip = inv["children"]["app"]["hosts"]["app-1"]["private_ip"]
    for host in ("db-1", "ops-1", "ops-2"):
        assert {src for port, src in ufw_allows(inv, host) if port == 22} == {f"{app_ip}/32"}
    admin = set(inv["vars"]["trustops_networks"]["admin"])
    assert {src for port, src in ufw_allows(inv, "app-1") if port == 22} == admin
