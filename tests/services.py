"""Real servers for tests and benchmarks, on 127.0.0.1 only: Postgres 15 (Debian's binaries,
run as the postgres user in a scratch directory), Alertmanager (Debian's package) and a webhook
receiver that records what Alertmanager delivers."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from trustops.wait import until

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    """Raises NotSettled (a TimeoutError) when nothing listens on 127.0.0.1:port in time."""
    until(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close() or True, timeout,
          f"a listener on 127.0.0.1:{port}", interval=0.05, retry_on=(OSError,))


def _make_tls(root: Path, dns: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and the `dns` names (ECDSA P-256),
    written under root."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustops test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        *map(x509.DNSName, dns)]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = (root / "ca.crt", root / "server.crt", root / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


class Postgres:
    """A throwaway Postgres 15 cluster with log_connections on, logging stderr to `log`."""

    def __init__(self, settings: dict[str, str] | None = None, tls: bool = False) -> None:
        self.tls = tls
        # not under pytest's tmp dirs: those are root-only (0700) and Postgres runs as postgres
        import tempfile
        self.root = Path(tempfile.mkdtemp(prefix="trustops-pg-"))
        os.chmod(self.root, 0o755)
        root = self.root
        self.data = root / "data"
        self.log = root / "postgresql.log"
        self.port = free_port()
        self.password = os.urandom(12).hex()  # made now, never stored in the repo
        self.settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port), "log_connections": "on",
                         "log_disconnections": "on", "log_line_prefix": "'%m [%p] %q%u@%d '",
                         "unix_socket_directories": f"'{root}'", **(settings or {})}

    def _as_postgres(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True,
                              text=True, **kw)

    def start(self) -> "Postgres":
        pw = pwd.getpwnam("postgres")
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
                          f"--pwfile={pwfile}")
        pwfile.unlink()
        settings = dict(self.settings)
        if self.tls:   # a CA and a server certificate for 127.0.0.1, made now; clients use verify-full
            self.ca_file, cert, key = _make_tls(self.root)
            for f in (cert, key):
                os.chown(f, pw.pw_uid, pw.pw_gid)
            settings.update(ssl="on", ssl_cert_file=f"'{cert}'", ssl_key_file=f"'{key}'",
                            ssl_min_protocol_version="'TLSv1.2'")
        with open(self.data / "postgresql.conf", "a") as fh:
            for k, v in settings.items():
                fh.write(f"{k} = {v}\n")
        (self.data / "pg_hba.conf").write_text("local all all scram-sha-256\n" + (
            "hostssl all all 127.0.0.1/32 scram-sha-256\n" if self.tls else "host all all 127.0.0.1/32 scram-sha-256\n"))
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start")
        return self

    def dsn(self, user: str = "postgres", password: str | None = None) -> str:
        return (f"host=127.0.0.1 port={self.port} user={user} dbname=postgres "
                f"password={self.password if password is None else password} connect_timeout=5")

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class Webhook:
    """Records every notification Alertmanager posts to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append(json.loads(body))
                outer.times.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict]:
        return [a for n in self.received for a in n.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()


class Alertmanager:
    """Debian's prometheus-alertmanager on 127.0.0.1, routing everything to a webhook quickly."""

    def __init__(self, root: Path, webhook_url: str, port: int | None = None, config: str | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config or f"""
route:
  receiver: hook
  group_by: [alertname, instance, source]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Alertmanager":
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "alertmanager.yml"
        cfg.write_text(self.config)
        self.proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.path={self.root / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                                      "--log.level=warn"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "alertmanager.log", "ab"))
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
