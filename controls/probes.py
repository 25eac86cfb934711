"""Live probes: look at the running environment (the lab, or a cloud stack through its inventory)
the way an auditor would, over the same SSH path Ansible uses, and report what differs from the page.

Each probe returns (problems, output): no problems means the promise holds right now.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Callable

import yaml

SSH_TIMEOUT = 60


class ProbeError(RuntimeError):
    """The environment could not be looked at (unreachable host, unreadable inventory)."""


class Target:
    """An environment, described by an inventory in the contract's shape (trustops/inventory.py)."""

    def __init__(self, inventory_file: Path) -> None:
        try:
            doc = yaml.safe_load(Path(inventory_file).read_text())["all"]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ProbeError(f"cannot read inventory {inventory_file}: {exc}") from exc
        self.vars: dict = doc.get("vars", {})
        self.hosts: dict[str, dict] = {}
        for role, group in (doc.get("children") or {}).items():
            for name, hv in ((group or {}).get("hosts") or {}).items():
                self.hosts[name] = {**hv, "trustops_role": role}

    def role(self, role: str) -> list[str]:
        return [n for n, h in self.hosts.items() if h["trustops_role"] == role]

    def ssh(self, host: str, command: str, check: bool = False) -> subprocess.CompletedProcess:
        """Runs `command` as root on `host` (sudo -n), as Ansible would reach it."""
        h = self.hosts[host]
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(h.get("ansible_port", 22))]
        key = self.vars.get("ansible_ssh_private_key_file")
        if key:
            argv += ["-i", key]
        argv += shlex.split(h.get("ansible_ssh_common_args") or self.vars.get("ansible_ssh_common_args", ""))
        argv += [f"{self.vars.get('ansible_user', 'deploy')}@{h['ansible_host']}",
                 "sudo -n sh -c " + shlex.quote(command)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ProbeError(f"{host}: no answer within {SSH_TIMEOUT}s") from exc
        if proc.returncode == 255:
            raise ProbeError(f"{host}: ssh failed: {proc.stderr.strip()[-200:]}")
        if check and proc.returncode != 0:
            raise ProbeError(f"{host}: `{command}` exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
        return proc

    def python_json(self, host: str, script: str) -> tuple[dict | None, str]:
        """Runs a Python one-liner on the host (its own python3) that prints JSON: (data, error)."""
        p = self.ssh(host, f"python3 -c \"{script}\"")
        if p.returncode != 0:
            return None, p.stderr.strip()[-200:]
        return json.loads(p.stdout), p.stdout.strip()

    def s3(self):
        """A boto3 S3 client: the lab's endpoint and generated keys, or the AWS default chain."""
        import boto3

        s3 = self.vars["trustops_s3"]
        kwargs: dict = {"region_name": s3["region"]}
        local = self.vars.get("trustops_lab_s3_local_url")
        if local:
            creds = Path(self.vars["trustops_lab_state_dir"]) / "s3-credentials.json"
            kwargs.update(endpoint_url=local, **json.loads(creds.read_text()))
        elif s3.get("endpoint_url"):
            kwargs["endpoint_url"] = s3["endpoint_url"]
        return boto3.client("s3", **kwargs)


Result = tuple[list[str], str]


def postgres_refuses_plaintext(t: Target) -> Result:
    """From the app host, a connection without TLS is rejected by pg_hba, before any password."""
    db = t.vars.get("trustops_database_host") or t.hosts[t.role("db")[0]]["private_ip"]
    problems, out = [], []
    for host in t.role("app"):
        p = t.ssh(host, f"psql 'host={db} dbname=benefits user=benefits_app sslmode=disable "
                        f"connect_timeout=5' -c 'select 1' </dev/null")
        out.append(f"{host}: exit {p.returncode}: {p.stderr.strip()}")
        if p.returncode == 0 or "no encryption" not in p.stderr:
            problems.append(f"{host}: a plaintext connection to {db}:5432 was not refused by pg_hba "
                            f"({p.stderr.strip()[-120:] or 'it succeeded'})")
    return problems, "\n".join(out)


def postgres_verify_full(t: Target) -> Result:
    """From the app host, verify-full against the platform CA completes the TLS handshake and
    reaches authentication (a wrong password proves TLS and the certificate name both held)."""
    db = t.vars.get("trustops_database_host") or t.hosts[t.role("db")[0]]["private_ip"]
    problems, out = [], []
    for host in t.role("app"):
        p = t.ssh(host, f"PGPASSWORD=probe-not-a-password psql 'host={db} dbname=benefits user=benefits_app "
                        f"sslmode=verify-full sslrootcert=/etc/trustops/postgres-ca.crt connect_timeout=5' "
                        f"-c 'select 1' </dev/null")
        out.append(f"{host}: exit {p.returncode}: {p.stderr.strip()}")
        if "password authentication failed" not in p.stderr:
            problems.append(f"{host}: verify-full to {db} did not reach authentication: {p.stderr.strip()[-160:]}")
    return problems, "\n".join(out)


def postgres_listens_privately(t: Target) -> Result:
    """Postgres listens on the private address only, and a host outside the app role cannot reach it."""
    problems, out = [], []
    for host in t.role("db"):
        p = t.ssh(host, "ss -ltnH 'sport = :5432'", check=True)
        out.append(f"{host}: {p.stdout.strip()}")
        for line in p.stdout.splitlines():
            local = line.split()[3]
            if local.startswith(("0.0.0.0:", "*:", "[::]:")):
                problems.append(f"{host}: Postgres listens on every address ({local})")
        ip = t.hosts[host]["private_ip"]
        for other in t.role("ops"):
            q = t.ssh(other, f"timeout 4 bash -c '</dev/tcp/{ip}/5432' && echo OPEN || echo CLOSED")
            out.append(f"{other} -> {ip}:5432: {q.stdout.strip()}")
            if "OPEN" in q.stdout:
                problems.append(f"{other} (not an app host) reaches {host}:5432")
    return problems, "\n".join(out)


def ufw_active(t: Target) -> Result:
    """Every host's firewall is on and drops what no rule allows."""
    problems, out = [], []
    for host in t.hosts:
        p = t.ssh(host, "ufw status verbose", check=True)
        out.append(f"--- {host}\n{p.stdout}")
        if "Status: active" not in p.stdout:
            problems.append(f"{host}: ufw is not active")
        elif not re.search(r"Default: deny \(incoming\)", p.stdout):
            problems.append(f"{host}: incoming traffic is not denied by default")
    return problems, "\n".join(out)


def sshd_hardened(t: Target) -> Result:
    """The effective sshd configuration: keys only, no root, no keyboard-interactive."""
    want = {"passwordauthentication": "no", "permitrootlogin": "no", "kbdinteractiveauthentication": "no",
            "pubkeyauthentication": "yes"}
    problems, out = [], []
    for host in t.hosts:
        p = t.ssh(host, "sshd -T", check=True)
        eff = dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line)
        out.append(f"--- {host}\n" + "\n".join(f"{k} {eff.get(k)}" for k in want))
        problems += [f"{host}: {k} is {eff.get(k)!r}, not {v!r}" for k, v in want.items() if eff.get(k) != v]
    return problems, "\n".join(out)


def security_updates_applied(t: Target) -> Result:
    """Automatic security updates are on, and no Debian security update is pending (known lists)."""
    problems, out = [], []
    for host in t.hosts:
        p = t.ssh(host, "apt-config dump APT::Periodic::Unattended-Upgrade; "
                        "apt-get -s -o Debug::NoLocking=1 upgrade | grep '^Inst' || true", check=True)
        out.append(f"--- {host}\n{p.stdout}")
        if 'APT::Periodic::Unattended-Upgrade "1"' not in p.stdout:
            problems.append(f"{host}: unattended upgrades are not enabled")
        pending = [l.split()[1] for l in p.stdout.splitlines() if l.startswith("Inst") and "security" in l]
        if pending:
            problems.append(f"{host}: {len(pending)} security update(s) pending: {', '.join(pending[:5])}")
    return problems, "\n".join(out)


def s3_encrypted(t: Target) -> Result:
    """Both buckets default to SSE-S3 and block public access, and every stored object is SSE-S3."""
    s3, cfg = t.s3(), t.vars["trustops_s3"]
    problems, out = [], []
    for bucket in (cfg["backups_bucket"], cfg["files_bucket"]):
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; each is a finding
            problems.append(f"{bucket}: {exc}")
            continue
        algos = [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules]
        out.append(f"{bucket}: default {algos}, public access block {pab}")
        if algos != ["AES256"]:
            problems.append(f"{bucket}: default encryption is {algos}, not SSE-S3 (AES256)")
        if not all(pab.values()):
            problems.append(f"{bucket}: public access is not fully blocked: {pab}")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                sse = s3.head_object(Bucket=bucket, Key=obj["Key"]).get("ServerSideEncryption")
                out.append(f"{bucket}/{obj['Key']}: {sse}")
                if sse != "AES256":
                    problems.append(f"{bucket}/{obj['Key']} is stored with {sse!r}, not AES256")
    return problems, "\n".join(out)


def backup_fresh(t: Target) -> Result:
    """The newest database backup is complete (has its manifest), under 26 hours old, and SSE-S3."""
    import datetime as dt

    s3, bucket = t.s3(), t.vars["trustops_s3"]["backups_bucket"]
    objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="postgres/")
               for o in page.get("Contents", [])]
    keys = {o["Key"] for o in objects}
    dumps = sorted((o for o in objects if o["Key"].endswith(".dump") and o["Key"] + ".manifest.json" in keys),
                   key=lambda o: o["LastModified"])
    if not dumps:
        return [f"no complete backup under s3://{bucket}/postgres/"], ""
    newest = dumps[-1]
    age_h = (dt.datetime.now(dt.timezone.utc) - newest["LastModified"]).total_seconds() / 3600
    sse = s3.head_object(Bucket=bucket, Key=newest["Key"]).get("ServerSideEncryption")
    problems = ([f"newest backup {newest['Key']} is {age_h:.1f} h old (limit 26 h)"] if age_h > 26 else []) + \
               ([f"{newest['Key']} is stored with {sse!r}, not AES256"] if sse != "AES256" else [])
    return problems, f"{len(dumps)} complete backups; newest {newest['Key']}, {age_h:.1f} h old, {sse}\n"


