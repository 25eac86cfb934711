"""The Entra ID backend: mozilla-django-oidc does the code flow, PKCE, nonce and signature; this
adds what it leaves to the application: the token must come from our tenant's issuer, be meant
for this app, and name an active account that HR provisioned. Accounts are matched on the Entra
object id (`oid`, immutable) within the tenant (`tid`), never on the e-mail address, a claim an
Entra admin or the user can change; e-mail is kept for display only. Staff still complete TOTP after
signing in (the middleware does not care how the password step happened)."""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

log = logging.getLogger(__name__)


def token_problems(claims: dict, *, issuer: str, client_id: str, tenant: str) -> list[str]:
    """Why a signature-verified ID token must still be refused (empty when it is acceptable)."""
    problems = []
    if claims.get("iss") != issuer:
        problems.append(f"issuer {claims.get('iss')!r} is not {issuer!r}")
    audience = claims.get("aud")
    if client_id not in (audience if isinstance(audience, list) else [audience]):
        problems.append(f"audience {audience!r} is not this app")
    if claims.get("tid") != tenant:
        problems.append(f"tenant {claims.get('tid')!r} is not {tenant!r}")
    if not str(claims.get("oid") or "").strip():
        problems.append("no oid (object id) claim")
    return problems


def email_of(claims: dict) -> str:
    """Entra sends `email` only when the account has a mailbox; the UPN is the sign-in name."""
    return (claims.get("email") or claims.get("preferred_username") or "").strip()


class EntraIDBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as exc:   # a refused token is a failed login, not a server error
            log.warning("OIDC sign-in refused: %s", exc)
            from django.contrib.auth.signals import user_login_failed
            user_login_failed.send(sender=type(self), credentials={"method": "oidc"}, request=request,
                                   reason=str(exc))
            return None

    def verify_token(self, token, **kwargs):
        claims = super().verify_token(token, **kwargs)
        problems = token_problems(claims, issuer=settings.OIDC_OP_ISSUER, client_id=self.OIDC_RP_CLIENT_ID,
                                  tenant=settings.OIDC_TENANT_ID)
        if problems:
            raise SuspiciousOperation("; ".join(problems))
        return claims

    def get_userinfo(self, access_token, id_token, payload):
        return payload   # the verified ID token has everything; no Graph call needed

    def verify_claims(self, claims):
        return bool(claims.get("oid") and claims.get("tid"))

    def filter_users_by_claims(self, claims):
        return get_user_model().objects.filter(employee__entra_tid=str(claims["tid"]),
                                               employee__entra_oid=str(claims["oid"]), is_active=True)

    def describe_user_by_claims(self, claims):
        return "the account signing in"   # no address in the logs
