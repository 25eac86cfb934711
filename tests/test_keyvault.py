"""The twin's IMDS and Key Vault stand-in (trustops.lab.keyvault) on loopback, without a lab, read
by the hosts' own program (trustops.infra.host_secret): a token bound to the asking address, each
identity reads exactly the secrets the lab stack's role assignments give it, 403 otherwise, 404
for an unknown secret; a rotated value is served at once and the host's file changes only then."""
from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from trustops.infra import host_secret
from trustops.infra.vault import KEY_VAULT_SECRETS_USER, access_key_secret
from trustops.lab import keyvault, stack, webpki

ROOT = Path(__file__).resolve().parent.parent
HOST_SECRET = ROOT / "infra" / "host_secret.py"
KEYVAULT = ROOT / "lab" / "keyvault.py"


def _pubkey() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="module")
def plan():
    return stack.plan("172.27.0.0/16", ["192.88.99.1/32"], [f"172.26.0.{i}" for i in range(10, 20)], _pubkey())


def _key() -> str:
    return json.dumps({"aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(),
                       "aws_secret_access_key": secrets.token_urlsafe(30)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vault(plan, tmp_path):
    """The stand-in as its own process (as in its container), loopback standing for `as_vm`'s link."""
    values = {access_key_secret(p): _key() for p in ("backups", "files", "bedrock")}
    values["field-key-1"] = secrets.token_urlsafe(32)
    config = tmp_path / "config.json"

    def write(as_vm: str, values=values, network_rules=("127.0.0.0/8",)):
        doc = keyvault.build_config(plan, values, KEY_VAULT_SECRETS_USER)
        vm = next(v for v in plan.vms.values() if v.computer_name == as_vm)
        doc["vms"] = {"127.0.0.1": vm.principal_id}          # loopback is this VM's address
        doc["network_rules"] = list(network_rules)
        tmp = tmp_path / ".config.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(config)
        return doc
    write("db-1")
    imds, port = _free_port(), _free_port()
    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "vault-tls", "127.0.0.1")
    root = tmp_path / "webpki" / "root.crt"
    proc = subprocess.Popen([sys.executable, str(KEYVAULT), "--config", str(config), "--host", "127.0.0.1",
                             "--imds-port", str(imds), "--vault-port", str(port), "--tls-cert", str(crt),
                             "--tls-key", str(key)], stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read())
            import time
            time.sleep(0.1)

    def read(secret: str, out: Path, *extra: str, trust: Path | None = root, scheme: str = "https"):
        # the lab's root as the system store's (SSL_CERT_FILE: OpenSSL's default verify file)
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        if trust is not None:
            env["SSL_CERT_FILE"] = str(trust)
        return subprocess.run([sys.executable, str(HOST_SECRET), "--vault", f"{scheme}://127.0.0.1:{port}/",
                               "--imds", f"http://127.0.0.1:{imds}", "--secret", secret, "--out", str(out),
                               "--format", "aws-env", *extra], capture_output=True, text=True, timeout=60, env=env)
    yield {"write": write, "read": read, "values": values, "imds": imds, "port": port, "proc": proc, "root": root}
    proc.terminate()
    proc.wait(10)


def test_the_plan_gives_each_host_exactly_the_inventorys_secrets(plan):
    doc = keyvault.build_config(plan, {}, KEY_VAULT_SECRETS_USER)
    by_principal = {v.principal_id: v.computer_name for v in plan.vms.values()}
    got = {by_principal[p]: names for p, names in doc["readers"].items()}
    assert got == plan.inventory["all"]["vars"]["trustops_key_vault_secrets"]
    assert got["db-1"] == [access_key_secret("backups")]
    assert set(doc["network_rules"]) == {s.cidr for s in plan.subnets.values()}
    assert set(doc["vms"]) == {v.private_ip for v in plan.vms.values()}


def test_db_reads_the_backups_writers_key_and_app_the_files_and_bedrock_keys(vault, tmp_path):
    out = tmp_path / "backup.env"
    proc = vault["read"](access_key_secret("backups"), out)
    assert proc.returncode == 0 and proc.stdout.strip() == host_secret.CHANGED, proc.stderr
    key = json.loads(vault["values"][access_key_secret("backups")])
    assert out.read_text() == (f"AWS_ACCESS_KEY_ID={key['aws_access_key_id']}\n"
                               f"AWS_SECRET_ACCESS_KEY={key['aws_secret_access_key']}\n")
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    vault["write"]("app-1")
    files = vault["read"](access_key_secret("files"), tmp_path / "files.env")
    bedrock = vault["read"](access_key_secret("bedrock"), tmp_path / "bedrock.env", "--env-prefix", "BENEFITS_BEDROCK_")
    assert files.returncode == 0 and bedrock.returncode == 0, files.stderr + bedrock.stderr
    b = json.loads(vault["values"][access_key_secret("bedrock")])
    assert (tmp_path / "bedrock.env").read_text().startswith(f"BENEFITS_BEDROCK_AWS_ACCESS_KEY_ID={b['aws_access_key_id']}\n")


def test_another_hosts_secret_is_403_in_host_secrets_one_line(vault, tmp_path):
    out = tmp_path / "files.env"
    proc = vault["read"](access_key_secret("files"), out)       # db asks for the app's key
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip() == (f"host_secret: Key Vault secret {access_key_secret('files')}: HTTP 403 "
                                   "(this VM's identity has no role on the secret)")
    unknown = vault["read"]("no-such-secret", out)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr and len(unknown.stderr.splitlines()) == 1


def test_outside_the_vaults_network_rules_is_403(vault, tmp_path):
    vault["write"]("db-1", network_rules=("10.0.0.0/8",))
    proc = vault["read"](access_key_secret("backups"), tmp_path / "x")
    assert proc.returncode == 1 and "HTTP 403" in proc.stderr


def test_imds_wants_its_header_and_knows_only_the_stacks_vms(vault):
    url = f"http://127.0.0.1:{vault['imds']}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 400
    doc = vault["write"]("db-1")
    doc["vms"] = {"10.9.9.9": "someone"}
    (Path(vault["proc"].args[3])).write_text(json.dumps(doc))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Metadata": "true"}), timeout=5)
    assert err.value.code == 400 and b"Identity not found" in err.value.read()
    # a token is needed, and a made-up one is refused
    req = urllib.request.Request(f"https://127.0.0.1:{vault['port']}/secrets/field-key-1?api-version=7.4",
                                 headers={"Authorization": "Bearer " + secrets.token_urlsafe(32)})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5, context=ssl.create_default_context(cafile=vault["root"]))
    assert err.value.code == 401


