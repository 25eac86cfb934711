"""The benefits app as deployed by site.yml on the test lab, beyond what tests/live checks on any
inventory (HTTPS only, HSTS, cookies, health and metrics not public, the TLS scan): staff pages
behind a login, old protocols refused, and a redeploy that switches blue/green without one failed
request."""
from __future__ import annotations

import http.client
import ssl
import subprocess
import threading
import time

import pytest

from tests import playbooks
from tests.playbooks import app_monitor_lines_read, host_of, playbook, recap


def https(lab_config, path: str, ctx: ssl.SSLContext | None = None) -> http.client.HTTPResponse:
    ctx = ctx or ssl.create_default_context(cafile=str(lab_config.state_dir / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", lab_config.ports("app")[443], context=ctx, timeout=20)
    conn.request("GET", path)
    return conn.getresponse()


def test_staff_pages_need_a_login(lab, lab_config, converged):
    r = https(lab_config, "/hr/employees/")
    assert r.status == 302 and r.getheader("Location").startswith("/login/")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_protocols_are_refused(lab, lab_config, converged, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https(lab_config, "/", ctx)


def live_slot(lab_config) -> str:
    return playbooks.app_live_slot(lab_config)


def test_a_redeploy_switches_slots_without_a_failed_request(lab, lab_config, converged):
    """A forced redeploy (same image, like a restart) while a client keeps asking for the login
    page: the other slot takes over behind a graceful nginx reload, and every request succeeds."""
    before = live_slot(lab_config)
    results: list[int | str] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                r = https(lab_config, "/login/")
                r.read()
                results.append(r.status)
            except OSError as exc:
                results.append(repr(exc))
            time.sleep(0.05)
    worker = threading.Thread(target=client)
    worker.start()
    try:
        run = playbook(lab_config.state_dir / "inventory.yml", "--limit", "app", "--tags", "app",
                       "-e", "app_force_redeploy=true")
    finally:
        time.sleep(2)
        stop.set()
        worker.join(30)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run.stdout)[host_of(lab_config, "app")]["failed"] == 0
    after = live_slot(lab_config)
    assert {before, after} == {"blue", "green"}
    failures = [r for r in results if r != 200]
    assert len(results) > 20 and not failures, (len(results), failures[:5])
    names = subprocess.run(["docker", "exec", lab_config.container("app"), "docker", "ps", "-a", "--format",
                            "{{.Names}}"], capture_output=True, text=True, check=True).stdout.split()
    assert f"benefits-{after}" in names and f"benefits-{before}" not in names


def test_a_failed_sign_in_reaches_the_monitor_on_the_app_host(lab, lab_config, converged):
    """The app writes the sign-in failure to its auth log on the host, and the monitor (another
    user, in group adm) reads it: the log's directory must hand its group down to the file."""
    import re
    import secrets
    from http.cookies import SimpleCookie

    from trustops.wait import until

    ctx = ssl.create_default_context(cafile=str(lab_config.state_dir / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", lab_config.ports("app")[443], context=ctx, timeout=20)
    conn.request("GET", "/login/")
    page = conn.getresponse()
    body = page.read().decode()
    cookie = SimpleCookie(page.getheader("Set-Cookie"))["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
    user = f"nobody-{secrets.token_hex(4)}"
    form = f"csrfmiddlewaretoken={token}&username={user}&password={secrets.token_urlsafe(12)}"
    conn.request("POST", "/login/", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie}",
        "Origin": f"https://127.0.0.1:{lab_config.ports('app')[443]}",
        "Referer": f"https://127.0.0.1:{lab_config.ports('app')[443]}/login/"})
    answer = conn.getresponse()
    assert answer.status in (200, 401, 429), (answer.status, answer.read()[:300])

    until(lambda: app_monitor_lines_read(lab_config), 60,
          "the app host's monitor reading the sign-in failure from the app's auth log")
    log = subprocess.run(["docker", "exec", lab_config.container("app"), "cat", "/var/log/benefits/auth.log"],
                         capture_output=True, text=True).stdout
    assert user in log and '"signin.failed"' in log
