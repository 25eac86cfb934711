"""Expense reports: submit with a receipt, optional AI evaluation, HR decisions and reverts,
decline notices and resubmission. Every decision is in the audit trail.

The AI approves on its own only what it can check against the claim: the scanned total and
currency must equal what the employee claims, the amount must be within the company's
auto-approve cap, and the answer must be well-formed and at least 85 % confident. Anything else,
including any provider error, goes to HR with the reason. A receipt already submitted in the same
company (same content hash) is refused."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core import ai, company_files, receipts
from core.models import Employee, ExpenseReport, Notification, audit
from core.views import _employee, _staff, too_many

CATEGORY_NAMES = [label for _, label in ExpenseReport.CATEGORIES]
CURRENCIES = ["EUR", "CHF", "DKK", "GBP", "NOK", "PLN", "SEK", "CZK", "HUF", "RON", "BGN"]
SUBMISSIONS_PER_HOUR = 20
NOTICE_MAX = Notification._meta.get_field("message").max_length


def _form(request) -> tuple[dict, str]:
    try:
        amount = Decimal(request.POST.get("amount", "").strip().replace(",", "."))
        spent_on = dt.date.fromisoformat(request.POST.get("spent_on", ""))
    except (InvalidOperation, ValueError):
        return {}, "Give the amount as a number and the date as YYYY-MM-DD."
    category = request.POST.get("category", "")
    currency = request.POST.get("currency", "EUR").strip().upper()
    if category not in dict(ExpenseReport.CATEGORIES) or not amount.is_finite() or amount <= 0 \
            or amount > Decimal("100000") or amount != amount.quantize(Decimal("0.01")):
        return {}, "Choose a category and an amount above zero with at most two decimals."
    if currency not in CURRENCIES:
        return {}, f"Choose the currency of the receipt ({', '.join(CURRENCIES)})."
    if spent_on > timezone.now().date():
        return {}, "The date of the expense cannot be in the future."
    return {"amount": amount, "currency": currency, "spent_on": spent_on, "category": category}, ""


def _receipt(upload, company_id: int, exclude_pk: int | None = None) -> tuple[dict, str]:
    """The upload checked: not empty, JPEG/PNG/PDF by signature, not already submitted in this company."""
    content = upload.read() if upload is not None else b""
    if not content:
        return {}, "Attach the receipt (a JPEG, PNG or PDF of 10 MB at most)."
    kind = receipts.content_type(content)
    if kind is None:
        return {}, f"The receipt must be a {receipts.ACCEPTED} file."
    digest = receipts.sha256(content)
    earlier = ExpenseReport.objects.filter(employee__company_id=company_id, receipt_sha256=digest)
    if exclude_pk is not None:
        earlier = earlier.exclude(pk=exclude_pk)
    if earlier.exists():
        return {}, "This receipt has already been submitted; each receipt can be claimed once."
    return {"content": content, "kind": kind, "sha256": digest}, ""


def scan(request, report: ExpenseReport, image: bytes, needed: bool = False) -> ai.ReceiptScan | None:
    """The company's AI receipt scanning (or, for an evaluation, the check of the claim against the
    receipt): vendor, date, total, VAT and currency, shown to HR."""
    if not (report.employee.company.ai_receipt_scanning or needed):
        return None
    found = ai.provider().scan_receipt(ai.minimised_request(image, CATEGORY_NAMES))
    report.ai_scan = {"vendor": found.vendor[:200], "date": found.date[:20],
                      "total": str(found.amount) if found.amount is not None else None,
                      "vat": str(found.vat) if found.vat is not None else None, "currency": found.currency}
    report.save(update_fields=["ai_scan"])
    audit(request, "expense.ai_scanned", target=f"expense:{report.pk}")
    return found


def approval_blockers(report: ExpenseReport, found: ai.ReceiptScan | None) -> list[str]:
    """Why the AI may not approve this claim on its own (empty: it may)."""
    company = report.employee.company
    reasons = []
    if found is None or found.amount is None:
        reasons.append("the receipt's total could not be read")
    elif found.amount != report.amount:
        reasons.append(f"the claim ({report.amount} {report.currency}) is not the receipt's total "
                       f"({found.amount} {found.currency or '?'})")
    if found is not None and found.currency and found.currency != report.currency:
        reasons.append(f"the receipt is in {found.currency}, the claim in {report.currency}")
    elif found is not None and not found.currency:
        reasons.append("the receipt's currency could not be read")
    if report.currency != company.currency:
        reasons.append(f"the claim is not in the company's currency ({company.currency})")
    elif report.amount > company.ai_auto_approve_cap:
        reasons.append(f"the amount is above the company's auto-approve cap ({company.ai_auto_approve_cap} "
                       f"{company.currency})")
    return reasons


def _to_review(report: ExpenseReport, reason: str) -> None:
    report.status, report.review_reason = ExpenseReport.NEEDS_REVIEW, reason[:300]
    report.decision_source, report.decided_by, report.decided_at = "", None, None


def evaluate(request, report: ExpenseReport, image: bytes) -> None:
    """The company's AI evaluation, when enabled: decides when confident and checked, else HR does."""
    company = report.employee.company
    try:
        found = scan(request, report, image, needed=company.ai_expense_evaluation)
        if not company.ai_expense_evaluation:
            return
        raw = ai.provider().evaluate(ai.minimised_request(image, CATEGORY_NAMES, company_files.policy_text(company)))
        result = ai.checked(raw.decision, raw.confidence, raw.reasoning, raw.category)
    except Exception as exc:  # noqa: BLE001 - any provider failure or odd answer: a human decides
        if not company.ai_expense_evaluation:
            return            # scanning only: nothing to decide, the report waits for HR as submitted
        _to_review(report, f"the AI could not evaluate the receipt ({type(exc).__name__}); a human decides")
        report.save()
        audit(request, "expense.ai_failed", target=f"expense:{report.pk}", error=type(exc).__name__)
        return
    report.ai_confidence, report.ai_reasoning = result.confidence, result.reasoning
    blockers = approval_blockers(report, found) if result.decision == "approve" else []
    applied = result.confidence >= ai.CONFIDENCE_FLOOR and not blockers
    if applied:
        report.status = ExpenseReport.APPROVED if result.decision == "approve" else ExpenseReport.DECLINED
        report.decision_source, report.decided_by, report.decided_at = "ai", None, timezone.now()
        report.review_reason = ""
        if report.status == ExpenseReport.DECLINED:
            _notify_decline(report)
    elif blockers:
        _to_review(report, "; ".join(blockers))
    else:
        _to_review(report, f"the AI is only {result.confidence:.0%} confident (below {ai.CONFIDENCE_FLOOR:.0%})")
    report.save()
    audit(request, "expense.ai_evaluated", target=f"expense:{report.pk}", decision=result.decision,
          confidence=result.confidence, applied=applied, blockers=blockers)


