"""The operator's way into Prometheus and Alertmanager on the ops host. Both serve TLS under the
platform CA and ask for basic auth (the alerting role); the CA and the operator's password are made
at converge time in the environment's secrets directory, never in the repository. Alertmanager is
reached through its front, where anyone allowed by the firewall may only POST alerts."""
from __future__ import annotations

from pathlib import Path

import requests

from trustops.converge import role_default
from trustops.lab.environment import ALERTMANAGER_PORT, PROMETHEUS_PORT

OPERATOR_USER = role_default("alerting", "alerting_operator_user")
PASSWORD_NAME = role_default("alerting", "alerting_operator_password_name")


def ca_file(secrets_dir: Path) -> Path:
    """The platform CA the postgres role makes (group_vars: trustops_pki_dir)."""
    return Path(secrets_dir) / "pki" / "ca.crt"


def session(secrets_dir: Path, operator: bool = True) -> requests.Session:
    """requests that verify the ops host's certificate, as the operator (or as nobody: what the
    app host can do)."""
    s = requests.Session()
    # Not the environment's: REQUESTS_CA_BUNDLE (set on many machines) would override the session's
    # CA for every request, and a .netrc its credentials.
    s.trust_env = False
    s.verify = str(ca_file(secrets_dir))
    if operator:
        path = Path(secrets_dir) / PASSWORD_NAME
        try:
            s.auth = (OPERATOR_USER, path.read_text().strip())
        except OSError as exc:
            raise RuntimeError(f"operator password {path}: {exc.strerror} (converge the ops host first)") from exc
    return s


def lab_urls(cfg, host: str = "ops") -> tuple[str, str]:
    """Prometheus and Alertmanager's front of an ops host (the lab's name: ops, ops-2) as a lab
    publishes them on this machine."""
    ops = cfg.ports(host)
    return f"https://127.0.0.1:{ops[PROMETHEUS_PORT]}", f"https://127.0.0.1:{ops[ALERTMANAGER_PORT]}"
