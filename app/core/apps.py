"""The core app; its ready() connects the sign-in audit (AUDIT: logins, failures, logouts)."""
from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import signals
        signals.user_logged_in.connect(audit_login, dispatch_uid="core.audit_login")
        signals.user_login_failed.connect(audit_login_failed, dispatch_uid="core.audit_login_failed")
        signals.user_logged_out.connect(audit_logout, dispatch_uid="core.audit_logout")
        from axes.signals import user_locked_out

        from core import authlog
        signals.user_login_failed.connect(authlog.on_failed, dispatch_uid="core.authlog_failed")
        signals.user_logged_in.connect(authlog.on_succeeded, dispatch_uid="core.authlog_succeeded")
        user_locked_out.connect(authlog.on_locked, dispatch_uid="core.authlog_locked")


def _method(user) -> str:
    return "oidc" if getattr(user, "backend", "").endswith("EntraIDBackend") else "password"


def audit_login(sender, request, user, **kwargs) -> None:
    from core.metrics import SIGN_INS
    from core.models import AuditEvent
    SIGN_INS.labels(_method(user), "success").inc()
    company = getattr(getattr(user, "employee", None), "company", None)
    AuditEvent.objects.create(actor=user, company=company, action="login", target=f"user:{user.pk}",
                              detail={"method": _method(user)})
    if request is not None and hasattr(request, "session"):
        import time
        request.session["auth_at"] = time.time()      # re-authentication checks read this


def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    from core.metrics import SIGN_INS
    from core.models import AuditEvent
    detail = {"method": credentials.get("method", "password"), "username": str(credentials.get("username", ""))[:150]}
    SIGN_INS.labels(detail["method"], "failure").inc()
    if kwargs.get("reason"):
        detail["reason"] = str(kwargs["reason"])[:300]
    AuditEvent.objects.create(action="login.failed", detail=detail)


def audit_logout(sender, request, user, **kwargs) -> None:
    from core.models import AuditEvent
    if user is not None:
        AuditEvent.objects.create(actor=user, action="logout", target=f"user:{user.pk}")
