"""The application's security promises, against Postgres over verify-full TLS: MFA for every
staff view, cookie flags, HTTPS only, access only to one's own company and data, field encryption
and key rotation, the data export, the RoPA covering every personal-data field."""
from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
import yaml

from tests.app.conftest import APP

HOST = "benefits.example"


def make(company_name: str, role: str = "employee", **fields):
    from django.contrib.auth.models import User

    from core.models import Company, Employee
    company, _ = Company.objects.get_or_create(name=company_name)
    password = secrets.token_urlsafe(16)
    user = User.objects.create_user(f"{role}-{secrets.token_hex(4)}", f"{secrets.token_hex(4)}@example.com", password)
    emp = Employee.objects.create(user=user, company=company, role=role, full_name=f"{role} {secrets.token_hex(3)}",
                                  **fields)
    return emp, password


def client(emp, password):
    """A signed-in test client, through the real sign-in form (django-axes needs the request)."""
    from django.test import Client
    c = Client(HTTP_HOST=HOST)
    r = c.post("/login/", {"username": emp.user.username, "password": password}, secure=True)
    assert r.status_code == 302, r.status_code
    return c


def code_for(device) -> str:
    from django_otp.oath import totp
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def verify_mfa(c, emp):
    """Verify the session with the account's authenticator, set up (as enrolment would) if none."""
    from django_otp.plugins.otp_totp.models import TOTPDevice
    device = TOTPDevice.objects.filter(user=emp.user, confirmed=True).first() or \
        TOTPDevice.objects.create(user=emp.user, name="authenticator", confirmed=True)
    return c.post("/mfa/?next=/hr/employees/", {"token": code_for(device)}, secure=True)


def test_the_database_connection_is_tls_verify_full(django_app):
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()")
        ssl, version = cur.fetchone()
    assert ssl is True and version in ("TLSv1.2", "TLSv1.3")
    assert connection.settings_dict["OPTIONS"]["sslmode"] == "verify-full"


def test_staff_views_need_mfa(django_app):
    hr, pw = make("Acme", "hr")
    c = client(hr, pw)
    r = c.get("/hr/employees/", secure=True)
    assert r.status_code == 302 and r["Location"].startswith("/mfa/")
    assert c.post("/mfa/", {"token": "000000"}, secure=True).status_code == 200      # a wrong code: no entry
    assert c.get("/hr/employees/", secure=True).status_code == 302
    import time
    time.sleep(1.1)   # django-otp throttles a device for 1 s after a wrong code (doubling each time)
    r = verify_mfa(c, hr)
    assert r.status_code == 302 and r["Location"] == "/hr/employees/"
    assert c.get("/hr/employees/", secure=True).status_code == 200


def test_hr_sees_only_their_own_company_and_employees_no_staff_view(django_app):
    hr, pw = make("Globex", "hr")
    mine, _ = make("Globex")
    theirs, _ = make("Initech")
    c = client(hr, pw)
    verify_mfa(c, hr)
    page = c.get("/hr/employees/", secure=True).content.decode()
    assert mine.full_name in page and theirs.full_name not in page
    emp_client = client(*make("Globex")[0:2])
    assert emp_client.get("/hr/employees/", secure=True).status_code == 403


def test_export_is_the_employees_own_data_and_is_audited(django_app):
    from core.models import AuditEvent
    me, pw = make("Umbrella", bank_account="DE89370400440532013000", national_id="X1234567")
    other, _ = make("Umbrella", bank_account="DE02120300000000202051")
    r = client(me, pw).get("/me/export.json", secure=True)
    data = r.json()
    (employee,) = data["core.Employee"]
    assert employee["full_name"] == me.full_name and employee["bank_account"] == "DE89370400440532013000"
    assert other.full_name not in r.content.decode() and "DE02120300000000202051" not in r.content.decode()
    assert AuditEvent.objects.filter(actor=me.user, action="dsr.export").exists()


