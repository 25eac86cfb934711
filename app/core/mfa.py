"""Second factor (AUTH-01): TOTP with recovery codes, enrolment bound to the person.

A password alone never sets up a device: enrolment needs either a one-time link sent to the
account's work address (whoever holds the mailbox is the person HR provisioned) or a session that
signed in through Entra ID. Each start makes a fresh secret, kept only for the session that asked
for it; confirming it gives ten single-use recovery codes; every device added or removed is
announced by e-mail. GET requests never create anything."""
from __future__ import annotations

import logging
import secrets

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.models import audit
from core.views import safe_next

RECOVERY_CODES = 10
log = logging.getLogger(__name__)
SESSION_ENROL_OK, SESSION_DEVICE = "mfa_enrol_ok", "mfa_enrol_device"


class EnrolmentTokens(PasswordResetTokenGenerator):
    """One-time enrolment links: the hash covers the account's confirmed devices, so a link stops
    working once a device is set up (or removed), and after PASSWORD_RESET_TIMEOUT."""
    key_salt = "core.mfa.EnrolmentTokens"

    def _make_hash_value(self, user, timestamp):
        devices = ",".join(str(pk) for pk in TOTPDevice.objects.filter(user=user, confirmed=True)
                           .order_by("pk").values_list("pk", flat=True))
        return f"{user.pk}{user.email}{devices}{timestamp}{user.is_active}"


tokens = EnrolmentTokens()


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def verify_any(user, code: str):
    """The device that accepts `code`: the authenticator, or a recovery code (used up)."""
    code = (code or "").strip().replace(" ", "")
    device = confirmed_device(user)
    if device is not None and code.isdigit() and device.verify_token(code):
        return device
    for static in StaticDevice.objects.filter(user=user, confirmed=True):
        if static.verify_token(code):
            return static
    return None


def signed_in_with_entra(request) -> bool:
    return request.session.get("_auth_user_backend", "").endswith("EntraIDBackend")


def notify(user, subject: str, body: str) -> bool:
    """Mail the account's address; False (logged, never an error page) when the relay fails."""
    if not user.email:
        return False
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
    except Exception:  # noqa: BLE001 - SMTP down: the caller says so or goes on
        log.error("could not send %r to the account's address", subject, exc_info=True)
        return False
    return True


@login_required
@require_http_methods(["GET", "POST"])
def mfa(request):
    """Verify this session with the authenticator or a recovery code; without a device, explain
    how to set one up (and send the link on request)."""
    device = confirmed_device(request.user)
    if device is None:
        sent = failed = False
        if request.method == "POST" and request.POST.get("action") == "send-link":
            sent = send_enrolment_link(request)
            failed = not sent
        return render(request, "core/mfa_setup.html", {"sent": sent, "failed": failed,
                                                       "entra": signed_in_with_entra(request),
                                                       "next": request.GET.get("next", "")},
                      status=503 if failed else 200)
    error = ""
    if request.method == "POST":
        used = verify_any(request.user, request.POST.get("token", ""))
        if used is not None:
            otp_login(request, used)
            audit(request, "mfa.verified", target=f"device:{used.persistent_id}")
            if isinstance(used, StaticDevice):
                left = used.token_set.count()
                notify(request.user, "A recovery code was used",
                       f"A recovery code was used to sign in to your benefits account. {left} codes are left. "
                       "If this was not you, tell HR now.")
            return redirect(safe_next(request))
        audit(request, "mfa.failed", target=f"device:{device.persistent_id}")
        error = "That code is not valid. Use the current code from your authenticator app, or a recovery code."
    return render(request, "core/mfa.html", {"error": error}, status=400 if error else 200)


def send_enrolment_link(request) -> bool:
    user = request.user
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = request.build_absolute_uri(f"/mfa/enrol/{uid}/{tokens.make_token(user)}/")
    sent = notify(user, "Set up your authenticator",
                  f"Open this link within an hour, signed in to your benefits account, to set up your "
                  f"authenticator app:\n\n{link}\n\nIf you did not ask for it, tell HR.")
    audit(request, "mfa.enrolment_link_sent" if sent else "mfa.enrolment_link_failed", target=f"user:{user.pk}")
    return sent


@login_required
def enrol_link(request, uidb64: str, token: str):
    """The e-mailed link: valid once, for the account it was sent to, in a signed-in session."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (ValueError, TypeError):
        pk = None
    if pk != request.user.pk or not tokens.check_token(request.user, token):
        audit(request, "mfa.enrolment_link_refused")
        return render(request, "core/message.html", {"title": "This link does not work", "message":
                      "The set-up link has expired, was used already, or belongs to another account. "
                      "Ask for a new one on the MFA page."}, status=400)
    request.session[SESSION_ENROL_OK] = True
    return redirect("/mfa/enrol/")


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request):
    """Start (a fresh secret for this session) and confirm (the code from the app) a device."""
    if not (request.session.get(SESSION_ENROL_OK) or signed_in_with_entra(request)):
        return render(request, "core/message.html", {"title": "Set-up link needed", "message":
                      "To set up an authenticator, open the link we e-mail to your work address "
                      "(ask for it on the MFA page)."}, status=403)
    if request.method == "GET":
        return render(request, "core/mfa_enrol.html", {"device": None})
    action = request.POST.get("action")
    if action == "start":
        with transaction.atomic():
            TOTPDevice.objects.filter(user=request.user, confirmed=False).delete()
            device = TOTPDevice.objects.create(user=request.user, name="authenticator", confirmed=False)
        request.session[SESSION_DEVICE] = device.pk
        audit(request, "mfa.enrolment_started", target=f"device:{device.persistent_id}")
        return render(request, "core/mfa_enrol.html", {"device": device, "secret": b32(device.bin_key)})
    if action == "confirm":
        device = TOTPDevice.objects.filter(pk=request.session.get(SESSION_DEVICE), user=request.user,
                                           confirmed=False).first()
        if device is None:
            return HttpResponseBadRequest("start the set-up again")
        if not device.verify_token(request.POST.get("token", "").strip()):
            return render(request, "core/mfa_enrol.html", {"device": device, "secret": b32(device.bin_key),
                          "error": "That code is not valid. Check the time on your phone and try the next code."},
                          status=400)
        codes = _activate(request, device)
        return render(request, "core/mfa_codes.html", {"codes": codes}, status=200)
    return HttpResponseBadRequest("action must be start or confirm")


@transaction.atomic
def _activate(request, device: TOTPDevice) -> list[str]:
    user = request.user
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=c) for c in codes])
    for key in (SESSION_ENROL_OK, SESSION_DEVICE):
        request.session.pop(key, None)
    otp_login(request, device)
    audit(request, "mfa.enrolled", target=f"device:{device.persistent_id}")
    notify(user, "An authenticator was added to your account",
           "An authenticator app was set up for your benefits account, with new recovery codes. "
           "If this was not you, tell HR now.")
    return codes


@login_required
@require_POST
def remove(request):
    """Remove the authenticator and recovery codes (from a verified session only)."""
    if not request.user.is_verified():
        return redirect("/mfa/")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=request.user).delete()
        StaticDevice.objects.filter(user=request.user).delete()
    audit(request, "mfa.removed", target=f"user:{request.user.pk}")
    notify(request.user, "Your authenticator was removed",
           "The authenticator app and recovery codes of your benefits account were removed. "
           "If this was not you, tell HR now.")
    from django.contrib.auth import logout
    logout(request)
    return redirect("/login/")


def b32(key: bytes) -> str:
    import base64
    return base64.b32encode(key).decode().rstrip("=")


