"""Staff sign-in through Microsoft Entra ID (OIDC, AUTH-02): the settings for mozilla-django-oidc,
made from environment variables. A plain function of the environment, so the configuration can be
checked without starting Django.

Entra ID is used as a single-tenant provider: the app matches Entra accounts to its own accounts by
object id within the company's own tenant (core/oidc.py); multi-tenant "common"/"organizations"
authorities are refused (any tenant could sign in). The
endpoint variables exist for other providers and for the test's local OIDC server; without them
the endpoints are Entra's, derived from the tenant."""
from __future__ import annotations

import re
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

ENTRA = "https://login.microsoftonline.com"
MULTI_TENANT = {"common", "organizations", "consumers"}
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def entra_endpoints(tenant: str) -> dict[str, str]:
    """Entra ID's v2.0 endpoints for one tenant (its discovery document says the same)."""
    return {"issuer": f"{ENTRA}/{tenant}/v2.0",
            "authorization": f"{ENTRA}/{tenant}/oauth2/v2.0/authorize",
            "token": f"{ENTRA}/{tenant}/oauth2/v2.0/token",
            "jwks": f"{ENTRA}/{tenant}/discovery/v2.0/keys",
            "userinfo": "https://graph.microsoft.com/oidc/userinfo"}


def oidc_settings(environ: Mapping[str, str]) -> dict[str, object]:
    """The OIDC_* settings, or {} when BENEFITS_OIDC_TENANT_ID is unset (password + TOTP only).
    Raises ImproperlyConfigured naming the variable that is missing or wrong."""
    tenant = environ.get("BENEFITS_OIDC_TENANT_ID", "").strip()
    if not tenant:
        return {}
    if tenant.lower() in MULTI_TENANT:
        raise ImproperlyConfigured(
            f"BENEFITS_OIDC_TENANT_ID={tenant!r} is a multi-tenant authority; set the company's own tenant id "
            "(only the company's own tenant may sign its staff in)")
    endpoints = entra_endpoints(tenant)
    overridden = {}
    for name in endpoints:
        value = environ.get(f"BENEFITS_OIDC_{name.upper()}_ENDPOINT" if name != "issuer" else "BENEFITS_OIDC_ISSUER")
        if value:
            overridden[name] = value
    if not GUID.match(tenant) and not overridden:
        raise ImproperlyConfigured(f"BENEFITS_OIDC_TENANT_ID={tenant!r} is not an Entra tenant id (a GUID)")
    endpoints.update(overridden)
    for name, url in endpoints.items():
        if not url.startswith("https://") and not url.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ImproperlyConfigured(f"the OIDC {name} endpoint must use https: {url}")
    missing = [v for v in ("BENEFITS_OIDC_CLIENT_ID", "BENEFITS_OIDC_CLIENT_SECRET") if not environ.get(v)]
    if missing:
        raise ImproperlyConfigured(f"{', '.join(missing)} required when BENEFITS_OIDC_TENANT_ID is set")
    return {
        "OIDC_TENANT_ID": tenant,
        "OIDC_OP_ISSUER": endpoints["issuer"],
        "OIDC_OP_AUTHORIZATION_ENDPOINT": endpoints["authorization"],
        "OIDC_OP_TOKEN_ENDPOINT": endpoints["token"],
        "OIDC_OP_JWKS_ENDPOINT": endpoints["jwks"],
        "OIDC_OP_USER_ENDPOINT": endpoints["userinfo"],   # unused: the verified ID token carries the claims
        "OIDC_RP_CLIENT_ID": environ["BENEFITS_OIDC_CLIENT_ID"],
        "OIDC_RP_CLIENT_SECRET": environ["BENEFITS_OIDC_CLIENT_SECRET"],
        "OIDC_RP_SIGN_ALGO": "RS256",
        "OIDC_RP_SCOPES": "openid email profile",
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_CREATE_USER": False,      # accounts are provisioned by HR, never by signing in
        "OIDC_TIMEOUT": 10,
        "LOGIN_REDIRECT_URL_FAILURE": "/login/?sso=failed",
    }
