"""The twin (the default lab kind): the lab built from the `lab` Pulumi stack. The plan is the
program's, the NSGs behave as Azure evaluates them, flows the program does not allow are dropped
in the lab whatever the hosts say, egress exists only where the program declares it, and a stack
broken on purpose breaks the lab at the step Azure would."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from trustops.lab import environment, nsg, reach, stack, twin
from trustops.lab.stack import NsgRule, Plan, Subnet, Vm
from trustops.lab.system import LabError
from trustops.wait import until

ADDRESS_SPACE = "172.27.0.0/16"
POOL = [f"172.26.0.{i}" for i in range(10, 20)]


def _pubkey() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="module")
def plan() -> Plan:
    return stack.plan(ADDRESS_SPACE, ["192.88.99.1/32"], list(POOL), _pubkey())


_DECLARED = r"""
import json, sys
from trustops import mockrun
res, out = mockrun.run("lab", {"trustops:addressSpace": sys.argv[1]})
print(json.dumps({"resources": [[r.type, r.name, r.inputs] for r in res], "inventory": out["inventory"]},
                 default=str))
"""


def test_the_plan_is_what_the_program_declares(plan):
    """Read independently through trustops.mockrun: every subnet, NSG rule, NIC address and the
    inventory's hosts and networks are in the plan as declared; nothing else is."""
    proc = subprocess.run([sys.executable, "-c", _DECLARED, ADDRESS_SPACE], capture_output=True, text=True,
                          timeout=300, check=True)
    got = json.loads(proc.stdout)
    by_type: dict[str, list] = {}
    for typ, name, inputs in got["resources"]:
        by_type.setdefault(typ.split(":")[-1], []).append((name, inputs))
    assert {n: i["addressPrefix"] for n, i in by_type["Subnet"]} == {n: s.cidr for n, s in plan.subnets.items()}
    assert {n: sorted(r["name"] for r in i["securityRules"]) for n, i in by_type["NetworkSecurityGroup"]} == \
        {n: sorted(r.name for r in rules) for n, rules in plan.nsgs.items()}
    nic_ips = sorted(c["privateIPAddress"] for _, i in by_type["NetworkInterface"] for c in i["ipConfigurations"])
    assert nic_ips == sorted(v.private_ip for v in plan.vms.values())
    assert len(plan.resources) == len(got["resources"])
    assert {(r["type"], r["name"]) for r in plan.resources} == {(t, n) for t, n, _ in got["resources"]}
    assert plan.address_space == [ADDRESS_SPACE]
    for subnet in plan.subnets.values():
        assert ipaddress.ip_network(subnet.cidr).subnet_of(ipaddress.ip_network(ADDRESS_SPACE))
    # the inventory is the program's: same hosts, private addresses, networks; the jump is the app's public IP
    theirs, ours = got["inventory"]["all"], plan.inventory["all"]
    assert theirs["vars"]["trustops_networks"] == ours["vars"]["trustops_networks"]
    for role in ("app", "db", "ops"):
        assert {n: h["private_ip"] for n, h in theirs["children"][role]["hosts"].items()} == \
            {n: h["private_ip"] for n, h in ours["children"][role]["hosts"].items()}
    public = [v for v in plan.vms.values() if v.public_ip]
    assert [v.public_ip for v in public] == [h["ansible_host"] for h in ours["children"]["app"]["hosts"].values()]
    assert set(plan.public_ips.values()) <= set(POOL)
    for gw, addresses in plan.nat_gateways.items():
        assert addresses and set(addresses) <= set(POOL), gw


