"""The playbooks for real on the lab: converge, converge again with 0 changed, then verify from
outside with testinfra (sshd -T, UFW, sysctls, Postgres TLS, logs) and from the machine itself."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import testinfra

from tests.playbooks import playbook as _playbook
from tests.playbooks import recap as _recap
from trustops.converge import ansible_env

ROOT = Path(__file__).resolve().parent.parent


def host(lab_config, name):
    os.environ["ANSIBLE_CONFIG"] = str(ROOT / "ansible" / "ansible.cfg")
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={lab_config.inventory_file}",
                              sudo=True)


def test_second_run_changes_nothing(converged):
    assert set(converged["second"]) == {"app", "db", "ops"}
    changed = {h: r["changed"] for h, r in converged["second"].items() if r["changed"]}
    tasks = re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:[^\n]*\n)*?changed:", converged["second_out"])
    assert changed == {}, f"not idempotent: {changed}; tasks: {tasks[:10]}"
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in converged["first"].values())


def test_machine_global_sysctls_untouched(converged):
    assert converged["sysctls_after"] == converged["sysctls_before"]


def test_sshd_effective_config(lab, lab_config, converged):
    for name in ("app", "db", "ops"):
        cfg = dict(line.split(" ", 1) for line in host(lab_config, name).check_output("sshd -T").splitlines()
                   if " " in line)
        assert cfg["permitrootlogin"] == "no"
        assert cfg["passwordauthentication"] == "no"
        assert cfg["kbdinteractiveauthentication"] == "no"
        assert cfg["maxauthtries"] == "3"
        assert cfg["allowgroups"] == "ssh-users"
        assert cfg["clientaliveinterval"] == "300"
        assert "cbc" not in cfg["ciphers"] and "chacha20-poly1305@openssh.com" in cfg["ciphers"]
        assert "sha1" not in cfg["macs"] and "-etm@openssh.com" in cfg["macs"]
        assert "diffie-hellman-group14-sha1" not in cfg["kexalgorithms"]
        assert cfg["allowtcpforwarding"] == ("local" if name == "app" else "no")


def test_ufw_rules_per_role(lab, lab_config, converged):
    inv = lab["all"]
    app_ip = inv["children"]["app"]["hosts"]["app"]["private_ip"]
    status = {n: host(lab_config, n).check_output("ufw status verbose") for n in ("app", "db", "ops")}
    for text in status.values():
        assert "Status: active" in text
        assert "Default: deny (incoming), allow (outgoing)" in text
        assert "Logging: on (high)" in text
    assert re.search(r"443/tcp\s+ALLOW IN\s+Anywhere", status["app"])
    assert re.search(rf"5432/tcp\s+ALLOW IN\s+{re.escape(app_ip)}\b", status["db"])
    assert not re.search(r"5432/tcp\s+ALLOW IN\s+Anywhere", status["db"])
    assert re.search(r"9093/tcp\s+ALLOW IN", status["ops"]) and "5432" not in status["ops"]


def test_sysctls_in_force(lab, lab_config, converged):
    h = host(lab_config, "db")
    assert h.sysctl("net.ipv4.tcp_syncookies") == 1
    assert h.sysctl("net.ipv4.conf.all.accept_redirects") == 0
    assert h.sysctl("net.ipv4.conf.all.rp_filter") == 1
    assert h.file("/etc/sysctl.d/90-trustops.conf").contains("net.ipv4.conf.all.log_martians = 1")
    assert not h.file("/etc/sysctl.d/90-trustops.conf").contains("kernel.")  # not written on a lab host


def test_pam_login_defs_and_coredumps(lab, lab_config, converged):
    h = host(lab_config, "app")
    assert h.file("/etc/security/pwquality.conf").contains("^minlen = 14")
    assert h.file("/etc/pam.d/common-auth").contains("pam_faillock.so preauth")
    assert h.file("/etc/login.defs").contains("^UMASK\t027")
    assert h.file("/etc/security/limits.d/10-trustops-coredump.conf").contains("hard core 0")
    assert not h.package("telnet").is_installed
    assert h.file("/etc/shadow").mode == 0o640


def test_auditd_is_skipped_in_containers_with_a_reason(converged):
    out = converged["second_out"]
    block = out.split("TASK [hardening : Install auditd]", 1)[1].split("TASK [", 1)[0]
    assert {"app", "db", "ops"} == set(re.findall(r"skipping: \[(\w+)\]", block))
    assert "ok:" not in block and "changed:" not in block
    assert "is a container sharing the machine's kernel" in out


def test_postgres_settings(lab, lab_config, converged):
    db = host(lab_config, "db")
    show = lambda s: db.check_output(f"sudo -u postgres psql -Atc 'SHOW {s}'")  # noqa: E731
    db_ip = lab["all"]["children"]["db"]["hosts"]["db"]["private_ip"]
    assert show("listen_addresses") == db_ip
    assert show("ssl") == "on" and show("ssl_min_protocol_version") == "TLSv1.2"
    assert show("password_encryption") == "scram-sha-256"
    assert show("log_connections") == "on" and show("log_disconnections") == "on"
    assert show("log_line_prefix") == "%m [%p] %q%u@%d "
    hba = db.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert all(r[0] in ("local", "hostssl") for r in rules) and not any("trust" in r for r in rules)
    flags = db.check_output("sudo -u postgres psql -Atc \"SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                            "WHERE rolname='benefits_app'\"")
    assert flags == "f|f|f"
    public = db.check_output("sudo -u postgres psql -Atc \"SELECT has_database_privilege('public', 'benefits', "
                             "'CONNECT')\"")
    assert public == "f"


def _psql(h, dsn: str):
    return h.run(f"psql '{dsn}' -Atc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'")


def test_app_connects_with_verify_full_others_are_refused(lab, lab_config, converged):
    db_ip = lab["all"]["children"]["db"]["hosts"]["db"]["private_ip"]
    password = (lab_config.state_dir / "db-benefits_app-password").read_text().strip()
    app, ops = host(lab_config, "app"), host(lab_config, "ops")
    base = f"host={db_ip} dbname=benefits user=benefits_app password={password} connect_timeout=5"
    ok = _psql(app, f"{base} sslmode=verify-full sslrootcert=/etc/trustops/postgres-ca.crt")
    assert ok.rc == 0 and ok.stdout.strip() == "t", ok.stderr
    plain = _psql(app, f"{base} sslmode=disable")
    assert plain.rc != 0 and "no encryption" in plain.stderr
    wrong_name = _psql(app, f"host=db hostaddr={db_ip} dbname=benefits user=benefits_app password={password} "
                            f"sslmode=verify-full sslrootcert=/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")
    assert wrong_name.rc != 0  # a CA other than the platform's is not trusted
    other = ops.run(f"timeout 10 bash -c 'echo > /dev/tcp/{db_ip}/5432'")
    assert other.rc != 0  # UFW drops the ops host before Postgres sees it


def test_password_failures_are_logged_for_the_monitors(lab, lab_config, converged):
    db_ip = lab["all"]["children"]["db"]["hosts"]["db"]["private_ip"]
    app, db = host(lab_config, "app"), host(lab_config, "db")
    app.run(f"psql 'host={db_ip} dbname=benefits user=benefits_app password=wrong sslmode=verify-full "
            f"sslrootcert=/etc/trustops/postgres-ca.crt connect_timeout=5' -c 'select 1'")
    log = db.check_output("tail -n 50 /var/log/postgresql/postgresql-15-main.log")
    from trustops.monitors.pg import PostgresParser
    parser = PostgresParser()
    events = [e for line in log.splitlines() for e in parser.feed(line)] + parser.flush()
    app_ip = lab["all"]["children"]["app"]["hosts"]["app"]["private_ip"]
    assert any(e.type == "pg_auth_failed" and e.source == app_ip and e.user == "benefits_app" for e in events), log


def _patch(inventory: Path, report_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(ROOT / "ansible" / "patch.yml"), "-e", f"patch_report_dir={report_dir}", *extra],
                          env=ansible_env(), capture_output=True, text=True, timeout=1500)


def test_rolling_patch_stops_at_an_unhealthy_host(lab, lab_config, converged, tmp_path):
    first_host = sorted(["app", "db", "ops"])[0]
    proc = _patch(lab_config.inventory_file, tmp_path / "stopped", "-e",
                  '{"patch_simulate_unhealthy": ["%s"]}' % first_host)
    assert proc.returncode != 0
    assert "rollout stopped" in proc.stdout
    recap = _recap(proc.stdout)
    assert recap[first_host]["failed"] == 1 and set(recap) == {first_host}  # later hosts untouched
    assert not (tmp_path / "stopped").exists() or not list((tmp_path / "stopped").iterdir())


def test_rolling_patch_reports_every_host(lab, lab_config, converged, tmp_path):
    import json

    proc = _patch(lab_config.inventory_file, tmp_path / "reports")
    assert proc.returncode == 0, proc.stdout[-3000:]
    reports = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*.json")}
    assert set(reports) == {"app", "db", "ops"}
    assert all(isinstance(r["packages"], list) and r["rebooted"] is False for r in reports.values())
    # the patched hosts are still the hardened ones
    again = _playbook(lab_config.inventory_file)
    assert sum(r["changed"] for r in _recap(again.stdout).values()) == 0, again.stdout[-3000:]


def test_live_probes_hold_on_the_converged_lab_and_catch_a_disabled_firewall(lab, lab_config, converged):
    """The controls engine's probes, over the same SSH path as Ansible: all hold on the converged
    lab; with UFW turned off on one host, `ufw-active` fails and names it."""
    from trustops.controls import probes

    target = probes.Target(lab_config.inventory_file)
    results = {name: fn(target) for name, fn in probes.PROBES.items()}
    assert {n: p for n, (p, _) in results.items() if p} == {}
    subprocess.run(["docker", "exec", lab_config.container("ops"), "ufw", "disable"], check=True, capture_output=True)
    try:
        problems, _ = probes.ufw_active(target)
    finally:
        subprocess.run(["docker", "exec", lab_config.container("ops"), "ufw", "--force", "enable"], check=True,
                       capture_output=True)
    assert problems == ["ops: ufw is not active"]
