"""`trustops credentials`: the age of every manual credential the platform holds, against the page's
promise of rotation every 90 days. It reads the secrets directory on the control node (the lab's
state dir, or ~/.trustops/<env>), where the playbooks keep what they generate:

  db-<role>-password      Postgres role passwords        (rotated when the file is replaced)
  deploy_ed25519          the deploy user's SSH key
  s3-credentials.json     the lab's S3 keys / backup-writer.json the backup writer's AWS key
  pki/ca.key, pki/*.key   the platform CA and server keys (certificates: notBefore)
  field-key-*             application field-encryption keys

In the cloud the same secrets live in Key Vault; its `updated` dates are the ages to check
(`az keyvault secret list --vault-name <vault> --query "[].{name:name, updated:attributes.updated}"`).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path

MAX_AGE_DAYS = 90
WARN_DAYS = 14          # "due soon" this many days before the limit
KINDS = [("db-*-password", "postgres password"), ("deploy_ed25519", "ssh key"), ("s3-credentials.json", "s3 key"),
         ("backup-writer.json", "aws access key"), ("pki/ca.key", "ca key"), ("pki/*.key", "tls key"),
         ("field-key-*", "field encryption key")]


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
            when = _rotated(path)
            age = (now - when).days
            status = "overdue" if age > max_age_days else "due soon" if age > max_age_days - WARN_DAYS else "ok"
            found[rel] = Credential(rel, kind, when.date().isoformat(), age, status)
    return sorted(found.values(), key=lambda c: -c.age_days)


def report(creds: list[Credential], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in creds], indent=2)
    lines = [f"{'credential':40} {'kind':22} {'rotated':10} {'age':>5}  status"]
    lines += [f"{c.name:40} {c.kind:22} {c.rotated:10} {c.age_days:>4}d  {c.status}" for c in creds]
    overdue = [c for c in creds if c.status == "overdue"]
    lines.append(f"{len(creds)} credentials, {len(overdue)} overdue (limit {MAX_AGE_DAYS} days)"
                 + ("; rotate them: runbooks/credential-rotation.md" if overdue else ""))
    return "\n".join(lines)
