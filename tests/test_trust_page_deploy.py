"""The app host serves the trust page at /trust/ as static files from the latest report on the
control node (web_front role), with no app or database behind it; before any report, a page that
says the checks have not run yet."""
from __future__ import annotations

import datetime as dt
import http.client
import json
import shutil
import ssl
import subprocess

from tests.playbooks import playbook
from trustops.controls import engine, feed, report
from trustops.controls.catalogue import load
from trustops.controls.evidence import EvidenceStore


def get(lab_config, path: str) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=str(lab_config.state_dir / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", lab_config.ports("app")[443], context=ctx, timeout=20)
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_the_trust_page_is_served_statically_from_the_latest_report(lab, lab_config, converged):
    report_dir = lab_config.state_dir / "report"
    if report_dir.exists():           # a report left by an earlier run: publish "not run yet" first
        shutil.rmtree(report_dir)
        assert playbook(lab_config.inventory_file, "--tags", "trust_page", "--limit", "app").returncode == 0
    status, headers, body = get(lab_config, "/trust/")
    assert status == 200 and b"have not run yet" in body
    assert "max-age=63072000" in headers["strict-transport-security"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert get(lab_config, "/trust/trust.json")[0] == 404
    status, headers, _ = get(lab_config, "/trust")
    assert status == 301 and headers["location"] == "/trust/"

    store = EvidenceStore(lab_config.state_dir / "trust-test-evidence.jsonl")
    report.write(engine.statuses(load(), store), report_dir, dt.datetime.now(dt.timezone.utc), store)
    published = playbook(lab_config.inventory_file, "--tags", "trust_page", "--limit", "app")
    assert published.returncode == 0, published.stdout[-3000:]
    db = f"{lab_config.name}-db"
    subprocess.run(["docker", "exec", db, "systemctl", "stop", "postgresql"], check=True, timeout=120)
    try:                              # no database (and no app request) behind the page
        status, _, body = get(lab_config, "/trust/")
        assert status == 200 and body == (report_dir / report.PAGE_HTML).read_bytes()
        status, _, body = get(lab_config, "/trust/trust.json")
        assert status == 200 and feed.Feed.model_validate_json(body).controls
        assert json.loads(get(lab_config, "/trust/oscal-catalog.json")[2])["catalog"]["groups"]
        assert all(get(lab_config, f"/trust/{name}")[0] == 200 for name in report.PUBLISHED)
    finally:
        subprocess.run(["docker", "exec", db, "systemctl", "start", "postgresql"], check=True, timeout=120)
    assert get(lab_config, "/trust/internal-report.md")[0] == 404     # the internal report stays internal
