"""Every host as the hardening and firewall roles leave it: sshd's effective configuration, UFW
on with its per-role rules, kernel and login settings, and security updates applied."""
from __future__ import annotations

import re

import pytest

from tests.live import ufw
from trustops.converge import role_default


def _sshd(site, name: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in site.output(name, "sshd -T").splitlines() if " " in line)


@pytest.mark.probe("sshd-hardened")
def test_sshd_effective_config(site):
    """The effective sshd configuration (sshd -T) on every host: keys only, no root login, strong
    algorithms, forwarding only where the db is reached through the app host."""
    for name in site.hosts:
        cfg = _sshd(site, name)
        want = {"permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
                "pubkeyauthentication": "yes", "maxauthtries": "3", "allowgroups": "ssh-users",
                "clientaliveinterval": "300",
                "allowtcpforwarding": "local" if site.hosts[name]["trustops_role"] == "app" else "no"}
        assert {k: cfg.get(k) for k in want} == want, name
        assert "cbc" not in cfg["ciphers"] and "chacha20-poly1305@openssh.com" in cfg["ciphers"], name
        assert "sha1" not in cfg["macs"] and "-etm@openssh.com" in cfg["macs"], name
        assert "diffie-hellman-group14-sha1" not in cfg["kexalgorithms"], name


@pytest.mark.probe("ufw-active")
def test_ufw_is_on_everywhere(site):
    """Every host's firewall is on, drops what no rule allows, and logs."""
    for name in site.hosts:
        status = site.output(name, "ufw status verbose")
        assert "Status: active" in status, f"{name}: ufw is not active"
        assert "Default: deny (incoming), allow (outgoing)" in status, f"{name}: {status}"
        assert "Logging: on (high)" in status, f"{name}: {status}"


@pytest.mark.probe("postgres-listens-privately")
def test_ufw_rules_per_role(site):
    """Only the app hosts reach Postgres; HTTPS is open on the app hosts; Alertmanager on ops."""
    status = {n: site.output(n, "ufw status verbose") for n in site.hosts}
    for name in site.role("app"):
        assert re.search(r"443/tcp\s+ALLOW IN\s+Anywhere", status[name]), status[name]
    apps = {site.private_ip(app) for app in site.role("app")}
    postgres = int(site.setting("postgres", "postgres_port"))
    for name in site.role("db"):
        allowed = {r.source_address for r in ufw.rules(status[name]) if r.allows and r.covers_port(postgres)}
        assert apps <= allowed, f"{name}: Postgres not open to app host(s) {', '.join(sorted(apps - allowed))}"
        others = ufw.open_to_others(status[name], postgres, apps)
        assert not others, f"{name}: Postgres open beyond the app hosts: " + \
            "; ".join(f"{r.to} {r.action} {r.source}" for r in others)
    for name in site.role("ops"):
        alertmanager = site.setting("alerting", "alerting_alertmanager_port")
        assert re.search(rf"{alertmanager}/tcp\s+ALLOW IN", status[name]) and str(postgres) not in status[name], \
            status[name]


def test_sysctls_in_force(site):
    for name in site.hosts:
        h = site.host(name)
        assert h.sysctl("net.ipv4.tcp_syncookies") == 1, name
        assert h.sysctl("net.ipv4.conf.all.accept_redirects") == 0, name
        assert h.sysctl("net.ipv4.conf.all.rp_filter") == 1, name
        conf = h.file("/etc/sysctl.d/90-trustops.conf")
        assert conf.contains("net.ipv4.conf.all.log_martians = 1"), name
        if site.vars.get("trustops_cloud") == "lab":
            assert not conf.contains("kernel."), name   # machine-global: never written on a lab host


def test_pam_login_defs_and_coredumps(site):
    for name in site.hosts:
        h = site.host(name)
        assert h.file("/etc/security/pwquality.conf").contains("^minlen = 14"), name
        assert h.file("/etc/pam.d/common-auth").contains("pam_faillock.so preauth"), name
        assert h.file("/etc/login.defs").contains("^UMASK\t027"), name
        assert h.file("/etc/security/limits.d/10-trustops-coredump.conf").contains("hard core 0"), name
        assert not h.package("telnet").is_installed, name
        assert h.file("/etc/shadow").mode == 0o640, name


def test_sensitive_files_have_the_roles_modes_and_owners(site):
    """Each path of the hardening role's list has its mode, root as owner, and its group (a converge
    whose check judged them all as fine left sshd_config 0644 on every host, and nothing here saw it)."""
    want = role_default("hardening", "hardening_sensitive_files")
    for name in site.hosts:
        h = site.host(name)
        for f in want:
            got = h.file(f["path"])
            assert (oct(got.mode), got.user, got.group) == (oct(int(f["mode"], 8)), "root", f.get("group", "root")), \
                (name, f["path"])


@pytest.mark.probe("security-updates-applied")
def test_security_updates_are_automatic_and_none_is_pending(site):
    """Unattended upgrades are on, and apt (with the lists it has) knows of no pending security update."""
    for name in site.hosts:
        assert 'APT::Periodic::Unattended-Upgrade "1"' in \
            site.output(name, "apt-config dump APT::Periodic::Unattended-Upgrade"), f"{name}: unattended upgrades off"
        plan = site.output(name, "apt-get -s -o Debug::NoLocking=1 upgrade")
        pending = [line.split()[1] for line in plan.splitlines() if line.startswith("Inst") and "security" in line]
        assert not pending, f"{name}: {len(pending)} security update(s) pending: {', '.join(pending[:5])}"


def test_no_mail_transfer_agent(site):
    """No host runs an MTA (nothing needs one: the app relays to its SMTP server itself): no exim or
    postfix installed, nothing listening on port 25."""
    for name in site.hosts:
        h = site.host(name)
        installed = [p for p in ("exim4-base", "exim4-daemon-light", "postfix") if h.package(p).is_installed]
        assert not installed, f"{name}: MTA installed: {', '.join(installed)}"
        listening = site.output(name, "ss -ltnH 'sport = :25'").strip()
        assert not listening, f"{name}: something listens on port 25: {listening}"


def test_none_of_the_removed_packages_is_installed(site):
    """What the hardening role removes (legacy network clients, apt-listbugs, an MTA, rkhunter that
    earlier versions installed and never ran) is on no host, not even its configuration."""
    removed = set(role_default("hardening", "hardening_remove_packages"))
    assert "rkhunter" in removed
    for name in site.hosts:
        status = site.output(name, "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n'")
        left = sorted(pkg.split(":")[0] for abbrev, pkg in (line.split(None, 1) for line in status.splitlines()
                                                             if len(line.split(None, 1)) == 2)
                      if pkg.split(":")[0] in removed and abbrev[1:2] not in ("n", ""))
        assert not left, f"{name}: still installed (or its configuration kept): {', '.join(left)}"
