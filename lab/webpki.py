"""The twin's stand-in for the public CAs a cloud image trusts: a root made once per lab, and
server certificates from it for the platform endpoints the lab serves (the Key Vault stand-in).
On Azure a VM reaches https://<vault>.vault.azure.net/ and checks its certificate against the
Debian image's trust store; in the lab the root is put in each host's store the same way
(/usr/local/share/ca-certificates + update-ca-certificates), so the hosts' programs verify the
endpoint with their default TLS settings and no lab-only option: a host without the root, or an
endpoint with a certificate for another name, fails as it would on Azure.

Keys are made at run time in the lab's state directory (git-ignored), never committed."""
from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

ROOT_NAME = "trustops lab public root"
HOST_TRUST_PATH = "/usr/local/share/ca-certificates/trustops-lab-public-root.crt"
ROOT_DAYS = 3650
LEAF_DAYS = 397           # the Web PKI's longest leaf lifetime
RENEW_BEFORE_DAYS = 30


def _write_private(path: Path, data: bytes, uid: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if uid is not None:
        os.chown(tmp, uid, uid)
    tmp.replace(path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def ensure_root(state_dir: Path) -> Path:
    """<state>/webpki/root.crt (and its key, 0600), made once; returns the certificate's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = state_dir / "webpki"
    d.mkdir(mode=0o700, exist_ok=True)
    crt, key_file = d / "root.crt", d / "root.key"
    if crt.exists() and key_file.exists():
        return crt
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_NAME)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt


def _current(crt: Path, address: str, root_crt: Path) -> bool:
    """The leaf at `crt` is for `address`, signed by this root, and not due for renewal."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        root = x509.load_pem_x509_certificate(root_crt.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return (cert.issuer == root.subject
            and ipaddress.ip_address(address) in sans.get_values_for_type(x509.IPAddress)
            and cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_BEFORE_DAYS))


def ensure_server_cert(state_dir: Path, out_dir: Path, stem: str, address: str,
                       uid: int | None = None) -> tuple[Path, Path]:
    """<out_dir>/<stem>.crt and .key (0600, owned by `uid` when given: the server's user) for
    `address`, from the lab's root; made again when the address changed or renewal is due."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root_crt = ensure_root(state_dir)
    crt, key_file = out_dir / f"{stem}.crt", out_dir / f"{stem}.key"
    if key_file.exists() and _current(crt, address, root_crt):
        return crt, key_file
    root = x509.load_pem_x509_certificate(root_crt.read_bytes())
    root_key = serialization.load_pem_private_key((root_crt.parent / "root.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), uid)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if uid is not None:
        os.chown(crt, uid, uid)
    return crt, key_file


# Run in a host over `docker exec` (sh -s): the root in the system store, once; the store is
# rebuilt only when the file is new or changed (update-ca-certificates takes a second or two).
TRUST_SCRIPT = f"""set -eu
new=$(mktemp)
cat > "$new"
if cmp -s "$new" {HOST_TRUST_PATH}; then rm -f "$new"; exit 0; fi
install -m 0644 "$new" {HOST_TRUST_PATH}
rm -f "$new"
update-ca-certificates >/dev/null
"""