def test_data_disks_are_mounted_where_the_vms_cloud_init_mounts_them(plan):
    """The db VM's Postgres disk, with the mount its cloud-init gives it (by its fs_setup label); a
    disk nothing mounts stays unmounted; bad customData is one line naming the VM."""
    from trustops.infra.compute import POSTGRES_DATA_DISK_GB, POSTGRES_DATA_MOUNT

    disks = {vm.role: vm.data_disks for vm in plan.vms.values()}
    assert disks["app"] == [] and disks["ops"] == []
    (pgdata,) = disks["db"]
    assert (pgdata["mount"], pgdata["size_gb"], pgdata["delete_option"]) == (POSTGRES_DATA_MOUNT, POSTGRES_DATA_DISK_GB,
                                                                             "Detach")
    import base64

    cloud = base64.b64encode(b"#cloud-config\nmounts:\n  - [/dev/sdz1, /srv]\n").decode()
    vm = {"osProfile": {"customData": cloud}, "storageProfile": {"dataDisks": [{"lun": 3, "name": "d3"}]}}
    assert stack._data_disks("v", vm) == [{"name": "d3", "lun": 3, "size_gb": 0, "delete_option": "Detach",
                                           "mount": None}]
    with pytest.raises(LabError, match=r"^lab stack: VM v's customData is not base64 cloud-config YAML"):
        stack._data_disks("v", {"osProfile": {"customData": "%%%"}, "storageProfile": {}})


def test_the_drill_knows_which_nsg_rule_drops_its_scan_before_ufw(plan, tmp_path):
    """The staged attack's scan (ops -> db) cannot reach db's UFW on the twin, as on Azure: the db
    NSG's deny-all drops the closed ports and its Postgres deny the probe of 5432; the app's own
    Postgres flow gets through; the flat lab has no NSG to drop anything."""
    from trustops import drill

    cfg = environment.LabConfig(name="t", port_base=20000, state_dir=tmp_path, kind="twin")
    assert "deny-all-other-inbound" in drill._dropped_before_the_host(cfg, "ops", "db", drill.SCAN_PORTS, plan)
    assert "deny-postgres-from-anywhere-else" in drill._dropped_before_the_host(cfg, "ops", "db", (5432,), plan)
    assert drill._dropped_before_the_host(cfg, "app", "db", (5432,), plan) is None
    flat = environment.LabConfig(name="t", port_base=20000, state_dir=tmp_path, kind="flat")
    assert drill._dropped_before_the_host(flat, "ops", "db", drill.SCAN_PORTS, plan) is None


def test_plan_is_recorded_without_secret_values(plan):
    text = plan.to_json()
    assert "generated-at-deploy-time" not in text
    assert Plan.from_json(text).vms == plan.vms


# ---------------------------------------------------------------------------- NSG semantics


def _toy(rules_db: list[NsgRule], rules_app: list[NsgRule] = (), nic_nsg: str | None = None) -> Plan:
    subnets = {"a": Subnet("a", "10.9.1.0/24", "nsg-a", None, True), "d": Subnet("d", "10.9.2.0/24", "nsg-d", None, False)}
    vms = {"app": Vm("app", "app", "app-1", "a", "10.9.1.4", "198.51.100.7", "p1"),
           "db": Vm("db", "db", "db-1", "d", "10.9.2.4", None, "p2", nsg=nic_nsg)}
    return Plan(stack="t", address_space=["10.9.0.0/16"], subnets=subnets,
                nsgs={"nsg-a": list(rules_app), "nsg-d": list(rules_db),
                      **({nic_nsg: [NsgRule("nic-deny-5432", 100, "Inbound", "Deny", "Tcp", ("*",), ("*",), ("5432",))]}
                         if nic_nsg else {})},
                vms=vms, public_ips={}, nat_gateways={}, buckets={}, iam_users={}, iam_policies={}, access_keys={},
                secrets={}, role_assignments=[], inventory={}, outputs={})


def R(name, prio, access, src, port, proto="Tcp", direction="Inbound", dst="*"):
    return NsgRule(name, prio, direction, access, proto, (src,), (dst,), (port,))


def test_first_match_by_priority_wins_not_declaration_order():
    p = _toy([R("deny-all", 4000, "Deny", "*", "*", "*"), R("pg-app", 100, "Allow", "10.9.1.0/24", "5432"),
              R("deny-pg", 110, "Deny", "*", "5432", "*")])
    app, db = p.vms["app"], p.vms["db"]
    assert nsg.allowed(p, app.private_ip, db, "tcp", 5432, src_vm=app)
    assert not nsg.allowed(p, "10.9.3.4", db, "tcp", 5432)            # another subnet: 110 denies
    assert not nsg.allowed(p, app.private_ip, db, "tcp", 22, src_vm=app)   # 4000
    assert not nsg.allowed(p, app.private_ip, db, "udp", 5432, src_vm=app)  # the allow is Tcp only; 110 is *


