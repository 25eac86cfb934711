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

from trustops.lab.system import write_atomically

ROOT_NAME = "trustops lab public root"
HOST_TRUST_PATH = "/usr/local/share/ca-certificates/trustops-lab-public-root.crt"
ROOT_DAYS = 3650
LEAF_DAYS = 397           # the Web PKI's longest leaf lifetime
RENEW_BEFORE_DAYS = 30


def _write_pair(crt: Path, key_file: Path, cert, key, uid: int | None = None) -> None:
    """The key (0600) first, then the certificate: a kill between the two leaves a pair that does
    not match, which _load refuses, so it is made again next time."""
    from cryptography.hazmat.primitives import serialization

    write_atomically(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), 0o600, uid)
    write_atomically(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644, uid)


def _load(crt: Path, key_file: Path):
    """(certificate, key) when both parse and the key is the certificate's, else None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    same = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (cert, key) if same else None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def root_file(state_dir: Path) -> Path:
    """Where the lab's public root certificate is (a client's trust anchor; ensure_root makes it)."""
    return state_dir / "webpki" / "root.crt"


def ensure_root(state_dir: Path) -> Path:
    """<state>/webpki/root.crt (and its key, 0600), made once and again only when missing, broken
    or due to end before a new leaf would; returns the certificate's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    crt = root_file(state_dir)
    d, key_file = crt.parent, crt.parent / "root.key"
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    loaded = _load(crt, key_file)
    if loaded and loaded[0].not_valid_after_utc - _now() > datetime.timedelta(days=LEAF_DAYS + RENEW_BEFORE_DAYS):
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
    _write_pair(crt, key_file, cert, key)
    return crt


def _current(crt: Path, key_file: Path, addresses: tuple[str, ...], root) -> bool:
    """The leaf at `crt` has its key, is for exactly `addresses`, is signed by this root (not one made
    before it under the same name), and is not due for renewal."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    loaded = _load(crt, key_file)
    if loaded is None:
        return False
    cert = loaded[0]
    try:
        cert.verify_directly_issued_by(root)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(a) for a in addresses}
            and cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_BEFORE_DAYS))


def ensure_server_cert(state_dir: Path, out_dir: Path, stem: str, address: str, *more: str,
                       uid: int | None = None) -> tuple[Path, Path]:
    """<out_dir>/<stem>.crt and .key (0600, owned by `uid` when given: the server's user) for
    `address` (and `more` addresses), from the lab's root; made again when the addresses changed
    or renewal is due."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root_crt = ensure_root(state_dir)
    root = x509.load_pem_x509_certificate(root_crt.read_bytes())
    crt, key_file = out_dir / f"{stem}.crt", out_dir / f"{stem}.key"
    addresses = (address, *more)
    if _current(crt, key_file, addresses, root):
        return crt, key_file
    root_key = serialization.load_pem_private_key((root_crt.parent / "root.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=LEAF_DAYS), root.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    _write_pair(crt, key_file, cert, key, uid)
    return crt, key_file


HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def trust_script(target: str = HOST_TRUST_PATH, bundle: str = HOST_BUNDLE) -> str:
    """A POSIX sh script, run in a host with `sh -c` and the root's PEM on standard input: the root
    in the system store, the store rebuilt unless the file is already there and the bundle already
    holds it (a rebuild that failed or was killed is done again on the next run)."""
    return f"""set -eu
new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat > "$new"
first=$(sed -n 2p "$new")
if cmp -s "$new" {target} && [ -n "$first" ] && grep -qxF "$first" {bundle} 2>/dev/null; then exit 0; fi
install -m 0644 "$new" {target}
update-ca-certificates >/dev/null
grep -qxF "$first" {bundle}
"""
