"""Request guards: no staff view without MFA (AUTH-01), sessions that end when idle, and the
Permissions-Policy header."""
from __future__ import annotations

import time
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import logout
from django.shortcuts import redirect

OPEN_PATHS = ("/healthz", "/metrics", "/login/", "/logout/", "/mfa/", "/oidc/", "/privacy/", "/subprocessors/",
              "/static/", "/password/reset/")


def needs_mfa(user) -> bool:
    if not user.is_authenticated:
        return False
    employee = getattr(user, "employee", None)
    return bool(user.is_staff or user.is_superuser or (employee is not None and employee.is_staff_role))


class StaffMustUseMFA:
    """An HR or admin user (or a Django staff user) whose session is not verified by a TOTP device
    is sent to the MFA page, whatever URL they ask for; the way back is URL-encoded."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if (needs_mfa(request.user) and not request.user.is_verified()
                and not request.path.startswith(OPEN_PATHS)):
            return redirect(f"{settings.MFA_URL}?next={quote(request.get_full_path(), safe='/')}")
        return self.get_response(request)


class IdleTimeout:
    """A signed-in session unused for SESSION_IDLE_SECONDS ends (the cookie's own age is the
    absolute limit). The last activity is kept in the session, so every worker sees it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            seen = request.session.get("seen_at")
            if seen is not None and now - float(seen) > settings.SESSION_IDLE_SECONDS:
                logout(request)
                return redirect(f"{settings.LOGIN_URL}?idle=1")
            request.session["seen_at"] = now
        return self.get_response(request)


class PermissionsPolicy:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
