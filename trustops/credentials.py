"""`trustops credentials`: the age of every manual credential the platform holds, against the page's
promise of rotation every 90 days. It reads the secrets directory on the control node (the lab's
state dir, or ~/.trustops/<env>), where the playbooks keep what they generate:

  db-<role>-password      Postgres role passwords        (rotated when the file is replaced)
  deploy_ed25519          the deploy user's SSH key
  s3-credentials.json     the lab's S3 keys
  backup-writer.json, files-writer.json, bedrock-invoker.json, iam/*.json
                          the AWS access keys per purpose (the twin keeps them in iam/)
  pki/ca.key, pki/*.key   the platform CA and server keys (certificates: notBefore)
  field-key-*             application field-encryption keys

In the cloud the hosts' keys (the backups and files writers', the Bedrock invoker's, the field
key) live only in Key Vault: `--key-vault <name>` reads each secret's `updated` date there
(`az keyvault secret list`), the same check for all of them.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path

MAX_AGE_DAYS = 90
WARN_DAYS = 14          # "due soon" this many days before the limit
AWS_KEY = "aws access key"
KINDS = [("db-*-password", "postgres password"), ("deploy_ed25519", "ssh key"), ("s3-credentials.json", "s3 key"),
         ("backup-writer.json", AWS_KEY), ("files-writer.json", AWS_KEY), ("bedrock-invoker.json", AWS_KEY),
         ("iam/*.json", AWS_KEY), ("pki/ca.key", "ca key"), ("pki/*.key", "tls key"),
         ("field-key-*", "field encryption key")]
# Key Vault secret names (trustops.infra.vault: access_key_secret(purpose), FIELD_KEY_NAME versions)
VAULT_KINDS = [("*-writer-access-key", AWS_KEY), ("field-key-*", "field encryption key"), ("*", "key vault secret")]


class CredentialsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credential:
    name: str
    kind: str
    rotated: str          # ISO date of the last rotation
    age_days: int
    status: str           # ok | due soon | overdue


def _rotated(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)


def ages(secrets_dir: Path, max_age_days: int = MAX_AGE_DAYS, now: dt.datetime | None = None) -> list[Credential]:
    now = now or dt.datetime.now(dt.timezone.utc)
    found: dict[str, Credential] = {}
    files = sorted(p for p in secrets_dir.rglob("*") if p.is_file())
    for pattern, kind in KINDS:
        for path in files:
            rel = str(path.relative_to(secrets_dir))
            if rel in found or not fnmatch.fnmatch(rel, pattern):
                continue
            found[rel] = _credential(rel, kind, _rotated(path), now, max_age_days)
    return sorted(found.values(), key=lambda c: -c.age_days)


def _credential(name: str, kind: str, when: dt.datetime, now: dt.datetime, max_age_days: int) -> Credential:
    age = (now - when).days
    status = "overdue" if age > max_age_days else "due soon" if age > max_age_days - WARN_DAYS else "ok"
    return Credential(name, kind, when.date().isoformat(), age, status)


def vault_ages(listing: list, max_age_days: int = MAX_AGE_DAYS, now: dt.datetime | None = None) -> list[Credential]:
    """The secrets of `az keyvault secret list` output, aged by their `updated` date (a new
    version of a secret, as a rotation writes, updates it)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    out = []
    for item in listing:
        try:
            name = str(item.get("name") or item["id"].rstrip("/").rsplit("/", 1)[-1])
            when = dt.datetime.fromisoformat(str(item["attributes"]["updated"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CredentialsError(f"Key Vault listing: an entry without a name or attributes.updated: "
                                   f"{str(item)[:80]}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        kind = next(k for pattern, k in VAULT_KINDS if fnmatch.fnmatch(name, pattern))
        out.append(_credential(f"keyvault:{name}", kind, when, now, max_age_days))
    return sorted(out, key=lambda c: -c.age_days)


def vault_listing(vault: str) -> list:
    """`az keyvault secret list` for `vault` (names and dates only; no value is read)."""
    import subprocess

    try:
        proc = subprocess.run(["az", "keyvault", "secret", "list", "--vault-name", vault, "-o", "json"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"az keyvault secret list --vault-name {vault}: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CredentialsError(f"az keyvault secret list --vault-name {vault}: {last}")
    try:
        listing = json.loads(proc.stdout or "[]")
    except ValueError:
        raise CredentialsError(f"az keyvault secret list --vault-name {vault}: the answer is not JSON") from None
    if not isinstance(listing, list):
        raise CredentialsError(f"az keyvault secret list --vault-name {vault}: expected a list")
    return listing


def report(creds: list[Credential], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in creds], indent=2)
    lines = [f"{'credential':40} {'kind':22} {'rotated':10} {'age':>5}  status"]
    lines += [f"{c.name:40} {c.kind:22} {c.rotated:10} {c.age_days:>4}d  {c.status}" for c in creds]
    overdue = [c for c in creds if c.status == "overdue"]
    lines.append(f"{len(creds)} credentials, {len(overdue)} overdue (limit {MAX_AGE_DAYS} days)"
                 + ("; rotate them: runbooks/credential-rotation.md" if overdue else ""))
    return "\n".join(lines)