def test_default_rules_and_service_tags():
    p = _toy([])   # no user rules: 65000 allows the VNet, 65500 denies the rest
    db = p.vms["db"]
    assert nsg.allowed(p, "10.9.1.4", db, "tcp", 1234)
    assert not nsg.allowed(p, "192.88.99.1", db, "tcp", 22)
    p = _toy([R("web", 100, "Allow", "Internet", "80-443")])
    assert nsg.allowed(p, "192.88.99.1", db, "tcp", 443) and nsg.allowed(p, "192.88.99.1", db, "tcp", 80)
    assert not nsg.allowed(p, "192.88.99.1", db, "tcp", 444)
    p = _toy([R("vnet-deny", 100, "Deny", "VirtualNetwork", "*", "*")])
    assert not nsg.allowed(p, "10.9.1.4", db, "tcp", 22)
    # outbound: the source subnet's NSG is evaluated before the destination's
    p = _toy([], [R("no-out-to-db", 100, "Deny", "*", "22", direction="Outbound", dst="10.9.2.0/24")])
    assert not nsg.allowed(p, "10.9.1.4", db, "tcp", 22, src_vm=p.vms["app"])
    assert nsg.allowed(p, "10.9.1.4", db, "tcp", 23, src_vm=p.vms["app"])
    # a NIC's NSG is evaluated after the subnet's and can still deny
    p = _toy([R("pg", 100, "Allow", "*", "5432")], nic_nsg="nic-d")
    assert not nsg.allowed(p, "10.9.1.4", p.vms["db"], "tcp", 5432)
    assert nsg.allowed(p, "10.9.1.4", db, "tcp", 5432)   # the same VM without the NIC's NSG


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a scratch netns")
def test_router_ruleset_loads_in_iptables(plan):
    """The compiled ruleset is accepted by iptables-restore (in a throwaway namespace, --test)."""
    site = nsg.RouterSite(internet_if="eth0", subnet_ifs={s: f"eth{i + 1}" for i, s in enumerate(plan.subnets)},
                          internet_cidr="172.26.0.0/24", machine_ip="172.26.0.1", admin_ip="192.88.99.1",
                          router_ip="172.26.0.2", nameservers=("10.255.255.53",),
                          console=((3190, plan.vms["trustops-ops-vm"].private_ip, 9090),),
                          jump_ip=plan.vms["trustops-app-vm"].private_ip,
                          published=((3143, plan.vms["trustops-app-vm"].private_ip, 443),))
    rules = nsg.router_rules(plan, site)
    proc = subprocess.run(["unshare", "-n", "iptables-restore", "--test"], input=rules, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + rules
    assert "deny-all-other-inbound" in rules and "-j SNAT --to-source 192.88.99.1" in rules


# ---------------------------------------------------------------------------- the live twin


def _ufw(cfg, role: str, action: str) -> None:
    subprocess.run(["docker", "exec", cfg.container(role), "sh", "-c",
                    f"command -v ufw >/dev/null && ufw {action} || true"], capture_output=True, timeout=60)


def test_twin_materialises_the_stack(twin_lab):
    cfg = twin_lab
    p = twin.load_plan(cfg)
    for subnet in p.subnets.values():
        info = environment._inspect(twin.network_name(cfg, subnet.name))
        assert [c["Subnet"] for c in info["IPAM"]["Config"]] == [subnet.cidr]
        assert info["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"   # no way in but the router
    for vm in p.vms.values():
        nets = environment._inspect(cfg.container(vm.lab_key))["NetworkSettings"]["Networks"]
        assert {n: v["IPAddress"] for n, v in nets.items()} == {twin.network_name(cfg, vm.subnet): vm.private_ip}
        route = subprocess.run(["docker", "exec", cfg.container(vm.lab_key), "ip", "route"], capture_output=True,
                               text=True, check=True).stdout
        assert route.splitlines()[0].strip() == f"default via {twin.router_ip(p, vm.subnet)} dev eth0"
        assert p.subnets[vm.subnet].cidr not in route          # intra-subnet traffic goes through the router too
    machine = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    for cidr in p.address_space:
        assert not any(ipaddress.ip_address(a["local"]) in ipaddress.ip_network(cidr)
                       for i in json.loads(machine) for a in i.get("addr_info", []) if a.get("family") == "inet")
    out = subprocess.run(["docker", "port", cfg.container("router")], capture_output=True, text=True).stdout
    assert out and all(l.split(" -> ")[1].startswith("127.0.0.1:") for l in out.splitlines())


def test_the_db_vms_data_disk_is_a_volume_of_its_own_at_the_postgres_mount(twin_lab):
    """A named volume (it outlives the container, as the detached disk outlives a replaced VM),
    mounted where cloud-init mounts it."""
    cfg = twin_lab
    for vm in twin.load_plan(cfg).vms.values():
        mounts = {m["Destination"]: m for m in environment._inspect(cfg.container(vm.lab_key))["Mounts"]}
        for disk in vm.data_disks:
            m = mounts[disk["mount"]]
            assert (m["Type"], m["Name"]) == ("volume", twin.data_disk_volume(cfg, disk)), m
            labels = json.loads(subprocess.run(["docker", "volume", "inspect", "-f", "{{json .Labels}}", m["Name"]],
                                               capture_output=True, text=True, check=True).stdout)
            assert labels["trustops.lab"] == cfg.name
        assert len(vm.data_disks) == (vm.role == "db"), vm.data_disks


def test_the_inventory_is_the_stacks_own_output(twin_lab):
    import yaml

    cfg = twin_lab
    p = twin.load_plan(cfg)
    doc = yaml.safe_load(cfg.inventory_file.read_text())
    for role in ("app", "db", "ops"):
        for name, hv in p.inventory["all"]["children"][role]["hosts"].items():
            ours = doc["all"]["children"][role]["hosts"][name]
            same = [k for k in hv if k != "ansible_ssh_common_args"]
            assert {k: ours[k] for k in same} == {k: hv[k] for k in same}
            if "ansible_ssh_common_args" in hv:   # the program's jump, after the lab's ssh config
                assert ours["ansible_ssh_common_args"].endswith(hv["ansible_ssh_common_args"])
    assert doc["all"]["vars"]["trustops_networks"] == p.inventory["all"]["vars"]["trustops_networks"]
    twin.check_ssh(cfg, doc)   # the same ssh, options and jump Ansible uses


def test_reachability_matrix_matches_the_program_ufw_off(twin_lab, lab_config, request):
    """Every (internet or VM) -> (VM, role port): allowed flows connect, denied ones time out.
    On the suite's own twin, after its converge: the probe's listeners must not hold a port a
    service of the converge is about to take."""
    if twin_lab is lab_config:
        request.getfixturevalue("converged")
    cfg = twin_lab
    p = twin.load_plan(cfg)
    for vm in p.vms.values():
        _ufw(cfg, vm.lab_key, "disable")
    try:
        reach.start_listeners(cfg, p)
        observed = reach.live(cfg, p, timeout=2.0)
    finally:
        for vm in p.vms.values():
            _ufw(cfg, vm.lab_key, "--force enable") if _has_ufw_rules(cfg, vm.lab_key) else None
    want = reach.expected(p)
    assert any(want.values()) and not all(want.values())   # the matrix has both kinds of flows
    assert reach.mismatches(p, observed) == []


def _has_ufw_rules(cfg, role: str) -> bool:
    return subprocess.run(["docker", "exec", cfg.container(role), "test", "-f", "/etc/ufw/user.rules"],
                          capture_output=True).returncode == 0


def _s3_probe(cfg, role: str) -> str:
    s3 = twin.internet_addresses(cfg)["s3"]
    out = subprocess.run(["docker", "exec", cfg.container(role), "python3", "-c", reach._PROBE, "3",
                          json.dumps([[s3, environment.TWIN_S3_PORT]])], capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)[0]


def test_egress_only_through_what_the_program_declares(twin_lab):
    """With the NAT gateway: db and ops reach the lab's S3. Without it (the program's subnets
    losing their natGateway): they time out, while the app VM still leaves by its public IP."""
    cfg = twin_lab
    p = twin.load_plan(cfg)
    roles = {vm.lab_key: vm for vm in p.vms.values()}
    assert {r: _s3_probe(cfg, r) for r in roles} == {r: "open" for r in roles if p.egress(roles[r])} | \
        {r: "timeout" for r in roles if not p.egress(roles[r])}
    broken = twin.stack_plan(cfg, detach_nat=True)
    try:
        twin.apply_router(cfg, broken)
        got = {r: _s3_probe(cfg, r) for r in roles}
    finally:
        twin.apply_router(cfg, p)
    assert got == {r: ("open" if roles[r].public_ip else "timeout") for r in roles}, got
    assert _s3_probe(cfg, "db") == "open"


def test_a_missing_nsg_rule_breaks_ssh_through_the_jump_host(twin_lab):
    """Drop the program's ssh-from-jump rule: Ansible's path to db and ops (ProxyJump via the app
    VM) times out in the lab as it would on Azure; restored, it works again."""
    import yaml

    cfg = twin_lab
    p = twin.load_plan(cfg)
    names = {r.name for rules in p.nsgs.values() for r in rules}
    assert "ssh-from-jump" in names
    doc = yaml.safe_load(cfg.inventory_file.read_text())
    behind = {n: hv for n, hv in twin._ssh_hosts(doc) if hv.get("ansible_ssh_common_args", "").count("ProxyJump")}
    assert behind
    broken = twin.stack_plan(cfg, remove_rules=["ssh-from-jump"])
    assert "ssh-from-jump" not in {r.name for rules in broken.nsgs.values() for r in rules}
    try:
        twin.apply_router(cfg, broken)
        for name in behind:
            with pytest.raises(LabError, match=f"cannot log in to {name}"):
                twin.check_ssh(cfg, doc, timeout=1, only={name})
    finally:
        twin.apply_router(cfg, p)
    twin.check_ssh(cfg, doc)


def test_buckets_have_exactly_the_declared_settings(twin_lab):
    cfg = twin_lab
    p = twin.load_plan(cfg)
    s3 = environment.s3_client(cfg)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == set(p.buckets)
    for bucket, spec in p.buckets.items():
        kinds = {k.split("BucketV2")[0].split("Bucket", 1)[1] for k in spec["settings"]}
        assert {"ServerSideEncryptionConfiguration", "PublicAccessBlock", "Versioning"} <= kinds, kinds
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        declared = next(v for k, v in spec["settings"].items() if k.startswith("BucketLifecycleConfiguration"))
        got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert sorted(r["ID"] for r in got) == sorted(r["id"] for r in declared["rules"])
        assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(twin.bucket_policies(p)[bucket])


def test_ssh_config_names_absolute_paths(tmp_path, monkeypatch):
    """A relative TRUSTOPS_LAB_DIR (as in the README's commands) must not make ssh look for the key
    and known hosts relative to wherever Ansible runs (it did: host key verification failed)."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    cfg = environment.LabConfig(name="twinpaths", state_dir=Path("rel"), kind="twin")
    twin._write_ssh_config(cfg)
    paths = [l.split()[1] for l in (tmp_path / "rel" / "ssh_config").read_text().splitlines()
             if l.strip().startswith(("IdentityFile", "UserKnownHostsFile"))]
    assert len(paths) == 2 and all(Path(p).is_absolute() for p in paths), paths


def test_address_space_must_be_free_and_inside_172_16_12(tmp_path, monkeypatch):
    cfg = environment.LabConfig(name="twinranges", state_dir=tmp_path, kind="twin")
    quiet = environment.Progress(quiet=True)
    monkeypatch.setenv("TRUSTOPS_LAB_ADDRESS_SPACE", "10.40.0.0/16")
    with pytest.raises(LabError, match=r"must lie inside 172.16.0.0/12"):
        twin.choose_ranges(cfg, quiet)
    used = next((u for u in twin._used_networks(cfg) if u.subnet_of(twin.LAB_RANGE)), None)
    if used is not None:
        monkeypatch.setenv("TRUSTOPS_LAB_ADDRESS_SPACE", str(used.supernet(new_prefix=16)))
        with pytest.raises(LabError, match="overlaps"):
            twin.choose_ranges(cfg, quiet)
    monkeypatch.delenv("TRUSTOPS_LAB_ADDRESS_SPACE")
    ranges = twin.choose_ranges(cfg, quiet)
    vnet, internet = (ipaddress.ip_network(ranges[k]) for k in ("address_space", "internet"))
    assert vnet.subnet_of(twin.LAB_RANGE) and internet.subnet_of(twin.LAB_RANGE) and not vnet.overlaps(internet)
    assert not any(vnet.overlaps(u) or internet.overlaps(u) for u in twin._used_networks(cfg))
    assert twin.choose_ranges(cfg, quiet) == ranges   # kept for the next `lab up`
    with pytest.raises(LabError, match="TRUSTOPS_LAB_KIND"):
        environment.LabConfig(name="x", kind="cloud")


def test_iam_keys_reach_only_their_own_bucket(twin_lab):
    """moto checks every request against IAM: each purpose's key (the stack's user and policy)
    writes where its policy allows and is refused on the other purpose's bucket; an unknown key
    is refused everywhere."""
    from botocore.exceptions import ClientError

    cfg = twin_lab
    p = twin.load_plan(cfg)
    users = {u["tags"]["purpose"]: name for name, u in p.iam_users.items()}
    buckets = {spec["tags"]["purpose"]: name for name, spec in p.buckets.items()}
    # one writer per bucket; the app's Bedrock identity (HOST-03) has no bucket of its own
    assert set(buckets) == {"backups", "files"} and set(users) == {"backups", "files", "bedrock"}
    users = {purpose: users[purpose] for purpose in buckets}

    def s3(creds):
        return environment.s3_client(cfg, credentials=creds)

    def put(client, bucket, key):
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"x", ServerSideEncryption="AES256")
            return "ok"
        except ClientError as exc:
            return exc.response["Error"]["Code"]
    keys = {purpose: json.loads(twin.iam_key_file(cfg, user).read_text()) for purpose, user in users.items()}
    assert oct(twin.iam_key_file(cfg, users["backups"]).stat().st_mode & 0o777) == "0o600"
    backups, files = s3(keys["backups"]), s3(keys["files"])
    assert put(backups, buckets["backups"], "postgres/probe.dump") == "ok"
    assert put(backups, buckets["files"], "postgres/probe.dump") == "AccessDenied"
    assert put(backups, buckets["backups"], "elsewhere/probe.dump") == "AccessDenied"   # its prefix only
    assert put(files, buckets["backups"], "postgres/probe.dump") == "AccessDenied"
    assert put(files, buckets["files"], "receipts/probe.jpg") == "ok"
    stranger = s3({"aws_access_key_id": "AKIA" + os.urandom(8).hex().upper(),
                   "aws_secret_access_key": os.urandom(20).hex()})
    assert put(stranger, buckets["files"], "receipts/probe.jpg") in ("InvalidAccessKeyId", "AccessDenied")


def test_s3_is_https_checked_against_the_labs_public_root(twin_lab):
    """As AWS's endpoints: the VMs' S3 URL is https://<address> (443) and moto serves it with a
    certificate from the lab's public root; plain HTTP is not served, and a client that trusts
    only this machine's own store (no lab root) refuses it."""
    import http.client
    import ssl
    import urllib.request

    import yaml

    cfg = twin_lab
    doc = yaml.safe_load(cfg.inventory_file.read_text())
    assert doc["all"]["vars"]["trustops_s3"]["endpoint_url"] == f"https://{twin.internet_addresses(cfg)['s3']}"
    url, ca = environment.s3_local_endpoint(cfg)
    assert url.startswith("https://") and Path(ca).is_file()
    with urllib.request.urlopen(f"{url}/moto-api/", timeout=10, context=ssl.create_default_context(cafile=ca)) as r:
        assert r.status == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=10, context=ssl.create_default_context())
        except urllib.error.URLError as exc:
            raise exc.reason from None
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{cfg.s3_port}/moto-api/", timeout=10).read()