def test_cookies_https_and_headers(django_app):
    from django.test import Client
    anon = Client(HTTP_HOST=HOST)
    r = anon.get("/login/")
    assert r.status_code == 301 and r["Location"].startswith("https://")
    r = anon.get("/login/", secure=True)
    assert r["Strict-Transport-Security"].startswith("max-age=63072000")
    assert r["X-Frame-Options"] == "DENY" and r["X-Content-Type-Options"] == "nosniff"
    csrf = r.cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Strict"
    emp, pw = make("Hooli")
    r = anon.post("/login/", {"username": emp.user.username, "password": pw,
                              "csrfmiddlewaretoken": csrf.value}, secure=True)
    session = r.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"


def test_sensitive_fields_are_encrypted_at_rest_and_rotate(django_app):
    from django.core.management import call_command
    from django.db import connection

    from benefits.crypto import FileKeyProvider
    from core.models import Employee
    emp, _ = make("Stark", bank_account="NL91ABNA0417164300", national_id="999999990")
    with connection.cursor() as cur:
        cur.execute("select bank_account, national_id from core_employee where id = %s", [emp.pk])
        bank, nid = cur.fetchone()
    assert bank.startswith("gcm2:v1:") and "NL91ABNA" not in bank and nid.startswith("gcm2:v1:")
    # a value moved to another column does not decrypt (the column is bound in)
    with connection.cursor() as cur:
        cur.execute("update core_employee set national_id = bank_account where id = %s", [emp.pk])
    with pytest.raises(Exception):
        Employee.objects.get(pk=emp.pk).national_id   # noqa: B018
    with connection.cursor() as cur:
        cur.execute("update core_employee set national_id = %s where id = %s", [nid, emp.pk])
    if not (django_app["keys"] / "v2.key").exists():
        FileKeyProvider(django_app["keys"]).add_version("v2")
    from core.fields import cipher
    cipher.cache_clear()
    call_command("reencrypt_fields", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("select bank_account from core_employee where id = %s", [emp.pk])
        assert cur.fetchone()[0].startswith("gcm2:v2:")
    assert Employee.objects.get(pk=emp.pk).bank_account == "NL91ABNA0417164300"


def test_ropa_covers_every_field_of_every_model(django_app):
    from django.apps import apps
    ropa = yaml.safe_load((APP / "ropa.yaml").read_text())
    classified = {f for a in ropa["activities"] for f in a["fields"]} | set(ropa["not_personal"])
    ours = [m for m in apps.get_models() if m._meta.app_label in ("core", "auth", "axes", "otp_totp", "otp_static")]
    fields = {f"{m._meta.label}.{f.name}" for m in ours for f in m._meta.concrete_fields}
    assert fields - classified == set(), "personal-data fields without a RoPA entry (app/ropa.yaml)"
    assert classified - fields == set(), "RoPA entries for fields that no longer exist"
    for a in ropa["activities"]:
        assert {"name", "purpose", "lawful_basis", "data_subjects", "recipients", "retention", "fields"} <= set(a)


def test_check_deploy_reports_nothing(django_app):
    import os
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=APP,
                          env=dict(os.environ), capture_output=True, text=True)
    assert proc.returncode == 0 and "no issues" in proc.stdout, proc.stdout + proc.stderr


def test_privacy_and_subprocessor_pages_are_public(django_app):
    from django.test import Client
    c = Client(HTTP_HOST=HOST)
    assert b"Privacy policy" in c.get("/privacy/", secure=True).content
    page = c.get("/subprocessors/", secure=True).content.decode()
    assert all(name in page for name in ("Amazon Web Services", "Anthropic", "PostHog", "Close"))


