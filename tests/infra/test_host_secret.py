"""Issue 15, defect 4: the path by which a host gets its own writer key: the VM's managed identity
(IMDS) reads one Key Vault secret. Run against a loopback stand-in for IMDS and Key Vault that
grants this "VM" exactly one secret, as the program's role assignment does."""
from __future__ import annotations

import json
import os
import secrets
import ssl
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trustops.lab import webpki

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "host_secret.py"
GRANTED = "backups-writer-access-key"


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    token = secrets.token_urlsafe(16)
    key = {"aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(), "aws_secret_access_key": secrets.token_urlsafe(30)}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            seen.append(self.path)
            if self.path.startswith("/metadata/identity/oauth2/token"):
                ok = self.headers.get("Metadata") == "true" and "resource=https%3A%2F%2Fvault.azure.net" in self.path
                return self._send(200, {"access_token": token}) if ok else self._send(400, {})
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(401, {})
            if self.path.startswith(f"/secrets/{GRANTED}?"):
                return self._send(200, {"value": json.dumps(key)})
            return self._send(403, {"error": {"code": "Forbidden"}})

    # IMDS in plain HTTP on the link, the vault in HTTPS with a certificate from a root made now
    # (trustops.lab.webpki) that the "host" trusts as its system store (SSL_CERT_FILE)
    crt, tls_key = webpki.ensure_server_cert(tmp_path, tmp_path, "vault", "127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(crt, tls_key)
    imds, vault = ThreadingHTTPServer(("127.0.0.1", 0), Handler), ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    vault.socket = tls.wrap_socket(vault.socket, server_side=True)
    for server in (imds, vault):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "webpki" / "root.crt"))
    yield (f"https://127.0.0.1:{vault.server_address[1]}", f"http://127.0.0.1:{imds.server_address[1]}"), key, seen
    for server in (imds, vault):
        server.shutdown()


def _run(base: tuple[str, str] | str, *args: str):
    vault, imds = base if isinstance(base, tuple) else (base, base)
    return subprocess.run([sys.executable, str(SCRIPT), "--vault", vault + "/", "--imds", imds, *args],
                          capture_output=True, text=True, timeout=60)


def test_the_host_reads_its_own_key_into_a_private_file(cloud, tmp_path):
    base, key, seen = cloud
    out = tmp_path / "backup.env"
    proc = _run(base, "--secret", GRANTED, "--out", str(out), "--format", "aws-env")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (f"AWS_ACCESS_KEY_ID={key['aws_access_key_id']}\n"
                               f"AWS_SECRET_ACCESS_KEY={key['aws_secret_access_key']}\n")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert [p.split("?")[0] for p in seen] == ["/metadata/identity/oauth2/token", f"/secrets/{GRANTED}"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".host-secret-")]


def test_another_hosts_secret_is_refused_in_one_line_and_nothing_is_written(cloud, tmp_path):
    base, _, _ = cloud
    out = tmp_path / "files.env"
    proc = _run(base, "--secret", "files-writer-access-key", "--out", str(out), "--format", "aws-env")
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip() == ("host_secret: Key Vault secret files-writer-access-key: HTTP 403 "
                                   "(this VM's identity has no role on the secret)")


def test_no_metadata_service_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:           # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _run((f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}"), "--secret", GRANTED,
                "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "managed identity token (IMDS): unreachable" in proc.stderr


def test_hostile_secret_names_are_refused(cloud, tmp_path):
    base, _, seen = cloud
    proc = _run(base, "--secret", "../keys/x", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "letters, digits and dashes only" in proc.stderr and seen == []


def test_a_redirect_is_refused_and_the_token_goes_nowhere(cloud, tmp_path):
    """An https vault answering 302 to a plain-HTTP address: followed, the redirect would carry the
    bearer token in clear; host_secret stops in one line and the plain listener hears nothing."""
    (_, imds), _, _ = cloud
    heard: list[str] = []

    class Plain(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            heard.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

    plain = ThreadingHTTPServer(("127.0.0.1", 0), Plain)

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{plain.server_address[1]}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    crt, key = webpki.ensure_server_cert(tmp_path, tmp_path, "redirect", "127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(crt, key)
    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    redirect.socket = tls.wrap_socket(redirect.socket, server_side=True)
    for server in (plain, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "backup.env"
        proc = _run((f"https://127.0.0.1:{redirect.server_address[1]}", imds), "--secret", GRANTED,
                    "--out", str(out), "--format", "aws-env")
        assert proc.returncode == 1 and not out.exists()
        assert proc.stderr.strip() == f"host_secret: Key Vault secret {GRANTED}: HTTP 302 (a redirect, refused)"
        assert heard == []
    finally:
        for server in (plain, redirect):
            server.shutdown()


def test_an_endpoint_that_is_not_http_or_a_uri_with_control_characters_is_one_line(tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def garbage():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"\x00\x01 not http at all\r\n\r\n")
        conn.close()
    threading.Thread(target=garbage, daemon=True).start()
    port = listener.getsockname()[1]
    proc = _run((f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}"), "--secret", GRANTED,
                "--out", str(tmp_path / "x"))
    listener.close()
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "managed identity token (IMDS): no valid HTTP answer" in proc.stderr
    odd = _run(("https://127.0.0.1:1/\nx", "http://127.0.0.1:1"), "--secret", GRANTED, "--out", str(tmp_path / "x"))
    assert odd.returncode == 1 and len(odd.stderr.strip().splitlines()) == 1
    assert "spaces or control characters" in odd.stderr
