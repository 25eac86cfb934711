"""Expense reports: submit with a receipt, optional AI evaluation, HR decisions and reverts,
decline notices and resubmission. Every decision is in the audit trail."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core import ai, receipts
from core.models import Employee, ExpenseReport, Notification, audit
from core.views import _employee, _staff

CATEGORY_NAMES = [label for _, label in ExpenseReport.CATEGORIES]


def _form(request) -> tuple[dict, str]:
    try:
        amount = Decimal(request.POST.get("amount", ""))
        spent_on = dt.date.fromisoformat(request.POST.get("spent_on", ""))
    except (InvalidOperation, ValueError):
        return {}, "Give the amount as a number and the date as YYYY-MM-DD."
    category = request.POST.get("category", "")
    if category not in dict(ExpenseReport.CATEGORIES) or amount <= 0 or amount > Decimal("100000"):
        return {}, "Choose a category and an amount above zero."
    return {"amount": amount, "spent_on": spent_on, "category": category}, ""


def scan(request, report: ExpenseReport, image: bytes) -> None:
    """The company's AI receipt scanning, when enabled: vendor, date, total and VAT, shown to HR."""
    if not report.employee.company.ai_receipt_scanning:
        return
    found = ai.provider().scan_receipt(ai.minimised_request(image, CATEGORY_NAMES))
    report.ai_scan = {"vendor": found.vendor, "date": found.date,
                      "total": str(found.amount) if found.amount is not None else None,
                      "vat": str(found.vat) if found.vat is not None else None}
    report.save(update_fields=["ai_scan"])
    audit(request, "expense.ai_scanned", target=f"expense:{report.pk}")


def evaluate(request, report: ExpenseReport, image: bytes) -> None:
    """The company's AI evaluation, when enabled: decides at >= 85 % confidence, else a human does."""
    scan(request, report, image)
    if not report.employee.company.ai_expense_evaluation:
        return
    result = ai.provider().evaluate(ai.minimised_request(image, CATEGORY_NAMES, report.employee.company.ai_policy))
    report.ai_confidence, report.ai_reasoning = result.confidence, result.reasoning
    if result.confidence >= ai.CONFIDENCE_FLOOR:
        report.status = ExpenseReport.APPROVED if result.decision == "approve" else ExpenseReport.DECLINED
        report.decision_source, report.decided_by, report.decided_at = "ai", None, timezone.now()
        if report.status == ExpenseReport.DECLINED:
            _notify_decline(report)
    else:
        report.status = ExpenseReport.NEEDS_REVIEW
    report.save()
    audit(request, "expense.ai_evaluated", target=f"expense:{report.pk}", decision=result.decision,
          confidence=result.confidence, applied=result.confidence >= ai.CONFIDENCE_FLOOR)


def _notify_decline(report: ExpenseReport) -> None:
    Notification.objects.create(employee=report.employee, message=(
        f"Your {report.get_category_display()} expense of {report.amount} from {report.spent_on} was declined: "
        f"{report.ai_reasoning or 'see HR'}. You can edit and resubmit it."))


def my_expenses(request):
    me = _employee(request)
    error = ""
    if request.method == "POST":
        fields, error = _form(request)
        upload = request.FILES.get("receipt")
        if not error and upload is None:
            error = "Attach the receipt (10 MB at most)."
        if not error:
            image = upload.read()
            report = ExpenseReport.objects.create(employee=me, receipt_key=receipts.put(me.company_id, image,
                                                                                          upload.content_type), **fields)
            audit(request, "expense.submitted", target=f"expense:{report.pk}")
            evaluate(request, report, image)
            return redirect("/expenses/")
    return render(request, "core/expenses.html", {"reports": me.expenses.order_by("-created_at"), "error": error,
                                                  "categories": ExpenseReport.CATEGORIES,
                                                  "notices": me.notifications.filter(read=False)},
                  status=400 if error else 200)


@require_POST
def resubmit(request, pk: int):
    """A declined expense, edited by its employee and sent again (with a new receipt or the old one)."""
    me = _employee(request)
    report = get_object_or_404(ExpenseReport, pk=pk, employee=me)
    if report.status != ExpenseReport.DECLINED:
        return HttpResponseBadRequest("only a declined expense can be resubmitted")
    fields, error = _form(request)
    if error:
        return HttpResponseBadRequest(error)
    upload = request.FILES.get("receipt")
    image = upload.read() if upload else receipts.get(report.receipt_key)
    if upload:
        report.receipt_key = receipts.put(me.company_id, image, upload.content_type)
    for k, v in fields.items():
        setattr(report, k, v)
    report.status, report.decision_source, report.decided_by, report.decided_at = ExpenseReport.SUBMITTED, "", None, None
    report.ai_confidence, report.ai_reasoning = None, ""
    report.save()
    audit(request, "expense.resubmitted", target=f"expense:{report.pk}")
    evaluate(request, report, image)
    return redirect("/expenses/")


def receipt(request, pk: int):
    """The receipt, to its employee or their company's HR only."""
    me = _employee(request)
    report = get_object_or_404(ExpenseReport, pk=pk, employee__company=me.company)
    if report.employee_id != me.pk and not me.is_staff_role:
        raise PermissionDenied
    return HttpResponse(receipts.get(report.receipt_key), content_type="application/octet-stream")


def hr_expenses(request):
    me = _staff(request)
    reports = ExpenseReport.objects.filter(employee__company=me.company).select_related("employee")
    return render(request, "core/hr_expenses.html", {"reports": reports.order_by("-created_at")})


@require_POST
def hr_decide(request, pk: int):
    """HR approves or declines; on an AI decision this is the revert, and it is recorded as one."""
    me = _staff(request)
    report = get_object_or_404(ExpenseReport, pk=pk, employee__company=me.company)
    decision = request.POST.get("decision")
    if decision not in ("approve", "decline"):
        return HttpResponseBadRequest("decision must be approve or decline")
    previous = (report.status, report.decision_source)
    report.status = ExpenseReport.APPROVED if decision == "approve" else ExpenseReport.DECLINED
    report.decision_source, report.decided_by, report.decided_at = "human", request.user, timezone.now()
    report.save()
    action = "expense.reverted" if previous[1] == "ai" else "expense.decided"
    audit(request, action, target=f"expense:{report.pk}", decision=decision, previous=list(previous))
    if report.status == ExpenseReport.DECLINED:
        _notify_decline(report)
    return redirect("/hr/expenses/")


def ai_settings(request):
    """The company's AI switches (admins): both off until turned on."""
    me = _employee(request)
    if me.role != Employee.ADMIN:
        raise PermissionDenied
    company = me.company
    if request.method == "POST":
        company.ai_receipt_scanning = request.POST.get("ai_receipt_scanning") == "on"
        company.ai_expense_evaluation = request.POST.get("ai_expense_evaluation") == "on"
        policy = request.POST.get("ai_policy", "").replace("\r\n", "\n").strip()
        if len(policy) > ai.POLICY_MAX_CHARS:
            return render(request, "core/ai_settings.html", {"company": company, "policy": policy, "error":
                          f"The policy is {len(policy)} characters; at most {ai.POLICY_MAX_CHARS} fit."}, status=400)
        policy_changed = policy != company.ai_policy
        company.ai_policy = policy
        company.save()
        audit(request, "ai.settings_changed", target=f"company:{company.pk}", scanning=company.ai_receipt_scanning,
              evaluation=company.ai_expense_evaluation, policy_changed=policy_changed)
        return redirect("/settings/ai/")
    return render(request, "core/ai_settings.html", {"company": company, "policy": company.ai_policy})
