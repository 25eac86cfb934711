from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from core.models import Employee, audit

STYLESHEET = Path(__file__).resolve().parent / "static" / "core" / "app.css"


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def stylesheet(request):
    """The app's one stylesheet (no static-file server needed behind nginx)."""
    response = HttpResponse(STYLESHEET.read_bytes(), content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


def too_many(request, message: str):
    return render(request, "core/message.html", {"title": "Too many requests", "message": message}, status=429)


class Login(LoginView):
    """Password sign-in, with the Entra ID button when OIDC is configured."""
    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "oidc_enabled": settings.OIDC_ENABLED,
                "sso_failed": self.request.GET.get("sso") == "failed",
                "idle": self.request.GET.get("idle") == "1"}


def oidc_urls() -> list:
    """mozilla-django-oidc's sign-in and callback views, answering 404 while OIDC is off."""
    from mozilla_django_oidc import views as oidc

    def when_enabled(view):
        def wrapped(request, *args, **kwargs):
            if not settings.OIDC_ENABLED:
                raise Http404("Entra ID sign-in is not configured")
            return view(request, *args, **kwargs)
        return wrapped
    return [path("authenticate/", when_enabled(oidc.OIDCAuthenticationRequestView.as_view()),
                 name="oidc_authentication_init"),
            path("callback/", when_enabled(oidc.OIDCAuthenticationCallbackView.as_view()),
                 name="oidc_authentication_callback")]


def safe_next(request, default: str = "/") -> str:
    """A same-site, HTTPS-only (or relative) target for `next`."""
    nxt = request.GET.get("next", default)
    ok = url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=True)
    return nxt if ok else default


# --- re-authentication before sensitive actions ---------------------------------------------

def recently_authenticated(request) -> bool:
    return time.time() - float(request.session.get("auth_at", 0)) <= settings.REAUTH_SECONDS


def reauth_redirect(request):
    from urllib.parse import quote
    return redirect(f"/reauth/?next={quote(request.get_full_path(), safe='/')}")


@login_required
@require_http_methods(["GET", "POST"])
def reauth(request):
    """Confirm it is still you: the password, or for accounts without one (Entra ID) the
    authenticator code."""
    error = ""
    has_password = request.user.has_usable_password()
    if request.method == "POST":
        secret = request.POST.get("secret", "")
        ok = False
        if has_password:
            ok = authenticate(request, username=request.user.get_username(), password=secret) == request.user
        else:
            from core.mfa import verify_any
            ok = verify_any(request.user, secret) is not None
        if ok:
            request.session["auth_at"] = time.time()
            audit(request, "reauth.ok")
            return redirect(safe_next(request))
        audit(request, "reauth.failed")
        error = "That did not match. Try again."
    return render(request, "core/reauth.html", {"has_password": has_password, "error": error},
                  status=400 if error else 200)


def _employee(request) -> Employee:
    employee = getattr(request.user, "employee", None)
    if employee is None or employee.anonymized_at is not None:
        raise PermissionDenied
    return employee


def _staff(request) -> Employee:
    """The signed-in HR or admin employee; anyone else is refused."""
    me = _employee(request)
    if not me.is_staff_role:
        raise PermissionDenied
    return me


@login_required
def home(request):
    me = getattr(request.user, "employee", None)
    return render(request, "core/home.html", {"me": me})


@login_required
def hr_employees(request):
    """HR's list of their own company's employees; no other company's, ever."""
    me = _staff(request)
    people = Employee.objects.filter(company=me.company, anonymized_at__isnull=True).order_by("full_name")
    return render(request, "core/employees.html", {"people": people, "company": me.company})


@login_required
def my_export(request):
    """Access and portability (Arts. 15 and 20): everything held about the signed-in employee, as
    JSON with the receipts, after a fresh sign-in (core.export builds it from the RoPA)."""
    from core.export import export
    me = _employee(request)
    if not recently_authenticated(request):
        return reauth_redirect(request)
    data = export(me)
    audit(request, "dsr.export", target=f"employee:{me.pk}")
    response = JsonResponse(data, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = 'attachment; filename="my-data.json"'
    return response


def privacy(request):
    return render(request, "core/privacy.html")


def subprocessors(request):
    """The register; the AI row is what this deployment's settings actually use (HOST-03)."""
    from core.subprocessors import register_ai_row

    rows = json.loads(SUBPROCESSORS)
    return render(request, "core/subprocessors.html", {"rows": rows[:2] + [register_ai_row(settings)] + rows[2:]})


SUBPROCESSORS = json.dumps([
    ["Amazon Web Services", "File storage and database backups", "EU (Frankfurt)"],
    ["Microsoft (Azure, Entra ID)", "Hosting and staff identity", "EU"],
    ["PostHog", "Product analytics and error reporting (pseudonymous id, no personal data)", "EU"],
    ["Close", "CRM", "US"],
])
