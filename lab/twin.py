"""The twin: the lab built from the `lab` stack (trustops.lab.stack) instead of a topology of its own.

- each subnet the program declares is a Docker bridge with its CIDR; the bridge has no address on
  the machine (inhibit_ipv4) and no masquerade, so the only way in or out is the router;
- the router is a container the lab owns (`<lab>-router`): .1 of every subnet (Azure's gateway
  address) and an address on the lab's "internet" network; it enforces the NSGs
  (trustops.lab.nsg) with iptables in its own namespace, maps each public IP 1:1 to its VM,
  SNATs egress to the NAT gateway's or the VM's public address where the program declares one,
  and drops it where it does not;
- each VM is a systemd host container at its declared private address, whose only route is the
  router (no on-link route to its own subnet: intra-subnet traffic crosses the NSGs as on Azure);
- the machine is the internet and the admin network: it reaches public IPs directly on the
  internet network, and its traffic reaches the VMs from the admin address the stack is given;
- S3 is moto on the internet network, with the buckets the stack declares;
- Ansible's inventory is the stack's own `inventory` output, with the lab's SSH key, known hosts
  and S3 endpoint added.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import yaml

from trustops import inventory
from trustops.lab import environment, keyvault, nsg, stack, webpki
from trustops.lab.system import LabError, Progress, run, wait_tcp, write_atomically

# moto checks every request against IAM after this many (the lab's own administrator key is made
# with them); the stack's users then get exactly their declared policies
IAM_BOOTSTRAP_ACTIONS = 4
S3_UID = 10002                     # the S3 image's unprivileged user (lab/images/s3/Dockerfile)
LAB_ADMIN_USER = "trustops-lab-admin"
ADMIN_ADDRESS = "192.88.99.1"      # the machine's traffic as the VMs see it (a public address, never routed)
LAB_RANGE = ipaddress.ip_network("172.16.0.0/12")
ROUTER_ROLE, S3_ROLE, KEYVAULT_ROLE = "router", "s3", "keyvault"
# The containers a twin runs beside its VMs (the mail sink is the flat lab's own).
SERVICE_ROLES = (ROUTER_ROLE, S3_ROLE, KEYVAULT_ROLE, environment.MAIL_ROLE)


# ---------------------------------------------------------------------------- address ranges


def _used_networks(cfg: environment.LabConfig) -> list:
    """Every range this machine already uses: its addresses, routes and other Docker networks."""
    used = []
    for cmd in (["ip", "-j", "addr"], ["ip", "-j", "route"]):
        for item in json.loads(run(cmd).stdout or "[]"):
            for a in item.get("addr_info", []):
                if a.get("family") == "inet":
                    used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            dst = item.get("dst")
            if dst and dst != "default":
                try:
                    used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
                except ValueError:
                    pass
    for nid in run(["docker", "network", "ls", "-q"]).stdout.split():
        info = json.loads(run(["docker", "network", "inspect", nid]).stdout)[0]
        if (info.get("Labels") or {}).get("trustops.lab") == cfg.name:
            continue
        for c in (info.get("IPAM") or {}).get("Config") or []:
            if c.get("Subnet") and ":" not in c["Subnet"]:
                used.append(ipaddress.ip_network(c["Subnet"], strict=False))
    return [n for n in used if n.version == 4]


def choose_ranges(cfg: environment.LabConfig, progress: Progress) -> dict[str, str]:
    """The VNet's /16 and the lab internet's /24, inside 172.16.0.0/12 and free on this machine;
    chosen once per lab and kept in its state dir."""
    path = cfg.state_dir / "twin-ranges.json"
    if path.exists():
        return json.loads(path.read_text())
    used = _used_networks(cfg)
    wanted = os.environ.get("TRUSTOPS_LAB_ADDRESS_SPACE")
    free = [n for n in reversed(list(LAB_RANGE.subnets(new_prefix=16))) if not any(n.overlaps(u) for u in used)]
    if wanted:
        vnet = ipaddress.ip_network(wanted, strict=True)
        if not vnet.subnet_of(LAB_RANGE):
            raise LabError(f"TRUSTOPS_LAB_ADDRESS_SPACE {wanted}: must lie inside {LAB_RANGE}")
        clash = next((u for u in used if vnet.overlaps(u)), None)
        if clash:
            raise LabError(f"TRUSTOPS_LAB_ADDRESS_SPACE {wanted} overlaps {clash}, already used on this machine")
        free = [n for n in free if not n.overlaps(vnet)]
    else:
        if len(free) < 2:
            raise LabError("no two free /16s left in 172.16.0.0/12 on this machine; remove unused Docker networks")
        vnet = free.pop(0)
    if not free:
        raise LabError("no free /16 left in 172.16.0.0/12 for the lab's internet network")
    internet = next(free[0].subnets(new_prefix=24))
    ranges = {"address_space": str(vnet), "internet": str(internet)}
    progress.step(f"lab address space {vnet} (VNet) and {internet} (its internet), free on this machine")
    path.write_text(json.dumps(ranges))
    return ranges


def _internet(ranges: dict[str, str]) -> dict[str, str]:
    net = ipaddress.ip_network(ranges["internet"])
    hosts = list(net.hosts())
    return {"cidr": str(net), "machine": str(hosts[0]), "router": str(hosts[1]), "s3": str(hosts[2]),
            environment.MAIL_ROLE: str(hosts[3]), "public_pool": [str(h) for h in hosts[9:40]]}


def _nameservers() -> tuple[str, ...]:
    """Where Docker's embedded DNS in the hosts forwards to (the machine's resolvers)."""
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            found = [l.split()[1] for l in Path(path).read_text().splitlines()
                     if l.startswith("nameserver") and len(l.split()) > 1]
        except OSError:
            continue
        found = [n for n in found if ":" not in n and not ipaddress.ip_address(n).is_loopback]
        if found:
            return tuple(found)
    return ()


# ---------------------------------------------------------------------------- naming


def network_name(cfg: environment.LabConfig, subnet: str) -> str:
    return f"{cfg.name}-{subnet}"


def internet_network(cfg: environment.LabConfig) -> str:
    return f"{cfg.name}-internet"


def plan_file(cfg: environment.LabConfig) -> Path:
    return cfg.state_dir / "stack-plan.json"


def load_plan(cfg: environment.LabConfig) -> stack.Plan:
    if not plan_file(cfg).exists():
        raise LabError(f"lab {cfg.name!r} has no stack plan ({plan_file(cfg)}): run `trustops lab up` first")
    return stack.Plan.from_json(plan_file(cfg).read_text())


def router_ip(plan: stack.Plan, subnet: str) -> str:
    return str(next(ipaddress.ip_network(plan.subnets[subnet].cidr).hosts()))   # .1, Azure's gateway


# ---------------------------------------------------------------------------- materialising


def _ensure_net(cfg, name: str, cidr: str, progress: Progress, *, closed: bool) -> None:
    info = environment._inspect(name)
    if info is not None:
        have = [c.get("Subnet") for c in info["IPAM"]["Config"]]
        if have == [cidr]:
            return
        raise LabError(f"Docker network {name} exists with {have}, the stack wants {cidr}: run `trustops lab down`")
    net = ipaddress.ip_network(cidr)
    args = ["docker", "network", "create", "--label", f"trustops.lab={cfg.name}", "--subnet", cidr]
    if closed:   # no address on the machine, no masquerade: only the router connects it
        args += ["--gateway", str(net[-2]), "-o", "com.docker.network.bridge.inhibit_ipv4=true",
                 "-o", "com.docker.network.bridge.enable_ip_masquerade=false"]
    else:
        args += ["--gateway", str(net[1])]
    progress.step(f"creating network {name} ({cidr})")
    run([*args, name])


def _pid(name: str) -> str:
    pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip()
    if pid in ("", "0"):
        raise LabError(f"{name} is not running")
    return pid


def netns(name: str, *cmd: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """A command of this machine run in container `name`'s network namespace only."""
    return run(["nsenter", "-t", _pid(name), "-n", *cmd], input=input, check=check)


