"""Application-level encryption of highly sensitive fields (bank account numbers, national IDs):
AES-256-GCM from `cryptography`, with versioned keys from a key provider (Azure Key Vault in the
cloud, a directory of key files in the lab and in tests). A stored value names the key version
that sealed it, so keys rotate without downtime: add a version, make it current, re-encrypt
(`manage.py reencrypt_fields`), retire the old one.

Stored form: "gcm2:<version>:<base64url(nonce || ciphertext+tag)>". The field's model and name and
the row's identity are bound in as associated data, so a value copied into another column or
another row does not decrypt. "gcm1" values (model and field only) are read by the migration that
re-seals them as gcm2, never by the application.
"""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "gcm2"
LEGACY_PREFIX = "gcm1"
_VERSION = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class KeyError_(LookupError):
    """A key version is missing or malformed."""


class FileKeyProvider:
    """Keys as files `<dir>/<version>.key` (32 random bytes, base64); `<dir>/current` names the
    version new values are sealed with. Made at run time, never committed."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def current_version(self) -> str:
        try:
            version = (self.dir / "current").read_text().strip()
        except OSError as exc:
            raise KeyError_(f"no current key version in {self.dir}") from exc
        return version

    def key(self, version: str) -> bytes:
        if not _VERSION.match(version):
            raise KeyError_(f"malformed key version {version!r}")
        try:
            key = base64.b64decode((self.dir / f"{version}.key").read_text().strip())
        except (OSError, ValueError) as exc:
            raise KeyError_(f"key version {version!r} is not available in {self.dir}") from exc
        if len(key) != 32:
            raise KeyError_(f"key version {version!r} is not 256 bits")
        return key

    def add_version(self, version: str, make_current: bool = True) -> None:
        """Creates a new random key version (rotation step 1)."""
        if not _VERSION.match(version) or (self.dir / f"{version}.key").exists():
            raise KeyError_(f"key version {version!r} is malformed or exists already")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / f"{version}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(AESGCM.generate_key(256)).decode())
        if make_current:
            tmp = self.dir / "current.tmp"
            tmp.write_text(version)
            tmp.replace(self.dir / "current")


class KeyVaultKeyProvider:
    """Keys as Key Vault secrets `field-key-<version>` (base64); the secret `field-key-current`
    names the current version. Reads with the VM's managed identity."""

    def __init__(self, vault_url: str) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        self.client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
        self._cache: dict[str, bytes] = {}

    def current_version(self) -> str:
        return self.client.get_secret("field-key-current").value.strip()

    def key(self, version: str) -> bytes:
        if version not in self._cache:
            if not _VERSION.match(version):
                raise KeyError_(f"malformed key version {version!r}")
            self._cache[version] = base64.b64decode(self.client.get_secret(f"field-key-{version}").value)
        return self._cache[version]


class FieldCipher:
    def __init__(self, provider) -> None:
        self.provider = provider

    def encrypt(self, plaintext: str, context: str) -> str:
        version = self.provider.current_version()
        nonce = os.urandom(12)
        sealed = AESGCM(self.provider.key(version)).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}:{version}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, context: str, prefix: str = PREFIX) -> str:
        found, version, blob = self.parse(stored)
        if found != prefix:
            raise ValueError(f"a {found} value where {prefix} is expected")
        raw = base64.urlsafe_b64decode(blob)
        return AESGCM(self.provider.key(version)).decrypt(raw[:12], raw[12:], context.encode()).decode()

    @staticmethod
    def parse(stored: str) -> tuple[str, str, str]:
        parts = stored.split(":", 2)
        if len(parts) != 3 or parts[0] not in (PREFIX, LEGACY_PREFIX):
            raise ValueError("not an encrypted value")
        return parts[0], parts[1], parts[2]

    def version_of(self, stored: str) -> str:
        return self.parse(stored)[1]

    def needs_rotation(self, stored: str) -> bool:
        return self.version_of(stored) != self.provider.current_version()
