"""Issue 15's defects, one test each, on the program under mocks (the real path as far as it can be
taken without a cloud): egress, credentials, secrets, names, the refused switch, first-run traps,
subnet ordering, boot diagnostics and the Postgres data disk."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from trustops import mockrun as harness
from trustops.infra.config import EU_AZURE_LOCATIONS
from trustops.infra.policy.rules import REQUIRED_TAGS as POLICY_TAGS
from trustops.infra.program import VM_COUNT

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG, SECRET_VALUE_SIG = rpc._special_sig_key, rpc._special_secret_sig   # how the engine marks a secret


@pytest.fixture
def dev(stack_run):
    return stack_run("dev")


def _of(resources, rtype):
    return [r for r in resources if r.type == rtype]


def _one(resources, rtype, name):
    return next(r for r in resources if r.type == rtype and r.name == name)


# 1 -------------------------------------------------------------------------------- egress

def test_private_subnets_leave_through_a_tagged_eu_nat_gateway_with_its_public_ip(dev):
    resources, outputs = dev
    (nat,) = _of(resources, "azure-native:network:NatGateway")
    assert nat.inputs["sku"] == {"name": "Standard"} and nat.inputs["location"] in EU_AZURE_LOCATIONS
    assert all(nat.inputs["tags"].get(t) for t in POLICY_TAGS)
    pip = _one(resources, "azure-native:network:PublicIPAddress", "trustops-nat-pip")
    assert nat.inputs["publicIpAddresses"] == [{"id": "trustops-nat-pip_id"}]
    assert pip.inputs["sku"] == {"name": "Standard"} and pip.inputs["publicIPAllocationMethod"] == "Static"
    subnets = {r.name: r.inputs for r in _of(resources, "azure-native:network:Subnet")}
    for role in ("db", "ops"):
        s = subnets[f"trustops-{role}-subnet"]
        assert s["natGateway"] == {"id": "trustops-nat_id"}, role
        assert s["defaultOutboundAccess"] is False, role     # the implicit way out stays off
    assert outputs["egressIp"] == "203.0.113.20"


# 2 -------------------------------------------------------------------------------- SSH sources

def test_inventory_says_where_ssh_comes_from_on_each_host(dev):
    _, outputs = dev
    inv = outputs["inventory"]["all"]
    admin = inv["vars"]["trustops_networks"]["admin"]
    hosts = {n: hv for g in inv["children"].values() for n, hv in g["hosts"].items()}
    app_private = hosts["app-1"]["private_ip"]
    assert hosts["app-1"]["trustops_ssh_sources"] == admin
    for behind in ("db-1", "ops-1", "ops-2"):
        assert hosts[behind]["ansible_ssh_common_args"] == f"-o ProxyJump=deploy@{hosts['app-1']['ansible_host']}"
        assert hosts[behind]["trustops_ssh_sources"] == [f"{app_private}/32"]


# 4 -------------------------------------------------------------------------------- AWS credentials

def test_one_writer_per_purpose_on_its_own_bucket_only(dev):
    resources, outputs = dev
    users = {r.name for r in _of(resources, "aws:iam/user:User")}
    assert users == {"trustops-backups-writer", "trustops-files-writer", "trustops-bedrock-invoker"}
    buckets = {"backups": outputs["backupsBucket"], "files": outputs["filesBucket"]}
    for purpose, bucket in buckets.items():
        policy = _one(resources, "aws:iam/userPolicy:UserPolicy", f"trustops-{purpose}-writer-policy")
        assert policy.inputs["user"] == f"trustops-{purpose}-writer"
        statements = json.loads(policy.inputs["policy"])["Statement"]
        arns = {r for st in statements for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
        assert arns and all(a == f"arn:aws:s3:::{bucket}" or a.startswith(f"arn:aws:s3:::{bucket}/") for a in arns)
        actions = {a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert not any("*" in a for a in actions) and "s3:DeleteBucket" not in actions
        key = _one(resources, "aws:iam/accessKey:AccessKey", f"trustops-{purpose}-writer-key")
        assert key.inputs["user"] == f"trustops-{purpose}-writer"


def test_each_host_reads_exactly_its_own_key_from_key_vault(dev):
    resources, outputs = dev
    secrets = {r.inputs["secretName"]: r for r in _of(resources, "azure-native:keyvault:Secret")}
    assert set(secrets) == {"field-key-1", "files-writer-access-key", "backups-writer-access-key",
                            "bedrock-writer-access-key"}
    props = secrets["backups-writer-access-key"].inputs["properties"]
    assert props.get(SECRET_SIG) == SECRET_VALUE_SIG, "the access key reaches the engine as a secret"
    key = json.loads(props["value"]["value"])
    assert key == {"aws_access_key_id": "trustops-backups-writer-key_id",
                   "aws_secret_access_key": harness.GENERATED}
    grants = {}
    for ra in _of(resources, "azure-native:authorization:RoleAssignment"):
        assert ra.inputs["scope"].startswith("trustops-") and ra.inputs["scope"].endswith("_id")
        assert ra.inputs["scope"] != "trustops-kv_id", "a role on the whole vault lets a host read every secret"
        grants.setdefault(ra.inputs["scope"], set()).add(ra.inputs["principalId"])
    expected = {"trustops-backups-writer-access-key_id": {"principal-trustops-db-vm"},
                "trustops-files-writer-access-key_id": {"principal-trustops-app-vm"},
                "trustops-bedrock-writer-access-key_id": {"principal-trustops-app-vm"},
                "trustops-field-key-1_id": {"principal-trustops-app-vm"}}
    assert grants == expected
    assert outputs["inventory"]["all"]["vars"]["trustops_key_vault_secrets"] == {
        "app-1": ["bedrock-writer-access-key", "field-key-1", "files-writer-access-key"],
        "db-1": ["backups-writer-access-key"]}


# 5 -------------------------------------------------------------------------------- secrets

def test_no_secret_in_any_stack_output_and_one_source_per_secret(dev):
    resources, outputs = dev
    assert "secrets" not in outputs
    text = json.dumps(outputs)
    for leaked in (harness.GENERATED, "Z2VuZXJhdGVkLWF0LWRlcGxveS10aW1l", "writer-key_id"):
        assert leaked not in text
    # database passwords come from Ansible alone (the postgres role's password lookup), not Key Vault too
    assert not [r for r in _of(resources, "azure-native:keyvault:Secret") if r.inputs["secretName"].startswith("db-")]


# 6 -------------------------------------------------------------------------------- bucket names

def test_bucket_names_carry_the_account_and_are_what_ansible_gets(dev):
    resources, outputs = dev
    s3 = outputs["inventory"]["all"]["vars"]["trustops_s3"]
    for purpose in ("backups", "files"):
        name = outputs[f"{purpose}Bucket"]
        assert name == f"trustops-dev-{purpose}-{harness.MOCK_ACCOUNT_ID}" and len(name) <= 63
        assert s3[f"{purpose}_bucket"] == name
        policy = _one(resources, "aws:s3/bucketPolicy:BucketPolicy", f"trustops-{purpose}-policy")
        assert policy.inputs["bucket"] == name and f"arn:aws:s3:::{name}" in policy.inputs["policy"]


# 7 -------------------------------------------------------------------------------- flexible server

def test_the_half_working_flexible_server_switch_is_refused_in_one_line():
    with pytest.raises(Exception, match=r"useFlexibleServer: not supported") as err:
        harness.run("dev", config_override={"trustops:useFlexibleServer": "true"})
    assert "\n" not in str(err.value).strip()


# 8 -------------------------------------------------------------------------------- first pulumi up

@pytest.mark.parametrize("cidrs,msg", [
    (["203.0.113.0/28"], "documentation range"),
    (["10.1.0.0/24"], "not a public range"),
    (["192.168.1.0/24", "172.16.0.0/16"], "not a public range"),
    ("20.1.2.3/32", "a list of CIDRs"),            # a JSON string instead of a list
    (["20.1.2.3/28"], "not a CIDR"),                # host bits set: a typo, not a network
])
def test_program_refuses_placeholder_and_private_admin_ranges(cidrs, msg):
    with pytest.raises(Exception, match=rf"adminCidrs: .*{msg}") as err:
        harness.run("dev", config_override={"trustops:adminCidrs": json.dumps(cidrs)})
    assert "\n" not in str(err.value).strip()


def test_admin_cidrs_set_without_path_is_refused_in_one_line():
    # `pulumi config set adminCidrs 20.1.2.3/32` stores a bare string, not JSON
    with pytest.raises(Exception, match=r"adminCidrs: a list of CIDRs, got '20.1.2.3/32'"):
        harness.run("dev", config_override={"trustops:adminCidrs": "20.1.2.3/32"})


def test_stack_files_make_the_operator_set_admin_cidrs():
    for stack in ("dev", "staging", "prod"):
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        assert "trustops:adminCidrs" not in text and "203.0.113" not in text
        assert "config set" in text and "adminCidrs" in text
    with pytest.raises(Exception, match="adminCidrs: not set"):
        harness.run("dev", config_override={"trustops:adminCidrs": "null"})


def test_readme_lists_what_a_new_subscription_needs_in_order():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Real Azure", 1)[1].split("\n## ", 1)[0]
    steps: list[str] = []
    for line in section.splitlines():
        if re.match(r"\d+\. ", line):
            steps.append(line)
        elif steps and line.startswith("   "):
            steps[-1] += " " + line.strip()          # a step's continuation lines
    order = ["az login", "Microsoft.Compute", "EncryptionAtHost", "sshPublicKey", "adminCidrs", "AWS",
             "pulumi preview", "pulumi up", "dynamic_inventory"]
    positions = [next((i for i, s in enumerate(steps) if word in s), None) for word in order]
    assert None not in positions, dict(zip(order, positions))
    assert positions == sorted(positions), dict(zip(order, positions))


# 9 -------------------------------------------------------------------------------- smaller ones

def test_subnets_are_created_one_at_a_time(dev):
    resources, _ = dev
    subnets = _of(resources, "azure-native:network:Subnet")
    assert [s.name for s in subnets] == ["trustops-app-subnet", "trustops-db-subnet", "trustops-ops-subnet"]
    for before, after in zip(subnets, subnets[1:]):
        assert before.urn in after.dependencies, f"{after.name} does not wait for {before.name}"


def test_no_random_password_without_minimum_classes(dev):
    resources, _ = dev
    for pw in _of(resources, "random:index/randomPassword:RandomPassword"):
        for key in ("minLower", "minUpper", "minNumeric"):
            assert pw.inputs.get(key, 0) >= 1, f"{pw.name}: {key}"


def test_boot_diagnostics_on_every_vm(dev):
    resources, _ = dev
    vms = _of(resources, "azure-native:compute:VirtualMachine")
    assert len(vms) == sum(VM_COUNT.values()) == 4
    for vm in vms:
        assert vm.inputs["diagnosticsProfile"]["bootDiagnostics"]["enabled"] is True, vm.name


def test_postgres_lives_on_a_data_disk_of_the_db_vm(dev):
    resources, outputs = dev
    vms = {r.name: r.inputs for r in _of(resources, "azure-native:compute:VirtualMachine")}
    (disk,) = vms["trustops-db-vm"]["storageProfile"]["dataDisks"]
    assert disk["createOption"] == "Empty" and disk["lun"] == 0 and disk["deleteOption"] == "Detach"
    assert disk["diskSizeGB"] >= 32
    assert not vms["trustops-app-vm"]["storageProfile"].get("dataDisks")
    init = base64.b64decode(vms["trustops-db-vm"]["osProfile"]["customData"]).decode()
    assert "/dev/disk/azure/scsi1/lun0" in init and "/var/lib/postgresql" in init and "LABEL=pgdata" in init
    assert "/var/lib/postgresql" not in base64.b64decode(vms["trustops-app-vm"]["osProfile"]["customData"]).decode()
    assert outputs["inventory"]["all"]["vars"]["trustops_postgres_data_mount"] == "/var/lib/postgresql"