def test_a_host_without_the_labs_root_refuses_s3_in_one_line_and_with_it_works(converged_twin):
    """db's backup tool verifies S3 with the host's system store and no lab-only option: with the
    lab's public root out of the store (an image without the endpoint's CA) it stops in one line
    naming the certificate; put back, it lists the backups again."""
    from tests.playbooks import lab_root_held_out

    cfg = converged_twin

    def listing() -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", cfg.container("db"), "sudo", "-u", "postgres", "trustops-pgbackup",
                               "list"], capture_output=True, text=True, timeout=300)

    assert listing().returncode == 0
    with lab_root_held_out(cfg, "db"):
        refused = listing()
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stdout + refused.stderr
        assert "certificate verify failed" in refused.stderr, refused.stderr
    again = listing()
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.fixture
def converged_twin(twin_lab, lab_config, request):
    """The twin after the suite's converge (UFW on, monitors and Alertmanager running): the suite's
    own lab, so nothing is converged twice."""
    if twin_lab is not lab_config:
        pytest.skip("the suite's lab is flat (TRUSTOPS_LAB_KIND=flat): only the suite's lab is converged")
    request.getfixturevalue("converged")
    return twin_lab


def test_reachability_matrix_matches_the_program_ufw_on(converged_twin):
    """After the converge, with UFW on every host: the firewall role opens exactly the program's
    flows (infra/network.FLOWS), so the live matrix is still the NSGs' one. A flow the NSGs allow
    that UFW drops, or a service that is not listening where the program says, is a mismatch."""
    cfg = converged_twin
    p = twin.load_plan(cfg)
    for vm in p.vms.values():
        status = subprocess.run(["docker", "exec", cfg.container(vm.lab_key), "ufw", "status"], capture_output=True,
                                text=True, timeout=60).stdout
        assert status.startswith("Status: active"), f"{vm.name}: {status}"
    reach.start_listeners(cfg, p)
    observed = reach.live(cfg, p, timeout=2.0)
    assert reach.mismatches(p, observed) == []