def _interfaces(name: str) -> dict[str, str]:
    """address -> interface in the container's namespace."""
    out = {}
    for item in json.loads(netns(name, "ip", "-j", "addr").stdout):
        for a in item.get("addr_info", []):
            if a.get("family") == "inet":
                out[a["local"]] = item["ifname"]
    return out


def _published(cfg: environment.LabConfig, plan: stack.Plan) -> tuple[list, list]:
    """The 127.0.0.1 ports: to a public VM they stand for its public IP; to a private VM they are
    the operator's tunnel through the jump host (both cross the NSGs)."""
    published, console = [], []
    for vm in plan.vms.values():
        if vm.lab_key not in environment.SERVICE_PORTS:
            continue
        for inner, outer in cfg.ports(vm.lab_key).items():
            (published if vm.public_ip else console).append((outer, vm.private_ip, inner))
    return published, console


def _router_site(cfg, plan: stack.Plan, inet: dict) -> nsg.RouterSite:
    name = cfg.container(ROUTER_ROLE)
    ifs = _interfaces(name)
    published, console = _published(cfg, plan)
    jump = next((v.private_ip for v in plan.vms.values() if v.public_ip), None)
    endpoint_subnets = {r["name"] for r in plan.resources if r["type"] == "azure-native:network:Subnet"
                        and any(e.get("service") == "Microsoft.KeyVault" for e in r["inputs"].get("serviceEndpoints") or [])}
    return nsg.RouterSite(keyvault=True,
                          keyvault_endpoint_vms=tuple(v.name for v in plan.vms.values() if v.subnet in endpoint_subnets),
                          internet_if=ifs[inet["router"]],
                          subnet_ifs={s: ifs[router_ip(plan, s)] for s in plan.subnets},
                          internet_cidr=inet["cidr"], machine_ip=inet["machine"], admin_ip=ADMIN_ADDRESS,
                          router_ip=inet["router"], nameservers=_nameservers(),
                          console=tuple(console), jump_ip=jump, published=tuple(published))


