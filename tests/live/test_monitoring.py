"""The alerting pipeline as the ops host sees it: Prometheus scrapes every target, has the
platform's rule groups, and knows its Alertmanager. Asked on the ops host itself with promtool
(Prometheus listens on the private network only), so the same check runs on the lab and in a
cloud stack reached through a jump host."""
from __future__ import annotations

import json
import shlex

import pytest

from tests.live.conftest import output
from trustops.controls.evidence import CouldNotCheck
from trustops.converge import role_default
from trustops.wait import until

RULE_GROUPS = ("trustops-monitor", "trustops-backups", "trustops-hosts", "trustops-app", "trustops-watchdog",
               "trustops-meta")


# Asked on the ops host as ops-local (Prometheus serves TLS and basic auth; the alerting role makes
# that password on the host and nothing else knows it). Debian 12's promtool can do neither.
_ASK = """import base64, json, ssl, sys, urllib.parse, urllib.request
url, expr, user, secret, ca = sys.argv[1:]
req = urllib.request.Request(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
try:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{open(secret).read().strip()}".encode()).decode())
except FileNotFoundError:
    pass
ctx = ssl.create_default_context(cafile=ca) if url.startswith("https:") else None
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=10, context=ctx))["data"]["result"]))
"""


def _query(h, prometheus: str, expr: str, name: str) -> list[dict]:
    """The query's result, asked on the ops host; CouldNotCheck when Prometheus does not answer
    (still starting, the host not reached)."""
    args = [prometheus, expr] + [role_default("alerting", k) for k in
                                 ("alerting_local_user", "alerting_local_password_file", "alerting_tls_dir")]
    args[-1] += "/ca.crt"
    out = output(h, "python3 -c " + " ".join(shlex.quote(a) for a in [_ASK, *args]), name)
    return json.loads(out or "[]")


def _pipeline_problems(site, name: str) -> list[str]:
    h, prometheus = site.host(name), site.prometheus_url(name)
    up = _query(h, prometheus, "up", name)
    problems = [f"target {m['metric'].get('job')}/{m['metric'].get('host', m['metric'].get('instance'))} is down"
                for m in up if m["value"][1] != "1"]
    jobs = {m["metric"].get("job") for m in up}
    wanted = ["node", "trustops-monitor", "prometheus", "alertmanager"] + (["benefits-app"] if site.role("app") else [])
    problems += [f"nothing scraped for job {job}" for job in wanted if job not in jobs]
    scraped = {(m["metric"].get("job"), m["metric"].get("host")) for m in up}
    problems += [f"node exporter of {host} not scraped" for host in site.hosts if ("node", host) not in scraped]
    groups = {m["metric"].get("rule_group", "").rsplit(";", 1)[-1]
              for m in _query(h, prometheus, "prometheus_rule_group_rules", name)}
    problems += [f"rule group {g} is not loaded" for g in RULE_GROUPS if g not in groups]
    peers = len(site.need("ops"))   # every ops host runs an Alertmanager of the cluster: each gets every alert
    known = sum(float(m["value"][1]) for m in _query(h, prometheus, "prometheus_notifications_alertmanagers_discovered",
                                                      name))
    if known < peers:
        problems.append(f"Prometheus knows {int(known)} of the {peers} Alertmanagers")
    return problems


@pytest.mark.probe("alerting-pipeline")
def test_prometheus_scrapes_everything_and_alerts_through_alertmanager(site, settle):
    """Prometheus on the ops host scrapes every target, has the platform's alert rules and knows
    its Alertmanager. Right after a converge a target can still be starting: the check waits
    (bounded) for the pipeline to settle, and fails naming what is still wrong after that."""
    for name in site.need("ops"):
        def settled():
            problems = _pipeline_problems(site, name)
            assert not problems, f"{name}: " + "; ".join(problems)
            return True
        until(settled, settle, f"{name}: every target up, every rule group loaded, every Alertmanager known",
              interval=3, retry_on=(AssertionError, CouldNotCheck))


@pytest.mark.probe("alerting-pipeline")
def test_the_apps_own_metrics_reach_prometheus(site, settle):
    """The app's own series reach Prometheus on ops (its error ratio and data-subject request
    deadlines feed the platform's alert rules)."""
    site.need("app")
    for name in site.need("ops"):
        h, prometheus = site.host(name), site.prometheus_url(name)
        until(lambda: _query(h, prometheus, "benefits_dsr_overdue", name), settle,
              f"{name}: the app's benefits_dsr_overdue in Prometheus", interval=3, retry_on=(CouldNotCheck,))