def test_without_the_db_to_ops_alert_rule_db_alerts_time_out_then_arrive_when_restored(converged_twin):
    """Break the stack: drop the ops NSG's rule for db's alerts. A sudo failure on db is detected,
    but the monitor's post to Alertmanager times out at the NSG (as on Azure: a drop, not a
    refusal); the monitor counts the failed send and holds the alert. Restored, it delivers what
    it held (Alertmanager accepts the post)."""
    import time

    from tests.playbooks import monitor_metric
    from trustops.wait import until

    cfg = converged_twin
    p = twin.load_plan(cfg)
    assert "alerts-from-db" in {r.name for rules in p.nsgs.values() for r in rules}
    broken = twin.stack_plan(cfg, remove_rules=["alerts-from-db"])

    def db(command: str) -> str:
        return subprocess.run(["docker", "exec", cfg.container("db"), "bash", "-c", command], capture_output=True,
                              text=True, timeout=60).stdout

    def journal(since: float) -> str:
        return db(f"journalctl -u trustops-monitor --since @{int(since)} -o cat --no-pager")
    failed, sent = "trustops_monitor_alert_send_failures_total", "trustops_monitor_alerts_sent_total"
    started = time.time()
    twin.apply_router(cfg, broken)
    try:
        before = monitor_metric(cfg, "db", failed)
        db("su -s /bin/bash nobody -c \"echo wrong | sudo -S -p '' true\"")    # SudoFailure on db
        until(lambda: monitor_metric(cfg, "db", failed) > before, 60, "db's monitor failing to post its alert",
              interval=1)
        log = journal(started)
        assert "did not take" in log and "timed out" in log, log[-1500:]
        sent_before = monitor_metric(cfg, "db", sent)
    finally:
        restored = time.time()
        twin.apply_router(cfg, p)
    until(lambda: monitor_metric(cfg, "db", sent) > sent_before, 90, "db's held alert accepted once the rule is back",
          interval=2)
    assert "reachable again: delivered" in journal(restored)