def apply_router(cfg, plan: stack.Plan) -> str:
    """(Re)load the router's addresses, routes and ruleset from `plan`; returns the ruleset."""
    inet = _internet(json.loads((cfg.state_dir / "twin-ranges.json").read_text()))
    name = cfg.container(ROUTER_ROLE)
    site = _router_site(cfg, plan, inet)
    prefix = ipaddress.ip_network(inet["cidr"]).prefixlen
    for address in sorted(set(plan.public_ips.values())):
        netns(name, "ip", "addr", "replace", f"{address}/{prefix}", "dev", site.internet_if)
    netns(name, "ip", "route", "replace", "default", "via", inet["machine"], "dev", site.internet_if)
    rules = nsg.router_rules(plan, site)
    netns(name, "iptables-restore", input=rules)
    netns(name, "conntrack", "-F", check=False)   # a changed ruleset applies to flows already open too
    (cfg.state_dir / "router.rules").write_text(rules)
    return rules


def _program_digest(ranges: dict, pubkey: str) -> str:
    """What the plan depends on: the program, the contract, the stack file, the lab's reading of
    them, the ranges and the key. Unchanged, a warm `lab up` reuses the recorded plan."""
    h = hashlib.sha256(json.dumps([ranges, pubkey]).encode())
    files = sorted((stack.PROJECT_DIR / "infra").rglob("*.py")) + [
        stack.STACK_FILE, stack.PROJECT_DIR / "trustops" / "inventory.py", Path(stack.__file__), Path(nsg.__file__)]
    for f in files:
        h.update(str(f).encode() + f.read_bytes())
    return h.hexdigest()


def _current_plan(cfg, ranges: dict, inet: dict, pubkey: str, progress: Progress) -> stack.Plan:
    digest = _program_digest(ranges, pubkey)
    stamp = cfg.state_dir / "stack-plan.digest"
    if plan_file(cfg).exists() and stamp.exists() and stamp.read_text() == digest:
        return load_plan(cfg)
    progress.step(f"running the Pulumi program for stack {stack.STACK!r} under mocks")
    plan = stack.plan(ranges["address_space"], [f"{ADMIN_ADDRESS}/32"], list(inet["public_pool"]), pubkey)
    plan_file(cfg).write_text(plan.to_json())
    stamp.write_text(digest)
    return plan


def _keep_running(name: str, progress: Progress, attempts: int = 3) -> None:
    """A systemd host that stopped in its first second (seen now and then on this machine when
    several boot at once, exit 255, no output) is started again."""
    import time

    import datetime as dt

    for _ in range(attempts):
        state = json.loads(run(["docker", "inspect", "-f", "{{json .State}}", name]).stdout)
        started = dt.datetime.fromisoformat(state["StartedAt"][:26].rstrip("Z")).replace(tzinfo=dt.timezone.utc)
        if state["Running"] and (dt.datetime.now(dt.timezone.utc) - started).total_seconds() > 2:
            return   # up and past the first second, when such a stop happens
        if state["Running"]:
            time.sleep(1)
            continue
        progress.step(f"{name} stopped while booting: starting it again")
        run(["docker", "start", name])
    raise LabError(f"{name} keeps stopping while it boots{environment.inotify_hint()}: see `docker logs {name}`")


def _route_through_router(cfg, plan: stack.Plan, vm: stack.Vm) -> None:
    name, gw, cidr = cfg.container(vm.lab_key), router_ip(plan, vm.subnet), plan.subnets[vm.subnet].cidr
    netns(name, "ip", "route", "replace", f"{gw}/32", "dev", "eth0", "scope", "link")
    netns(name, "ip", "route", "replace", "default", "via", gw, "dev", "eth0")
    netns(name, "ip", "route", "del", cidr, "dev", "eth0", check=False)


def data_disk_volume(cfg, disk: dict) -> str:
    return f"{cfg.name}-{disk['name']}"


def _ensure_data_disks(cfg, vm: stack.Vm, progress: Progress) -> list[str]:
    """A VM's data disks as named volumes, mounted where its cloud-init mounts them. A named volume
    outlives its container, as a managed disk outlives a replaced VM (the stack detaches it);
    `lab down` removes them with the rest. A disk nothing mounts is made and left unmounted."""
    args = []
    for disk in vm.data_disks:
        volume = data_disk_volume(cfg, disk)
        if run(["docker", "volume", "inspect", volume], check=False).returncode != 0:
            progress.step(f"data disk {disk['name']} ({disk['size_gb']} GB, LUN {disk['lun']}) for {vm.name}")
            run(["docker", "volume", "create", "--label", f"trustops.lab={cfg.name}",
                 "--label", f"trustops.disk={disk['name']}", volume])
        if disk["mount"]:
            args += ["-v", f"{volume}:{disk['mount']}"]
    return args


def _host_args(cfg, plan: stack.Plan, vm: stack.Vm, image: str, disks: list[str] = ()) -> list[str]:
    args = environment._host_run_args(cfg, vm.lab_key, image)
    i = args.index("--network")
    args[i:i + 4] = ["--network", network_name(cfg, vm.subnet), "--ip", vm.private_ip]   # drops the alias
    args[args.index("--hostname") + 1] = vm.computer_name
    return args[:-1] + list(disks) + args[-1:]    # before the image


