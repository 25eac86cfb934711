"""The lab for real: Debian 12 systemd hosts reached over SSH by Ansible, S3 with its buckets,
idempotent `up`, a `down` that removes exactly what `up` made, and clear one-line errors."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trustops.lab import environment, images, system
from trustops.lab.system import LabError, Progress
from trustops import inventory
from trustops.converge import ansible_env

PROJECT_DIR = Path(__file__).resolve().parent.parent
TRUSTOPS = [sys.executable, "-m", "trustops.cli"]


def _containers(cfg):
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=trustops.lab={cfg.name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(out)


def test_ansible_reaches_all_three_hosts(lab, lab_config):
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "-i", str(lab_config.inventory_file),
                           "all", "-m", "ansible.builtin.setup", "-a", "filter=ansible_distribution*", "-o"],
                          env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [n for role in ("app", "db", "ops") for n in lab["all"]["children"][role]["hosts"]]
    assert len(names) == (4 if lab_config.kind == "twin" else 3)   # the twin's stack has two ops hosts
    for name in names:   # the flat lab's role names, the twin's VMs (app-1, ops-2)
        line = next(l for l in proc.stdout.splitlines() if l.startswith(f"{name} |"))
        assert "SUCCESS" in line and '"ansible_distribution": "Debian"' in line
        assert '"ansible_distribution_major_version": "12"' in line


def test_inventory_file_keeps_the_contract(lab, lab_config):
    import yaml

    doc = yaml.safe_load(lab_config.inventory_file.read_text())
    inventory.validate(doc)
    assert doc == lab
    assert doc["all"]["vars"]["trustops_cloud"] == "lab"
    ips = {n: h["private_ip"] for r in ("app", "db", "ops") for n, h in doc["all"]["children"][r]["hosts"].items()}
    assert len(set(ips.values())) == len(ips) >= 3


def test_ports_published_on_loopback_only(lab, lab_config):
    # the twin publishes through its router only: its hosts sit on closed subnets
    for role in ("app", "db", "ops", "s3") if lab_config.kind == "flat" else ("router", "s3"):
        out = subprocess.run(["docker", "port", lab_config.container(role)], capture_output=True,
                             text=True, check=True).stdout
        bound = [l.split(" -> ")[1] for l in out.splitlines()]
        assert bound and all(b.startswith("127.0.0.1:") for b in bound), out


def test_hosts_run_systemd_and_have_their_own_host_keys(lab, lab_config):
    keys = set()
    hosts = [environment.host_key(r, n) for r in ("app", "db", "ops") for n in lab["all"]["children"][r]["hosts"]]
    for host in hosts:
        name = lab_config.container(host)
        pid1 = subprocess.run(["docker", "exec", name, "cat", "/proc/1/comm"], capture_output=True, text=True)
        assert pid1.stdout.strip() == "systemd"
        keys.add(subprocess.run(["docker", "exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                                capture_output=True, text=True, check=True).stdout.split()[1])
    assert len(keys) == len(hosts) >= 3


def test_s3_buckets_exist_and_encrypt(lab, lab_config):
    s3 = environment.s3_client(lab_config)
    for bucket in environment.bucket_names(lab_config).values():
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1"
        s3.put_object(Bucket=bucket, Key="probe.txt", Body=b"x", ServerSideEncryption="AES256")
        assert s3.head_object(Bucket=bucket, Key="probe.txt")["ServerSideEncryption"] == "AES256"


def test_second_up_changes_nothing(lab, lab_config, capsys):
    before = _containers(lab_config)
    key_before = lab_config.key_file.read_bytes()
    environment.up(lab_config, Progress())
    err = capsys.readouterr().err
    assert _containers(lab_config) == before
    assert lab_config.key_file.read_bytes() == key_before
    assert "starting" not in err and "building" not in err and "creating" not in err.replace("creating buckets", "")


def test_status_reports_running(lab, lab_config):
    st = environment.status(lab_config)
    assert all(h["state"] == "running" for h in st["hosts"].values()), st
    assert st["inventory"] == str(lab_config.inventory_file)


def test_port_taken_is_a_clear_error(lab, tmp_path):
    cfg = environment.LabConfig(name="trustops-porttest", port_base=2400, state_dir=tmp_path / "state")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", cfg.ports("app")[22]))
        blocker.listen()
        proc = subprocess.run([*TRUSTOPS, "lab", "up"], capture_output=True, text=True, cwd=PROJECT_DIR,
                              env=dict(os.environ, TRUSTOPS_LAB_NAME=cfg.name, TRUSTOPS_LAB_PORT_BASE="2400",
                                       TRUSTOPS_LAB_DIR=str(cfg.state_dir)), timeout=300)
    try:
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("trustops: error: port 127.0.0.1:2401") and "TRUSTOPS_LAB_PORT_BASE" in last
    finally:
        environment.down(cfg, Progress(quiet=True))
    assert _containers(cfg) == []


def test_debootstrap_failure_is_a_clear_error(lab, tmp_path):
    env = dict(os.environ, TRUSTOPS_LAB_NAME="trustops-dbtest", TRUSTOPS_LAB_DIR=str(tmp_path / "s"),
               TRUSTOPS_BASE_TAG="trustops-lab/bookworm-base:never-built",
               TRUSTOPS_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    proc = subprocess.run([*TRUSTOPS, "lab", "up"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "debootstrap failed" in last and "TRUSTOPS_DEBIAN_MIRROR" in last


def test_not_root_is_a_clear_error():
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    state = Path(tempfile.mkdtemp(prefix="trustops-nobody-"))
    os.chown(state, 65534, 65534)
    env = dict(os.environ, TRUSTOPS_LAB_NAME="trustops-nobody", TRUSTOPS_LAB_DIR=str(state),
               PYTHONPATH=str(PROJECT_DIR), HOME=str(state))
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *TRUSTOPS, "lab", "up"],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "needs root" in proc.stderr.strip().splitlines()[-1]


def test_docker_missing_and_not_installable(monkeypatch, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package docker.io' >&2\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.setattr(system, "is_root", lambda: True)
    with pytest.raises(LabError, match=r"docker.io missing and could not be installed \(E: Unable to locate"):
        system.ensure_docker(Progress(quiet=True))


@pytest.mark.lab   # with the lab's tests: it compares the test lab's containers, which a bring-up changes
def test_down_removes_containers_network_and_keys_only_of_its_lab(lab_config):
    """Runs last in this file: a second, throwaway lab is made and removed; the test lab stays."""
    cfg = environment.LabConfig(name="trustops-downtest", port_base=2500,
                                state_dir=PROJECT_DIR / ".lab-trustops-downtest")
    environment.up(cfg, Progress(quiet=True))
    others = _containers(lab_config)
    # app, db, ops, s3 and the mail sink; the twin adds its router (and what else the stack needs)
    made = {environment._inspect(c)["Config"]["Labels"]["trustops.role"] for c in _containers(cfg)}
    assert made >= {*environment.ROLES, "s3", environment.MAIL_ROLE, *(("router",) if cfg.kind == "twin" else ())}, made
    assert cfg.key_file.exists()
    proc = subprocess.run([*TRUSTOPS, "lab", "down"], capture_output=True, text=True, cwd=PROJECT_DIR,
                          env=dict(os.environ, TRUSTOPS_LAB_NAME=cfg.name, TRUSTOPS_LAB_PORT_BASE="2500",
                                   TRUSTOPS_LAB_DIR=str(cfg.state_dir), TRUSTOPS_LAB_KIND=cfg.kind))
    assert proc.returncode == 0, proc.stderr
    assert _containers(cfg) == []
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label=trustops.lab={cfg.name}"],
                          capture_output=True, text=True).stdout.split()
    assert nets == [] and not cfg.state_dir.exists()
    assert _containers(lab_config) == others


def test_a_host_that_cannot_start_systemd_names_the_inotify_limit(monkeypatch, tmp_path):
    """Seen on this machine with many labs: systemd exits in its first second with no output
    because the shared inotify instance limit is used up; the error must say so."""
    limit = tmp_path / "max_user_instances"
    monkeypatch.setattr(environment, "INOTIFY_LIMIT", limit)
    limit.write_text("1\n")
    hint = environment.inotify_hint()
    assert "fs.inotify.max_user_instances is 1" in hint and "sysctl -w" in hint
    limit.write_text("100000000\n")
    assert environment.inotify_hint() == ""


def test_a_relative_state_dir_is_made_absolute(monkeypatch, tmp_path):
    """The inventory hands the state dir to Ansible, which resolves a relative path against the
    playbook's folder: the CA and the published report would land elsewhere."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRUSTOPS_LAB_DIR", ".lab-rel")
    cfg = environment.LabConfig.from_env()
    assert cfg.state_dir == tmp_path / ".lab-rel"
    assert cfg.inventory_file.is_absolute()


