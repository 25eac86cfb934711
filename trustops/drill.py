"""`trustops drill attack`: a staged attack on the lab, so on-call can watch the paging path work
end to end. Every packet goes from one lab container to another over the lab's own network; no
other address is ever touched.

  1. from the app host: 12 wrong passwords for benefits_app, then the right one
     -> PostgresBruteForce (warning), PostgresLoginAfterFailures (critical, pages)
  2. from the ops host: 20 closed ports on the db host, then 5432
     -> UfwPortScan (warning), UfwDatabasePortProbe (warning)

On the twin the stack's NSGs sit before UFW, as on Azure: the db NSG drops the ops host's probes
(its deny-all-other-inbound), so db's UFW never sees the scan and its two alerts cannot fire. The
drill works that out from the stack's plan, says which rule drops what, expects only what can
fire, and reports a held-back alert that arrives anyway (the twin would not be faithful).

It then follows Alertmanager's API and every ops host's alert sink, printing each alert as it
reaches Alertmanager and as it is delivered to a receiver, with the time since its attack ended.
An alert that was already firing before the drill is not notified again (Alertmanager
deduplicates while an alert fires; the monitor resolves it after 10 quiet minutes): the drill
says so and shows when it was delivered.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import requests
import yaml

from trustops.converge import role_default
from trustops import opsapi
from trustops.lab.environment import LabConfig, ops_keys
from trustops.lab.system import LabError, Progress
from trustops.wait import NotSettled, until

EXPECTED = {"PostgresBruteForce": ("ticket", "postgres"), "PostgresLoginAfterFailures": ("pager", "postgres"),
            "UfwPortScan": ("ticket", "scan"), "UfwDatabasePortProbe": ("ticket", "scan")}
LEAK_WINDOW = 45.0      # s after the scan a held-back alert is still watched for (group_wait 30 s + margin)
SCAN_PORTS = tuple(range(7001, 7021))      # closed on db: the port scan (UfwPortScan)
# the ports each scan alert needs to reach db's UFW (the Postgres port: UfwDatabasePortProbe)
_SCAN_ALERT_PORTS = {"UfwPortScan": SCAN_PORTS, "UfwDatabasePortProbe": (role_default("postgres", "postgres_port"),)}


@dataclass
class DrillResult:
    started: float
    expected: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(EXPECTED))
    held_back: dict[str, str] = field(default_factory=dict)                # alertname -> why it cannot fire
    ended: dict[str, float] = field(default_factory=dict)                  # attack -> when it ended
    at_alertmanager: dict[str, float] = field(default_factory=dict)        # alertname -> seconds after its attack
    delivered: dict[str, tuple[str, float]] = field(default_factory=dict)  # alertname -> (receiver, seconds after)
    already_firing: dict[str, tuple[str, float]] = field(default_factory=dict)  # delivered before the drill

    def since(self, alertname: str, when: float) -> float:
        return when - self.ended[EXPECTED[alertname][1]]

    @property
    def missing(self) -> list[str]:
        return [a for a, (r, _) in self.expected.items()
                if self.delivered.get(a, self.already_firing.get(a, ("", 0)))[0] != r]

    @property
    def leaked(self) -> list[str]:
        """Alerts delivered though the network drops their attack before the host."""
        return [a for a in self.held_back if a in self.delivered]


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


def _dropped_before_the_host(cfg: LabConfig, src_role: str, dst_role: str, ports: tuple[int, ...], plan=None) -> str | None:
    """On the twin: the NSG rule that drops every one of these TCP flows before `dst_role`'s host
    sees it (None: one gets through, or the flat lab, which has no NSGs)."""
    if cfg.kind != "twin":
        return None
    from trustops.lab import nsg, twin

    plan = plan or twin.load_plan(cfg)
    vms = {vm.lab_key: vm for vm in plan.vms.values()}
    src, dst = vms[src_role], vms[dst_role]
    drops = [nsg.dropped_by(plan, src.private_ip, dst, "tcp", port, src_vm=src) for port in ports]
    if not all(drops):
        return None
    where, rule = drops[0]
    return f"{where} {rule.name} (priority {rule.priority})"


def stage(cfg: LabConfig, progress: Progress, plan=None) -> DrillResult:
    """Runs the two attacks; returns when each began and ended. `plan`: the twin's stack as its
    router enforces it now (default: the one recorded at `lab up`)."""
    ip = _addresses(cfg)
    password_file = cfg.state_dir / "db-benefits_app-password"
    if not password_file.exists():
        raise LabError(f"{password_file} is missing: converge the lab first (`trustops up`)")
    pg = role_default("postgres", "postgres_port")
    dsn = (f"host={ip['db']} port={pg} dbname=benefits user=benefits_app sslmode=verify-full "
           f"sslrootcert={role_default('app', 'app_ca_path')} connect_timeout=5")
    result = DrillResult(time.time())
    progress.step(f"attack 1: 12 wrong passwords, then the right one, app ({ip['app']}) -> db ({ip['db']}):{pg}")
    script = (f"for i in $(seq 12); do PGPASSWORD=wrong-$RANDOM psql {shlex.quote(dsn)} -c 'select 1' "
              f">/dev/null 2>&1; done; PGPASSWORD=$DRILL_PASSWORD psql {shlex.quote(dsn)} -Atc 'select 1'")
    proc = _exec(cfg, "app", script, {"DRILL_PASSWORD": password_file.read_text().strip()})
    if proc.stdout.strip() != "1":
        raise LabError(f"the drill's final login failed (is Postgres up on the db host?): {proc.stderr.strip()[-200:]}")
    result.ended["postgres"] = time.time()
    progress.step(f"attack 2: {len(SCAN_PORTS)} closed ports then {pg}, ops ({ip['ops']}) -> db ({ip['db']})")
    for name, needs in _SCAN_ALERT_PORTS.items():
        dropped = _dropped_before_the_host(cfg, "ops", "db", needs, plan)
        if dropped:
            result.expected.pop(name, None)
            result.held_back[name] = f"the stack's NSG drops it before db's UFW: {dropped}"
            progress.step(f"  {name} cannot fire: {result.held_back[name]} (as on Azure)")
    ports = " ".join(str(p) for p in SCAN_PORTS) + f" {pg}"
    _exec(cfg, "ops", f"for p in {ports}; do timeout 0.3 bash -c \"</dev/tcp/{ip['db']}/$p\" 2>/dev/null; done; true")
    result.ended["scan"] = time.time()
    return result


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def sink_records(cfg: LabConfig) -> list[dict]:
    """What the lab's receivers got: every ops host's local sink (each Alertmanager peer delivers
    to its own; the cluster makes one of them notify), oldest first, each with its `peer`. A host
    that is down has its sink read when it is back."""
    records = []
    for key in ops_keys(cfg):
        try:
            out = _exec(cfg, key, "cat /var/log/trustops/alerts-*.jsonl 2>/dev/null || true").stdout
        except subprocess.TimeoutExpired:
            continue
        for line in out.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("payload"), dict):
                records.append({**rec, "peer": key})
    return sorted(records, key=lambda r: r.get("received_at", 0))


def _alerts_from_a_peer(operator, peers: list[str]) -> list[dict]:
    """Alertmanager's alerts from the first peer that answers (the cluster shares them)."""
    error: Exception = requests.ConnectionError("no Alertmanager peer")
    for url in peers:
        try:
            return operator.get(url, timeout=(2, 5)).json()
        except (requests.RequestException, ValueError) as exc:
            error = exc
    raise error