def test_with_the_db_nsgs_deny_all_gone_ufw_catches_the_scan_the_nsg_let_through(converged_twin):
    """Defence in depth: a stack missing its deny-all-other-inbound rules (Azure's AllowVnetInBound
    then lets the ops host's scan reach db) still has db's UFW, which blocks the scan and alerts.
    The Postgres probe stays dropped by the db NSG's own deny rule, so its alert is held back.
    Run again within the monitor's 10 quiet minutes (a kept lab), UfwPortScan is still firing from
    the last scan and is not notified again; db's UFW lines still show this scan was blocked."""
    from tests.playbooks import monitor_metric
    from trustops import drill
    from trustops.lab.system import Progress

    cfg = converged_twin
    blocked = 'trustops_monitor_events_total{outcome="block",source_type="ufw"}'
    before = monitor_metric(cfg, "db", blocked)
    broken = twin.stack_plan(cfg, remove_rules=["deny-all-other-inbound"])
    twin.apply_router(cfg, broken)
    try:
        result = drill.attack(cfg, Progress(quiet=True), timeout=150, plan=broken)
    finally:
        twin.apply_router(cfg, twin.load_plan(cfg))
    assert set(result.held_back) == {"UfwDatabasePortProbe"}, result.held_back
    assert "deny-postgres-from-anywhere-else" in result.held_back["UfwDatabasePortProbe"]
    assert result.missing == [] and result.leaked == [], (result.delivered, result.already_firing)
    until(lambda: monitor_metric(cfg, "db", blocked) - before >= len(drill.SCAN_PORTS), 30,
          "db's monitor counting a UFW block line for each scanned port", interval=1)
    assert "UfwPortScan" in result.delivered or result.already_firing.get("UfwPortScan", ("", 1e12))[1] < result.started, \
        (result.delivered, result.already_firing)


