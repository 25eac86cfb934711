"""The Pulumi program under mocks, for every stack, and the policy pack both ways."""
from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from trustops.infra.config import StackConfig, StackConfigError
from trustops.infra.network import nsg_rules
from trustops.infra.policy import rules as policies
from trustops import mockrun as harness
from trustops import inventory
from trustops.infra.program import VM_COUNT

STACKS = ("dev", "staging", "prod")
ROOT = Path(__file__).resolve().parents[2]


def _as_tuples(resources):
    return [(r.type, r.name, r.inputs) for r in resources]


@pytest.fixture(params=STACKS)
def stack(request, stack_run):
    resources, outputs = stack_run(request.param)
    return request.param, resources, outputs


def test_every_policy_passes_on_every_stack(stack):
    name, resources, _ = stack
    found = policies.evaluate(_as_tuples(resources))
    assert {k: v for k, v in found.items() if v} == {}, f"stack {name}"


def test_stack_declares_what_the_page_promises(stack):
    name, resources, _ = stack
    types = [r.type for r in resources]
    assert types.count("azure-native:compute:VirtualMachine") == sum(VM_COUNT.values()) == 4
    assert types.count("aws:s3/bucket:Bucket") == 2
    assert "azure-native:keyvault:Vault" in types
    vms = [r for r in resources if r.type == "azure-native:compute:VirtualMachine"]
    for vm in vms:
        assert vm.inputs["storageProfile"]["imageReference"] == {
            "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}
        assert vm.inputs["identity"]["type"] == "SystemAssigned"
    pips = [r for r in resources if r.type == "azure-native:network:PublicIPAddress"]
    assert sorted(p.name for p in pips) == ["trustops-app-pip", "trustops-nat-pip"]  # none on db and ops
    nics = {r.name: r.inputs for r in resources if r.type == "azure-native:network:NetworkInterface"}
    assert [n for n, i in nics.items() if "publicIPAddress" in i["ipConfigurations"][0]] == ["trustops-app-nic"]
    providers = {r.type: r.inputs for r in resources if r.type.startswith("pulumi:providers:")}
    cfg = harness.stack_config(name)
    assert providers["pulumi:providers:azure-native"]["location"] == cfg["trustops:azureLocation"]
    assert providers["pulumi:providers:aws"]["region"] == cfg["trustops:awsRegion"]
    rg = next(r for r in resources if r.type == "azure-native:resources:ResourceGroup")
    assert rg.name == f"trustops-{name}"
    buckets = sorted(r.inputs["bucket"] for r in resources if r.type == "aws:s3/bucket:Bucket")
    account = harness.MOCK_ACCOUNT_ID
    assert buckets == [f"trustops-{name}-backups-{account}", f"trustops-{name}-files-{account}"]


def test_inventory_output_keeps_the_contract(stack):
    name, _, outputs = stack
    inv = inventory.validate(outputs["inventory"])
    assert inv["all"]["vars"]["trustops_environment"] == name
    assert inv["all"]["vars"]["trustops_cloud"] == "azure"
    db = inv["all"]["children"]["db"]["hosts"]["db-1"]
    assert db["ansible_ssh_common_args"].startswith("-o ProxyJump=deploy@")
    assert inventory.to_ansible_json(inv)["_meta"]["hostvars"]["app-1"]["ansible_host"] == "203.0.113.10"


def test_stacks_are_separate():
    seen = {}
    for s in STACKS:
        cfg = harness.stack_config(s)
        seen[s] = (cfg["trustops:addressSpace"], cfg["trustops:environment"])
    assert len({v[0] for v in seen.values()}) == 3 and [v[1] for v in seen.values()] == list(STACKS)


def test_postgres_is_denied_after_the_app_subnet_allow():
    cfg = StackConfig("dev", "westeurope", "eu-central-1", "t", "10.10.0.0/16", (harness.public_admin_cidr(),),
                      "ssh-ed25519 AAAA x")
    rules = {r["name"]: r for r in nsg_rules(cfg, "db")}
    allow, deny = rules["postgres-from-app"], rules["deny-postgres-from-anywhere-else"]
    assert allow["source_address_prefix"] == "10.10.1.0/24" and allow["priority"] < deny["priority"]
    assert deny["access"] == "Deny" and deny["source_address_prefix"] == "*"
    app = {r["name"]: r for r in nsg_rules(cfg, "app")}
    assert {r["destination_port_range"] for r in app.values() if r["source_address_prefix"] == "Internet"} == {
        "443", "80"}


@pytest.mark.parametrize("change,msg", [
    ({"azure_location": "uksouth"}, "not an EU region"),
    ({"azure_location": "switzerlandnorth"}, "not an EU region"),
    ({"aws_region": "eu-west-2"}, "not an EU region"),        # London
    ({"aws_region": "eu-central-2"}, "not an EU region"),     # Zurich
    ({"aws_region": "us-east-1"}, "not an EU region"),
    ({"admin_cidrs": ("0.0.0.0/0",)}, "open SSH"),
    ({"admin_cidrs": ()}, "adminCidrs: empty"),
    ({"admin_cidrs": ("203.0.113.0/28",)}, "adminCidrs: 203.0.113.0/28 is a documentation range"),
    ({"admin_cidrs": ("198.51.100.7/32",)}, "documentation range"),
    ({"admin_cidrs": ("2001:db8::/48",)}, "documentation range"),
    ({"admin_cidrs": ("10.0.0.0/24",)}, "adminCidrs: 10.0.0.0/24 is not a public range"),
    ({"admin_cidrs": ("100.64.1.0/24",)}, "not a public range"),
    ({"admin_cidrs": ("20.0.0.0/8",)}, "wider than /16"),
    ({"admin_cidrs": ("20.0.0.0/16", "40.0.0.0/16")}, "together wider"),
    ({"admin_cidrs": ("not-a-cidr",)}, "adminCidrs: 'not-a-cidr' is not a CIDR"),
    ({"use_flexible_server": True}, "useFlexibleServer: not supported"),
    ({"ssh_public_key": "hunter2"}, "OpenSSH public key"),
    ({"environment": "qa"}, "environment"),
    ({"address_space": "8.8.0.0/16"}, "private"),
])
def test_config_refuses_what_breaks_the_page(change, msg):
    base = dict(environment="dev", azure_location="westeurope", aws_region="eu-central-1", owner="t",
                address_space="10.10.0.0/16", admin_cidrs=(harness.public_admin_cidr(),),
                ssh_public_key="ssh-ed25519 AAAA x")
    StackConfig(**base)   # the base itself is fine
    with pytest.raises(StackConfigError, match=msg) as err:
        StackConfig(**{**base, **change})
    assert "\n" not in str(err.value)


def test_program_refuses_a_non_eu_stack_config():
    with pytest.raises(Exception, match="not an EU region"):
        harness.run("dev", config_override={"trustops:azureLocation": "eastus"})


def test_policy_pack_entry_point_compiles_and_is_not_imported():
    py_compile.compile(str(ROOT / "infra" / "policy" / "__main__.py"), doraise=True)
    import pulumi_policy  # the pack's dependency is installed
    assert hasattr(pulumi_policy, "StackValidationPolicy")