def follow(cfg: LabConfig, result: DrillResult, progress: Progress, timeout: float = 120) -> DrillResult:
    """Watches Alertmanager and the ops host's sink until every expected alert is delivered."""
    started = result.started
    peers = [opsapi.lab_urls(cfg, key)[1] + "/api/v2/alerts" for key in ops_keys(cfg)]
    operator = opsapi.session(cfg.state_dir)
    active: dict[str, str] = {}        # alertname -> fingerprint of the alert firing at Alertmanager

    def look() -> bool:
        """One look at Alertmanager and the sink; done when nothing is missing."""
        try:
            for a in _alerts_from_a_peer(operator, peers):
                name = a["labels"].get("alertname", "")
                if name not in EXPECTED or name in active:
                    continue
                active[name] = a["fingerprint"]
                updated = _epoch(a["updatedAt"])
                if updated >= started:
                    result.at_alertmanager[name] = result.since(name, updated)
                    progress.step(f"  at Alertmanager ({result.at_alertmanager[name]:+.1f}s): {name} "
                                  f"[{a['labels'].get('severity')}] on {a['labels'].get('instance')}: "
                                  f"{a['annotations'].get('summary', '')}")
                else:
                    progress.step(f"  at Alertmanager: {name} has been firing since {a['startsAt'][:19]}Z, "
                                  "before this drill (deduplicated: it is not notified again)")
        except (requests.RequestException, ValueError) as exc:
            progress.step(f"  Alertmanager not answering ({type(exc).__name__}); "
                          "runbook: TrustopsMonitorAlertsUndelivered")
        for rec in sink_records(cfg):
            for a in rec["payload"].get("alerts", []):
                name = a["labels"].get("alertname", "")
                if name not in EXPECTED or a["status"] != "firing" or name in result.delivered:
                    continue
                if rec["received_at"] >= started:
                    result.delivered[name] = (rec["receiver"], result.since(name, rec["received_at"]))
                    progress.step(f"  delivered to {rec['receiver']} ({result.delivered[name][1]:+.1f}s): {name} "
                                  f"-> runbook {a['annotations'].get('runbook_url', '?').rsplit('/', 1)[-1]}")
                elif active.get(name) == a.get("fingerprint"):
                    result.already_firing[name] = (rec["receiver"], rec["received_at"])
        # a held-back alert would come with the others' group_wait (30 s): watched that long for a leak
        return not result.missing and (not result.held_back or time.time() >= result.ended["scan"] + LEAK_WINDOW)

    try:
        until(look, timeout, "every expected alert delivered", interval=1)
    except NotSettled:
        pass   # the result lists what is missing; the caller reports it
    return result


def attack(cfg: LabConfig, progress: Progress | None = None, timeout: float = 120, plan=None) -> DrillResult:
    progress = progress or Progress()
    result = stage(cfg, progress, plan)
    progress.step("following Alertmanager and the ops host's alert sink (critical waits 5s to group, warning 30s)")
    return follow(cfg, result, progress, timeout)