def test_down_removes_everything_the_twin_made(twin_lab, lab_config):
    """Last in this file: the twin's containers (router included), every network it made and its
    state go; other labs' stay. (Skipped when the twin is the session's own test lab.)"""
    if twin_lab is lab_config:
        pytest.skip("the twin is the session's test lab; other test files still need it")
    cfg = twin_lab
    p = twin.load_plan(cfg)
    nets = [twin.internet_network(cfg)] + [twin.network_name(cfg, s) for s in p.subnets]

    def labelled(kind: str, name: str) -> list[str]:
        args = ["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                "--filter", f"label=trustops.lab={name}"]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
    others = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout.split()
    mine = labelled("container", cfg.name)
    # the VMs and the twin's services (router, S3, Key Vault, mail sink)
    assert len(mine) == len(p.vms) + len(twin.SERVICE_ROLES) and len(labelled("network", cfg.name)) == len(nets)
    assert len(labelled("volume", cfg.name)) == sum(len(vm.data_disks) for vm in p.vms.values()) > 0
    environment.down(cfg, environment.Progress(quiet=True))
    assert labelled("container", cfg.name) == [] and labelled("network", cfg.name) == []
    assert labelled("volume", cfg.name) == []
    assert all(environment._inspect(n) is None for n in nets) and not cfg.state_dir.exists()
    left = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout.split()
    assert set(others) - set(mine) <= set(left)


def test_one_ssh_run_does_not_wait_for_a_hop_that_outlives_it(tmp_path):
    """check_ssh's one run (twin._ssh_once): a child that keeps stderr open after the command
    exits (ssh's ProxyJump hop, when an NSG drops its SYN) neither holds the result back nor
    survives it. With stderr on a pipe the run waited for that child: CI simulation 5's 60 s."""
    pid_file = tmp_path / "hop.pid"
    out, err = twin._ssh_once(["sh", "-c", f"sleep 300 >&2 & echo $! > {pid_file}; echo ok; echo refused >&2"],
                              limit=20)
    assert (out, err) == ("ok\n", "refused\n")
    stat = Path("/proc") / pid_file.read_text().strip() / "stat"

    def killed() -> bool:   # gone, or a zombie until its new parent reaps it (SIGKILL lands a moment later:
        try:                # a busy machine showed it still running, state R, right after the run)
            return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    until(killed, 10, "the hop killed with the run", interval=0.05)