def _notify_decline(report: ExpenseReport) -> None:
    text = (f"Your {report.get_category_display()} expense of {report.amount} {report.currency} from "
            f"{report.spent_on} was declined: {{}}. You can edit and resubmit it.")
    room = NOTICE_MAX - len(text) + 2
    reason = report.ai_reasoning or "see HR"
    Notification.objects.create(employee=report.employee,
                                message=text.format(reason if len(reason) <= room else reason[:room - 1] + "…"))


def my_expenses(request):
    me = _employee(request)
    error = ""
    if request.method == "POST":
        recent = me.expenses.filter(created_at__gte=timezone.now() - dt.timedelta(hours=1)).count()
        if recent >= SUBMISSIONS_PER_HOUR:
            return too_many(request, f"You submitted {recent} expenses in the last hour; try again later.")
        fields, error = _form(request)
        if not error:
            upload, error = _receipt(request.FILES.get("receipt"), me.company_id)
        if not error:
            report = ExpenseReport.objects.create(
                employee=me, receipt_key=receipts.put(me.company_id, upload["content"], upload["kind"]),
                receipt_type=upload["kind"], receipt_sha256=upload["sha256"], **fields)
            audit(request, "expense.submitted", target=f"expense:{report.pk}")
            evaluate(request, report, upload["content"])
            return redirect("/expenses/")
    return render(request, "core/expenses.html", {"reports": me.expenses.order_by("-created_at"), "error": error,
                                                  "categories": ExpenseReport.CATEGORIES, "currencies": CURRENCIES,
                                                  "currency": me.company.currency,
                                                  "today": timezone.now().date().isoformat(),
                                                  "notices": me.notifications.filter(read=False)},
                  status=400 if error else 200)


