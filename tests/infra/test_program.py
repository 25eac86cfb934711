"""The Pulumi program under mocks, for every stack, and the policy pack both ways."""
from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from trustops.infra.config import StackConfig, StackConfigError
from trustops.infra.network import nsg_rules
from trustops.infra.policy import rules as policies
from trustops.infra import mockrun as harness
from trustops import inventory

STACKS = ("dev", "staging", "prod")
ROOT = Path(__file__).resolve().parents[2]


def _as_tuples(resources):
    return [(r.type, r.name, r.inputs) for r in resources]


@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    resources, outputs = harness.run(request.param)
    return request.param, resources, outputs


def test_every_policy_passes_on_every_stack(stack):
    name, resources, _ = stack
    found = policies.evaluate(_as_tuples(resources))
    assert {k: v for k, v in found.items() if v} == {}, f"stack {name}"


def test_stack_declares_what_the_page_promises(stack):
    name, resources, _ = stack
    types = [r.type for r in resources]
    assert types.count("azure-native:compute:VirtualMachine") == 3
    assert types.count("aws:s3/bucket:Bucket") == 2
    assert "azure-native:keyvault:Vault" in types
    vms = [r for r in resources if r.type == "azure-native:compute:VirtualMachine"]
    for vm in vms:
        assert vm.inputs["storageProfile"]["imageReference"] == {
            "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}
        assert vm.inputs["identity"]["type"] == "SystemAssigned"
    pips = [r for r in resources if r.type == "azure-native:network:PublicIPAddress"]
    assert [p.name for p in pips] == ["trustops-app-pip"]  # no public IP on db and ops
    providers = {r.type: r.inputs for r in resources if r.type.startswith("pulumi:providers:")}
    cfg = harness.stack_config(name)
    assert providers["pulumi:providers:azure-native"]["location"] == cfg["trustops:azureLocation"]
    assert providers["pulumi:providers:aws"]["region"] == cfg["trustops:awsRegion"]
    rg = next(r for r in resources if r.type == "azure-native:resources:ResourceGroup")
    assert rg.name == f"trustops-{name}"
    buckets = sorted(r.inputs["bucket"] for r in resources if r.type == "aws:s3/bucket:Bucket")
    assert buckets == [f"trustops-{name}-backups", f"trustops-{name}-files"]


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


def test_noncompliant_fixture_trips_every_policy():
    from tests.infra.noncompliant import main as bad

    resources, _ = harness.run("dev", program=bad)
    found = policies.evaluate(_as_tuples(resources))
    silent = [name for name, v in found.items() if not v]
    assert silent == [], f"policies that passed a non-compliant program: {silent}"


def test_postgres_is_denied_after_the_app_subnet_allow():
    cfg = StackConfig("dev", "westeurope", "eu-central-1", "t", "10.10.0.0/16", ("203.0.113.0/28",),
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
    ({"ssh_public_key": "hunter2"}, "OpenSSH public key"),
    ({"environment": "qa"}, "environment"),
    ({"address_space": "8.8.0.0/16"}, "private"),
])
def test_config_refuses_what_breaks_the_page(change, msg):
    base = dict(environment="dev", azure_location="westeurope", aws_region="eu-central-1", owner="t",
                address_space="10.10.0.0/16", admin_cidrs=(), ssh_public_key="ssh-ed25519 AAAA x")
    with pytest.raises(StackConfigError, match=msg):
        StackConfig(**{**base, **change})


def test_program_refuses_a_non_eu_stack_config():
    with pytest.raises(Exception, match="not an EU region"):
        harness.run("dev", config_override={"trustops:azureLocation": "eastus"})


def test_flexible_server_variant_has_no_db_vm_and_a_managed_db_inventory():
    resources, outputs = harness.run("dev", config_override={"trustops:useFlexibleServer": "true"})
    types = [r.type for r in resources]
    assert types.count("azure-native:compute:VirtualMachine") == 2
    server = next(r for r in resources if r.type == "azure-native:dbforpostgresql:Server")
    assert server.inputs["network"]["publicNetworkAccess"] == "Disabled"
    inv = inventory.validate(outputs["inventory"])
    assert inv["all"]["vars"]["trustops_managed_database"] is True
    assert inv["all"]["vars"]["trustops_database_host"].endswith(".postgres.database.azure.com")
    assert policies.evaluate(_as_tuples(resources)) == {k: [] for k in policies.evaluate([])}


def test_policy_pack_entry_point_compiles_and_is_not_imported():
    py_compile.compile(str(ROOT / "infra" / "policy" / "__main__.py"), doraise=True)
    import pulumi_policy  # the pack's dependency is installed
    assert hasattr(pulumi_policy, "StackValidationPolicy")
