"""The lab: three Debian 12 hosts (app, db, ops) as systemd containers and an S3 endpoint, with an
inventory in the contract's shape (trustops.inventory), so the cloud's playbooks run here unchanged.

Everything the lab makes carries the Docker label `trustops.lab=<name>` and lives in its state
directory, so `down` removes exactly what `up` made and nothing else.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trustops.lab import images, webpki
from trustops.lab.system import LabError, Progress, docker_ready, ensure_docker, is_root, port_free, run, wait_tcp
from trustops import inventory
from trustops.converge import role_default

PROJECT_DIR = Path(__file__).resolve().parent.parent
APP_DIR = PROJECT_DIR / "app"
ROLES = inventory.ROLES
S3_REGION = "eu-central-1"
MOTO_VERSION = "5.2.5"

# Prometheus and Alertmanager, as the alerting role runs them (the ops host publishes both).
PROMETHEUS_PORT = role_default("alerting", "alerting_prometheus_port")
ALERTMANAGER_PORT = role_default("alerting", "alerting_alertmanager_port")
# Container ports each role publishes on 127.0.0.1 (host port = base + offset below).
SERVICE_PORTS = {
    "app": {22: 1, 443: 43, 80: 80},
    "db": {22: 2},
    "ops": {22: 3, PROMETHEUS_PORT: 90, ALERTMANAGER_PORT: 93},
    "ops-2": {22: 4, PROMETHEUS_PORT: 92, ALERTMANAGER_PORT: 94},   # the twin's second ops host
}
S3_PORT_OFFSET = 66
MAIL_ROLE = "mail"
MAIL_PORT = 2525          # the sink's SMTP port inside the lab (an unprivileged user binds it)
MAIL_UID = 10002          # the S3 image's unprivileged user, which the sink runs as
LAB_KINDS = ("flat", "twin")


def host_key(role: str, host: str) -> str:
    """The lab's name for a host's container and published ports: its role for the role's first
    host (app-1 -> app), its own name for the next ones (ops-2)."""
    return role if host == f"{role}-1" else host


def ops_keys(cfg: "LabConfig") -> list[str]:
    """Every ops host of the lab's inventory, by lab name (ops, ops-2): each runs an Alertmanager
    peer and its own local sink."""
    try:
        hosts = yaml.safe_load(cfg.inventory_file.read_text())["all"]["children"]["ops"]["hosts"]
        return [host_key("ops", h) for h in hosts] or ["ops"]
    except (OSError, KeyError, TypeError) as exc:
        raise LabError(f"no lab inventory at {cfg.inventory_file}: run `trustops up` first") from exc


@dataclass(frozen=True)
class LabConfig:
    """Where and how a lab runs. Two labs with other names and port bases can run side by side."""

    name: str = "trustops-lab"
    port_base: int = 2200
    state_dir: Path = field(default_factory=lambda: PROJECT_DIR / ".lab")
    # twin (the default): the `lab` Pulumi stack materialised (trustops.lab.twin): its subnets,
    # NSGs, egress, jump host, buckets and inventory, so the converge meets what Azure would;
    # flat: three hosts on one Docker network, every port published (still selectable)
    kind: str = field(default_factory=lambda: os.environ.get("TRUSTOPS_LAB_KIND", "twin"))

    @classmethod
    def from_env(cls) -> "LabConfig":
        name = os.environ.get("TRUSTOPS_LAB_NAME", "trustops-lab")
        base = int(os.environ.get("TRUSTOPS_LAB_PORT_BASE", "2200"))
        default_dir = PROJECT_DIR / (".lab" if name == "trustops-lab" else f".lab-{name}")
        return cls(name=name, port_base=base, state_dir=Path(os.environ.get("TRUSTOPS_LAB_DIR", default_dir)))

    def __post_init__(self) -> None:
        if not self.name.replace("-", "").isalnum() or not self.name[0].isalpha():
            raise LabError(f"lab name {self.name!r}: use letters, digits and '-' only")
        if not 1024 <= self.port_base <= 65000:
            raise LabError(f"port base {self.port_base} must be between 1024 and 65000")
        if self.kind not in LAB_KINDS:
            raise LabError(f"lab kind {self.kind!r} (TRUSTOPS_LAB_KIND): one of {LAB_KINDS}")
        # Absolute: the inventory hands this path to Ansible, which would resolve a relative one
        # against the playbook's folder and write the CA and read the report somewhere else.
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())

    def container(self, role: str) -> str:
        return f"{self.name}-{role}"

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    def ports(self, role: str) -> dict[int, int]:
        return {inner: self.port_base + off for inner, off in SERVICE_PORTS[role].items()}

    @property
    def s3_port(self) -> int:
        return self.port_base + S3_PORT_OFFSET

    @property
    def key_file(self) -> Path:
        return self.state_dir / "deploy_ed25519"

    @property
    def inventory_file(self) -> Path:
        return self.state_dir / "inventory.yml"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def s3_credentials_file(self) -> Path:
        return self.state_dir / "s3-credentials.json"

    @property
    def maildir(self) -> Path:
        """Where the lab's mail sink keeps what the app sent (trustops.lab.mailsink.messages)."""
        return self.state_dir / "mail"