@pytest.mark.parametrize("made, asked", [("flat", "twin"), ("twin", "flat")])
def test_a_lab_of_the_other_kind_is_refused_not_recreated(monkeypatch, tmp_path, made, asked):
    """The default kind became twin: a plain `lab up` on a running flat lab's name would recreate
    its hosts as the twin's. It is refused in one line naming the kind, before Docker is touched."""
    import yaml

    def building(*a, **kw):
        raise AssertionError("lab up went on to build the lab")
    monkeypatch.setattr(images, "base_image", building)
    monkeypatch.setattr(environment, "ensure_docker", lambda progress: None)
    cfg = environment.LabConfig(name="trustops-kindtest", port_base=2450, state_dir=tmp_path / "s", kind=asked)
    cfg.state_dir.mkdir()
    lab_vars = {"trustops_cloud": "lab", **({"trustops_lab_kind": "twin"} if made == "twin" else {})}
    cfg.inventory_file.write_text(yaml.safe_dump({"all": {"vars": lab_vars}}))
    with pytest.raises(LabError, match=rf"is a {made} lab .* TRUSTOPS_LAB_KIND={made} to use it"):
        environment.up(cfg, Progress(quiet=True))


def test_the_images_build_side_by_side_and_a_failed_one_loses_the_others_nothing(monkeypatch):
    """build_all runs the builds at once (cold, one after another took 160 s of `lab up`), lets
    each finish, and raises the first failure in the order asked."""
    import threading
    import time

    running, peak, finished, lock = [0], [0], [], threading.Lock()

    def fake_build(name, base, progress, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
            finished.append(name)
        if name in ("s3", "app"):
            raise LabError(f"building {name} image failed: no mirror")
        return f"trustops-lab/{name}:{kwargs.get('tag', 'x')}"

    monkeypatch.setattr(images, "build", fake_build)
    with pytest.raises(LabError, match="building s3 image failed"):
        images.build_all("base", Progress(quiet=True), {"host": {}, "s3": {}, "app": {}})
    assert peak[0] == 3 and sorted(finished) == ["app", "host", "s3"]
    monkeypatch.setattr(images, "build", lambda name, base, progress, **kw: f"img-{name}-{sorted(kw)}")
    assert images.build_all("base", Progress(quiet=True), {"host": {}, "app": {"context": 1}}) == \
        {"host": "img-host-[]", "app": "img-app-['context']"}


def test_the_debootstrap_base_gets_the_dpkg_setting_of_debians_docker_image(tmp_path):
    images._as_in_debians_docker_image(tmp_path)
    assert (tmp_path / "etc/dpkg/dpkg.cfg.d/docker-apt-speedup").read_text() == "force-unsafe-io\n"
