"""The app's front as a browser meets it, from the control node to the address the inventory
gives (the lab publishes it on loopback): HTTPS with the platform's or a public certificate, HTTP
redirected, HSTS, strict cookies, health and metrics not public; metrics reach the ops host only;
a TLS scan finding no protocol older than TLS 1.2 and no cipher without forward secrecy or AEAD."""
from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import xml.etree.ElementTree as ET

import pytest

from trustops.controls.evidence import CouldNotCheck
from trustops.wait import until

TLS13_AEAD = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")


class NotOk(Exception):
    """The front answered, but not 200 (a 502 while the app starts): not settled yet."""


def answered_ok(get, path: str):
    """The response to GET `path` when it is 200; NotOk (the status) otherwise."""
    response = get(path)
    if response.status != 200:
        raise NotOk(f"{path} answered {response.status}")
    return response


class _ByName(http.client.HTTPSConnection):
    """HTTPS to a name at a given address, as a browser after DNS: SNI, certificate check and Host
    header are the name's (asked by its bare address, the app answers 400, as Django's allowed
    hosts say; on the twin the public address is the app VM's public IP, which has no name)."""

    def __init__(self, name: str, address: str, port: int, **kwargs):
        super().__init__(name, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _front(site, name: str):
    """A GET against the host's public ports, TLS verified (name included) against the public CAs
    and the platform CA read from the host (a public certificate in the cloud, the platform's in
    the lab). It asks by name, as a browser would: the cloud's app_domain, or in the lab the host's
    own name (its certificate's and the app's default domain)."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=site.host(name).file(site.setting("app", "app_ca_path")).content_string)
    domain = site.vars.get("app_domain") or name

    def get(path: str, port: int = 443) -> http.client.HTTPResponse:
        address, published = site.public(name, port)
        conn = (_ByName(domain, address, published, context=ctx, timeout=15) if port == 443 else
                http.client.HTTPConnection(address, published, timeout=15))
        try:
            conn.request("GET", path, headers={"Host": domain})
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
            port = site.setting("web_front", "web_front_metrics_port")
            r = site.run(db, f"timeout 5 bash -c '</dev/tcp/{site.private_ip(app)}/{port}'")
            assert r.rc != 0, f"{db} reaches {app}'s metrics listener"


def _sslscan(target: str) -> ET.Element:
    """sslscan's (Debian's) XML report on `target` (host:port), run from the control node."""
    tool = shutil.which("sslscan")
    if not tool:
        raise CouldNotCheck("sslscan is missing on the control node (Debian's sslscan; `make test` installs it)")
    out = subprocess.run([tool, "--xml=-", "--no-colour", target], capture_output=True, text=True, timeout=300).stdout
    if "<?xml" not in out:
        raise CouldNotCheck(f"sslscan gave no report on {target}: {' '.join(out.split())[-200:]}")
    return ET.fromstring(out[out.index("<?xml"):])


@pytest.mark.probe("app-tls-scan")
def test_a_tls_scan_of_the_front_finds_nothing_weak(site, settle):
    """Only TLS 1.2 and 1.3 are enabled on the public front, and every cipher it accepts has forward
    secrecy (ECDHE, or TLS 1.3) and is AEAD (GCM or ChaCha20-Poly1305)."""
    for name in site.need("app"):
        address, port = site.public(name, 443)
        until(lambda: socket.create_connection((address, port), timeout=5).close() or True, settle,
              f"{name}: the front accepting connections on {address}:{port}", retry_on=(OSError,))
        root = _sslscan(f"{site.vars.get('app_domain') or address}:{port}")
        enabled = {p.get("type") + p.get("version") for p in root.iter("protocol") if p.get("enabled") == "1"}
        assert enabled == {"tls1.2", "tls1.3"}, f"{name}: protocols enabled: {sorted(enabled)}"
        accepted = [(c.get("sslversion"), c.get("cipher")) for c in root.iter("cipher")
                    if c.get("status") in ("accepted", "preferred")]
        assert accepted, f"{name}: the scan found no cipher accepted"
        weak = [(v, c) for v, c in accepted if not (c in TLS13_AEAD if v == "TLSv1.3" else
                v == "TLSv1.2" and c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c))]
        assert not weak, f"{name}: ciphers without forward secrecy or AEAD accepted: {weak}"