def alerting_pipeline(t: Target) -> Result:
    """Prometheus on the ops host scrapes every target, has the platform's rules, and knows its
    Alertmanager; asked on the ops host itself (both listen on its private address)."""
    problems, out = [], []
    for host in t.role("ops"):
        ip = t.hosts[host]["private_ip"]
        script = ("import json,urllib.request as u;"
                  f"g=lambda p: json.load(u.urlopen('http://{ip}:9090/api/v1/'+p, timeout=10))['data'];"
                  "print(json.dumps({'targets': [[x['labels']['job'], x['labels'].get('host'), x['health']] "
                  "for x in g('targets')['activeTargets']], 'rules': [r['name'] for r in g('rules')['groups']], "
                  "'alertmanagers': len(g('alertmanagers')['activeAlertmanagers'])}))")
        data, text = t.python_json(host, script)
        if data is None:
            problems.append(f"{host}: Prometheus does not answer: {text}")
            continue
        out.append(f"{host}: {text}")
        problems += [f"{host}: target {job}/{h} is {health}" for job, h, health in data["targets"] if health != "up"]
        jobs = {job for job, _, _ in data["targets"]}
        problems += [f"{host}: nothing scraped for job {j}" for j in ("node", "trustops-monitor", "benefits-app")
                     if j not in jobs and (j != "benefits-app" or t.role("app"))]
        problems += [f"{host}: rule group {g} is not loaded" for g in ("trustops-monitor", "trustops-backups",
                                                                        "trustops-hosts", "trustops-app")
                     if g not in data["rules"]]
        if data["alertmanagers"] < 1:
            problems.append(f"{host}: Prometheus has no Alertmanager")
    if not t.role("ops"):
        problems.append("no ops host in the inventory")
    return problems, "\n".join(out)