def _ensure_buckets(cfg, plan: stack.Plan) -> None:
    """The buckets with the settings the stack declares (encryption, blocks, versioning, ownership,
    lifecycle, policy), created in moto."""
    s3 = environment.s3_client(cfg)
    region = environment.S3_REGION
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket, spec in plan.buckets.items():
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        st = spec["settings"]
        if not any(kind.startswith("BucketPolicy") for kind in st):
            s3.delete_bucket_policy(Bucket=bucket)      # one the stack no longer declares (moto kept it)
        for kind, setting in st.items():
            if kind.startswith("BucketServerSideEncryptionConfiguration"):
                s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                    {"ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": r["applyServerSideEncryptionByDefault"]["sseAlgorithm"]},
                     "BucketKeyEnabled": bool(r.get("bucketKeyEnabled"))} for r in setting["rules"]]})
            elif kind == "BucketPublicAccessBlock":
                s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                    "BlockPublicAcls": bool(setting.get("blockPublicAcls")),
                    "IgnorePublicAcls": bool(setting.get("ignorePublicAcls")),
                    "BlockPublicPolicy": bool(setting.get("blockPublicPolicy")),
                    "RestrictPublicBuckets": bool(setting.get("restrictPublicBuckets"))})
            elif kind.startswith("BucketVersioning"):
                status = (setting.get("versioningConfiguration") or {}).get("status", "Enabled")
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
            elif kind.startswith("BucketOwnershipControls"):
                s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [
                    {"ObjectOwnership": setting["rule"]["objectOwnership"]}]})
            elif kind.startswith("BucketLifecycleConfiguration"):
                s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
                    "Rules": [_lifecycle_rule(r) for r in setting["rules"]]})
            elif kind.startswith("BucketPolicy"):
                # kept by moto, enforced by the S3 front (trustops.lab.s3gate): moto's own access
                # control cannot evaluate it (lab/README.md, "S3 and IAM")
                s3.put_bucket_policy(Bucket=bucket, Policy=setting["policy"])


def _iam(cfg, creds: dict | None = None):
    return environment.s3_client(cfg, "iam", creds)


def _ensure_lab_admin(cfg) -> None:
    """The lab's own key (s3-credentials.json: the control node's, and the roles' in the lab) as
    an IAM user with every right, made while moto still answers unauthenticated requests."""
    from botocore.exceptions import ClientError

    iam = _iam(cfg)
    try:
        iam.get_user(UserName=LAB_ADMIN_USER)   # the first of the unauthenticated requests, on a new moto
        keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=LAB_ADMIN_USER)["AccessKeyMetadata"]}
        if environment._s3_credentials(cfg)["aws_access_key_id"] in keys:
            return
        raise LabError(f"moto's IAM does not know the key in {cfg.s3_credentials_file}: run `trustops lab down` "
                       f"and up again")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchEntity", "404"):
            raise LabError(f"moto's IAM refuses the lab's key ({exc.response['Error']['Code']}): its state and "
                           f"{cfg.s3_credentials_file} disagree; run `trustops lab down` and up again") from exc
    try:
        iam.create_user(UserName=LAB_ADMIN_USER)
        iam.put_user_policy(UserName=LAB_ADMIN_USER, PolicyName="lab-admin", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=LAB_ADMIN_USER)["AccessKey"]
    except ClientError as exc:
        raise LabError(f"moto's IAM refuses the lab's bootstrap ({exc.response['Error']['Code']}): run "
                       f"`trustops lab down` and up again") from exc
    creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    write_atomically(cfg.s3_credentials_file, json.dumps(creds).encode())


def _wait_moto(cfg, timeout: float = 60) -> None:
    """moto answering HTTPS (its own API: not an AWS action, so not one of the unauthenticated ones)."""
    import ssl
    import time
    import urllib.request

    url, ca = environment.s3_local_endpoint(cfg)
    tls = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=5, context=tls):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"the lab's S3 (moto) does not answer on 127.0.0.1:{cfg.s3_port}: {exc}") from exc
            time.sleep(0.5)


def iam_key_file(cfg, user: str) -> Path:
    return cfg.state_dir / "iam" / f"{user}.json"


def _ensure_iam(cfg, plan: stack.Plan) -> None:
    """The stack's IAM users with exactly their declared inline policies, and an access key for
    each key the stack declares (kept in the state dir, 0600, one file per user)."""
    iam = _iam(cfg)
    have = {u["UserName"] for u in iam.list_users()["Users"]}
    for user, inputs in plan.iam_users.items():
        if user not in have:
            iam.create_user(UserName=user, Path=inputs.get("path") or "/")
    for name, pol in plan.iam_policies.items():
        if pol.get("user") and isinstance(pol.get("policy"), str):
            iam.put_user_policy(UserName=pol["user"], PolicyName=name, PolicyDocument=pol["policy"])
    (cfg.state_dir / "iam").mkdir(mode=0o700, exist_ok=True)
    for key in plan.access_keys.values():
        user, path = key.get("user"), iam_key_file(cfg, str(key.get("user")))
        if not user or user not in plan.iam_users:
            continue
        known = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
        if path.exists() and json.loads(path.read_text())["aws_access_key_id"] in known:
            continue
        made = iam.create_access_key(UserName=user)["AccessKey"]
        write_atomically(path, json.dumps({"aws_access_key_id": made["AccessKeyId"],
                                           "aws_secret_access_key": made["SecretAccessKey"]}).encode())