@require_POST
def resubmit(request, pk: int):
    """A declined expense, edited by its employee and sent again (with a new receipt or the old one).
    A new receipt replaces the old one in S3 (deleted once the change is committed)."""
    me = _employee(request)
    report = get_object_or_404(ExpenseReport, pk=pk, employee=me)
    if report.status != ExpenseReport.DECLINED:
        return HttpResponseBadRequest("only a declined expense can be resubmitted")
    fields, error = _form(request)
    if error:
        return HttpResponseBadRequest(error)
    if request.FILES.get("receipt") is not None:
        upload, error = _receipt(request.FILES["receipt"], me.company_id, exclude_pk=report.pk)
        if error:
            return HttpResponseBadRequest(error)
        image, old_key = upload["content"], report.receipt_key
        report.receipt_key = receipts.put(me.company_id, image, upload["kind"])
        report.receipt_type, report.receipt_sha256 = upload["kind"], upload["sha256"]
        transaction.on_commit(lambda: receipts.delete(old_key))
    else:
        image = receipts.get(report.receipt_key)
    for k, v in fields.items():
        setattr(report, k, v)
    report.status, report.decision_source, report.decided_by, report.decided_at = ExpenseReport.SUBMITTED, "", None, None
    report.ai_confidence, report.ai_reasoning, report.review_reason = None, "", ""
    report.save()
    audit(request, "expense.resubmitted", target=f"expense:{report.pk}")
    evaluate(request, report, image)
    return redirect("/expenses/")


def receipt(request, pk: int):
    """The receipt, to its employee or their company's HR only; anyone else gets the same 404 a
    missing report gets. Always a download, with the type found from its signature."""
    me = _employee(request)
    scope = {"employee__company": me.company} if me.is_staff_role else {"employee": me}
    report = ExpenseReport.objects.filter(pk=pk, **scope).first()
    if report is None:
        raise Http404("no such expense")
    ext = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(report.receipt_type, "bin")
    response = HttpResponse(receipts.get(report.receipt_key), content_type=report.receipt_type)
    response["Content-Disposition"] = f'attachment; filename="receipt-{report.pk}.{ext}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def hr_expenses(request):
    me = _staff(request)
    reports = ExpenseReport.objects.filter(employee__company=me.company).select_related("employee")
    return render(request, "core/hr_expenses.html", {"reports": reports.order_by("-created_at"), "me": me})


@require_POST
def hr_decide(request, pk: int):
    """HR approves or declines; on an AI decision this is the revert, and it is recorded as one.
    Four eyes: nobody decides their own expense."""
    me = _staff(request)
    report = get_object_or_404(ExpenseReport, pk=pk, employee__company=me.company)
    if report.employee_id == me.pk:
        audit(request, "expense.self_decision_refused", target=f"expense:{report.pk}")
        return render(request, "core/message.html", {"title": "Not your decision", "message":
                      "You cannot decide your own expense; another HR colleague will."}, status=403)
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
    """The company's AI switches (admins): both off until turned on; the auto-approve cap."""
    me = _employee(request)
    if me.role != Employee.ADMIN:
        from django.core.exceptions import PermissionDenied
        raise PermissionDenied
    company = me.company
    if request.method == "POST":
        company.ai_receipt_scanning = request.POST.get("ai_receipt_scanning") == "on"
        company.ai_expense_evaluation = request.POST.get("ai_expense_evaluation") == "on"
        policy = request.POST.get("ai_policy", "").replace("\r\n", "\n").strip()
        error = ""
        if len(policy) > ai.POLICY_MAX_CHARS:
            error = f"The policy is {len(policy)} characters; at most {ai.POLICY_MAX_CHARS} fit."
        cap = request.POST.get("ai_auto_approve_cap", str(company.ai_auto_approve_cap)).strip()
        try:
            cap_value = Decimal(cap)
            if not cap_value.is_finite() or cap_value < 0 or cap_value > Decimal("100000"):
                raise InvalidOperation
        except InvalidOperation:
            error = error or "The auto-approve cap must be an amount between 0 and 100000."
        if error:
            return render(request, "core/ai_settings.html", {"company": company, "policy": policy, "error": error},
                          status=400)
        policy_changed = policy != company.ai_policy
        company.ai_policy, company.ai_auto_approve_cap = policy, cap_value.quantize(Decimal("0.01"))
        company.save()
        audit(request, "ai.settings_changed", target=f"company:{company.pk}", scanning=company.ai_receipt_scanning,
              evaluation=company.ai_expense_evaluation, policy_changed=policy_changed,
              cap=str(company.ai_auto_approve_cap))
        return redirect("/settings/ai/")
    return render(request, "core/ai_settings.html", {"company": company, "policy": company.ai_policy})


