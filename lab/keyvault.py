"""The twin's stand-in for Azure's instance metadata service (IMDS) and Key Vault's data plane, so
a host reads its own keys by the stack's path (trustops.infra.host_secret) in the lab as on Azure.

- IMDS (GET /metadata/identity/oauth2/token, header `Metadata: true`) answers a token bound to the
  asking VM, known by the connection's source address as Azure knows a VM by its link: the router
  sends 169.254.169.254:80 here without rewriting the source (trustops.lab.nsg).
- The vault (GET /secrets/<name>?api-version=7.4, `Authorization: Bearer <token>`), over TLS as
  on Azure (a certificate from the lab's public root, trustops.lab.webpki, which the hosts trust
  as a cloud image trusts the Web PKI; IMDS stays plain HTTP on the link, as Azure's), answers a
  secret only to an identity the plan's role assignments give it: 401 without a valid token, 403
  when the caller's address is outside the vault's network rules (the subnets the stack allows)
  or the identity has no role on the secret, 404 for a secret the stack does not declare.
- The secret values are the twin's real moto keys per purpose (<state>/iam/) and a field key made
  for the lab; the config file is read again when it changes, so a rotated key is served at once.

It runs in its own lab container from the S3 image's Python, so it imports nothing but the
standard library; `build_config` (run by the lab, not in the container) turns a plan into its file.
"""
from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IMDS_ADDRESS = "169.254.169.254"    # where the hosts ask, as on Azure (port 80)
IMDS_PORT = 8169                     # the stand-in's ports inside its container (unprivileged)
VAULT_PORT = 8443
KEYVAULT_UID = 10002                 # the S3 image's unprivileged user (as the mail sink)
TOKEN_TTL_S = 3600
API_VERSION = "7.4"
SECRET_PATH = re.compile(r"^/secrets/([0-9A-Za-z-]{1,127})/?$")


def build_config(plan, values: dict[str, str], reader_role: str) -> dict:
    """What the stand-in serves, from a trustops.lab.stack.Plan: each VM's address and identity,
    the secrets each identity may read (assignments of `reader_role` scoped to one secret), the
    vault's network rules as CIDRs, and `values` (secret name -> value) of the declared secrets."""
    by_resource = {s["resource"]: name for name, s in plan.secrets.items()}
    readers: dict[str, list[str]] = {}
    for ra in plan.role_assignments:
        if ra.get("role") == reader_role and ra.get("scope") in by_resource:
            readers.setdefault(str(ra["principal_id"]), []).append(by_resource[ra["scope"]])
    rules = []
    for r in plan.resources:
        if r["type"].endswith(":Vault") and r["type"].startswith("azure-native:keyvault"):
            acls = (r["inputs"].get("properties") or {}).get("networkAcls") or {}
            for rule in acls.get("virtualNetworkRules") or []:
                subnet = str(rule.get("id", ""))
                subnet = subnet[:-3] if subnet.endswith("_id") else subnet
                if subnet in plan.subnets:
                    rules.append(plan.subnets[subnet].cidr)
    return {"vms": {vm.private_ip: vm.principal_id for vm in plan.vms.values()},
            "readers": {p: sorted(n) for p, n in readers.items()},
            "network_rules": sorted(set(rules)),
            "secrets": {name: values[name] for name in plan.secrets if name in values}}


