"""`trustops drill attack`: a staged attack on the lab, so on-call can watch the paging path work
end to end. Every packet goes from one lab container to another over the lab's own network; no
other address is ever touched.

  1. from the app host: 12 wrong passwords for benefits_app, then the right one
     -> PostgresBruteForce (warning), PostgresLoginAfterFailures (critical, pages)
  2. from the ops host: 20 closed ports on the db host, then 5432
     -> UfwPortScan (warning), UfwDatabasePortProbe (warning)

It then follows Alertmanager's API and the ops host's alert sink, printing each alert as it
reaches Alertmanager and as it is delivered to a receiver, with the time since the attack.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import requests
import yaml

from lab.environment import LabConfig
from lab.system import LabError, Progress

EXPECTED = {"PostgresBruteForce": "ticket", "PostgresLoginAfterFailures": "pager", "UfwPortScan": "ticket",
            "UfwDatabasePortProbe": "ticket"}


@dataclass
class DrillResult:
    started: float
    at_alertmanager: dict[str, float] = field(default_factory=dict)   # alertname -> seconds after start
    delivered: dict[str, tuple[str, float]] = field(default_factory=dict)   # alertname -> (receiver, seconds)

    @property
    def missing(self) -> list[str]:
        return [a for a, r in EXPECTED.items() if self.delivered.get(a, ("", 0))[0] != r]


def _exec(cfg: LabConfig, role: str, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = ["docker", "exec"]
    for k, v in (env or {}).items():
        argv += ["-e", f"{k}={v}"]
    return subprocess.run(argv + [cfg.container(role), "bash", "-c", script], capture_output=True, text=True,
                          timeout=300)


def _addresses(cfg: LabConfig) -> dict[str, str]:
    try:
        inv = yaml.safe_load(cfg.inventory_file.read_text())["all"]["children"]
        return {role: next(iter(inv[role]["hosts"].values()))["private_ip"] for role in ("app", "db", "ops")}
    except (OSError, KeyError, TypeError, StopIteration) as exc:
        raise LabError(f"no lab inventory at {cfg.inventory_file}: run `trustops up` first") from exc


def stage(cfg: LabConfig, progress: Progress) -> float:
    """Runs the two attacks; returns the time they started."""
    ip = _addresses(cfg)
    password_file = cfg.state_dir / "db-benefits_app-password"
    if not password_file.exists():
        raise LabError(f"{password_file} is missing: converge the lab first (`trustops up`)")
    dsn = (f"host={ip['db']} dbname=benefits user=benefits_app sslmode=verify-full "
           f"sslrootcert=/etc/trustops/postgres-ca.crt connect_timeout=5")
    started = time.time()
    progress.step(f"attack 1: 12 wrong passwords, then the right one, app ({ip['app']}) -> db ({ip['db']}):5432")
    script = (f"for i in $(seq 12); do PGPASSWORD=wrong-$RANDOM psql {shlex.quote(dsn)} -c 'select 1' "
              f">/dev/null 2>&1; done; PGPASSWORD=$DRILL_PASSWORD psql {shlex.quote(dsn)} -Atc 'select 1'")
    proc = _exec(cfg, "app", script, {"DRILL_PASSWORD": password_file.read_text().strip()})
    if proc.stdout.strip() != "1":
        raise LabError(f"the drill's final login failed (is Postgres up on the db host?): {proc.stderr.strip()[-200:]}")
    progress.step(f"attack 2: 20 closed ports then 5432, ops ({ip['ops']}) -> db ({ip['db']})")
    ports = " ".join(str(p) for p in range(7001, 7021)) + " 5432"
    _exec(cfg, "ops", f"for p in {ports}; do timeout 0.3 bash -c \"</dev/tcp/{ip['db']}/$p\" 2>/dev/null; done; true")
    return started


def follow(cfg: LabConfig, started: float, progress: Progress, timeout: float = 120) -> DrillResult:
    """Watches Alertmanager and the ops host's sink until every expected alert is delivered."""
    result = DrillResult(started)
    am = f"http://127.0.0.1:{cfg.ports('ops')[9093]}/api/v2/alerts"
    deadline = time.time() + timeout
    while time.time() < deadline and result.missing:
        try:
            for a in requests.get(am, timeout=5).json():
                name = a["labels"].get("alertname", "")
                if name in EXPECTED and name not in result.at_alertmanager:
                    result.at_alertmanager[name] = time.time() - started
                    progress.step(f"  at Alertmanager (+{result.at_alertmanager[name]:.1f}s): {name} "
                                  f"[{a['labels'].get('severity')}] on {a['labels'].get('instance')}: "
                                  f"{a['annotations'].get('summary', '')}")
        except (requests.RequestException, ValueError) as exc:
            progress.step(f"  Alertmanager not answering yet ({type(exc).__name__}); runbook: TrustopsMonitorAlertsUndelivered")
        sink = _exec(cfg, "ops", "cat /var/log/trustops/alerts-*.jsonl 2>/dev/null || true").stdout
        for line in sink.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec["received_at"] < started:
                continue
            for a in rec["payload"].get("alerts", []):
                name = a["labels"].get("alertname", "")
                if name in EXPECTED and a["status"] == "firing" and name not in result.delivered:
                    result.delivered[name] = (rec["receiver"], rec["received_at"] - started)
                    progress.step(f"  delivered to {rec['receiver']} (+{rec['received_at'] - started:.1f}s): {name} "
                                  f"-> runbook {a['annotations'].get('runbook_url', '?').rsplit('/', 1)[-1]}")
        time.sleep(1)
    return result


def attack(cfg: LabConfig, progress: Progress | None = None, timeout: float = 120) -> DrillResult:
    progress = progress or Progress()
    started = stage(cfg, progress)
    progress.step("following Alertmanager and the ops host's alert sink (critical waits 5s to group, warning 30s)")
    return follow(cfg, started, progress, timeout)