def s3_endpoint(inet: dict) -> str:
    """The S3 endpoint the VMs use in the twin: moto at its address on the lab's internet network,
    in place of https://s3.<region>.amazonaws.com (HTTPS with a certificate for that address from
    the lab's public root, which every host trusts)."""
    port = environment.TWIN_S3_PORT
    return f"https://{inet['s3']}" + ("" if port == 443 else f":{port}")


def s3_dir(cfg) -> Path:
    return cfg.state_dir / "s3"


def bucket_policies(plan: stack.Plan) -> dict[str, str]:
    """Each bucket's declared policy (JSON)."""
    return {bucket: setting["policy"] for bucket, spec in plan.buckets.items()
            for kind, setting in spec["settings"].items() if kind.startswith("BucketPolicy")}


def _s3_args(cfg, plan: stack.Plan, inet: dict, image: str) -> list[str]:
    """moto as AWS's S3 and IAM behind the stack's bucket policies (trustops.lab.s3gate, mounted
    from the checkout), over HTTPS on TWIN_S3_PORT: its certificate is for its internet address
    (the VMs') and loopback (the control node's, through the published port)."""
    from trustops.lab import s3gate

    for bucket, policy in bucket_policies(plan).items():
        try:    # before anything is made (the front would refuse it at the put, after the start)
            s3gate.parse_policy(policy, bucket)
        except s3gate.PolicyError as exc:
            raise LabError(f"the S3 front cannot enforce the stack's bucket policy: {exc}") from None
    d = s3_dir(cfg)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chown(d, S3_UID, S3_UID)
    crt, key = webpki.ensure_server_cert(cfg.state_dir, d, "s3-tls", inet["s3"], "127.0.0.1", uid=S3_UID)
    (d / "policies.json").unlink(missing_ok=True)     # the front's input before moto kept the policies
    digest = hashlib.sha256(crt.read_bytes() + Path(s3gate.__file__).read_bytes()).hexdigest()[:12]
    port = str(environment.TWIN_S3_PORT)
    return ["--label", f"trustops.lab={cfg.name}", "--label", f"trustops.role={S3_ROLE}",
            # a renewed certificate or a changed front restart it (moto's state goes with it; lab
            # up makes the buckets, policies, users and keys again); a changed policy does not
            "--label", f"trustops.s3={digest}",
            "--network", internet_network(cfg), "--ip", inet["s3"], "--no-healthcheck",
            "--sysctl", f"net.ipv4.ip_unprivileged_port_start={port}",   # its user binds it
            "-v", f"{d}:/etc/s3:ro", "-v", f"{Path(s3gate.__file__).resolve()}:/opt/s3gate.py:ro",
            "-e", f"INITIAL_NO_AUTH_ACTION_COUNT={IAM_BOOTSTRAP_ACTIONS}", "-e", f"MOTO_PORT={port}",
            # path-style only, as the front reads requests: a bucket named in the Host would pass
            # the front as another bucket's request (the VMs use an address, so path-style anyway)
            "-e", "S3_IGNORE_SUBDOMAIN_BUCKETNAME=true",
            "--entrypoint", "/opt/moto/bin/python", image, "/opt/s3gate.py",
            "--tls-cert", f"/etc/s3/{crt.name}", "--tls-key", f"/etc/s3/{key.name}", "--port", port]


def keyvault_dir(cfg) -> Path:
    return cfg.state_dir / "keyvault"


def keyvault_uri(inet: dict) -> str:
    """The vault's URI in the twin: the stand-in in the router's namespace, at the router's address
    on the lab's internet network, in place of https://<vault>.vault.azure.net/ (HTTPS with a
    certificate for that address from the lab's public root, which every host trusts)."""
    return f"https://{inet['router']}:{keyvault.VAULT_PORT}/"


def _keyvault_values(cfg, plan: stack.Plan) -> dict[str, str]:
    """The declared secrets' values in the twin: each purpose's moto key (as the stack's secret
    holds it: the key's JSON) and a field key made once for the lab."""
    import base64
    import secrets as random

    from trustops.infra.vault import access_key_secret

    values = {}
    for user, inputs in plan.iam_users.items():
        purpose = (inputs.get("tags") or {}).get("purpose")
        if purpose and iam_key_file(cfg, user).exists():
            values[access_key_secret(purpose)] = iam_key_file(cfg, user).read_text()
    field_key = keyvault_dir(cfg) / "field-key"
    if not field_key.exists():
        fd = os.open(field_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(random.token_bytes(32)).decode())
    values.update({name: field_key.read_text() for name in plan.secrets if name.startswith("field-key-")})
    return values


