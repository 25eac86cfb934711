"""No staff view without MFA (AUTH-01): an HR or admin user (or a Django staff user) whose session
is not verified by a TOTP device is sent to the MFA page, whatever URL they ask for."""
from __future__ import annotations

from django.conf import settings
from django.shortcuts import redirect

OPEN_PATHS = ("/healthz", "/metrics", "/login/", "/logout/", "/mfa/", "/oidc/", "/privacy/", "/subprocessors/")


def needs_mfa(user) -> bool:
    if not user.is_authenticated:
        return False
    employee = getattr(user, "employee", None)
    return bool(user.is_staff or user.is_superuser or (employee is not None and employee.is_staff_role))


class StaffMustUseMFA:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if (needs_mfa(request.user) and not request.user.is_verified()
                and not request.path.startswith(OPEN_PATHS)):
            return redirect(f"{settings.MFA_URL}?next={request.path}")
        return self.get_response(request)
