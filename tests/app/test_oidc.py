"""Entra ID sign-in (AUTH-02): the whole authorization-code flow (PKCE, nonce, RS256) against a
local OpenID Connect provider (oidc-provider-mock, in a thread on loopback), and the configuration
from the environment. The provider signs whatever claims the test registers for a subject (they
override iss/aud too), so each test plays a different Entra account, tenant or audience."""
from __future__ import annotations

import os
import secrets
import uuid
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests

from tests.app.test_security import HOST, make, verify_mfa

TENANT = str(uuid.uuid4())
CLIENT_ID = str(uuid.uuid4())


@pytest.fixture(scope="module")
def provider():
    from oidc_provider_mock import run_server_in_thread
    old = os.environ.get("AUTHLIB_INSECURE_TRANSPORT")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"      # plain HTTP on loopback, for the provider only
    try:
        with run_server_in_thread(require_nonce=True) as server:
            yield SimpleNamespace(issuer=f"http://localhost:{server.server_port}")
    finally:
        if old is None:
            os.environ.pop("AUTHLIB_INSECURE_TRANSPORT", None)
        else:
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = old


def entra_environment(issuer: str, **extra) -> dict[str, str]:
    return {"BENEFITS_OIDC_TENANT_ID": TENANT, "BENEFITS_OIDC_CLIENT_ID": CLIENT_ID,
            "BENEFITS_OIDC_CLIENT_SECRET": secrets.token_urlsafe(24), "BENEFITS_OIDC_ISSUER": issuer,
            "BENEFITS_OIDC_AUTHORIZATION_ENDPOINT": f"{issuer}/oauth2/authorize",
            "BENEFITS_OIDC_TOKEN_ENDPOINT": f"{issuer}/oauth2/token", "BENEFITS_OIDC_JWKS_ENDPOINT": f"{issuer}/jwks",
            **extra}


@pytest.fixture
def entra(django_app, provider):
    from django.test import override_settings

    from benefits.entra import oidc_settings
    # the mock's single key has no "kid" (Entra's do); the key is still matched by algorithm and the
    # signature verified
    with override_settings(**oidc_settings(entra_environment(provider.issuer)), OIDC_ENABLED=True, OIDC_VERIFY_KID=False,
                           AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend",
                                                    "core.oidc.EntraIDBackend"]):
        yield provider


def entra_employee(company: str, role: str = "employee"):
    """An employee HR provisioned with their Entra object id in our tenant."""
    emp, _ = make(company, role)
    emp.entra_tid, emp.entra_oid = TENANT, str(uuid.uuid4())
    emp.save()
    return emp


