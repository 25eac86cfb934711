"""The app's front as a browser meets it, from the control node to the address the inventory
gives (the lab publishes it on loopback): HTTPS with the platform's or a public certificate, HTTP
redirected, HSTS, strict cookies, health and metrics not public; metrics reach the ops host only."""
from __future__ import annotations

import http.client
import ssl

import pytest

from trustops.wait import until

PLATFORM_CA = "/etc/trustops/postgres-ca.crt"   # the platform CA, on every host


class NotOk(Exception):
    """The front answered, but not 200 (a 502 while the app starts): not settled yet."""


def answered_ok(get, path: str):
    """The response to GET `path` when it is 200; NotOk (the status) otherwise."""
    response = get(path)
    if response.status != 200:
        raise NotOk(f"{path} answered {response.status}")
    return response


def _front(site, name: str):
    """A GET against the host's public ports, TLS verified (name included) against the public CAs
    and the platform CA read from the host (a public certificate in the cloud, the platform's in
    the lab). The cloud's app_domain is asked by name, as a browser would."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=site.host(name).file(PLATFORM_CA).content_string)

    def get(path: str, port: int = 443) -> http.client.HTTPResponse:
        address, published = site.public(name, port)
        address = site.vars.get("app_domain") or address
        conn = (http.client.HTTPSConnection(address, published, context=ctx, timeout=15) if port == 443 else
                http.client.HTTPConnection(address, published, timeout=15))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response
        finally:
            conn.close()
    return get


@pytest.mark.probe("app-https")
def test_the_front_is_https_only_with_strict_cookies(site, settle):
    """The app answers over HTTPS only (HTTP redirects), with HSTS of a year or more, every cookie
    HttpOnly, Secure and SameSite=Strict, and neither health nor metrics public."""
    for name in site.need("app"):
        get = _front(site, name)
        login = until(lambda: answered_ok(get, "/login/"), settle, f"{name}: the front answering /login/ with 200",
                      retry_on=(OSError, http.client.HTTPException, NotOk))
        hsts = login.getheader("Strict-Transport-Security") or ""
        assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000, \
            f"{name}: HSTS missing or shorter than a year: {hsts!r}"
        assert login.getheader("Server") == "nginx", f"{name}: the server says its version"
        cookies = login.headers.get_all("Set-Cookie") or []
        assert any(c.startswith("csrftoken=") for c in cookies), f"{name}: no cookie to check: {cookies}"
        for cookie in cookies:
            missing = [flag for flag in ("HttpOnly", "Secure", "SameSite=Strict") if flag not in cookie]
            assert not missing, f"{name}: cookie {cookie.split('=')[0]} lacks {', '.join(missing)}"
        plain = get("/login/", port=80)
        assert plain.status == 301 and (plain.getheader("Location") or "").startswith("https://"), \
            f"{name}: HTTP is not redirected to HTTPS ({plain.status} {plain.getheader('Location')})"
        for private in ("/healthz", "/metrics"):
            assert get(private).status == 403, f"{name}: {private} is reachable through the public front"


@pytest.mark.probe("app-https")
def test_app_metrics_reach_the_ops_host_only(site):
    """The app's metrics listener on the private network: the db host cannot connect (UFW), and
    Prometheus on ops scrapes it (checked by the alerting pipeline's check)."""
    for app in site.need("app"):
        for db in site.need("db"):
            r = site.run(db, f"timeout 5 bash -c '</dev/tcp/{site.private_ip(app)}/9470'")
            assert r.rc != 0, f"{db} reaches {app}'s metrics listener"