def test_unchanged_key_leaves_the_file_alone_and_a_rotated_one_is_written(vault, tmp_path):
    out = tmp_path / "backup.env"
    assert vault["read"](access_key_secret("backups"), out).stdout.strip() == host_secret.CHANGED
    inode, mtime = out.stat().st_ino, out.stat().st_mtime_ns
    again = vault["read"](access_key_secret("backups"), out)
    assert again.returncode == 0 and again.stdout.strip() == host_secret.UNCHANGED
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == (inode, mtime)
    os.chmod(out, 0o644)                                     # a loosened mode is repaired
    assert vault["read"](access_key_secret("backups"), out).stdout.strip() == host_secret.CHANGED
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    rotated = {**vault["values"], access_key_secret("backups"): _key()}
    vault["write"]("db-1", values=rotated)
    assert vault["read"](access_key_secret("backups"), out).stdout.strip() == host_secret.CHANGED
    assert json.loads(rotated[access_key_secret("backups")])["aws_access_key_id"] in out.read_text()


def test_stand_in_down_is_one_line_and_back_it_serves(vault, tmp_path):
    vault["proc"].terminate()
    vault["proc"].wait(10)
    proc = vault["read"](access_key_secret("backups"), tmp_path / "x")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "managed identity token (IMDS): unreachable" in proc.stderr


