"""Password change and reset for accounts that have a password (Entra ID accounts have none and
are refused by Django's reset form, which skips unusable passwords). New passwords go through
AUTH_PASSWORD_VALIDATORS, whose CommonPasswordValidator checks Django's bundled list of 20,000
common and breached passwords, offline. Reset requests are throttled per source address."""
from __future__ import annotations

import datetime as dt

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import path
from django.utils import timezone

RESETS_PER_HOUR = 5


def throttled_reset(view):
    """At most RESETS_PER_HOUR reset mails asked for per source address an hour (audit-backed)."""
    def wrapped(request, *args, **kwargs):
        from core.clientip import client_ip
        from core.models import AuditEvent
        from core.views import too_many
        if request.method == "POST":
            source = client_ip(request)
            recent = AuditEvent.objects.filter(action="password.reset_requested", detail__source=source,
                                               at__gte=timezone.now() - dt.timedelta(hours=1)).count()
            if recent >= RESETS_PER_HOUR:
                return too_many(request, "Too many password reset requests from here; try again in an hour.")
            AuditEvent.objects.create(action="password.reset_requested", detail={"source": source})
        return view(request, *args, **kwargs)
    return wrapped


def urls() -> list:
    return [
        path("change/", login_required(auth_views.PasswordChangeView.as_view(
            template_name="core/password_form.html", success_url="/password/change/done/",
            extra_context={"title": "Change your password"})), name="password_change"),
        path("change/done/", login_required(auth_views.PasswordChangeDoneView.as_view(
            template_name="core/message.html", extra_context={"title": "Password changed",
                                                              "message": "Your new password works from now on."})),
             name="password_change_done"),
        path("reset/", throttled_reset(auth_views.PasswordResetView.as_view(
            template_name="core/password_form.html", success_url="/password/reset/sent/",
            email_template_name="core/password_reset_email.txt", subject_template_name="core/password_reset_subject.txt",
            extra_context={"title": "Reset your password"})), name="password_reset"),
        path("reset/sent/", auth_views.PasswordResetDoneView.as_view(
            template_name="core/message.html", extra_context={"title": "Check your mail", "message":
                                                              "If the address belongs to an account with a password, "
                                                              "a reset link is on its way (valid for an hour)."}),
             name="password_reset_done"),
        path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
            template_name="core/password_form.html", success_url="/password/reset/done/",
            extra_context={"title": "Choose a new password"}), name="password_reset_confirm"),
        path("reset/done/", auth_views.PasswordResetCompleteView.as_view(
            template_name="core/message.html", extra_context={"title": "Password set", "message":
                                                              "Sign in with your new password."}),
             name="password_reset_complete"),
    ]