# ---------------------------------------------------------------------------- helpers


@contextmanager
def _locked(cfg: LabConfig):
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cfg.state_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LabError(f"another trustops command is working on lab {cfg.name!r}; wait for it") from exc
        yield


def _inspect(name: str) -> dict | None:
    proc = run(["docker", "inspect", name], check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def _labelled(kind: str, cfg: LabConfig) -> list[str]:
    args = ["docker", kind, "ls", "-q", "--filter", f"label=trustops.lab={cfg.name}"]
    if kind == "container":
        args.insert(3, "-a")
    return run(args).stdout.split()


def _generate_key(path: Path) -> str:
    """A deploy key made now, on this machine; never committed (the state dir is git-ignored)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        path.with_suffix(".pub").write_text(pub.decode() + " trustops-lab-deploy\n")
    return path.with_suffix(".pub").read_text().strip()


def _ensure_network(cfg: LabConfig, progress: Progress) -> str:
    info = _inspect(cfg.network)
    if info is None:
        progress.step(f"creating lab network {cfg.network}")
        run(["docker", "network", "create", "--label", f"trustops.lab={cfg.name}", cfg.network])
        info = _inspect(cfg.network)
    return info["IPAM"]["Config"][0]["Subnet"]  # type: ignore[index]


def _ensure_container(name: str, run_args: list[str], ports: dict[int, int], progress: Progress) -> None:
    """Start `name` as configured; reuse it when its config label (a digest of the run arguments,
    image included, and ports) matches, else recreate it."""
    config_hash = hashlib.sha256(json.dumps([run_args, ports]).encode()).hexdigest()[:16]
    info = _inspect(name)
    if info is not None:
        if info["Config"]["Labels"].get("trustops.config") == config_hash:
            if not info["State"]["Running"]:
                progress.step(f"starting {name}")
                run(["docker", "start", name])
            return
        progress.step(f"{name} changed: recreating it")
        run(["docker", "rm", "-f", "-v", name])  # -v: its /var/lib/docker volume too
    for inner, outer in ports.items():
        if not port_free(outer):
            raise LabError(f"port 127.0.0.1:{outer} (for {name}:{inner}) is already in use; free it or "
                           f"set TRUSTOPS_LAB_PORT_BASE to move the lab's ports")
    publish = [a for inner, outer in ports.items() for a in ("-p", f"127.0.0.1:{outer}:{inner}")]
    progress.step(f"starting {name}")
    run(["docker", "run", "-d", "--name", name, "--label", f"trustops.config={config_hash}",
         *publish, *run_args])


def _host_run_args(cfg: LabConfig, role: str, image: str) -> list[str]:
    # systemd as PID 1 without --privileged (CAP_SYS_RESOURCE is not in this machine's bounding
    # set). /proc/sys stays read-only: a host's sysctl writes must never reach the machine's
    # own kernel.* / vm.* / fs.*; namespaced net.* keys are set here instead.
    return [
        "--label", f"trustops.lab={cfg.name}", "--label", f"trustops.role={role}",
        "--hostname", role, "--network", cfg.network, "--network-alias", role,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec,mode=1777",
        # read-only: the machine's kernel log, where this host's UFW LOG lines land (the monitor
        # follows it with `dmesg --follow-new`; ansible/README.md "UFW events to the monitors")
        "--device", "/dev/kmsg:/dev/kmsg:r",
        # Docker's data on a volume (ext4 here, as on an Azure VM's OS disk), not on the container's
        # own overlay: inside an overlay Docker falls back to the vfs driver, which copies the whole
        # image for every container (the app's migrations took 35 s a converge, its start 43 s).
        "-v", "/var/lib/docker",
        *[a for k, v in network_sysctls().items() for a in ("--sysctl", f"{k}={v}")],
        image,
    ]


def network_sysctls() -> dict[str, object]:
    """The hardening role's network-namespace sysctls (one list, read by both sides): a lab host
    cannot write /proc/sys, so the lab sets them when it creates the container."""
    defaults = PROJECT_DIR / "ansible" / "roles" / "hardening" / "defaults" / "main.yml"
    return dict(yaml.safe_load(defaults.read_text())["hardening_sysctl_net"])


_DEPLOY_USER_SCRIPT = r"""
set -eu
id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy
[ -d /home/deploy/.ssh ] || install -d -m 700 -o deploy -g deploy /home/deploy/.ssh
# Written once, as cloud-init does: a lab up on a running host leaves the files (and their inode
# and ctime, which AIDE watches) alone unless the key changed.
keys=/home/deploy/.ssh/authorized_keys sudoers=/etc/sudoers.d/90-deploy line='deploy ALL=(ALL) NOPASSWD:ALL'
key=$(cat)
if [ "$(cat "$keys" 2>/dev/null)" != "$key" ]; then
  printf '%s\n' "$key" > "$keys"; chown deploy:deploy "$keys"; chmod 600 "$keys"
fi
if [ "$(cat "$sudoers" 2>/dev/null)" != "$line" ]; then
  printf '%s\n' "$line" > "$sudoers"; chmod 440 "$sudoers"
fi
"""


def _prepare_host(cfg: LabConfig, role: str, pubkey: str) -> str:
    """The same state cloud-init leaves on an Azure VM: a `deploy` user with the key and sudo.
    Returns the host's own SSH host key line, read over docker (a trusted path, no TOFU)."""
    name = cfg.container(role)
    deadline = time.monotonic() + 60
    while True:
        proc = run(["docker", "exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"], check=False)
        if proc.returncode == 0:
            break
        stopped = run(["docker", "inspect", "-f", "{{.State.Running}}", name], check=False).stdout.strip() == "false"
        if time.monotonic() > deadline or stopped:
            logs = run(["docker", "logs", "--tail", "5", name], check=False).stdout.strip().replace("\n", " | ")
            raise LabError(f"{name} did not boot ({'it stopped' if stopped else 'no SSH host key after 60s'})"
                           f"{inotify_hint()}: {logs}")
        time.sleep(0.3)
    run(["docker", "exec", "-i", name, "sh", "-c", _DEPLOY_USER_SCRIPT], input=pubkey + "\n")
    return " ".join(proc.stdout.split()[:2])


INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_hint() -> str:
    """Why a systemd host may stop in its first second with no output: every systemd on this
    machine (each lab host is one) holds inotify instances, and the per-user limit is shared."""
    try:
        limit = int(INOTIFY_LIMIT.read_text())
        used = sum(1 for fd in Path("/proc").glob("[0-9]*/fd/*")
                   if _readlink(fd) == "anon_inode:inotify")
    except (OSError, ValueError):
        return ""
    if used < limit - 16:
        return ""
    return (f"; {used} inotify instances are open on this machine and fs.inotify.max_user_instances is {limit}, "
            f"so systemd cannot start: stop other labs or raise it (sysctl -w fs.inotify.max_user_instances=1024)")


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _wait_ssh(cfg: LabConfig, role: str, timeout: float = 60) -> None:
    """Log in as deploy with the key through the published port: the path Ansible will use."""
    import paramiko

    port = cfg.ports(role)[22]
    if not wait_tcp("127.0.0.1", port, timeout):
        raise LabError(f"sshd of {cfg.container(role)} not reachable on 127.0.0.1:{port} within {timeout:.0f}s")
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        client = paramiko.SSHClient()
        client.load_host_keys(str(cfg.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect("127.0.0.1", port=port, username="deploy", key_filename=str(cfg.key_file),
                           timeout=5, allow_agent=False, look_for_keys=False)
            _, out, _ = client.exec_command("sudo -n true && echo ok", timeout=10)
            if out.read().strip() == b"ok":
                return
            last = "sudo for deploy does not work"
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, reported below
            last = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        time.sleep(0.5)
    raise LabError(f"cannot log in to {cfg.container(role)} as deploy on 127.0.0.1:{port}: {last}")


def _s3_credentials(cfg: LabConfig) -> dict[str, str]:
    """Access keys for the lab's S3, generated at run time (moto accepts any, but nothing is fixed)."""
    path = cfg.s3_credentials_file
    if not path.exists():
        creds = {"aws_access_key_id": "LAB" + secrets.token_hex(8).upper(),
                 "aws_secret_access_key": secrets.token_urlsafe(30)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
    return json.loads(path.read_text())


def bucket_names(cfg: LabConfig) -> dict[str, str]:
    if cfg.kind == "twin":   # the stack's names, as its inventory says
        s3 = yaml.safe_load(cfg.inventory_file.read_text())["all"]["vars"]["trustops_s3"]
        return {"backups_bucket": s3["backups_bucket"], "files_bucket": s3["files_bucket"]}
    return {"backups_bucket": f"{cfg.name}-backups", "files_bucket": f"{cfg.name}-files"}


FLAT_S3_PORT = 5000     # moto's own default, plain HTTP (the flat lab)
TWIN_S3_PORT = 443      # HTTPS, as AWS's S3 endpoints (the twin)


def s3_port_inside(cfg: LabConfig) -> int:
    """The port the lab's S3 serves on inside its container (the machine reaches it at cfg.s3_port)."""
    return TWIN_S3_PORT if cfg.kind == "twin" else FLAT_S3_PORT


def s3_local_endpoint(cfg: LabConfig) -> tuple[str, str | bool]:
    """Where the control node reaches the lab's S3 (its port published on loopback) and what
    verifies it (botocore's `verify`): the twin serves S3 over HTTPS with a certificate from the
    lab's public root, as AWS does with a public CA's; the flat lab plain HTTP."""
    if cfg.kind == "twin":
        return f"https://127.0.0.1:{cfg.s3_port}", str(webpki.root_file(cfg.state_dir))
    return f"http://127.0.0.1:{cfg.s3_port}", True


def s3_local_vars(cfg: LabConfig) -> dict:
    """The inventory's record of s3_local_endpoint, for what reads the lab from its inventory (the
    live checks): the URL and botocore's `verify`."""
    url, verify = s3_local_endpoint(cfg)
    return {"trustops_lab_s3_local_url": url, "trustops_lab_s3_local_verify": verify}


def s3_client(cfg: LabConfig, service: str = "s3", credentials: dict | None = None):
    """A boto3 client for the lab's S3 (or its IAM, `service`), with the lab's key or `credentials`."""
    import boto3

    url, verify = s3_local_endpoint(cfg)
    return boto3.client(service, endpoint_url=url, verify=verify,
                        region_name=S3_REGION if service == "s3" else "us-east-1",
                        **(_s3_credentials(cfg) if credentials is None else credentials))


def _ensure_buckets(cfg: LabConfig) -> None:
    """The two buckets the cloud stack has, with the same encryption, versioning and blocks."""
    s3 = s3_client(cfg)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in bucket_names(cfg).values():
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def ensure_mail_sink(cfg: LabConfig, image: str, network_args: list[str], progress: Progress) -> None:
    """The lab's SMTP relay (trustops.lab.mailsink) in its own container, from the S3 image's
    Python; the program is mounted read-only and the Maildir is the state dir's `mail/`."""
    from trustops.lab import mailsink

    mailsink.prepare(cfg.maildir)
    for path in (cfg.maildir, *cfg.maildir.iterdir()):
        os.chown(path, MAIL_UID, MAIL_UID)
    args = ["--label", f"trustops.lab={cfg.name}", "--label", f"trustops.role={MAIL_ROLE}", *network_args,
            "--no-healthcheck", "--user", str(MAIL_UID), "--read-only",
            "-v", f"{Path(mailsink.__file__).resolve()}:/opt/mailsink.py:ro", "-v", f"{cfg.maildir}:/var/mail-sink",
            "--entrypoint", "/usr/bin/python3", image, "/opt/mailsink.py", "--port", str(MAIL_PORT),
            "--maildir", "/var/mail-sink"]
    _ensure_container(cfg.container(MAIL_ROLE), args, {}, progress)


def mail_relay_vars(address: str) -> dict[str, object]:
    """The app role's relay settings pointing at the lab's sink (the cloud operator sets their own)."""
    return {"app_smtp_host": address, "app_smtp_port": MAIL_PORT}


LAB_HEARTBEAT_VARS = {"heartbeat_timeout": 20, "alerting_heartbeat_interval": "5s",
                      "alerting_heartbeat_repeat_interval": "4s", "alerting_resend_delay": "2s"}


def _write_inventory(cfg: LabConfig, subnet: str, app_image: str) -> dict:
    hosts = []
    for role in ROLES:
        info = _inspect(cfg.container(role))
        ip = info["NetworkSettings"]["Networks"][cfg.network]["IPAddress"]  # type: ignore[index]
        hosts.append(inventory.Host(name=role, role=role, ansible_host="127.0.0.1",
                                    ansible_port=cfg.ports(role)[22], private_ip=ip, ssh_sources=(subnet,)))
    s3_info = _inspect(cfg.container("s3"))
    s3_ip = s3_info["NetworkSettings"]["Networks"][cfg.network]["IPAddress"]  # type: ignore[index]
    mail_ip = _inspect(cfg.container(MAIL_ROLE))["NetworkSettings"]["Networks"][cfg.network]["IPAddress"]  # type: ignore[index]
    site = inventory.Site(
        environment="lab", cloud="lab",
        networks={"app": subnet, "db": subnet, "ops": subnet, "admin": [subnet]},
        s3=inventory.S3(region=S3_REGION, endpoint_url=f"http://{s3_ip}:{FLAT_S3_PORT}", **bucket_names(cfg)),
        private_key_file=str(cfg.key_file),
        ssh_common_args=f"-o UserKnownHostsFile={cfg.known_hosts} -o StrictHostKeyChecking=yes",
        extra_vars={"trustops_lab_name": cfg.name,
                    "trustops_lab_published": {r: cfg.ports(r) for r in ROLES},
                    **s3_local_vars(cfg),
                    "trustops_lab_state_dir": str(cfg.state_dir),
                    "trustops_lab_app_image": app_image,
                    **mail_relay_vars(mail_ip),
                    # The dead man's switch on lab time: a stopped Prometheus or Alertmanager pages
                    # within a minute (tests/test_heartbeat_lab.py), not after ~9 minutes.
                    **LAB_HEARTBEAT_VARS},
    )
    inv = inventory.build(site, hosts)
    tmp = cfg.inventory_file.with_suffix(".tmp")
    tmp.write_text("# Written by `trustops lab up`; shape: trustops/inventory.py\n"
                   + yaml.safe_dump(inv, sort_keys=False))
    tmp.replace(cfg.inventory_file)
    return inv


# ---------------------------------------------------------------------------- commands


NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")


def _container_firewall_logs(progress: Progress) -> None:
    """A container's UFW LOG lines reach the machine's kernel log only with this switch on; the
    lab's monitors read them there (ansible/README.md). The one machine setting the lab changes."""
    if not NF_LOG_ALL_NETNS.exists():
        progress.step("note: this kernel has no nf_log_all_netns: lab hosts' UFW events will not be logged")
        return
    if NF_LOG_ALL_NETNS.read_text().strip() != "1":
        progress.step("enabling net.netfilter.nf_log_all_netns=1 on this machine (UFW logs from the lab's hosts)")
        try:
            NF_LOG_ALL_NETNS.write_text("1\n")
        except OSError as exc:
            progress.step(f"note: cannot enable nf_log_all_netns ({exc}): lab UFW events will not be logged")


def _same_kind(cfg: LabConfig) -> None:
    """A lab stays the kind it was made as: `up` of the other kind on its name would recreate its
    hosts under it (the default kind changed from flat to twin, and a running flat lab must not be
    swept away by a plain `lab up`)."""
    if not cfg.inventory_file.exists():
        return
    made = ((yaml.safe_load(cfg.inventory_file.read_text()) or {}).get("all", {}).get("vars", {})
            .get("trustops_lab_kind", "flat"))
    if made != cfg.kind:
        raise LabError(f"lab {cfg.name!r} is a {made} lab ({cfg.inventory_file}), not {cfg.kind}: set "
                       f"TRUSTOPS_LAB_KIND={made} to use it, or `trustops lab down` it first")


def up(cfg: LabConfig, progress: Progress | None = None) -> dict:
    """Bring the lab to its state; safe to run again (reuses what is already right)."""
    progress = progress or Progress()
    if not is_root() and not docker_ready():
        raise LabError("lab up needs root (it installs packages, starts dockerd and runs debootstrap): "
                       "run it as root or with sudo")
    with _locked(cfg):
        _same_kind(cfg)
        progress.step(f"lab {cfg.name!r}: checking Docker")
        ensure_docker(progress)
        base = images.base_image(progress)
        built = images.build_all(base, progress, {
            "host": {},
            "s3": {"build_args": {"MOTO_VERSION": MOTO_VERSION},
                   "prepare": images.wheelhouse(f"moto {MOTO_VERSION} (S3 image)", [f"moto[server]=={MOTO_VERSION}"],
                                                progress)},
            "app": {"context": APP_DIR,
                    "prepare": images.wheelhouse("app/requirements.txt (app image)",
                                                 ["-r", str(APP_DIR / "requirements.txt")], progress)}})
        host_image, s3_image, app_image = built["host"], built["s3"], built["app"]
        if cfg.kind == "twin":
            from trustops.lab import twin

            return twin.up(cfg, progress, {"host": host_image, "s3": s3_image, "app": app_image})
        subnet = _ensure_network(cfg, progress)
        _container_firewall_logs(progress)
        pubkey = _generate_key(cfg.key_file)
        for role in ROLES:
            _ensure_container(cfg.container(role), _host_run_args(cfg, role, host_image), cfg.ports(role), progress)
        s3_args = ["--label", f"trustops.lab={cfg.name}", "--label", "trustops.role=s3",
                   "--network", cfg.network, "--network-alias", "s3", s3_image]
        _ensure_container(cfg.container("s3"), s3_args, {FLAT_S3_PORT: cfg.s3_port}, progress)
        ensure_mail_sink(cfg, s3_image, ["--network", cfg.network, "--network-alias", MAIL_ROLE], progress)
        progress.step("preparing hosts (deploy user, host keys)")
        known = [f"[127.0.0.1]:{cfg.ports(role)[22]} {_prepare_host(cfg, role, pubkey)}" for role in ROLES]
        cfg.known_hosts.write_text("\n".join(known) + "\n")
        progress.step("waiting for SSH on all hosts")
        for role in ROLES:
            _wait_ssh(cfg, role)
        progress.step(f"S3 endpoint on 127.0.0.1:{cfg.s3_port}: creating buckets")
        if not wait_tcp("127.0.0.1", cfg.s3_port, 60):
            raise LabError(f"S3 endpoint {cfg.container('s3')} not reachable on 127.0.0.1:{cfg.s3_port}")
        _retry(lambda: _ensure_buckets(cfg), what="creating the lab's S3 buckets")
        inv = _write_inventory(cfg, subnet, app_image)
        progress.step(f"lab {cfg.name!r} is up; inventory: {cfg.inventory_file}")
        return inv


def _retry(fn, what: str, attempts: int = 20, delay: float = 0.5):
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the endpoint may still be starting
            if i == attempts - 1:
                raise LabError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            time.sleep(delay)


def down(cfg: LabConfig, progress: Progress | None = None) -> list[str]:
    """Remove the lab's containers, network, keys and state; images stay as a cache."""
    progress = progress or Progress()
    removed: list[str] = []
    if run(["docker", "info"], check=False, timeout=20).returncode == 0:
        with _locked(cfg):
            for cid in _labelled("container", cfg):
                name = run(["docker", "inspect", "-f", "{{.Name}}", cid]).stdout.strip().lstrip("/")
                progress.step(f"removing container {name}")
                run(["docker", "rm", "-f", "-v", cid])
                removed.append(name)
            for nid in _labelled("network", cfg):
                net = run(["docker", "network", "inspect", "-f", "{{.Name}}", nid]).stdout.strip()
                progress.step(f"removing network {net}")
                run(["docker", "network", "rm", nid])
                removed.append(net)
            for volume in _labelled("volume", cfg):     # the twin's data disks
                progress.step(f"removing volume {volume}")
                run(["docker", "volume", "rm", volume])
                removed.append(volume)
    if cfg.state_dir.exists():
        progress.step(f"removing state and keys in {cfg.state_dir}")
        for path in sorted(cfg.state_dir.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        cfg.state_dir.rmdir()
        removed.append(str(cfg.state_dir))
    return removed


def status(cfg: LabConfig) -> dict:
    """What runs now: each host's state and ports, and where the inventory is."""
    hosts = {}
    docker_ok = shutil.which("docker") is not None and run(["docker", "info"], check=False, timeout=20).returncode == 0
    twin_only = (*(k for k in SERVICE_PORTS if k not in ROLES), "router") if cfg.kind == "twin" else ()
    for role in (*ROLES, "s3", MAIL_ROLE, *twin_only):
        info = _inspect(cfg.container(role)) if docker_ok else None
        hosts[role] = {
            "container": cfg.container(role),
            "state": info["State"]["Status"] if info else "absent",
            "ports": ({s3_port_inside(cfg): cfg.s3_port} if role == "s3" else {} if role in ("router", MAIL_ROLE)
                      else cfg.ports(role)),
        }
    return {"lab": cfg.name, "docker": docker_ok, "hosts": hosts,
            "inventory": str(cfg.inventory_file) if cfg.inventory_file.exists() else None}
