#!/usr/bin/env python3
"""Runs ON an Azure VM: reads one Key Vault secret with the VM's managed identity and writes it to a
file only root (and one group) can read. This is how a host gets its own S3 writer key (the
inventory's `trustops_key_vault_secrets[<host>]` names the secrets, `trustops_key_vault_uri` the
vault); the program grants each VM's identity "Key Vault Secrets User" on exactly those secrets,
so the key never passes through the control node or any other host.

    host_secret.py --vault https://<vault>.vault.azure.net/ --secret backups-writer-access-key \\
                   --out /etc/trustops/backup.env --format aws-env --group postgres

Standard library only (Debian's python3): the roles copy it to the host and run it.
"""
from __future__ import annotations

import argparse
import grp
import http.client
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

IMDS = "http://169.254.169.254"
IMDS_API_VERSION = "2018-02-01"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
KEY_VAULT_API_VERSION = "7.4"
TIMEOUT_S = 10
CHANGED, UNCHANGED = "changed", "unchanged"


class HostSecretError(RuntimeError):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Neither IMDS nor Key Vault redirects a GET: a redirect is refused, not followed (followed,
    it would carry the bearer token wherever it points, plain HTTP included)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get_json(url: str, headers: dict[str, str], what: str) -> dict:
    req = urllib.request.Request(url, headers=headers)
    try:
        with _OPENER.open(req, timeout=TIMEOUT_S) as resp:   # noqa: S310 - fixed schemes
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        hint = {401: "the token was refused", 403: "this VM's identity has no role on the secret",
                404: "no such secret (or vault)"}.get(exc.code, "a redirect, refused" if 300 <= exc.code < 400
                                                      else str(exc.reason).splitlines()[0][:100])
        raise HostSecretError(f"{what}: HTTP {exc.code} ({hint})") from None
    except http.client.HTTPException as exc:    # not HTTP at all, a malformed address
        raise HostSecretError(f"{what}: no valid HTTP answer ({type(exc).__name__})") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise HostSecretError(f"{what}: the endpoint's TLS certificate is not trusted here "
                                  f"({reason.verify_message})") from None
        raise HostSecretError(f"{what}: unreachable ({reason})") from None
    except ValueError:
        raise HostSecretError(f"{what}: the answer is not JSON") from None


def managed_identity_token(imds: str = IMDS) -> str:
    query = urllib.parse.urlencode({"api-version": IMDS_API_VERSION, "resource": KEY_VAULT_RESOURCE})
    doc = _get_json(f"{imds}/metadata/identity/oauth2/token?{query}", {"Metadata": "true"},
                    "managed identity token (IMDS)")
    if not doc.get("access_token"):
        raise HostSecretError("managed identity token (IMDS): no access_token in the answer")
    return str(doc["access_token"])


def read_secret(vault_uri: str, name: str, imds: str = IMDS) -> str:
    if not name.replace("-", "").isalnum():
        raise HostSecretError(f"secret name {name!r}: letters, digits and dashes only")
    if any(c.isspace() or not c.isprintable() for c in vault_uri):
        raise HostSecretError(f"vault URI {vault_uri!r}: spaces or control characters")
    if urllib.parse.urlsplit(vault_uri).scheme.lower() != "https":
        # the bearer token and the secret never cross the network in clear (Key Vault is HTTPS only)
        raise HostSecretError(f"vault URI {vault_uri!r}: https:// only")
    url = f"{vault_uri.rstrip('/')}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}"
    doc = _get_json(url, {"Authorization": f"Bearer {managed_identity_token(imds)}"}, f"Key Vault secret {name}")
    if "value" not in doc:
        raise HostSecretError(f"Key Vault secret {name}: no value in the answer")
    return str(doc["value"])


def render(value: str, fmt: str, env_prefix: str = "") -> str:
    """raw: the value; aws-env: the writer key's JSON as <prefix>AWS_ACCESS_KEY_ID and
    <prefix>AWS_SECRET_ACCESS_KEY lines (the app's Bedrock key: BENEFITS_BEDROCK_AWS_...)."""
    if fmt == "raw":
        return value
    try:
        key = json.loads(value)
        return (f"{env_prefix}AWS_ACCESS_KEY_ID={key['aws_access_key_id']}\n"
                f"{env_prefix}AWS_SECRET_ACCESS_KEY={key['aws_secret_access_key']}\n")
    except (ValueError, KeyError, TypeError):
        raise HostSecretError("the secret is not an access key ({aws_access_key_id, aws_secret_access_key})") from None


def _unchanged(path: str, content: str, gid: int, mode: int) -> bool:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            return f.read() == content and (st.st_mode & 0o777) == mode and (gid == -1 or st.st_gid == gid)
    except (OSError, UnicodeDecodeError):
        return False


def write_private(path: str, content: str, group: str | None) -> bool:
    """Atomically, mode 0640 root:<group> (0600 without a group); never world-readable, even
    briefly. False when the file already holds exactly this (nothing written: the roles report
    a change only when the key changed)."""
    gid = grp.getgrnam(group).gr_gid if group else -1
    mode = 0o640 if group else 0o600
    if _unchanged(path, content, gid, mode):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".host-secret-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        if group:
            os.chown(tmp, -1, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vault", required=True, help="the vault URI (inventory: trustops_key_vault_uri)")
    ap.add_argument("--secret", required=True, help="a name from trustops_key_vault_secrets[<this host>]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=("raw", "aws-env"), default="raw")
    ap.add_argument("--group", help="the group that may read the file (mode 0640)")
    ap.add_argument("--env-prefix", default="", help="aws-env: a prefix for the two variable names")
    ap.add_argument("--imds", default=IMDS, help=argparse.SUPPRESS)   # tests: a local stand-in
    a = ap.parse_args(argv)
    try:
        content = render(read_secret(a.vault, a.secret, a.imds), a.format, a.env_prefix)
        changed = write_private(a.out, content, a.group)
    except (HostSecretError, KeyError, OSError) as exc:
        print(f"host_secret: {exc}", file=sys.stderr)
        return 1
    print(CHANGED if changed else UNCHANGED)   # the roles' changed_when reads this line
    return 0


if __name__ == "__main__":
    sys.exit(main())
