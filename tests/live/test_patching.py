"""Patching as the hosts measure it (trustops/pending_updates.py, every 15 minutes), read from
Prometheus on the ops host: no security update pending past the policy's grace period on any host
or in any running container's image, and Postgres running the newest minor the mirror offers (or
behind it for less than the grace period). A measurement that failed or is old means the promise
could not be checked; one that says "pending too long" contradicts it."""
from __future__ import annotations

import pytest

from tests.live.test_monitoring import _query
from trustops.controls.evidence import CouldNotCheck
from trustops.pending_updates import GRACE_SECONDS, RUN_EVERY_MAX
from trustops.wait import until


def _label(m: dict) -> str:
    lab = m["metric"]
    return f"{lab.get('host')} {lab.get('scope', '')} {lab.get('image', '')}".strip()


def _measured(site, ops: str, hosts: list[str], scope: str, settle: float) -> list[dict]:
    """The scope's check results on every one of `hosts`, once each host has measured it (the
    first run follows a converge within two minutes); CouldNotCheck for a failed or old one."""
    h, prometheus = site.host(ops), site.prometheus_url(ops)

    def all_measured():
        got = _query(h, prometheus, f'trustops_updates_check_success{{scope="{scope}"}}', ops)
        return got if set(hosts) <= {m["metric"].get("host") for m in got} else None
    got = until(all_measured, settle, f"{ops}: {scope} pending updates measured on {', '.join(hosts)}",
                interval=5, retry_on=(CouldNotCheck,))
    failed = [f"{_label(m)}: {m['metric'].get('reason', '?')}" for m in got if m["value"][1] != "1"]
    old = _query(h, prometheus, f"time() - trustops_updates_run_timestamp_seconds > {RUN_EVERY_MAX}", ops)
    if failed or old:
        raise CouldNotCheck("pending updates not measured: " + "; ".join(failed + [f"{m['metric'].get('host')}: "
                                                                                 "last run too old" for m in old]))
    return got


def _pending_too_long(site, ops: str, scope: str) -> list[str]:
    expr = f'time() - trustops_pending_security_updates_since_timestamp_seconds{{scope="{scope}"}} > {GRACE_SECONDS}'
    return [f"{_label(m)}: pending for {float(m['value'][1]) / 86400:.1f} days"
            for m in _query(site.host(ops), site.prometheus_url(ops), expr, ops)]


@pytest.mark.probe("hosts-patched")
def test_no_security_update_pending_past_the_grace_period_on_any_host(site, settle):
    """apt's view on every host (after apt-get update against its mirror): no Debian-Security
    update pending for longer than the policy allows."""
    for ops in site.need("ops"):
        _measured(site, ops, list(site.hosts), "host", settle)
        late = _pending_too_long(site, ops, "host")
        assert not late, f"security updates pending past {GRACE_SECONDS // 86400} days: " + "; ".join(late)


@pytest.mark.probe("images-patched")
def test_no_security_update_pending_past_the_grace_period_in_running_images(site, settle):
    """The image of every running container on the app hosts (the app and its base), measured
    against the same mirror: no Debian-Security update pending for longer than the policy allows."""
    apps = site.need("app")
    for ops in site.need("ops"):
        got = _measured(site, ops, apps, "image", settle)
        assert all(m["metric"].get("image") for m in got), got
        late = _pending_too_long(site, ops, "image")
        assert not late, f"security updates pending past {GRACE_SECONDS // 86400} days: " + "; ".join(late)


@pytest.mark.probe("postgres-minor-current")
def test_postgres_runs_the_mirrors_newest_minor(site, settle):
    """The running Postgres server against the newest minor the mirror offers for its major: equal,
    or behind for less than the grace period (the next rolling patch)."""
    dbs = site.need("db")
    for ops in site.need("ops"):
        h, prometheus = site.host(ops), site.prometheus_url(ops)
        _measured(site, ops, dbs, "host", settle)
        versions = _query(h, prometheus, "trustops_postgres_version", ops)
        for db in dbs:
            have = {m["metric"].get("source"): int(float(m["value"][1])) for m in versions if m["metric"].get("host") == db}
            if not {"running", "candidate"} <= set(have):
                raise CouldNotCheck(f"{db}: Postgres versions not measured (have {sorted(have)})")
        late = _query(h, prometheus, f"time() - trustops_postgres_behind_since_timestamp_seconds > {GRACE_SECONDS}", ops)
        assert not late, "Postgres behind the mirror's minor past the grace period: " + "; ".join(
            f"{m['metric'].get('host')} {m['metric'].get('major')}" for m in late)
