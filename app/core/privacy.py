"""Data-subject requests and retention (DSR-01, GOV-02). Deletion anonymizes what accounting law
makes us keep (expense amounts, dates, categories, receipts) and erases the rest; retention rules
are code, applied by `manage.py purge_expired` on a daily timer."""
from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.models import AuditEvent, DataSubjectRequest, Employee, ExpenseReport, Notification, audit
from core.views import _employee, _staff, recently_authenticated, too_many

# Retention as code: what is kept how long, and why (reviewed with app/ropa.yaml each release).
RETENTION = {
    "expense reports and receipts": (dt.timedelta(days=7 * 366), "accounting law: 7 years after the expense"),
    "audit events": (dt.timedelta(days=2 * 366), "security investigations: 2 years"),
    "notifications": (dt.timedelta(days=90), "only useful until read"),
}


ERASED = "[erased: the person asked for deletion]"
REQUESTS_PER_DAY = 5


@transaction.atomic
def anonymize(employee: Employee) -> None:
    """Erases who the employee is, everywhere ropa.yaml says they appear; keeps the accounting
    records, now pointing at nobody. The old name, e-mail and username are also scrubbed from the
    free text that may quote them: request details and answers, and the sign-in failure audit
    entries and lockout records that hold the username as typed."""
    user = employee.user
    user_name = user.username
    old = [v for v in (user.username, user.email, employee.full_name, user.first_name, user.last_name) if v]
    employee.full_name = f"Deleted employee {employee.pk}"
    employee.bank_account = ""
    employee.national_id = ""
    employee.anonymized_at = timezone.now()
    employee.save()
    user.username, user.email, user.first_name, user.last_name = f"deleted-{employee.pk}", "", "", ""
    user.is_active = False
    user.set_unusable_password()
    user.save()
    employee.entra_tid = employee.entra_oid = ""
    employee.save(update_fields=["entra_tid", "entra_oid"])
    employee.notifications.all().delete()
    employee.requests.update(details=ERASED, resolution=ERASED)
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    from django.contrib.sessions.models import Session
    for session in Session.objects.all().iterator():      # sign the person out everywhere
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        model.objects.filter(username__iexact=user_name).delete()
    scrub_audit(old, f"deleted-{employee.pk}")


def scrub_audit(old: list[str], replacement: str) -> None:
    """Audit entries keep what happened, not who typed which name: a detail value holding one of
    the old identifiers is replaced (sign-in failures store the username as typed)."""
    from django.db.models import Q
    if not old:
        return
    lowered = [o.lower() for o in old]
    query = Q()
    for o in old:
        query |= Q(detail__icontains=o)
    for event in AuditEvent.objects.filter(query).iterator():
        event.detail = {k: (replacement if isinstance(v, str) and any(o in v.lower() for o in lowered) else v)
                        for k, v in event.detail.items()}
        event.save(update_fields=["detail"])


def purge_expired(now: dt.datetime | None = None) -> dict[str, int]:
    from core import receipts
    now = now or timezone.now()
    expenses = ExpenseReport.objects.filter(spent_on__lt=(now - RETENTION["expense reports and receipts"][0]).date())
    for key in expenses.values_list("receipt_key", flat=True):
        receipts.delete(key)
    counts = {"expense reports": expenses.delete()[0],
              "audit events": AuditEvent.objects.filter(at__lt=now - RETENTION["audit events"][0]).delete()[0],
              "notifications": Notification.objects.filter(
                  created_at__lt=now - RETENTION["notifications"][0]).delete()[0]}
    return counts


def my_requests(request):
    me = _employee(request)
    if request.method == "POST":
        recent = me.requests.filter(received_at__gte=timezone.now() - dt.timedelta(days=1)).count()
        if recent >= REQUESTS_PER_DAY:
            return too_many(request, f"You sent {recent} privacy requests today; HR answers them within 30 days.")
        kind = request.POST.get("kind")
        if kind not in dict(DataSubjectRequest.KINDS):
            return HttpResponseBadRequest("kind must be access, correction, deletion or portability")
        r = DataSubjectRequest.objects.create(employee=me, kind=kind, details=request.POST.get("details", "")[:2000])
        audit(request, "dsr.received", target=f"dsr:{r.pk}", kind=kind)
        return redirect("/me/requests/")
    return render(request, "core/my_requests.html", {"requests": me.requests.order_by("-received_at"),
                                                     "kinds": DataSubjectRequest.KINDS})


def hr_requests(request):
    """Open requests of HR's own company, soonest deadline first, with days left."""
    me = _staff(request)
    now = timezone.now()
    rows = [(r, (r.due_at - now).days) for r in DataSubjectRequest.objects.filter(
        employee__company=me.company, status=DataSubjectRequest.OPEN).select_related("employee")]
    rows.sort(key=lambda row: row[1])
    return render(request, "core/hr_requests.html", {"rows": rows})


@require_POST
def hr_close(request, pk: int):
    me = _staff(request)
    r = get_object_or_404(DataSubjectRequest, pk=pk, employee__company=me.company, status=DataSubjectRequest.OPEN)
    if r.employee_id == me.pk:
        return render(request, "core/message.html", {"title": "Not your decision", "message":
                      "You cannot close your own request; another HR colleague will."}, status=403)
    outcome = request.POST.get("outcome")
    if outcome not in (DataSubjectRequest.DONE, DataSubjectRequest.REFUSED):
        return HttpResponseBadRequest("outcome must be done or refused")
    deleting = outcome == DataSubjectRequest.DONE and r.kind == DataSubjectRequest.DELETION
    if deleting and not recently_authenticated(request):
        return render(request, "core/message.html", {"title": "Confirm it is you", "message":
                      "Closing a deletion request erases a person. Confirm your sign-in first, then close it again.",
                      "link": "/reauth/?next=/hr/requests/"}, status=403)
    r.status, r.closed_at, r.handled_by = outcome, timezone.now(), request.user
    r.resolution = request.POST.get("resolution", "")[:2000]
    r.save()
    if deleting:
        anonymize(r.employee)      # last: it also erases this request's details and answer
    audit(request, "dsr.closed", target=f"dsr:{r.pk}", kind=r.kind, outcome=outcome)
    return redirect("/hr/requests/")
