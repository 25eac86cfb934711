"""Postgres as the postgres role leaves it: TLS with the platform CA, verify-full from the app,
plaintext refused by pg_hba, listening on the private address only, unreachable from other hosts;
the app's own deployed credentials get an encrypted session."""
from __future__ import annotations

import secrets
import shlex

import pytest



def _ca(site) -> str:
    """The platform CA on the app hosts (the app role's app_ca_path)."""
    return site.setting("app", "app_ca_path")


def _psql(site, name: str, dsn: str, password: str | None = None, env: str = ""):
    env = env or (f"PGPASSWORD={shlex.quote(password)} " if password else "")
    return site.run(name, f"{env}psql {shlex.quote(dsn + ' connect_timeout=5')} -Atc "
                 "'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' </dev/null")


def _app_dsn(site) -> str:
    return f"host={site.database_address()} dbname=benefits user=benefits_app"


@pytest.mark.probe("postgres-verify-full")
def test_verify_full_reaches_authentication_from_the_app(site):
    """From the app host, verify-full against the platform CA completes the TLS handshake and
    reaches the password check. (A wrong password proves TLS and the certificate's name both held;
    another CA is not trusted.)"""
    for name in site.need("app"):
        r = _psql(site, name, f"{_app_dsn(site)} sslmode=verify-full sslrootcert={_ca(site)}",
                  password=secrets.token_urlsafe(12))  # a wrong one, made now
        assert "password authentication failed" in r.stderr, f"{name}: {r.stderr.strip()[-200:]}"
        other_ca = _psql(site, name, f"{_app_dsn(site)} sslmode=verify-full "
                            "sslrootcert=/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt", password="x")
        assert other_ca.rc != 0 and "password authentication" not in other_ca.stderr, f"{name}: {other_ca.stderr}"


@pytest.mark.probe("postgres-verify-full")
def test_the_apps_own_credentials_over_verify_full_get_a_tls_session(site):
    """From the app host, the password the app runs with (its environment file there, read on the
    host: it never reaches the control node or the command line), over verify-full with the
    platform CA, opens a session that pg_stat_ssl shows encrypted."""
    env_file = site.setting("app", "app_env_file")
    password = f"PGPASSWORD=\"$(sed -n 's/^BENEFITS_DB_PASSWORD=//p' {shlex.quote(env_file)})\" "
    for name in site.need("app"):
        r = _psql(site, name, f"{_app_dsn(site)} sslmode=verify-full sslrootcert={_ca(site)}", env=password)
        assert r.rc == 0 and r.stdout.strip() == "t", \
            f"{name}: the app's credentials over verify-full got no TLS session: {r.stderr.strip()[-200:]}"


@pytest.mark.probe("postgres-refuses-plaintext")
def test_plaintext_is_refused_before_any_password(site):
    """From the app host, a connection without TLS is rejected by pg_hba, before any password."""
    for name in site.need("app"):
        r = _psql(site, name, f"{_app_dsn(site)} sslmode=disable")
        assert r.rc != 0 and "no encryption" in r.stderr, \
            f"{name}: a plaintext connection was not refused by pg_hba ({r.stderr.strip()[-160:] or 'it succeeded'})"


@pytest.mark.probe("postgres-listens-privately")
def test_postgres_listens_on_the_private_address_only(site):
    """Postgres listens on its private address only, and a host outside the app role cannot reach it."""
    port = site.setting("postgres", "postgres_port")
    for name in site.need("db"):
        listening = site.output(name, f"ss -ltnH 'sport = :{port}'").splitlines()
        assert listening, f"{name}: nothing listens on {port}"
        for line in listening:
            assert line.split()[3].rsplit(":", 1)[0] == site.private_ip(name), f"{name}: Postgres listens on {line}"
        for other in site.role("ops"):
            r = site.run(other, f"timeout 5 bash -c '</dev/tcp/{site.private_ip(name)}/{port}'")
            assert r.rc != 0, f"{other} (not an app host) reaches {name}:{port}"


def test_postgres_settings(site):
    for name in site.need("db"):
        db = site.host(name)
        show = lambda s: site.output(name, f"sudo -u postgres psql -Atc 'SHOW {s}'")  # noqa: E731
        assert show("listen_addresses") == site.private_ip(name)
        assert show("ssl") == "on" and show("ssl_min_protocol_version") == "TLSv1.2"
        assert show("password_encryption") == "scram-sha-256"
        assert show("log_connections") == "on" and show("log_disconnections") == "on"
        assert show("log_line_prefix") == "%m [%p] %q%u@%d "
        hba = db.file("/etc/postgresql/15/main/pg_hba.conf").content_string
        rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
        assert all(r[0] in ("local", "hostssl") for r in rules) and not any("trust" in r for r in rules), rules
        flags = site.output(name, "sudo -u postgres psql -Atc \"SELECT rolsuper, rolcreatedb, rolcreaterole "
                                "FROM pg_roles WHERE rolname='benefits_app'\"")
        assert flags.strip() == "f|f|f"
        public = site.output(name, "sudo -u postgres psql -Atc \"SELECT has_database_privilege('public', "
                                 "'benefits', 'CONNECT')\"")
        assert public.strip() == "f"


def test_the_postgres_home_is_private(site):
    """/var/lib/postgresql (the postgres user's home, above the data directory; on Azure the data
    disk's mount point) is postgres's alone: Debian leaves it 0755, the postgres role makes it 0700."""
    for name in site.need("db"):
        home = site.host(name).file("/var/lib/postgresql")
        assert home.is_directory and (home.user, home.group) == ("postgres", "postgres"), name
        assert home.mode == 0o700, f"{name}: /var/lib/postgresql is {home.mode:04o}, not 0700"