def write_keyvault_config(cfg, plan: stack.Plan) -> Path:
    """The stand-in's file (0600, its user's): re-read by it on change, so a rotated key in
    <state>/iam/ reaches the hosts after this runs again."""
    from trustops.infra.vault import KEY_VAULT_SECRETS_USER

    d = keyvault_dir(cfg)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chown(d, keyvault.KEYVAULT_UID, keyvault.KEYVAULT_UID)
    doc = keyvault.build_config(plan, _keyvault_values(cfg, plan), KEY_VAULT_SECRETS_USER)
    path = d / "config.json"
    write_atomically(path, json.dumps(doc).encode(), 0o600, keyvault.KEYVAULT_UID)
    return path


def trust_lab_root(cfg, plan: stack.Plan, timeout: float = 120):
    """The lab's public root (trustops.lab.webpki) in every VM's system trust store, as a cloud
    image ships the public roots: begun in every host at once; returns the function that waits
    for them (lab up waits for SSH meanwhile), which raises LabError for any that failed."""
    import time

    root = webpki.ensure_root(cfg.state_dir).read_bytes()
    procs = {}
    for vm in plan.vms.values():
        procs[vm.lab_key] = subprocess.Popen(["docker", "exec", "-i", cfg.container(vm.lab_key), "sh", "-c",
                                              webpki.trust_script()], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stdin, procs[vm.lab_key].stdin = procs[vm.lab_key].stdin, None   # communicate() sends nothing more
        stdin.write(root)   # a PEM is far smaller than a pipe's buffer: this never blocks
        stdin.close()
    deadline = time.monotonic() + timeout

    def wait() -> None:
        failed = []
        try:
            for role, proc in procs.items():
                try:
                    out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    failed.append(f"{cfg.container(role)}: no answer in {timeout:.0f} s")
                    continue
                if proc.returncode != 0:
                    text = " | ".join(out.decode(errors="replace").split("\n")).strip(" |")
                    failed.append(f"{cfg.container(role)}: exit {proc.returncode} {text[-300:]}")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if failed:
            raise LabError("the lab's public root could not be put in the hosts' trust stores: " + "; ".join(failed))
    return wait


def ensure_keyvault(cfg, plan: stack.Plan, image: str, progress: Progress) -> None:
    """IMDS and Key Vault (trustops.lab.keyvault) in their own container that shares the router's
    network namespace, as the platform's services sit on the VMs' link on Azure: it sees each VM's
    own address, and the router's rules decide who reaches it. From the S3 image's Python, as an
    unprivileged user on a read-only root."""
    write_keyvault_config(cfg, plan)
    crt, key = webpki.ensure_server_cert(cfg.state_dir, keyvault_dir(cfg), "vault-tls",
                                         internet_addresses(cfg)["router"], uid=keyvault.KEYVAULT_UID)
    serial = hashlib.sha256(crt.read_bytes()).hexdigest()[:12]
    code = hashlib.sha256(Path(keyvault.__file__).read_bytes()).hexdigest()[:12]
    router = environment._inspect(cfg.container(ROUTER_ROLE))["Id"]  # type: ignore[index]
    # the router's id in the run arguments: a new router (a new namespace) makes a new stand-in;
    # the certificate's and the program's digests too: a renewed certificate or a changed
    # stand-in (mounted from the checkout) restarts it
    args = ["--label", f"trustops.lab={cfg.name}", "--label", f"trustops.role={KEYVAULT_ROLE}",
            "--label", f"trustops.router={router[:12]}", "--label", f"trustops.tls={serial}",
            "--label", f"trustops.code={code}",
            "--network", f"container:{router}", "--no-healthcheck",
            "--user", str(keyvault.KEYVAULT_UID), "--read-only",
            "-v", f"{Path(keyvault.__file__).resolve()}:/opt/keyvault.py:ro",
            "-v", f"{keyvault_dir(cfg)}:/etc/keyvault:ro",
            "--entrypoint", "/usr/bin/python3", image, "/opt/keyvault.py", "--config", "/etc/keyvault/config.json",
            "--tls-cert", f"/etc/keyvault/{crt.name}", "--tls-key", f"/etc/keyvault/{key.name}"]
    environment._ensure_container(cfg.container(KEYVAULT_ROLE), args, {}, progress)


def _lifecycle_rule(r: dict) -> dict:
    out: dict = {"ID": r.get("id", "rule"), "Status": r.get("status", "Enabled"), "Filter": {"Prefix": ""}}
    if r.get("expiration"):
        out["Expiration"] = {"Days": int(r["expiration"]["days"])}
    if r.get("noncurrentVersionExpiration"):
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(r["noncurrentVersionExpiration"]["noncurrentDays"])}
    if r.get("abortIncompleteMultipartUpload"):
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(r["abortIncompleteMultipartUpload"]["daysAfterInitiation"])}
    return out


def ssh_config_file(cfg) -> Path:
    return cfg.state_dir / "ssh_config"


def _write_ssh_config(cfg) -> None:
    """One SSH configuration for Ansible and for the ProxyJump hop (ssh passes -F on to the jump)."""
    ssh_config_file(cfg).write_text(
        "# Written by `trustops lab up` (twin): the lab's deploy key and known hosts, for every hop\n"
        "Host *\n"
        f"  IdentityFile {cfg.key_file.resolve()}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {cfg.known_hosts.resolve()}\n  StrictHostKeyChecking yes\n"
        "  ConnectTimeout 15\n")