def test_the_vault_is_https_only_and_its_certificate_is_checked(vault, tmp_path):
    """Key Vault is HTTPS: host_secret refuses a plain URI before any token is asked for, and a
    host that does not trust the endpoint's root (a cloud image without it, a wrong endpoint)
    stops with one line and writes nothing."""
    out = tmp_path / "backup.env"
    plain = vault["read"](access_key_secret("backups"), out, scheme="http")
    assert plain.returncode == 1 and not out.exists()
    assert plain.stderr.strip() == f"host_secret: vault URI 'http://127.0.0.1:{vault['port']}/': https:// only"
    other_root = tmp_path / "other"
    other_root.mkdir()
    untrusted = vault["read"](access_key_secret("backups"), out, trust=webpki.ensure_root(other_root))
    assert untrusted.returncode == 1 and not out.exists() and len(untrusted.stderr.strip().splitlines()) == 1
    assert (f"Key Vault secret {access_key_secret('backups')}: the endpoint's TLS certificate is not trusted here"
            in untrusted.stderr), untrusted.stderr
    assert vault["read"](access_key_secret("backups"), out).returncode == 0     # with the lab's root: served


def test_a_plain_or_silent_client_holds_no_vault_thread(vault, tmp_path):
    """Plain HTTP to the vault's port gets no answer and the stand-in goes on serving; a client
    that connects and never finishes the handshake does not block the next one."""
    with socket.create_connection(("127.0.0.1", vault["port"]), timeout=5) as plain:
        plain.sendall(b"GET /secrets/field-key-1?api-version=7.4 HTTP/1.0\r\n\r\n")
        plain.settimeout(15)
        try:
            answer = plain.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
        assert not answer.startswith(b"HTTP/"), answer
    silent = socket.create_connection(("127.0.0.1", vault["port"]), timeout=5)
    try:
        proc = vault["read"](access_key_secret("backups"), tmp_path / "backup.env")
        assert proc.returncode == 0, proc.stderr
    finally:
        silent.close()
    assert vault["proc"].poll() is None


def test_the_lab_root_makes_a_new_leaf_for_a_new_address_and_keeps_keys_private(tmp_path):
    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.2")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "webpki" / "root.key").stat().st_mode & 0o777) == "0o600"
    first = crt.read_bytes()
    assert webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.2")[0].read_bytes() == first
    assert webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.9")[0].read_bytes() != first
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(crt.read_bytes())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "webpki" / "root.crt").read_bytes()))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["172.30.0.9"]


def test_a_leaf_for_several_addresses_names_them_all_and_a_changed_set_makes_a_new_one(tmp_path):
    """The twin's S3 is one server for the VMs (its internet address) and the control node
    (loopback): one leaf names both, and is made again when either changes."""
    from cryptography import x509

    crt, _ = webpki.ensure_server_cert(tmp_path, tmp_path, "s3", "172.30.0.3", "127.0.0.1")
    first = crt.read_bytes()
    sans = x509.load_pem_x509_certificate(first).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(a) for a in sans.get_values_for_type(x509.IPAddress)) == ["127.0.0.1", "172.30.0.3"]
    assert webpki.ensure_server_cert(tmp_path, tmp_path, "s3", "172.30.0.3", "127.0.0.1")[0].read_bytes() == first
    assert webpki.ensure_server_cert(tmp_path, tmp_path, "s3", "172.30.0.3")[0].read_bytes() != first
    assert webpki.root_file(tmp_path).read_bytes() == (tmp_path / "webpki" / "root.crt").read_bytes()


def test_a_new_root_or_a_broken_key_makes_a_new_leaf_and_a_leftover_never_loosens_the_key(tmp_path):
    from cryptography import x509

    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.2")
    first = crt.read_bytes()
    for path in (tmp_path / "webpki").iterdir():        # the root lost: made again, under the same name
        path.unlink()
    root = webpki.ensure_root(tmp_path)
    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.2")
    assert crt.read_bytes() != first
    x509.load_pem_x509_certificate(crt.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(root.read_bytes()))
    key.write_text("")                                   # a key cut short: the pair is made again
    (tmp_path / ".leaf.key.tmp").write_text("x")         # a killed run's leftover, world-readable
    os.chmod(tmp_path / ".leaf.key.tmp", 0o644)
    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "leaf", "172.30.0.2")
    assert webpki._load(crt, key) is not None and oct(key.stat().st_mode & 0o777) == "0o600"
    root.write_bytes(root.read_bytes()[:100])            # a half-written root: made again
    assert webpki._load(webpki.ensure_root(tmp_path), tmp_path / "webpki" / "root.key") is not None