def app_https(t: Target) -> Result:
    """The app host's front, asked from the host itself (the path a browser takes, TLS verified
    against the platform CA): HTTP redirects to HTTPS, HSTS is set, every cookie is HttpOnly,
    Secure and SameSite=Strict, and neither health nor metrics is public."""
    problems, out = [], []
    for host in t.role("app"):
        ip = t.hosts[host]["private_ip"]   # health from another address than the host's own loopback
        script = ("import http.client,ssl,json;"
                  "c=ssl.create_default_context(cafile='/etc/trustops/postgres-ca.crt');c.check_hostname=False;"
                  "s=http.client.HTTPSConnection('127.0.0.1',443,context=c,timeout=10);s.request('GET','/login/');"
                  "r=s.getresponse();"
                  "p=http.client.HTTPConnection('127.0.0.1',80,timeout=10);p.request('GET','/login/');q=p.getresponse();"
                  f"h=http.client.HTTPSConnection('{ip}',443,context=c,timeout=10);h.request('GET','/healthz');"
                  f"m=lambda: (lambda x: (x.request('GET','/metrics'), x.getresponse().status)[1])("
                  f"http.client.HTTPSConnection('{ip}',443,context=c,timeout=10));"
                  "print(json.dumps({'status':r.status,'hsts':r.getheader('Strict-Transport-Security'),"
                  "'cookies':r.headers.get_all('Set-Cookie') or [],'http':q.status,'location':q.getheader('Location'),"
                  "'health':h.getresponse().status,'metrics':m()}))")
        d, text = t.python_json(host, script)
        if d is None:
            problems.append(f"{host}: the front does not answer over HTTPS: {text}")
            continue
        out.append(f"{host}: {text}")
        if d["status"] != 200:
            problems.append(f"{host}: /login/ answered {d['status']}")
        if not (d["hsts"] or "").startswith("max-age=") or int(d["hsts"].split("=")[1].split(";")[0]) < 31536000:
            problems.append(f"{host}: HSTS missing or shorter than a year: {d['hsts']!r}")
        if d["http"] != 301 or not (d["location"] or "").startswith("https://"):
            problems.append(f"{host}: HTTP is not redirected to HTTPS ({d['http']} {d['location']})")
        if not d["cookies"]:
            problems.append(f"{host}: no cookie to check")
        for cookie in d["cookies"]:
            missing = [flag for flag in ("HttpOnly", "Secure", "SameSite=Strict") if flag not in cookie]
            if missing:
                problems.append(f"{host}: cookie {cookie.split('=')[0]} lacks {', '.join(missing)}")
        if d["health"] != 403:
            problems.append(f"{host}: /healthz is reachable through the front ({d['health']})")
        if d["metrics"] != 403:
            problems.append(f"{host}: /metrics is reachable through the front ({d['metrics']})")
    return problems, "\n".join(out)


PROBES: dict[str, Callable[[Target], Result]] = {
    "app-https": app_https,
    "backup-fresh": backup_fresh,
    "alerting-pipeline": alerting_pipeline,
    "postgres-refuses-plaintext": postgres_refuses_plaintext,
    "postgres-verify-full": postgres_verify_full,
    "postgres-listens-privately": postgres_listens_privately,
    "ufw-active": ufw_active,
    "sshd-hardened": sshd_hardened,
    "security-updates-applied": security_updates_applied,
    "s3-encrypted": s3_encrypted,
}