def _lab_inventory(cfg, plan: stack.Plan, inet: dict, app_image: str) -> dict:
    """The stack's own inventory, plus what only the lab knows: the key, the known hosts, the S3
    endpoint and the images it built. Hosts, addresses, jumps and networks are the program's."""
    doc = json.loads(json.dumps(plan.inventory))
    top = doc["all"]
    ssh = f"-F {ssh_config_file(cfg).resolve()}"
    top["vars"].update({
        "trustops_cloud": "lab",
        "ansible_ssh_private_key_file": str(cfg.key_file.resolve()),
        "ansible_ssh_common_args": ssh,
        "trustops_lab_name": cfg.name,
        "trustops_lab_kind": "twin",
        "trustops_lab_published": {vm.lab_key: cfg.ports(vm.lab_key) for vm in plan.vms.values()
                                   if vm.lab_key in environment.SERVICE_PORTS},
        **environment.s3_local_vars(cfg),
        "trustops_lab_state_dir": str(cfg.state_dir),
        "trustops_lab_app_image": app_image,
        **environment.mail_relay_vars(inet[environment.MAIL_ROLE]),
        "trustops_key_vault_uri": keyvault_uri(inet),
        **environment.LAB_HEARTBEAT_VARS,   # the dead man's switch on lab time, as on the flat lab
    })
    top["vars"]["trustops_s3"] = {**top["vars"]["trustops_s3"], "endpoint_url": s3_endpoint(inet)}
    for role in inventory.ROLES:
        for hv in (top["children"][role]["hosts"] or {}).values():
            if hv.get("ansible_ssh_common_args"):
                hv["ansible_ssh_common_args"] = f"{ssh} {hv['ansible_ssh_common_args']}"
    inventory.validate(doc)
    tmp = cfg.inventory_file.with_suffix(".tmp")
    tmp.write_text("# Written by `trustops lab up` (twin): the lab stack's `inventory` output "
                   "(trustops/inventory.py) with the lab's key, known hosts and S3 endpoint\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(cfg.inventory_file)
    return doc


def _ssh_hosts(doc: dict) -> list[tuple[str, dict]]:
    return [(name, hv) for role in inventory.ROLES for name, hv in (doc["all"]["children"][role]["hosts"] or {}).items()]


def _ssh_once(cmd: list[str], limit: float = 60) -> tuple[str, str]:
    """One ssh run: (stdout, stderr). stderr goes to a file, not a pipe: the ProxyJump hop's own
    ssh inherits it and, when the hop cannot reach the host (an NSG drops the SYN), lives on for
    the kernel's whole connect timeout after the ssh we ran gave up, holding a pipe open; waiting
    for that pipe's end took the whole 60 s limit. The hop is killed with its session after."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            out = ""
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()      # reaps ssh and closes its stdout pipe
        err.seek(0)
        return out, err.read()


def check_ssh(cfg, doc: dict, timeout: float = 60, only: set[str] | None = None) -> None:
    """Log in to every host (or those in `only`) as Ansible will (the same ssh, options and
    jump) and run sudo; all hosts at once."""
    import shlex
    import time
    from concurrent.futures import ThreadPoolExecutor

    def login(item: tuple[str, dict]) -> str | None:
        name, hv = item
        args = shlex.split(hv.get("ansible_ssh_common_args") or doc["all"]["vars"]["ansible_ssh_common_args"])
        cmd = ["ssh", *args, "-o", "BatchMode=yes", "-o", "ConnectTimeout=8", "-p", str(hv["ansible_port"]),
               f"{doc['all']['vars']['ansible_user']}@{hv['ansible_host']}", "sudo -n true && echo ok"]
        deadline = time.monotonic() + timeout
        while True:
            out, err = _ssh_once(cmd)
            if out.strip() == "ok":
                return None
            last = (err.strip().splitlines() or ["no output"])[-1]
            if time.monotonic() > deadline:
                return f"cannot log in to {name} ({hv['ansible_host']}) the way Ansible will: {last}"
            time.sleep(1)

    hosts = [(n, hv) for n, hv in _ssh_hosts(doc) if only is None or n in only]
    with ThreadPoolExecutor(max(1, len(hosts))) as ex:
        failures = [f for f in ex.map(login, hosts) if f]
    if failures:
        raise LabError("; ".join(failures))


def up(cfg: environment.LabConfig, progress: Progress, images_built: dict[str, str]) -> dict:
    """Materialise the lab stack (called by environment.up with the lock held and images built)."""
    host_image, s3_image, app_image = images_built["host"], images_built["s3"], images_built["app"]
    pubkey = environment._generate_key(cfg.key_file)
    ranges = choose_ranges(cfg, progress)
    inet = _internet(ranges)
    plan = _current_plan(cfg, ranges, inet, pubkey, progress)
    progress.step(f"the stack declares {len(plan.resources)} resources: {len(plan.subnets)} subnets, "
                  f"{len(plan.vms)} VMs, {len(plan.public_ips)} public IPs, {len(plan.nat_gateways)} NAT gateways, "
                  f"{len(plan.buckets)} buckets")
    _ensure_net(cfg, internet_network(cfg), inet["cidr"], progress, closed=False)
    for subnet in plan.subnets.values():
        _ensure_net(cfg, network_name(cfg, subnet.name), subnet.cidr, progress, closed=True)
    environment._container_firewall_logs(progress)

    router = cfg.container(ROUTER_ROLE)
    published, console = _published(cfg, plan)
    ports = {outer: outer for outer, _, _ in published + console}
    router_args = ["--label", f"trustops.lab={cfg.name}", "--label", f"trustops.role={ROUTER_ROLE}",
                   "--hostname", "router", "--network", internet_network(cfg), "--ip", inet["router"],
                   "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                   "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "net.ipv4.conf.all.send_redirects=0",
                   "--sysctl", "net.ipv4.conf.default.send_redirects=0",
                   "--sysctl", "net.ipv4.conf.all.rp_filter=0", "--sysctl", "net.ipv4.conf.default.rp_filter=0",
                   "--entrypoint", "sleep", host_image, "infinity"]
    environment._ensure_container(router, router_args, ports, progress)
    attached = environment._inspect(router)["NetworkSettings"]["Networks"]  # type: ignore[index]
    for subnet in plan.subnets.values():
        net = network_name(cfg, subnet.name)
        if net not in attached:
            run(["docker", "network", "connect", "--ip", router_ip(plan, subnet.name), net, router])
    environment._ensure_container(cfg.container(S3_ROLE), _s3_args(cfg, plan, inet, s3_image),
                                  {environment.TWIN_S3_PORT: cfg.s3_port},
                                  progress)
    environment.ensure_mail_sink(cfg, s3_image, ["--network", internet_network(cfg), "--ip",
                                                 inet[environment.MAIL_ROLE]], progress)
    for vm in plan.vms.values():
        disks = _ensure_data_disks(cfg, vm, progress)
        environment._ensure_container(cfg.container(vm.lab_key), _host_args(cfg, plan, vm, host_image, disks), {}, progress)
    for vm in plan.vms.values():
        _keep_running(cfg.container(vm.lab_key), progress)
    progress.step("router: NSGs, public IPs and egress as the stack declares them")
    apply_router(cfg, plan)
    for vm in plan.vms.values():
        _route_through_router(cfg, plan, vm)
    progress.step("preparing hosts (deploy user, host keys)")
    known = []
    for vm in plan.vms.values():
        key = environment._prepare_host(cfg, vm.lab_key, pubkey)
        known += [f"{addr} {key}" for addr in (vm.private_ip, vm.public_ip) if addr]
        known += [f"[127.0.0.1]:{cfg.ports(vm.lab_key)[22]} {key}"] if vm.lab_key in environment.SERVICE_PORTS else []
    cfg.known_hosts.write_text("\n".join(known) + "\n")
    trusted = trust_lab_root(cfg, plan)
    _write_ssh_config(cfg)
    doc = _lab_inventory(cfg, plan, inet, app_image)
    progress.step("waiting for SSH on every host, through the jump host as Ansible goes")
    check_ssh(cfg, doc)
    progress.step("the lab's public root in every host's trust store")
    trusted()
    progress.step(f"S3 endpoint on 127.0.0.1:{cfg.s3_port}: the stack's buckets")
    if not wait_tcp("127.0.0.1", cfg.s3_port, 60):
        raise LabError(f"S3 endpoint {cfg.container(S3_ROLE)} not reachable on 127.0.0.1:{cfg.s3_port}")
    _wait_moto(cfg)
    _ensure_lab_admin(cfg)
    environment._retry(lambda: _ensure_buckets(cfg, plan), what="creating the stack's S3 buckets")
    environment._retry(lambda: _ensure_iam(cfg, plan), what="creating the stack's IAM users, policies and keys")
    progress.step("IMDS and Key Vault stand-in: each VM reads the secrets its identity is given")
    ensure_keyvault(cfg, plan, s3_image, progress)
    progress.step(f"lab {cfg.name!r} (twin of stack {stack.STACK!r}) is up; inventory: {cfg.inventory_file}")
    return doc


def stack_plan(cfg, remove_rules: list[str] | None = None, detach_nat: bool = False) -> stack.Plan:
    """The lab stack's plan again, with this lab's ranges and key (optionally broken on purpose)."""
    ranges = json.loads((cfg.state_dir / "twin-ranges.json").read_text())
    pubkey = cfg.key_file.with_suffix(".pub").read_text().strip()
    return stack.plan(ranges["address_space"], [f"{ADMIN_ADDRESS}/32"], list(_internet(ranges)["public_pool"]),
                      pubkey, remove_rules=remove_rules, detach_nat=detach_nat)


def internet_addresses(cfg) -> dict[str, str]:
    """The lab internet's machine, router and S3 addresses."""
    inet = _internet(json.loads((cfg.state_dir / "twin-ranges.json").read_text()))
    return {k: v for k, v in inet.items() if k != "public_pool"}