def _stub_update(bin_dir: Path, works: bool, target: Path, bundle: Path) -> Path:
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "update-ca-certificates"
    stub.write_text("#!/bin/sh\n" + (f"cat {target} >> {bundle}\necho run >> {bin_dir}/runs\n" if works else "exit 1\n"))
    stub.chmod(0o755)
    return stub


def test_the_trust_script_rebuilds_a_store_a_failed_run_left_without_the_root(tmp_path):
    """The script lab up runs in each host (dash, as Debian's sh), with update-ca-certificates
    stubbed: a failed rebuild leaves the file in place, and the next run rebuilds anyway."""
    import shutil

    if not shutil.which("dash"):
        pytest.skip("dash is Debian's /bin/sh (scripts/bootstrap installs it)")
    root = webpki.ensure_root(tmp_path).read_bytes()
    target, bundle = tmp_path / "store" / "lab-root.crt", tmp_path / "bundle.crt"
    target.parent.mkdir()
    bundle.write_text("")
    script = webpki.trust_script(str(target), str(bundle))

    def run(works: bool):
        _stub_update(tmp_path / "bin", works, target, bundle)
        env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
        return subprocess.run(["dash", "-c", script], input=root, capture_output=True, env=env, timeout=60)

    assert run(works=False).returncode != 0 and target.read_bytes() == root
    assert run(works=True).returncode == 0 and root.decode() in bundle.read_text()
    assert run(works=True).returncode == 0                       # in place and in the bundle: nothing to do
    assert (tmp_path / "bin" / "runs").read_text().count("run") == 1


def test_the_roles_name_the_programs_secrets():
    from trustops.converge import role_default

    assert role_default("backups", "backups_vault_secret") == access_key_secret("backups")
    assert role_default("app", "app_files_vault_secret") == access_key_secret("files")
    from trustops.infra.bedrock import PURPOSE
    assert role_default("app", "app_bedrock_vault_secret") == access_key_secret(PURPOSE)


def test_router_sends_imds_to_the_stand_in_and_the_vault_only_behind_the_service_endpoint(plan):
    """The router's rules (trustops.lab.nsg) for the stand-in in its namespace load in iptables;
    IMDS is DNATed for every VM, the vault is reached only by VMs whose subnet has the service
    endpoint, after their outbound NSG chains."""
    from trustops.lab import nsg

    app, db, ops = (plan.vms[f"trustops-{r}-vm"] for r in ("app", "db", "ops"))
    site = nsg.RouterSite(internet_if="eth0", subnet_ifs={s: f"eth{i + 1}" for i, s in enumerate(plan.subnets)},
                          internet_cidr="172.26.0.0/24", machine_ip="172.26.0.1", admin_ip="192.88.99.1",
                          router_ip="172.26.0.2", nameservers=(), jump_ip=app.private_ip,
                          keyvault=True, keyvault_endpoint_vms=(app.name, db.name))
    rules = nsg.router_rules(plan, site)
    proc = subprocess.run(["unshare", "-n", "iptables-restore", "--test"], input=rules, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + rules
    for vm in (app, db, ops):
        assert (f"-A PREROUTING -s {vm.private_ip}/32 -d {keyvault.IMDS_ADDRESS}/32 -p tcp --dport 80 -j DNAT "
                f"--to-destination 172.26.0.2:{keyvault.IMDS_PORT}") in rules
    vault_in = [l for l in rules.splitlines() if l.startswith("-A INPUT") and f"--dport {keyvault.VAULT_PORT}" in l]
    assert [l.split(" -s ")[1].split("/")[0] for l in vault_in] == [app.private_ip, db.private_ip]
    db_chain = vault_in[1].rsplit(" -j ", 1)[1]
    assert [l.rsplit(" -j ", 1)[1] for l in rules.splitlines() if l.startswith(f"-A {db_chain} ")][-1] == "ACCEPT"
    assert any(l.startswith(f"-A {db_chain} -j OUT-") for l in rules.splitlines())
    assert nsg.router_rules(plan, nsg.RouterSite(**{**site.__dict__, "keyvault": False})).count(
        str(keyvault.IMDS_PORT)) == 0
