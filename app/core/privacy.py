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
from core.views import _employee, _staff

# Retention as code: what is kept how long, and why (reviewed with app/ropa.yaml each release).
RETENTION = {
    "expense reports and receipts": (dt.timedelta(days=7 * 366), "accounting law: 7 years after the expense"),
    "audit events": (dt.timedelta(days=2 * 366), "security investigations: 2 years"),
    "notifications": (dt.timedelta(days=90), "only useful until read"),
}


@transaction.atomic
def anonymize(employee: Employee) -> None:
    """Erases who the employee is; keeps the accounting records, now pointing at nobody."""
    user = employee.user
    employee.full_name = f"Deleted employee {employee.pk}"
    employee.bank_account = ""
    employee.national_id = ""
    employee.anonymized_at = timezone.now()
    employee.save()
    user.username, user.email, user.first_name, user.last_name = f"deleted-{employee.pk}", "", "", ""
    user.is_active = False
    user.set_unusable_password()
    user.save()
    employee.notifications.all().delete()
    from django_otp.plugins.otp_totp.models import TOTPDevice
    TOTPDevice.objects.filter(user=user).delete()


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
    outcome = request.POST.get("outcome")
    if outcome not in (DataSubjectRequest.DONE, DataSubjectRequest.REFUSED):
        return HttpResponseBadRequest("outcome must be done or refused")
    if outcome == DataSubjectRequest.DONE and r.kind == DataSubjectRequest.DELETION:
        anonymize(r.employee)
    r.status, r.closed_at, r.handled_by = outcome, timezone.now(), request.user
    r.resolution = request.POST.get("resolution", "")[:2000]
    r.save()
    audit(request, "dsr.closed", target=f"dsr:{r.pk}", kind=r.kind, outcome=outcome)
    return redirect("/hr/requests/")
