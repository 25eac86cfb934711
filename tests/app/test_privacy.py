"""Data-subject requests within 30 days, deletion that anonymizes what must be kept, and the
retention rules applied by `purge_expired`."""
from __future__ import annotations

import datetime as dt

from tests.app.test_expenses import company_with_ai, receipt_pdf, submit
from tests.app.test_security import client, make, verify_mfa


def test_requests_reach_hr_with_their_deadline_and_stay_in_the_company(django_app):
    me, pw = make("Rights Ltd")
    stranger_hr, spw = make("Other Rights Ltd", "hr")
    c = client(me, pw)
    assert c.post("/me/requests/", {"kind": "correction", "details": "my name is misspelled"},
                  secure=True).status_code == 302
    assert c.post("/me/requests/", {"kind": "gossip"}, secure=True).status_code == 400
    hr, hpw = make("Rights Ltd", "hr")
    h = client(hr, hpw)
    verify_mfa(h, hr)
    page = h.get("/hr/requests/", secure=True).content.decode()
    due = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    assert "my name is misspelled" in page and due in page and (">29<" in page or ">30<" in page)
    o = client(stranger_hr, spw)
    verify_mfa(o, stranger_hr)
    assert "my name is misspelled" not in o.get("/hr/requests/", secure=True).content.decode()


def test_deletion_anonymizes_the_person_and_keeps_the_accounting_record(s3, spy):
    from django.contrib.auth.models import User

    from core.models import AuditEvent, DataSubjectRequest, Employee, ExpenseReport
    company_with_ai("Forget Me GmbH", False)
    me, pw = make("Forget Me GmbH", bank_account="DE89370400440532013000", national_id="X999")
    c = client(me, pw)
    submit(c, receipt_pdf())
    c.post("/me/requests/", {"kind": "deletion"}, secure=True)
    req = DataSubjectRequest.objects.get(employee=me)
    hr, hpw = make("Forget Me GmbH", "hr")
    h = client(hr, hpw)
    verify_mfa(h, hr)
    assert h.post(f"/hr/requests/{req.pk}/close", {"outcome": "done", "resolution": "anonymized"},
                  secure=True).status_code == 302
    gone = Employee.objects.get(pk=me.pk)
    user = User.objects.get(pk=me.user.pk)
    assert gone.full_name == f"Deleted employee {me.pk}" and gone.bank_account == "" and gone.national_id == ""
    assert user.email == "" and not user.is_active and not user.has_usable_password()
    assert ExpenseReport.objects.filter(employee=gone).count() == 1      # kept for accounting, nameless
    from django.test import Client
    again = Client(HTTP_HOST="benefits.example").post("/login/", {"username": me.user.username, "password": pw},
                                                       secure=True)
    assert again.status_code == 200 and "_auth_user_id" not in again.client.session
    assert AuditEvent.objects.filter(action="dsr.closed", target=f"dsr:{req.pk}").exists()
    req.refresh_from_db()
    assert req.status == "done" and req.handled_by == hr.user


def test_retention_purges_what_is_past_its_period(s3, spy):
    from django.core.management import call_command
    from django.utils import timezone

    from core.models import ExpenseReport
    from core.privacy import purge_expired
    company_with_ai("Old Books AB", False)
    me, pw = make("Old Books AB")
    submit(client(me, pw), receipt_pdf())
    old = ExpenseReport.objects.get(employee=me)
    ExpenseReport.objects.filter(pk=old.pk).update(spent_on=dt.date.today() - dt.timedelta(days=8 * 366))
    submit(client(me, pw), receipt_pdf())
    counts = purge_expired(timezone.now())
    assert counts["expense reports"] == 1
    assert list(ExpenseReport.objects.filter(employee=me).values_list("pk", flat=True)) != [old.pk]
    assert ExpenseReport.objects.filter(employee=me).count() == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="benefits-receipts").get("Contents", [])]
    assert old.receipt_key not in keys                                   # its receipt is gone from S3 too
    call_command("purge_expired", verbosity=0)
