"""Expenses with receipts in S3 (moto in-process) and the optional AI: receipts are SSE-S3, the
AI only ever sees the receipt image and category names, < 85 % goes to a human, HR sees and can
revert every AI decision (audited), a declined employee is told and can resubmit."""
from __future__ import annotations

import json
import secrets

import pytest

from tests.app.test_security import client, make, verify_mfa

def receipt_pdf(total: str = "EUR 45.00", category: str = "Gym and fitness", vendor: str = "City Gym") -> bytes:
    """A receipt as the local provider reads it, in a PDF (text lines); a random reference makes
    each one a different receipt (the app refuses the same receipt twice in a company)."""
    return (f"%PDF-1.4\nVendor: {vendor}\nDate: 2026-11-01\nTotal: {total}\nVAT: 9.00\nCategory: {category}\n"
            f"Ref: {secrets.token_hex(8)}\n").encode()


GOOD = receipt_pdf()
BLURRY = b"\x89PNG\r\n\x1a\n not a readable receipt"


def submit(c, image: bytes, amount="45.00", category="gym", currency="EUR"):
    from django.core.files.uploadedfile import SimpleUploadedFile
    return c.post("/expenses/", {"amount": amount, "currency": currency, "spent_on": "2026-11-01", "category": category,
                                 "receipt": SimpleUploadedFile("r.jpg", image, "image/jpeg")}, secure=True)


def company_with_ai(name: str, on: bool):
    from core.models import Company
    company, _ = Company.objects.get_or_create(name=name)
    company.ai_expense_evaluation = on
    company.save()
    return company


def test_ai_off_means_no_ai_and_the_receipt_is_sse_s3(s3, spy):
    from core.models import ExpenseReport
    company_with_ai("NoAI Ltd", False)
    me, pw = make("NoAI Ltd")
    assert submit(client(me, pw), GOOD).status_code == 302
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "submitted" and report.ai_confidence is None and spy == []
    head = s3.head_object(Bucket="benefits-receipts", Key=report.receipt_key)
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="benefits-receipts", Key=report.receipt_key)["Body"].read() == GOOD


def test_the_ai_sees_only_the_image_and_category_names(s3, spy):
    company_with_ai("Minimal AG", True)
    me, pw = make("Minimal AG")
    submit(client(me, pw), GOOD, amount="45.00")
    (request,) = spy
    assert set(request) == {"image", "categories"} and request["image"] == GOOD
    text = json.dumps({"categories": request["categories"]})
    for personal in (me.full_name, me.user.email, me.user.username):
        assert personal not in text and personal.encode() not in request["image"]


def test_the_anthropic_request_carries_nothing_personal():
    """The SDK call, captured by a stand-in client: one image block and the category names."""
    from core import ai

    class Messages:
        def create(self, **kwargs):
            self.kwargs = kwargs
            return type("M", (), {"content": [type("T", (), {"text": json.dumps(
                {"decision": "approve", "confidence": 0.97, "reasoning": "gym", "category": "Gym and fitness"})})]})
    fake = type("Client", (), {"messages": Messages()})()
    result = ai.AnthropicProvider(fake).evaluate(ai.minimised_request(b"JPEGDATA", ["Gym and fitness", "Mental health"],
                                                                        "Not reimbursed: Mental health"))
    assert result.decision == "approve" and result.confidence == 0.97
    (message,) = fake.messages.kwargs["messages"]
    kinds = [block["type"] for block in message["content"]]
    assert kinds == ["image", "text"]
    assert "Gym and fitness, Mental health" in message["content"][1]["text"]
    assert "The company's expense policy:\nNot reimbursed: Mental health" in message["content"][1]["text"]
    with pytest.raises(ValueError):
        ai.minimised_request(b"x", [{"name": "Jane Doe", "email": "jane@example.com"}])   # not a category name


def test_confident_ai_decides_and_hr_sees_and_reverts_it(s3, spy):
    from core.models import AuditEvent, ExpenseReport, Notification
    company_with_ai("Confident GmbH", True)
    me, pw = make("Confident GmbH")
    submit(client(me, pw), GOOD)
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "approved" and report.decision_source == "ai" and report.ai_confidence >= 0.85
    hr, hpw = make("Confident GmbH", "hr")
    h = client(hr, hpw)
    verify_mfa(h, hr)
    page = h.get("/hr/expenses/", secure=True).content.decode()
    assert me.full_name in page and "0.93" in page and report.ai_reasoning in page
    assert h.post(f"/hr/expenses/{report.pk}/decide", {"decision": "decline"}, secure=True).status_code == 302
    report.refresh_from_db()
    assert report.status == "declined" and report.decision_source == "human" and report.decided_by == hr.user
    event = AuditEvent.objects.get(action="expense.reverted", target=f"expense:{report.pk}")
    assert event.detail["previous"] == ["approved", "ai"]
    assert Notification.objects.filter(employee=me, message__contains="declined").exists()


