"""The monitor config's shape as pydantic models: every key, its type and what is allowed, so a
bad config gets one line naming the file, the key path and what is allowed (never a traceback,
never silently accepted: `threshold: 2.7`, `enabled: "no"`, a negative `max_line_bytes`)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from trustops.monitors.events import TYPES_OF_INPUT
from trustops.monitors.rules import SEVERITIES, Duration, first_problem

INPUT_TYPES = tuple(TYPES_OF_INPUT)  # postgres, ufw, app (the benefits app's sign-in log, monitors/app.py)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class InputModel(_Strict):
    name: StrictStr = Field(min_length=1)
    type: Literal[INPUT_TYPES]  # type: ignore[valid-type]
    path: StrictStr | None = None
    format: Literal["stderr", "jsonlog"] = "stderr"
    log_line_prefix: StrictStr | None = None
    journal_command: list[StrictStr] | None = Field(default=None, min_length=1)
    only_dest: list[StrictStr] | None = None


class RuleOverride(BaseModel):
    """What the config may change in a rule of the rules file (other keys are checked there)."""
    model_config = ConfigDict(extra="allow")
    enabled: StrictBool = True
    threshold: StrictInt | None = Field(default=None, ge=1, le=10_000_000)
    window: Duration | None = None
    cooldown: Duration | None = None
    max_groups: StrictInt | None = Field(default=None, ge=1, le=10_000_000)
    severity: Literal[SEVERITIES] | None = None  # type: ignore[valid-type]
    allowlist: list[StrictStr] | None = None


class AlertmanagerModel(_Strict):
    url: StrictStr | None = Field(default=None, pattern=r"^https?://[^/\s]+")
    urls: list[StrictStr] | None = Field(default=None, min_length=1)   # every peer of a cluster
    ca_file: StrictStr | None = None


class MetricsModel(_Strict):
    listen: StrictStr | None = Field(default="127.0.0.1:9469", pattern=r"^[\w.:\[\]-]+:\d+$")


class ConfigModel(_Strict):
    instance: StrictStr | None = None
    inputs: list[InputModel] = Field(min_length=1)
    allowed_networks: list[StrictStr] | None = None
    allowlist: list[StrictStr] | None = None
    rules_file: StrictStr | None = None
    rules: dict[StrictStr, RuleOverride] | None = None
    alertmanager: AlertmanagerModel | None = None
    runbook_base_url: StrictStr | None = None
    metrics: MetricsModel | None = None
    state_dir: StrictStr | None = None
    start_at: Literal["end", "beginning"] = "end"
    max_line_bytes: StrictInt = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    poll_interval: Duration = "1s"
    resolve_after: Duration = "10m"
    rotate_wait: Duration = "5s"
    max_tracked_groups: StrictInt = Field(default=300_000, ge=1, le=100_000_000)
    max_alerts_per_rule: StrictInt = Field(default=100, ge=1, le=100_000)
    max_alerts: StrictInt = Field(default=1_000, ge=1, le=1_000_000)


def check(data) -> None:
    """Raises ValueError with one line when `data` is not a valid monitor config."""
    if not isinstance(data, dict):
        raise ValueError("(top): expected a mapping of keys")
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ValueError(first_problem(exc)) from None
    if model.poll_interval <= 0:
        raise ValueError(f"poll_interval: must be more than 0 (got {data.get('poll_interval')!r})")
