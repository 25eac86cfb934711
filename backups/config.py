"""The backup tool's config file, /etc/trustops/backup.json (root:postgres 0640, written by the
backups role), and the S3 key file it names: the tool finds both itself, so an operator's
`sudo -u postgres trustops-pgbackup list` works as the timer's run does."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG = Path("/etc/trustops/backup.json")
KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class ConfigError(RuntimeError):
    """A config or key file that cannot be used; the message is one line naming what is wrong."""


class BackupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    databases: list[str] = Field(min_length=1)
    bucket: str = Field(min_length=1)
    prefix: str = Field(min_length=1)
    region: str = Field(min_length=1)
    endpoint_url: str | None = None          # the lab's S3; null on AWS
    keep_days: int = Field(default=7, ge=1)
    metrics_file: str = ""                   # node-exporter textfile; one file per database beside it
    credentials_file: Path | None = None     # KEY=VALUE lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)

    def credentials(self) -> dict[str, str]:
        """The writer's key from credentials_file, as boto3 keyword arguments (empty: boto3's own chain)."""
        if self.credentials_file is None:
            return {}
        try:
            text = self.credentials_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the S3 key file {self.credentials_file} ({exc.strerror}): it is readable "
                              "by root and postgres; run as postgres (sudo -u postgres trustops-pgbackup ...)") from exc
        found = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep or name.strip() not in KEY_NAMES:
                raise ConfigError(f"{self.credentials_file} line {n}: expected one of {', '.join(KEY_NAMES)}=VALUE")
            found[name.strip().lower()] = value.strip().strip("'\"")
        if not {"aws_access_key_id", "aws_secret_access_key"} <= set(found):
            raise ConfigError(f"{self.credentials_file} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY")
        return found


def _one_line(path: Path, exc: ValidationError) -> str:
    missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
    other = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()
             if e["type"] != "missing"]
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) + other
    return f"config {path}: " + "; ".join(parts)


def load(path: Path = CONFIG, overrides: dict | None = None) -> BackupConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except PermissionError as exc:
        raise ConfigError(f"cannot read config {path} ({exc.strerror}): it is readable by root and postgres") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path} ({exc.strerror}): the backups role writes it on the db host, "
                          "or pass --config") from exc
    except ValueError as exc:
        raise ConfigError(f"cannot read config {path}: not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: expected a JSON object, got {type(raw).__name__}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return BackupConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(path, exc)) from None