def test_app_pins_match_the_tested_ones():
    import tomllib
    pins = {}
    for line in (APP / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    meta = tomllib.loads((APP.parent / "pyproject.toml").read_text())["project"]
    tested = {d.split("==")[0].lower(): d.split("==")[1].split()[0]
              for d in meta["dependencies"] + meta["optional-dependencies"]["test"]}
    for name in ("django", "django-otp", "mozilla-django-oidc", "psycopg[binary]"):
        assert pins[name] == tested[name], name


def test_errors_reach_posthog_pseudonymously_and_only_when_configured(django_app, monkeypatch):
    from django.test import Client
    from django.urls import path

    from benefits import urls
    from core import errors

    captured = []
    fake = type("PostHog", (), {"capture": lambda self, **kw: captured.append(kw)})()

    def boom(request, pk):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(urls, "urlpatterns", urls.urlpatterns + [path("boom/<int:pk>", boom)])
    from django.urls import clear_url_caches
    clear_url_caches()
    emp, pw = make("Errors Ltd")
    c = Client(HTTP_HOST=HOST, raise_request_exception=False)
    c.force_login(emp.user, backend="django.contrib.auth.backends.ModelBackend")
    monkeypatch.setattr(errors, "client", lambda: None)          # not configured: nothing is sent
    assert c.get("/boom/42?email=x", secure=True).status_code == 500 and captured == []
    monkeypatch.setattr(errors, "client", lambda: fake)
    assert c.get("/boom/42?email=x", secure=True).status_code == 500
    (sent,) = captured
    assert sent["properties"] == {"$exception_type": "RuntimeError", "route": "boom/<int:pk>", "method": "GET"}
    assert set(sent) == {"distinct_id", "event", "properties"}     # the id in the path and the query stay out
    assert sent["distinct_id"].startswith("u_") and len(sent["distinct_id"]) == 26
    for personal in (emp.full_name, emp.user.email, emp.user.username):
        assert personal not in sent["distinct_id"]
    clear_url_caches()


def test_ciphertexts_do_not_move_between_rows_and_a_lost_key_fails_one_row_only(django_app):
    """A value copied from one employee's row to another's does not decrypt (the row is bound in);
    a row sealed under a key version that is gone fails where it is read, not every page."""
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connection

    from core.models import Employee
    victim, _ = make("Swap AG", bank_account="DE89370400440532013000")
    attacker, _ = make("Swap AG", bank_account="DE02120300000000202051")
    with connection.cursor() as cur:
        cur.execute("update core_employee set bank_account = (select bank_account from core_employee where id = %s) "
                    "where id = %s", [victim.pk, attacker.pk])
    with pytest.raises(ValueError, match=f"row {attacker.pk} does not decrypt"):      # core.fields.UndecryptableField
        print(Employee.objects.get(pk=attacker.pk).bank_account)
    lost, _ = make("Swap AG", national_id="LOST-KEY")
    with connection.cursor() as cur:
        cur.execute("update core_employee set national_id = replace(national_id, ':v', ':gone') where id = %s", [lost.pk])
    hr, pw = make("Swap AG", "hr")
    c = client(hr, pw)
    verify_mfa(c, hr)
    page = c.get("/hr/employees/", secure=True)
    assert page.status_code == 200 and lost.full_name in page.content.decode()
    assert Employee.objects.get(pk=victim.pk).bank_account == "DE89370400440532013000"
    with pytest.raises(CommandError, match="1 rows could not be decrypted|2 rows could not be decrypted"):
        call_command("reencrypt_fields", verbosity=0)
    assert Employee.objects.get(pk=victim.pk).bank_account == "DE89370400440532013000"
    Employee.objects.filter(pk__in=[attacker.pk, lost.pk]).delete()


def test_the_migration_binds_existing_values_to_their_rows(django_app):
    import importlib
    from types import SimpleNamespace

    from django.db import connection

    from benefits.crypto import LEGACY_PREFIX, PREFIX
    from core.fields import cipher
    from core.models import Employee
    emp, _ = make("Legacy AG")
    legacy = cipher().encrypt("FR7630006000011234567890189", "core.Employee.bank_account")
    legacy = LEGACY_PREFIX + legacy[len(PREFIX):]
    with connection.cursor() as cur:
        cur.execute("update core_employee set bank_account = %s where id = %s", [legacy, emp.pk])
    migration = importlib.import_module("core.migrations.0006_bind_encrypted_fields_to_rows")
    migration.reseal(None, SimpleNamespace(connection=connection))
    with connection.cursor() as cur:
        cur.execute("select bank_account from core_employee where id = %s", [emp.pk])
        assert cur.fetchone()[0].startswith(PREFIX + ":")
    assert Employee.objects.get(pk=emp.pk).bank_account == "FR7630006000011234567890189"