class State:
    """The config (re-read when its file changes) and the tokens handed out."""

    def __init__(self, path: str):
        self.path, self.mtime, self.config = path, None, {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()

    def current(self) -> dict:
        with self.lock:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self.mtime:
                with open(self.path, encoding="utf-8") as fh:
                    self.config = json.load(fh)
                self.mtime = mtime
            return self.config

    def issue(self, principal: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            now = time.time()
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
            self.tokens[token] = (principal, now + TOKEN_TTL_S)
        return token

    def principal(self, token: str) -> str | None:
        with self.lock:
            for known, (principal, expires) in self.tokens.items():
                if hmac.compare_digest(known, token) and expires > time.time():
                    return principal
        return None


class Handler(BaseHTTPRequestHandler):
    server_version = "trustops-lab-keyvault"
    timeout = 10          # a client that connects and sends nothing does not hold a thread for ever
    state: State
    service: str   # "imds" | "vault"

    def log_message(self, fmt, *args):   # one line per request on stderr (docker logs)
        sys.stderr.write(f"{self.service} {self.client_address[0]} {fmt % args}\n")

    def _answer(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._answer(status, {"error": {"code": code, "message": message}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        try:
            (self._imds if self.service == "imds" else self._vault)()
        except (OSError, ValueError) as exc:   # a broken config file: the caller sees 500, the log says why
            self.log_message("config: %s", exc)
            self._error(500, "InternalError", "the stand-in cannot read its configuration")

    def _imds(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/metadata/identity/oauth2/token":
            return self._error(404, "NotFound", "only /metadata/identity/oauth2/token is served")
        if self.headers.get("Metadata") != "true":
            return self._error(400, "bad_request", "Required metadata header not specified")
        if not query.get("api-version") or not query.get("resource"):
            return self._error(400, "invalid_request", "api-version and resource are required")
        principal = self.state.current()["vms"].get(self.client_address[0])
        if principal is None:   # not a VM of the stack (or a source rewritten on the way)
            return self._error(400, "invalid_request", "Identity not found")
        token = self.state.issue(principal)
        self._answer(200, {"access_token": token, "expires_in": str(TOKEN_TTL_S), "token_type": "Bearer",
                           "resource": query["resource"][0], "expires_on": str(int(time.time()) + TOKEN_TTL_S)})

    def _vault(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        m = SECRET_PATH.match(url.path)
        if not m:
            return self._error(404, "NotFound", "only GET /secrets/<name> is served")
        if urllib.parse.parse_qs(url.query).get("api-version") != [API_VERSION]:
            return self._error(400, "BadParameter", f"api-version={API_VERSION} is required")
        auth = self.headers.get("Authorization", "")
        principal = self.state.principal(auth[7:]) if auth.startswith("Bearer ") else None
        if principal is None:
            return self._error(401, "Unauthorized", "no valid bearer token")
        cfg = self.state.current()
        source = ipaddress.ip_address(self.client_address[0])
        if not any(source in ipaddress.ip_network(c) for c in cfg["network_rules"]):
            return self._error(403, "ForbiddenByFirewall", f"client address {source} is not allowed")
        name = m.group(1)
        if name not in cfg["secrets"]:
            return self._error(404, "SecretNotFound", f"a secret with name {name} was not found in this vault")
        if name not in cfg["readers"].get(principal, []):
            return self._error(403, "Forbidden", f"the caller has no role that allows reading secret {name}")
        self._answer(200, {"value": cfg["secrets"][name], "id": f"/secrets/{name}/1",
                           "attributes": {"enabled": True}})


class TLSServer(ThreadingHTTPServer):
    """The vault's server: the TLS handshake in the request's own thread, under the handler's
    timeout, so a client that connects and never finishes it holds only that thread."""

    def __init__(self, address, handler, tls: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.tls = tls

    def finish_request(self, request, client_address) -> None:
        request.settimeout(Handler.timeout)
        try:
            tls = self.tls.wrap_socket(request, server_side=True)   # takes over the socket
        except (OSError, ssl.SSLError) as exc:   # plain HTTP, an untrusting client, a timeout
            sys.stderr.write(f"vault {client_address[0]} TLS handshake failed: {exc}\n")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2     # as Key Vault (TLS 1.2 and later)
    ctx.load_cert_chain(cert, key)
    return ctx


def serve(config: str, host: str, imds_port: int, vault_port: int, tls: ssl.SSLContext) -> list[ThreadingHTTPServer]:
    """Both servers, each in a daemon thread, the vault's in `tls`; returns them."""
    state = State(config)
    state.current()   # a missing or broken file stops the start with its one line
    servers = []
    for service, port in (("imds", imds_port), ("vault", vault_port)):
        handler = type(f"{service}Handler", (Handler,), {"state": state, "service": service})
        srv = TLSServer((host, port), handler, tls) if service == "vault" else ThreadingHTTPServer((host, port), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    return servers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--host", default="0.0.0.0")   # noqa: S104 - inside its own container
    ap.add_argument("--imds-port", type=int, default=IMDS_PORT)
    ap.add_argument("--vault-port", type=int, default=VAULT_PORT)
    ap.add_argument("--tls-cert", required=True, help="the vault's certificate (PEM)")
    ap.add_argument("--tls-key", required=True, help="its private key (PEM)")
    a = ap.parse_args(argv)
    try:
        tls = tls_context(a.tls_cert, a.tls_key)
    except (OSError, ssl.SSLError) as exc:
        print(f"keyvault: TLS certificate {a.tls_cert} or key {a.tls_key}: {exc}", file=sys.stderr)
        return 1
    try:
        serve(a.config, a.host, a.imds_port, a.vault_port, tls)
    except (OSError, ValueError) as exc:
        print(f"keyvault: {a.config}: {exc}", file=sys.stderr)
        return 1
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
