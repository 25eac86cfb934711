"""Nobody on the app host can silence security alerts (issue 19), on the converged test lab: from
the app host, Alertmanager's front on ops takes a POST of alerts (what the monitors do) and refuses
everything else without the operator's credentials (creating, reading or deleting silences, reading
alerts, status, reload, the same calls dressed up as the push path); Prometheus refuses the app
host too. From the control node, with the operator's credentials, silences work. The same calls run
first without a lab, on the role's own front and web.yml with Debian's nginx and Alertmanager."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import bcrypt
import jinja2
import pytest
import requests
import yaml

from tests.services import _make_tls, free_port, wait_port

from trustops import opsapi
from trustops.converge import ANSIBLE_DIR, role_default

CA_ON_HOSTS = role_default("monitors", "monitors_ca_file")

# Run on the app host with Debian's python3 (the hosts have no curl): each request's status code.
_ASK = """import base64, json, ssl, sys, urllib.error, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
codes = []
for method, url, body, auth in json.loads(sys.argv[2]):
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method,
                                 headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=20, context=ctx) as resp:
            codes.append(resp.status)
    except urllib.error.HTTPError as exc:
        codes.append(exc.code)
print(json.dumps(codes))
"""


def _ops_address(lab_config) -> str:
    ops = yaml.safe_load(lab_config.inventory_file.read_text())["all"]["children"]["ops"]["hosts"]
    return next(iter(ops.values()))["private_ip"]


def _from_app_host(lab_config, calls: list[tuple]) -> list[int]:
    proc = subprocess.run(["docker", "exec", lab_config.container("app"), "python3", "-c", _ASK, CA_ON_HOSTS,
                           json.dumps(calls)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return json.loads(proc.stdout)


def _alert(name: str, minutes: float = 5) -> str:
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    return json.dumps([{"labels": {"alertname": name, "severity": "info", "instance": "front-test"},
                        "annotations": {"summary": "issue 19's front test (info: notifies nobody)"},
                        "startsAt": stamp(now), "endsAt": stamp(now + minutes * 60)}])


def _silence(name: str) -> str:
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    return json.dumps({"matchers": [{"name": "alertname", "value": name, "isRegex": False}],
                       "startsAt": stamp(now), "endsAt": stamp(now + 300), "createdBy": "front-test",
                       "comment": "issue 19's front test"})


def _calls(am: str, name: str) -> list[tuple]:
    """What a compromised monitor host might try on Alertmanager's front: (method, url, body, auth).
    The first two must pass (a POST of alerts); every other must be refused."""
    wrong = f"{opsapi.OPERATOR_USER}:not-the-password"
    return [
        ("POST", f"{am}/api/v2/alerts", _alert(name), None),               # what a monitor does
        ("POST", f"{am}/api/v2/alerts", _alert(name), wrong),              # its credential is replaced, not trusted
        ("POST", f"{am}/api/v2/silences", _silence(name), None),
        ("POST", f"{am}/api/v2/silences", _silence(name), wrong),
        ("GET", f"{am}/api/v2/silences", None, None),
        ("GET", f"{am}/api/v2/alerts", None, None),
        ("GET", f"{am}/api/v2/alerts/groups", None, None),
        ("DELETE", f"{am}/api/v2/silence/{uuid.uuid4()}", None, None),
        ("GET", f"{am}/api/v2/status", None, None),
        ("POST", f"{am}/-/reload", "", None),
        ("POST", f"{am}/api/v1/silences", _silence(name), None),
        # the push path as a disguise: dot segments and encoded slashes are resolved before matching
        ("POST", f"{am}/api/v2/alerts/../silences", _silence(name), None),
        ("POST", f"{am}/api/v2/alerts/%2E%2E/silences", _silence(name), None),
        ("POST", f"{am}/api/v2/alerts%2F..%2Fsilences", _silence(name), None),
        ("POST", f"{am}//api/v2/silences", _silence(name), None),
        ("POST", f"{am}/api/v2/silences?x=/api/v2/alerts", _silence(name), None),
    ]


def _judge(calls: list[tuple], codes: list[int]) -> None:
    got = {f"{method} {url.split('/', 3)[3]}{' (wrong password)' if auth else ''}": code
           for (method, url, _, auth), code in zip(calls, codes)}
    assert codes[:2] == [200, 200], got
    refused = {call: code for call, code in list(got.items())[2:] if code not in (401, 403)}
    assert not refused, f"answered without the operator's credentials: {refused} (all: {got})"


def _ask_here(calls: list[tuple], ca: Path) -> list[int]:
    """The calls from this machine, sent as written (requests would resolve the dot segments)."""
    import http.client
    import ssl
    import urllib.parse

    codes = []
    for method, url, body, auth in calls:
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=10,
                                           context=ssl.create_default_context(cafile=str(ca)))
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        conn.request(method, "/" + url.split("/", 3)[3], body=body, headers=headers)
        codes.append(conn.getresponse().status)
        conn.close()
    return codes


ROLE = ANSIBLE_DIR / "roles" / "alerting"


def _render(template: str, **values) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string((ROLE / "templates" / template).read_text()).render(**values)


@pytest.fixture
def front(tmp_path):
    """The role's front and web.yml on loopback: Debian's nginx before Debian's Alertmanager, with
    a throwaway CA; the operator's and ops-local's passwords made here. Yields (url, ca, operator)."""
    if not shutil.which("nginx"):
        pytest.fail("nginx missing: scripts/bootstrap installs Debian's nginx")
    ca, cert, key = _make_tls(tmp_path, dns=("localhost",))
    users = {opsapi.OPERATOR_USER: os.urandom(16).hex(), role_default("alerting", "alerting_local_user"): os.urandom(16).hex()}
    hashes = {"results": [{"item": {"user": u}, "stdout": bcrypt.hashpw(p.encode(), bcrypt.gensalt(10)).decode()}
                          for u, p in users.items()]}
    values = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()), "private_ip": "127.0.0.1",
              "alerting_tls_dir": str(tmp_path), "alerting_hashes": hashes,
              "alerting_front_push_map": str(tmp_path / "push.map"),
              "alerting_alertmanager_port": free_port(), "alerting_alertmanager_local_port": free_port()}
    (tmp_path / "web.yml").write_text(_render("web.yml.j2", **values))
    local = role_default("alerting", "alerting_local_user")
    (tmp_path / "push.map").write_text(f'POST "Basic {base64.b64encode(f"{local}:{users[local]}".encode()).decode()}";\n')
    (tmp_path / "am.yml").write_text("route: {receiver: nobody}\nreceivers: [{name: nobody}]\n")
    (tmp_path / "nginx.conf").write_text(
        f"{'user root;' if os.geteuid() == 0 else ''} pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log {tmp_path}/access.log; client_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\n{_render('alerting-front.conf.j2', **values)}\n}}\n")
    am = subprocess.Popen(["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}",
                           f"--storage.path={tmp_path / 'data'}", f"--web.config.file={tmp_path / 'web.yml'}",
                           f"--web.listen-address=127.0.0.1:{values['alerting_alertmanager_local_port']}",
                           "--cluster.listen-address=", "--log.level=warn"],
                          stdout=subprocess.DEVNULL, stderr=open(tmp_path / "alertmanager.log", "ab"))
    nginx = subprocess.run(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    try:
        assert nginx.returncode == 0, nginx.stderr
        wait_port(values["alerting_alertmanager_local_port"])
        wait_port(values["alerting_alertmanager_port"])
        yield f"https://127.0.0.1:{values['alerting_alertmanager_port']}", ca, (opsapi.OPERATOR_USER, users[opsapi.OPERATOR_USER])
    finally:
        pid = tmp_path / "nginx.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), 15)
        am.terminate()
        am.wait(10)


def test_the_front_lets_alerts_in_and_nothing_else_without_the_operator(front):
    url, ca, operator = front
    name = f"FrontTest{uuid.uuid4().hex[:8]}"
    calls = _calls(url, name)
    _judge(calls, _ask_here(calls, ca))
    # the operator, through the front: the alert is there, no silence came in, a silence can be made
    alerts = requests.get(f"{url}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, auth=operator,
                          verify=str(ca), timeout=10)
    assert alerts.status_code == 200 and len(alerts.json()) == 1, alerts.text[:300]
    assert requests.get(f"{url}/api/v2/silences", auth=operator, verify=str(ca), timeout=10).json() == []
    made = requests.post(f"{url}/api/v2/silences", data=_silence(name), auth=operator, verify=str(ca), timeout=10,
                         headers={"Content-Type": "application/json"})
    assert made.status_code == 200, made.text[:300]


def test_the_app_host_may_post_alerts_and_nothing_else(lab, lab_config, converged):
    name = f"FrontTest{uuid.uuid4().hex[:8]}"
    am = f"https://{_ops_address(lab_config)}:{opsapi.ALERTMANAGER_PORT}"
    prometheus = f"https://{_ops_address(lab_config)}:{opsapi.PROMETHEUS_PORT}"
    calls = _calls(am, name) + [("GET", f"{prometheus}/api/v1/query?query=up", None, None),
                                ("POST", f"{prometheus}/-/reload", "", None)]
    _judge(calls, _from_app_host(lab_config, calls))

    # the operator (control node) sees the posted alert, and no silence came from the app host
    operator, (_, am_here) = opsapi.session(lab_config.state_dir), opsapi.lab_urls(lab_config)
    alerts = operator.get(f"{am_here}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=10)
    assert alerts.status_code == 200 and alerts.json(), alerts.text[:300]
    silences = operator.get(f"{am_here}/api/v2/silences", timeout=10).json()
    assert not [s for s in silences if any(m["value"] == name for m in s["matchers"])], silences


def test_the_operator_silences_and_reads_with_credentials(lab, lab_config, converged):
    name = f"FrontTest{uuid.uuid4().hex[:8]}"
    operator, (prometheus, am) = opsapi.session(lab_config.state_dir), opsapi.lab_urls(lab_config)
    anonymous = opsapi.session(lab_config.state_dir, operator=False)
    assert anonymous.get(f"{am}/api/v2/silences", timeout=10).status_code == 401
    assert anonymous.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=10).status_code == 401
    created = operator.post(f"{am}/api/v2/silences", data=_silence(name), timeout=10,
                            headers={"Content-Type": "application/json"})
    assert created.status_code == 200, created.text[:300]
    silence_id = created.json()["silenceID"]
    try:
        listed = operator.get(f"{am}/api/v2/silences", timeout=10).json()
        assert [s for s in listed if s["id"] == silence_id and s["status"]["state"] == "active"], listed
        up = operator.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=10)
        assert up.status_code == 200 and up.json()["data"]["result"], up.text[:300]
    finally:
        gone = operator.delete(f"{am}/api/v2/silence/{silence_id}", timeout=10)
    assert gone.status_code == 200, gone.text[:300]