def test_low_confidence_goes_to_a_human(s3, spy):
    from core.models import ExpenseReport
    company_with_ai("Unsure Oy", True)
    me, pw = make("Unsure Oy")
    submit(client(me, pw), BLURRY)
    report = ExpenseReport.objects.get(employee=me)
    assert report.ai_confidence < 0.85 and report.status == "needs_review" and report.decision_source == ""


def test_a_declined_employee_is_told_and_can_resubmit(s3, spy):
    from core.models import ExpenseReport
    company_with_ai("Strict BV", True)
    me, pw = make("Strict BV")
    c = client(me, pw)
    submit(c, receipt_pdf(category="Wine"))
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "declined" and report.decision_source == "ai"
    assert "declined" in c.get("/expenses/", secure=True).content.decode()
    from django.core.files.uploadedfile import SimpleUploadedFile
    r = c.post(f"/expenses/{report.pk}/resubmit", {"amount": "40.00", "spent_on": "2026-11-02", "category": "gym",
                                                    "receipt": SimpleUploadedFile("r.jpg", receipt_pdf("EUR 40.00"),
                                                                                  "image/jpeg")},
               secure=True)
    assert r.status_code == 302
    report.refresh_from_db()
    assert report.status == "approved" and str(report.amount) == "40.00"


def test_receipts_and_expenses_stay_with_their_owner(s3, spy):
    from core.models import ExpenseReport
    company_with_ai("Private SA", False)
    me, pw = make("Private SA")
    other, opw = make("Private SA")
    stranger, spw = make("Elsewhere SA")
    submit(client(me, pw), GOOD)
    report = ExpenseReport.objects.get(employee=me)
    assert client(me, pw).get(f"/expenses/{report.pk}/receipt", secure=True).content == GOOD
    assert client(other, opw).get(f"/expenses/{report.pk}/receipt", secure=True).status_code == 404
    assert client(stranger, spw).get(f"/expenses/{report.pk}/receipt", secure=True).status_code == 404
    assert client(other, opw).post(f"/expenses/{report.pk}/resubmit", {}, secure=True).status_code == 404
    assert client(me, pw).post(f"/hr/expenses/{report.pk}/decide", {"decision": "approve"},
                               secure=True).status_code == 403


def test_ai_settings_are_off_by_default_and_admin_only(django_app):
    from core.models import Company
    admin, apw = make("Switches Inc", "admin")
    assert Company.objects.get(name="Switches Inc").ai_expense_evaluation is False
    c = client(admin, apw)
    verify_mfa(c, admin)
    c.post("/settings/ai/", {"ai_expense_evaluation": "on"}, secure=True)
    assert Company.objects.get(name="Switches Inc").ai_expense_evaluation is True
    emp, epw = make("Switches Inc")
    assert client(emp, epw).get("/settings/ai/", secure=True).status_code == 403


def test_receipt_scanning_reads_vendor_date_total_and_vat(s3, spy):
    from core.models import Company, ExpenseReport
    company = company_with_ai("Scanner AB", False)
    company.ai_receipt_scanning = True
    company.save()
    me, pw = make("Scanner AB")
    submit(client(me, pw), GOOD)
    report = ExpenseReport.objects.get(employee=me)
    assert report.ai_scan == {"vendor": "City Gym", "date": "2026-11-01", "total": "45.00", "vat": "9.00",
                              "currency": "EUR"}
    assert report.status == "submitted" and spy == []          # scanning on, evaluation off
    assert Company.objects.get(name="Scanner AB").ai_expense_evaluation is False


def test_the_evaluation_reads_the_companys_policy_and_nothing_personal(s3, spy):
    """AI-02: the AI may read the company's policy documents; the policy is company text set by an
    admin, sent as written, beside the image and category names only."""
    from core.models import AuditEvent, Company, ExpenseReport
    admin, apw = make("Policy GmbH", "admin")
    c = client(admin, apw)
    verify_mfa(c, admin)
    policy = "Wellness budget 500 EUR a year.\nNot reimbursed: Gym and fitness\n"
    assert c.post("/settings/ai/", {"ai_expense_evaluation": "on", "ai_policy": policy},
                  secure=True).status_code == 302
    assert Company.objects.get(name="Policy GmbH").ai_policy == policy.strip()
    assert AuditEvent.objects.filter(action="ai.settings_changed", detail__policy_changed=True).exists()
    too_long = c.post("/settings/ai/", {"ai_expense_evaluation": "on", "ai_policy": "x" * 20_001}, secure=True)
    assert too_long.status_code == 400 and b"at most 20000" in too_long.content
    assert Company.objects.get(name="Policy GmbH").ai_policy == policy.strip()     # nothing lost

    me, pw = make("Policy GmbH")
    submit(client(me, pw), GOOD)
    (request,) = spy
    assert set(request) == {"image", "categories", "policy"} and request["policy"] == policy.strip()
    for personal in (me.full_name, me.user.email, me.user.username):
        assert personal not in json.dumps({k: request[k] for k in ("categories", "policy")})
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "declined" and report.decision_source == "ai"
    assert "policy does not reimburse Gym and fitness" in report.ai_reasoning
