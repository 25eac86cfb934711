from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.models import Employee, audit


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


class Login(LoginView):
    """Password sign-in, with the Entra ID button when OIDC is configured."""
    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "oidc_enabled": settings.OIDC_ENABLED,
                "sso_failed": self.request.GET.get("sso") == "failed"}


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


@login_required
@require_http_methods(["GET", "POST"])
def mfa(request):
    """Set up (first time) or verify a TOTP device for this session."""
    device = TOTPDevice.objects.filter(user=request.user).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="default", confirmed=False)
    error = ""
    if request.method == "POST":
        if device.verify_token(request.POST.get("token", "").strip()):
            if not device.confirmed:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                audit(request, "mfa.enrolled", target=f"device:{device.pk}")
            otp_login(request, device)
            audit(request, "mfa.verified", target=f"device:{device.pk}")
            nxt = request.GET.get("next", "/")
            return redirect(nxt if url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}) else "/")
        audit(request, "mfa.failed", target=f"device:{device.pk}")
        error = "That code is not valid. Use the current code from your authenticator app."
    return render(request, "core/mfa.html", {"device": device, "enrolling": not device.confirmed, "error": error})


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
def hr_employees(request):
    """HR's list of their own company's employees; no other company's, ever."""
    me = _staff(request)
    people = Employee.objects.filter(company=me.company, anonymized_at__isnull=True).order_by("full_name")
    return render(request, "core/employees.html", {"people": people, "company": me.company})


@login_required
def my_export(request):
    """Data portability (DSR-01): everything held about the signed-in employee, machine-readable."""
    me = _employee(request)
    data = {"full_name": me.full_name, "email": request.user.email, "username": request.user.username,
            "company": me.company.name, "role": me.role, "bank_account": me.bank_account,
            "national_id": me.national_id, "date_joined": request.user.date_joined.isoformat()}
    audit(request, "dsr.export", target=f"employee:{me.pk}")
    response = JsonResponse(data, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = 'attachment; filename="my-data.json"'
    return response


def privacy(request):
    return render(request, "core/privacy.html")


def subprocessors(request):
    return render(request, "core/subprocessors.html", {"rows": json.loads(SUBPROCESSORS)})


SUBPROCESSORS = json.dumps([
    ["Amazon Web Services", "File storage and database backups", "EU (Frankfurt)"],
    ["Microsoft (Azure, Entra ID)", "Hosting and staff identity", "EU"],
    ["Anthropic", "Optional AI receipt scanning and expense evaluation (receipt image, category names and the company's expense policy only)", "US"],
    ["PostHog", "Product analytics and error reporting (pseudonymous id, no personal data)", "EU"],
    ["Close", "CRM", "US"],
])
