"""Load benchmark (not a test) of the deployed app on the lab, through the nginx TLS front: the
login page, and an authenticated HR list view (an HR user with a verified TOTP session, made for
this run). Peer, measured in the same run: nginx alone answering a request it refuses itself
(/healthz from outside -> 403), i.e. the front's own ceiling on this machine.

    .venv/bin/trustops up          # the lab with the app
    .venv/bin/python -m tests.bench.app_load [--seconds 15] [--clients 8]

The client is Python (one keep-alive HTTPS connection per thread); on 2 cores it competes with
the lab for CPU, so read the figures as ratios, not capacity.
"""
from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from tests.playbooks import app_live_slot
from trustops.lab.environment import LabConfig

SETUP = """
import secrets, json
from django.contrib.auth.models import User
from django_otp.plugins.otp_totp.models import TOTPDevice
from core.models import Company, Employee
company, _ = Company.objects.get_or_create(name="Load test company")
for i in range(50):
    u = User.objects.create_user(f"loademp-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16))
    Employee.objects.create(user=u, company=company, full_name=f"Employee {i}")
pw = secrets.token_urlsafe(16)
u = User.objects.create_user(f"loadhr-{secrets.token_hex(4)}", password=pw)
Employee.objects.create(user=u, company=company, role="hr", full_name="Load HR")
d = TOTPDevice.objects.create(user=u, name="default", confirmed=True)
print(json.dumps({"username": u.username, "password": pw, "key": d.key}))
"""


class Front:
    def __init__(self, cfg: LabConfig) -> None:
        self.port = cfg.ports("app")[443]
        self.ctx = ssl.create_default_context(cafile=str(cfg.state_dir / "pki" / "ca.crt"))
        self.origin = f"https://127.0.0.1:{self.port}"

    def conn(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)


def hr_session(front: Front, cfg: LabConfig) -> str:
    """Logs an HR user in and verifies TOTP; returns the Cookie header of that session."""
    slot = app_live_slot(cfg)      # blue/green
    out = subprocess.run(["docker", "exec", cfg.container("app"), "docker", "exec", f"benefits-{slot}", "python3",
                          "manage.py", "shell", "-c", SETUP], capture_output=True, text=True, check=True).stdout
    user = json.loads(out.strip().splitlines()[-1])
    jar: dict[str, str] = {}

    def request(method: str, path: str, body: str | None = None) -> http.client.HTTPResponse:
        c = front.conn()
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()), "Referer": front.origin + path,
                   "Origin": front.origin}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        r.read()
        for h in r.headers.get_all("Set-Cookie") or []:
            for k, m in SimpleCookie(h).items():
                jar[k] = m.value
        return r

    from urllib.parse import urlencode

    request("GET", "/login/")
    r = request("POST", "/login/", urlencode({"username": user["username"], "password": user["password"],
                                              "csrfmiddlewaretoken": jar["csrftoken"]}))
    assert r.status == 302, f"login failed: {r.status}"
    request("GET", "/mfa/")
    from django_otp.oath import totp
    token = totp(bytes.fromhex(user["key"]))
    r = request("POST", "/mfa/", urlencode({"token": f"{token:06d}", "csrfmiddlewaretoken": jar["csrftoken"]}))
    assert r.status == 302, f"MFA failed: {r.status}"
    r = request("GET", "/hr/employees/")
    assert r.status == 200, f"list view: {r.status}"
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def load(front: Front, path: str, seconds: float, clients: int, cookie: str = "", expect: int = 200) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        c, mine, bad = front.conn(), [], 0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
                r = c.getresponse()
                r.read()
                if r.status != expect:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                c = front.conn()
                continue
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / took, "p50": q(0.5), "p99": q(0.99),
            "mean": statistics.mean(latencies) * 1000, "n": len(latencies), "errors": errors[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    cfg = LabConfig.from_env()
    front = Front(cfg)
    cookie = hr_session(front, cfg)
    runs = [("nginx alone (403, peer)", "/healthz", "", 403), ("login page", "/login/", "", 200),
            ("HR list view (MFA session)", "/hr/employees/", cookie, 200)]
    results = {}
    print(f"{a.clients} keep-alive clients, {a.seconds:.0f} s each, through nginx TLS on 127.0.0.1:{front.port}")
    for name, path, ck, expect in runs:
        r = load(front, path, a.seconds, a.clients, ck, expect)
        results[name] = r
        print(f"  {name:28} {r['rps']:8.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
              f"({r['n']} requests, {r['errors']} errors)", flush=True)
    peer = results["nginx alone (403, peer)"]["rps"]
    for name in ("login page", "HR list view (MFA session)"):
        print(f"  {name} vs nginx alone: {results[name]['rps'] / peer:.2f}x req/s")


if __name__ == "__main__":
    main()