def sign_in(provider, **claims):
    """A browser's round trip: the app sends it to the provider, the provider signs the subject in
    (with the claims registered for it) and sends it back with a code, the app redeems the code.
    Returns the client and the last answer."""
    from django.test import Client
    sub = secrets.token_hex(8)
    put = requests.put(f"{provider.issuer}/users/{sub}", json={"tid": TENANT, **claims}, timeout=10)
    assert put.status_code == 204, put.text
    c = Client(HTTP_HOST=HOST)
    to_provider = c.get("/oidc/authenticate/", secure=True)
    assert to_provider.status_code == 302 and to_provider["Location"].startswith(f"{provider.issuer}/oauth2/authorize?")
    assert "code_challenge=" in to_provider["Location"] and "nonce=" in to_provider["Location"]
    back = requests.post(to_provider["Location"], data={"sub": sub}, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text[:300]
    callback = urlsplit(back.headers["Location"])
    assert (callback.scheme, callback.netloc, callback.path) == ("https", HOST, "/oidc/callback/")
    return c, c.get(f"{callback.path}?{callback.query}", secure=True)


def signed_in_user(c):
    from django.contrib.auth import get_user
    return get_user(c)


def test_an_employee_of_our_tenant_signs_in_and_it_is_audited(entra):
    from core.models import AuditEvent
    emp = entra_employee("Entra AG")
    c, answer = sign_in(entra, oid=emp.entra_oid, email="renamed@example.com")   # the address changed: still them
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert signed_in_user(c) == emp.user
    assert AuditEvent.objects.filter(action="login", actor=emp.user, detail__method="oidc").exists()
    assert c.get("/expenses/", secure=True).status_code == 200


def test_staff_signed_in_through_entra_still_need_totp(entra):
    hr = entra_employee("Entra AG", "hr")
    c, answer = sign_in(entra, oid=hr.entra_oid, email=hr.user.email)
    assert signed_in_user(c) == hr.user
    r = c.get("/hr/employees/", secure=True)
    assert r.status_code == 302 and r["Location"].startswith("/mfa/")
    # Entra ID verified the person: they may set up an authenticator without the e-mailed link
    start = c.post("/mfa/enrol/", {"action": "start"}, secure=True)
    assert start.status_code == 200 and b'id="secret"' in start.content
    assert verify_mfa(c, hr)["Location"] == "/hr/employees/"
    assert c.get("/hr/employees/", secure=True).status_code == 200


@pytest.mark.parametrize("claims, why", [
    ({"tid": str(uuid.uuid4())}, "tenant"),                      # a signed token from another tenant
    ({"aud": str(uuid.uuid4())}, "audience"),                   # a token meant for another app
    ({"iss": "https://login.microsoftonline.com/other/v2.0"}, "issuer"),
    ({"oid": None}, "oid"),                                     # no object id: nothing to match on
])
def test_tokens_from_elsewhere_are_refused_and_audited(entra, claims, why):
    from django.contrib.auth.models import User

    from core.models import AuditEvent
    emp = entra_employee("Entra AG")
    c, answer = sign_in(entra, **{"oid": emp.entra_oid, "email": emp.user.email, **claims})
    assert answer.status_code == 302 and answer["Location"] == "/login/?sso=failed"
    assert not signed_in_user(c).is_authenticated
    failure = AuditEvent.objects.filter(action="login.failed", detail__method="oidc").order_by("-pk").first()
    assert failure is not None and why in failure.detail["reason"]
    assert b"did not succeed" in c.get(answer["Location"], secure=True).content
    assert User.objects.filter(email=emp.user.email).count() == 1


def test_no_account_is_made_by_signing_in_and_inactive_accounts_stay_out(entra):
    from django.contrib.auth.models import User
    before = User.objects.count()
    c, answer = sign_in(entra, oid=str(uuid.uuid4()), email=f"{secrets.token_hex(4)}@example.com")
    assert answer["Location"] == "/login/?sso=failed" and User.objects.count() == before
    emp = entra_employee("Entra AG")
    emp.user.is_active = False
    emp.user.save()
    c, answer = sign_in(entra, oid=emp.entra_oid, email=emp.user.email)
    assert answer["Location"] == "/login/?sso=failed" and not signed_in_user(c).is_authenticated


def test_accounts_are_matched_by_object_id_not_by_e_mail(entra):
    """Finding 7: an Entra account that carries an employee's e-mail address but another object id
    (a renamed or re-created account, or another person given the address) is not that employee;
    the same object id in another tenant is not either."""
    emp = entra_employee("Entra AG")
    c, answer = sign_in(entra, oid=str(uuid.uuid4()), email=emp.user.email)
    assert answer["Location"] == "/login/?sso=failed" and not signed_in_user(c).is_authenticated
    legacy, _ = make("Entra AG")          # provisioned before object ids: no e-mail fallback
    c, answer = sign_in(entra, oid=str(uuid.uuid4()), email=legacy.user.email)
    assert not signed_in_user(c).is_authenticated
    from django.db import IntegrityError, transaction
    twin, _ = make("Entra AG")
    twin.entra_tid, twin.entra_oid = emp.entra_tid, emp.entra_oid
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()                                   # one account per Entra object


def test_login_page_offers_entra_only_when_configured(django_app, entra):
    from django.test import Client, override_settings
    assert b"Sign in with Microsoft Entra ID" in Client(HTTP_HOST=HOST).get("/login/", secure=True).content
    with override_settings(OIDC_ENABLED=False):
        c = Client(HTTP_HOST=HOST)
        assert b"Microsoft Entra ID" not in c.get("/login/", secure=True).content
        assert c.get("/oidc/authenticate/", secure=True).status_code == 404


def test_password_logins_are_audited_including_failures(django_app):
    from django.test import Client

    from core.models import AuditEvent
    emp, pw = make("Audit AG")
    c = Client(HTTP_HOST=HOST)
    c.post("/login/", {"username": emp.user.username, "password": secrets.token_urlsafe(12)}, secure=True)
    failed = AuditEvent.objects.filter(action="login.failed").order_by("-pk").first()
    assert failed.detail == {"method": "password", "username": emp.user.username}
    assert c.post("/login/", {"username": emp.user.username, "password": pw}, secure=True).status_code == 302
    assert AuditEvent.objects.filter(action="login", actor=emp.user, detail__method="password").exists()
    c.post("/logout/", secure=True)
    assert AuditEvent.objects.filter(action="logout", actor=emp.user).exists()


# --- the configuration, without Django running ------------------------------------------------

def test_configuration_from_the_environment():
    from django.core.exceptions import ImproperlyConfigured

    from benefits.entra import oidc_settings
    assert oidc_settings({}) == {}                                  # off: password + TOTP only
    secret = secrets.token_urlsafe(16)
    conf = oidc_settings({"BENEFITS_OIDC_TENANT_ID": TENANT, "BENEFITS_OIDC_CLIENT_ID": CLIENT_ID,
                          "BENEFITS_OIDC_CLIENT_SECRET": secret})
    base = f"https://login.microsoftonline.com/{TENANT}"
    assert conf["OIDC_OP_ISSUER"] == f"{base}/v2.0"
    assert conf["OIDC_OP_AUTHORIZATION_ENDPOINT"] == f"{base}/oauth2/v2.0/authorize"
    assert conf["OIDC_OP_TOKEN_ENDPOINT"] == f"{base}/oauth2/v2.0/token"
    assert conf["OIDC_OP_JWKS_ENDPOINT"] == f"{base}/discovery/v2.0/keys"
    assert conf["OIDC_RP_SIGN_ALGO"] == "RS256" and conf["OIDC_USE_PKCE"] and not conf["OIDC_CREATE_USER"]
    for bad, names in [({"BENEFITS_OIDC_TENANT_ID": "common"}, "multi-tenant"),
                       ({"BENEFITS_OIDC_TENANT_ID": "contoso"}, "GUID"),
                       ({"BENEFITS_OIDC_TENANT_ID": TENANT, "BENEFITS_OIDC_CLIENT_ID": CLIENT_ID},
                        "BENEFITS_OIDC_CLIENT_SECRET"),
                       (entra_environment("http://idp.example"), "https")]:
        with pytest.raises(ImproperlyConfigured, match=names):
            oidc_settings(bad)
