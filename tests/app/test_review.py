"""The security review's findings (issue 18), each reproduced against the app: what the AI may
approve, password guessing, MFA enrolment, four eyes, the data export and deletion, and the
smaller bugs and baseline controls. Each test failed on the app before the fix."""
from __future__ import annotations

import json
import re
import secrets
import time

import pytest

from tests.app.test_expenses import BLURRY, company_with_ai, receipt_pdf, submit
from tests.app.test_security import HOST, client, code_for, make, verify_mfa


def ai_company(name: str, cap: str | None = None):
    company = company_with_ai(name, True)
    if cap is not None:
        company.ai_auto_approve_cap = cap
        company.save()
    return company


def hr_of(company: str):
    hr, pw = make(company, "hr")
    c = client(hr, pw)
    verify_mfa(c, hr)
    return hr, c


# --- High 1: the AI approves only what it can check against the claim -------------------------

def test_a_claim_above_the_receipts_total_goes_to_hr_with_the_reason(s3, spy):
    from core.models import ExpenseReport
    ai_company("Inflated GmbH")
    me, pw = make("Inflated GmbH")
    assert submit(client(me, pw), receipt_pdf("EUR 45.00"), amount="99999.99").status_code == 302
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "needs_review" and report.decision_source == ""
    assert "99999.99" in report.review_reason and "45.00" in report.review_reason
    _, h = hr_of("Inflated GmbH")
    import html
    assert html.escape(report.review_reason) in h.get("/hr/expenses/", secure=True).content.decode()


def test_a_claim_in_another_currency_than_the_receipt_goes_to_hr(s3, spy):
    from core.models import ExpenseReport
    ai_company("Francs AG")
    me, pw = make("Francs AG")
    submit(client(me, pw), receipt_pdf("CHF 45.00"), amount="45.00", currency="EUR")
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "needs_review" and "CHF" in report.review_reason


def test_the_same_receipt_is_refused_the_second_time_in_a_company(s3, spy):
    from core.models import ExpenseReport
    ai_company("Twice Oy")
    me, pw = make("Twice Oy")
    colleague, cpw = make("Twice Oy")
    image = receipt_pdf()
    assert submit(client(me, pw), image).status_code == 302
    again = submit(client(colleague, cpw), image)
    assert again.status_code == 400 and b"already been submitted" in again.content
    assert ExpenseReport.objects.filter(employee__company__name="Twice Oy").count() == 1
    other, opw = make("Elsewhere Twice Oy")
    assert submit(client(other, opw), image).status_code == 302          # another company's books


def test_above_the_companys_cap_the_ai_does_not_approve(s3, spy):
    from core.models import ExpenseReport
    ai_company("Capped SA", cap="40.00")
    me, pw = make("Capped SA")
    submit(client(me, pw), receipt_pdf("EUR 45.00"), amount="45.00")
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "needs_review" and "cap" in report.review_reason


# --- High 2: lockout, throttling and the auth log ------------------------------------------------

LINE_KEYS = {"time", "event", "user", "source", "company"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def log_lines(path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for line in lines:
        assert set(line) == LINE_KEYS and TIME.match(line["time"]), line
    return lines


def attempt(username, password, source, spoof=None):
    from django.test import Client
    forwarded = f"{spoof}, {source}" if spoof else source
    c = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_FOR=forwarded)
    return c, c.post("/login/", {"username": username, "password": password}, secure=True)


def test_password_guessing_locks_the_account_and_is_logged(django_app, tmp_path, settings_auth_log):
    emp, pw = make("Guessing Ltd")
    user = emp.user.username
    for _ in range(5):
        _, r = attempt(user, secrets.token_urlsafe(12), "198.51.100.7", spoof="127.0.0.1")
        assert r.status_code in (200, 429)
    c, r = attempt(user, pw, "198.51.100.7")
    assert r.status_code == 429 and "_auth_user_id" not in c.session          # the right password: still no
    c, r = attempt(user, pw, "203.0.113.50")                                  # the account, from elsewhere
    assert r.status_code == 429 and "_auth_user_id" not in c.session
    lines = log_lines(settings_auth_log)
    failed = [x for x in lines if x["event"] == "signin.failed"]
    assert len(failed) >= 5 and all(x["user"] == user and x["company"] == emp.company_id for x in failed)
    assert {x["source"] for x in failed} >= {"198.51.100.7"}                  # the proxy's address, not the spoof
    assert "127.0.0.1" not in {x["source"] for x in lines}
    assert any(x["event"] == "signin.locked" and x["user"] == user for x in lines)


def test_spraying_from_one_source_locks_the_source(django_app, settings_auth_log):
    for _ in range(5):
        attempt(f"nobody-{secrets.token_hex(3)}", secrets.token_urlsafe(12), "192.0.2.99")
    emp, pw = make("Spray Ltd")
    c, r = attempt(emp.user.username, pw, "192.0.2.99")
    assert r.status_code == 429 and "_auth_user_id" not in c.session
    c, r = attempt(emp.user.username, pw, "192.0.2.100")
    assert r.status_code == 302                                              # the person, from elsewhere
    (ok,) = [x for x in log_lines(settings_auth_log) if x["event"] == "signin.succeeded"]
    assert ok == {**ok, "user": emp.user.username, "source": "192.0.2.100", "company": emp.company_id}
    long_name = "x" * 400
    attempt(long_name, "y", "192.0.2.101")
    assert max(len(x["user"]) for x in log_lines(settings_auth_log)) == 150


@pytest.fixture
def settings_auth_log(django_app, tmp_path):
    from django.conf import settings
    old, settings.AUTH_LOG = getattr(settings, "AUTH_LOG", ""), str(tmp_path / "auth.log")
    yield tmp_path / "auth.log"
    settings.AUTH_LOG = old


def test_no_auth_log_file_without_the_variable(django_app, tmp_path):
    from django.conf import settings
    assert settings.AUTH_LOG == ""
    emp, pw = make("Quiet Ltd")
    attempt(emp.user.username, "wrong", "192.0.2.5")
    assert list(tmp_path.iterdir()) == []


# --- Medium 3: MFA enrolment bound to the person ---------------------------------------------------

def test_mfa_enrolment_needs_the_mailed_link_gives_fresh_secrets_and_recovery_codes(django_app):
    from django.core import mail
    from django_otp.plugins.otp_totp.models import TOTPDevice
    hr, pw = make("Enrol GmbH", "hr")
    mine, thief = client(hr, pw), client(hr, pw)            # two password-only sessions
    assert mine.get("/mfa/", secure=True).status_code == 200
    assert not TOTPDevice.objects.filter(user=hr.user).exists()          # GET creates nothing
    assert thief.post("/mfa/enrol/", {"action": "start"}, secure=True).status_code == 403
    mail.outbox = []
    mine.post("/mfa/", {"action": "send-link"}, secure=True)
    (sent,) = mail.outbox
    assert sent.to == [hr.user.email]
    link = re.search(r"https://[^/]+(/mfa/enrol/\S+/)", sent.body).group(1)
    assert mine.get(link, secure=True)["Location"] == "/mfa/enrol/"
    first = mine.post("/mfa/enrol/", {"action": "start"}, secure=True).content.decode()
    second = mine.post("/mfa/enrol/", {"action": "start"}, secure=True).content.decode()
    secret = re.compile(r'id="secret">([A-Z2-7]+)<')
    assert secret.search(first).group(1) != secret.search(second).group(1)   # fresh each attempt
    assert thief.post("/mfa/enrol/", {"action": "start"}, secure=True).status_code == 403
    device = TOTPDevice.objects.get(user=hr.user)
    assert thief.post("/mfa/enrol/", {"action": "confirm", "token": code_for(device)}, secure=True).status_code == 403
    done = mine.post("/mfa/enrol/", {"action": "confirm", "token": code_for(device)}, secure=True)
    codes = re.findall(r"<li><code>([0-9a-f]{10})</code></li>", done.content.decode())
    assert done.status_code == 200 and len(codes) == 10
    assert "authenticator was added" in mail.outbox[-1].subject
    assert mine.get(link, secure=True).status_code == 400                   # the link worked once
    other = client(hr, pw)                                                   # a recovery code, once
    assert other.post("/mfa/?next=/hr/employees/", {"token": codes[0]}, secure=True)["Location"] == "/hr/employees/"
    assert client(hr, pw).post("/mfa/", {"token": codes[0]}, secure=True).status_code == 400
    assert other.post("/mfa/remove/", secure=True).status_code == 302
    assert "removed" in mail.outbox[-1].subject and not TOTPDevice.objects.filter(user=hr.user).exists()


# --- Medium 4: four eyes ----------------------------------------------------------------------------

def test_hr_cannot_decide_their_own_expense(s3, spy):
    from core.models import ExpenseReport
    company_with_ai("Self Serve BV", False)
    hr, pw = make("Self Serve BV", "hr")
    c = client(hr, pw)
    verify_mfa(c, hr)
    submit(c, receipt_pdf())
    report = ExpenseReport.objects.get(employee=hr)
    assert c.post(f"/hr/expenses/{report.pk}/decide", {"decision": "approve"}, secure=True).status_code == 403
    report.refresh_from_db()
    assert report.status == "submitted" and report.decided_by is None
    _, colleague = hr_of("Self Serve BV")
    assert colleague.post(f"/hr/expenses/{report.pk}/decide", {"decision": "approve"}, secure=True).status_code == 302


# --- Medium 5: the export is everything, checked against the RoPA ----------------------------------

def test_the_export_holds_every_ropa_field_about_the_person_with_receipts(s3, spy):
    import base64

    from core.export import ropa_fields, subject_rows
    ai_company("Export AB")
    me, pw = make("Export AB", bank_account="SE4550000000058398257466", national_id="19121212-1212")
    c = client(me, pw)
    attempt(me.user.username, "wrong", "192.0.2.77")            # a lockout counter about them
    image = receipt_pdf(category="Wine")           # declined by the AI: reasoning and a notification
    submit(c, image)
    c.post("/me/requests/", {"kind": "access", "details": "everything please"}, secure=True)
    data = c.get("/me/export.json", secure=True).json()
    # every RoPA model with rows about this person is in the export, with every RoPA field
    about = {label for label, rows in subject_rows(me).items() if rows}
    assert about >= {"auth.User", "core.Employee", "core.ExpenseReport", "core.Notification",
                     "core.DataSubjectRequest", "core.AuditEvent", "axes.AccessAttempt"}
    for label, names in ropa_fields().items():
        if label in about:
            assert data[label] and all(set(names) <= set(row) for row in data[label]), label
    (expense,) = data["core.ExpenseReport"]
    assert base64.b64decode(expense["receipt"]["content_base64"]) == image
    assert expense["ai_reasoning"] and expense["ai_confidence"] is not None and expense["status"] == "declined"
    assert data["core.Notification"][0]["message"].startswith("Your ")
    assert data["core.DataSubjectRequest"][0]["details"] == "everything please"
    assert "login" in {e["action"] for e in data["core.AuditEvent"]}
    assert data["auth.User"][0]["password"].startswith("a salted password hash")
    assert set(ropa_fields()) <= set(subject_rows(me)), "a RoPA model the export does not cover"


# --- Medium 6: deletion leaves no trace of who it was -----------------------------------------------

def traces(values: list[str]) -> dict[str, int]:
    """Rows of any table in the app's schema whose text holds one of `values`."""
    from django.db import connection
    found = {}
    with connection.cursor() as cur:
        for table in connection.introspection.table_names(cur):
            for v in values:
                cur.execute(f'select count(*) from "{table}" t where t::text ilike %s', [f"%{v}%"])
                n = cur.fetchone()[0]
                if n:
                    found[f"{table}: {v}"] = n
    return found


def test_deletion_leaves_no_trace_of_the_name_email_or_username(s3, spy, django_app):
    from django.test import Client

    from core.models import DataSubjectRequest
    company_with_ai("Vanish GmbH", False)
    me, pw = make("Vanish GmbH")
    old = [me.full_name, me.user.email, me.user.username]
    Client(HTTP_HOST=HOST).post("/login/", {"username": me.user.username, "password": "wrong"}, secure=True)
    c = client(me, pw)
    submit(c, receipt_pdf())
    c.post("/me/requests/", {"kind": "deletion", "details": f"I am {me.full_name}, {me.user.email}"}, secure=True)
    assert traces(old)                               # the person is there before
    req = DataSubjectRequest.objects.get(employee=me)
    _, h = hr_of("Vanish GmbH")
    assert h.post(f"/hr/requests/{req.pk}/close", {"outcome": "done", "resolution": f"deleted {me.user.email}"},
                  secure=True).status_code == 302
    assert traces(old) == {}


# --- Low: the AI's odd answers, receipts, metrics, redirects ----------------------------------------

def stub_provider(monkeypatch, evaluation=None, error=None):
    from core import ai

    class Stub(ai.LocalProvider):
        def evaluate(self, request):
            if error:
                raise error
            return evaluation
    monkeypatch.setattr(ai, "provider", lambda: Stub())


@pytest.mark.parametrize("confidence", [float("nan"), float("inf"), 7.0, "0.99"])
def test_an_odd_confidence_goes_to_a_human(s3, monkeypatch, confidence):
    from core import ai
    from core.models import ExpenseReport
    name = f"Odd {secrets.token_hex(3)}"
    ai_company(name)
    stub_provider(monkeypatch, ai.Evaluation("approve", confidence, "fine", "Gym and fitness"))
    me, pw = make(name)
    assert submit(client(me, pw), receipt_pdf()).status_code == 302
    assert ExpenseReport.objects.get(employee=me).status == "needs_review"


def test_prose_from_the_model_and_long_reasoning_do_not_break_the_request(s3, monkeypatch):
    from core import ai
    from core.models import ExpenseReport, Notification

    class Prose:
        def create(self, **kwargs):
            return type("M", (), {"content": [type("T", (), {"text": "I think this is probably fine!"})]})
    stub = ai.AnthropicProvider(type("Client", (), {"messages": Prose()})())
    monkeypatch.setattr(ai, "provider", lambda: stub)
    ai_company("Prose Ltd")
    me, pw = make("Prose Ltd")
    assert submit(client(me, pw), receipt_pdf()).status_code == 302
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "needs_review" and "could not evaluate" in report.review_reason
    stub_provider(monkeypatch, ai.Evaluation("decline", 0.97, "because " * 200, "Gym and fitness"))
    ai_company("Verbose Ltd")
    you, ypw = make("Verbose Ltd")
    assert submit(client(you, ypw), receipt_pdf()).status_code == 302
    assert ExpenseReport.objects.get(employee=you).status == "declined"
    assert len(Notification.objects.get(employee=you).message) <= 500


@pytest.mark.parametrize("content, why", [(b"", "Attach"), (b"<html><script>alert(1)</script>", "JPEG, PNG or PDF"),
                                          (b"GIF89a....", "JPEG, PNG or PDF")])
def test_empty_or_unaccepted_receipts_are_refused_and_leave_nothing(s3, spy, content, why):
    from core.models import ExpenseReport
    company_with_ai("Picky Ltd", False)
    me, pw = make("Picky Ltd")
    r = submit(client(me, pw), content)
    assert r.status_code == 400 and why.encode() in r.content
    assert not ExpenseReport.objects.filter(employee=me).exists()
    assert s3.list_objects_v2(Bucket="benefits-receipts", Prefix=f"receipts/{me.company_id}/").get("KeyCount") == 0


def test_receipt_type_is_set_by_the_server_and_served_as_a_download(s3, spy):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core.models import ExpenseReport
    company_with_ai("Types Ltd", False)
    me, pw = make("Types Ltd")
    c = client(me, pw)
    png = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(32)
    c.post("/expenses/", {"amount": "10.00", "currency": "EUR", "spent_on": "2026-11-01", "category": "gym",
                          "receipt": SimpleUploadedFile("x.html", png, "text/html")}, secure=True)
    report = ExpenseReport.objects.get(employee=me)
    assert s3.head_object(Bucket="benefits-receipts", Key=report.receipt_key)["ContentType"] == "image/png"
    r = c.get(f"/expenses/{report.pk}/receipt", secure=True)
    assert r["Content-Type"] == "image/png" and r["Content-Disposition"].startswith("attachment")


def test_a_resubmitted_receipt_replaces_the_old_object(s3, spy):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core.models import ExpenseReport
    ai_company("Replace Ltd")
    me, pw = make("Replace Ltd")
    c = client(me, pw)
    submit(c, receipt_pdf(category="Wine"))
    report = ExpenseReport.objects.get(employee=me)
    old_key = report.receipt_key
    assert c.post(f"/expenses/{report.pk}/resubmit", {"amount": "45.00", "currency": "EUR", "spent_on": "2026-11-01",
                  "category": "gym", "receipt": SimpleUploadedFile("r.pdf", receipt_pdf(), "application/pdf")},
                  secure=True).status_code == 302
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="benefits-receipts").get("Contents", [])]
    assert old_key not in keys and ExpenseReport.objects.get(pk=report.pk).receipt_key in keys


def test_metrics_answer_the_ops_address_only(django_app):
    from django.conf import settings
    from django.test import Client
    assert Client(HTTP_HOST=HOST).get("/metrics", secure=True).status_code == 200     # loopback (tests, ops)
    outsider = Client(HTTP_HOST=HOST, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 198.51.100.1")
    assert outsider.get("/metrics", secure=True).status_code == 403                  # the front's entry counts
    assert Client(HTTP_HOST=HOST, REMOTE_ADDR="10.9.9.9").get("/metrics", secure=True).status_code == 403
    assert "127.0.0.1" in settings.METRICS_ALLOWED


def test_mfa_next_refuses_plain_http_and_the_middleware_encodes_it(django_app):
    hr, pw = make("Redirects Ltd", "hr")
    c = client(hr, pw)
    r = c.get("/hr/employees/?a=1&next=//evil.example", secure=True)
    assert r["Location"] == "/mfa/?next=/hr/employees/%3Fa%3D1%26next%3D//evil.example"
    from django_otp.plugins.otp_totp.models import TOTPDevice
    device = TOTPDevice.objects.create(user=hr.user, name="authenticator", confirmed=True)
    r = c.post(f"/mfa/?next=http://{HOST}/hr/employees/", {"token": code_for(device)}, secure=True)
    assert r.status_code == 302 and r["Location"] == "/"


# --- Baseline ----------------------------------------------------------------------------------------

def test_csp_and_permissions_policy(django_app):
    from django.test import Client
    r = Client(HTTP_HOST=HOST).get("/login/", secure=True)
    csp = r["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "camera=()" in r["Permissions-Policy"] and "geolocation=()" in r["Permissions-Policy"]


def test_an_idle_session_ends(django_app):
    emp, pw = make("Idle Ltd")
    c = client(emp, pw)
    assert c.get("/expenses/", secure=True).status_code == 200
    session = c.session
    session["seen_at"] = time.time() - 31 * 60
    session.save()
    r = c.get("/expenses/", secure=True)
    assert r.status_code == 302 and r["Location"] == "/login/?idle=1"
    assert c.get("/expenses/", secure=True)["Location"].startswith("/login/")


def test_export_and_closing_a_deletion_want_a_fresh_sign_in(s3, spy):
    from core.models import DataSubjectRequest, Employee
    me, pw = make("Reauth Ltd")
    c = client(me, pw)
    session = c.session
    session["auth_at"] = time.time() - 3600
    session.save()
    r = c.get("/me/export.json", secure=True)
    assert r.status_code == 302 and r["Location"] == "/reauth/?next=/me/export.json"
    assert c.post("/reauth/?next=/me/export.json", {"secret": "wrong"}, secure=True).status_code == 400
    assert c.post("/reauth/?next=/me/export.json", {"secret": pw}, secure=True)["Location"] == "/me/export.json"
    assert c.get("/me/export.json", secure=True).status_code == 200
    c.post("/me/requests/", {"kind": "deletion"}, secure=True)
    req = DataSubjectRequest.objects.get(employee=me)
    hr, h = hr_of("Reauth Ltd")
    session = h.session
    session["auth_at"] = time.time() - 3600
    session.save()
    assert h.post(f"/hr/requests/{req.pk}/close", {"outcome": "done"}, secure=True).status_code == 403
    assert Employee.objects.get(pk=me.pk).anonymized_at is None


def common_password() -> str:
    """A 12+ character entry of Django's bundled common-password list (read at run time)."""
    from django.contrib.auth.password_validation import CommonPasswordValidator
    return sorted(p for p in CommonPasswordValidator().passwords if len(p) >= 12 and not p.isdigit())[0]


def test_password_change_refuses_common_passwords_and_reset_mails_a_link(django_app):
    from django.contrib.auth.models import User
    from django.core import mail
    from django.test import Client
    emp, pw = make("Passwords Ltd")
    c = client(emp, pw)
    weak = common_password()
    r = c.post("/password/change/", {"old_password": pw, "new_password1": weak, "new_password2": weak}, secure=True)
    assert r.status_code == 200 and b"too common" in r.content
    strong = secrets.token_urlsafe(18)
    r = c.post("/password/change/", {"old_password": pw, "new_password1": strong, "new_password2": strong}, secure=True)
    assert r.status_code == 302 and User.objects.get(pk=emp.user.pk).check_password(strong)
    mail.outbox = []
    anon = Client(HTTP_HOST=HOST)
    assert anon.post("/password/reset/", {"email": emp.user.email}, secure=True).status_code == 302
    (sent,) = mail.outbox
    link = re.search(r"https://[^/]+(/password/reset/\S+/)", sent.body).group(1)
    form = anon.get(link, secure=True, follow=True)
    newer = secrets.token_urlsafe(18)
    r = anon.post(form.redirect_chain[-1][0], {"new_password1": newer, "new_password2": newer}, secure=True)
    assert r.status_code == 302 and User.objects.get(pk=emp.user.pk).check_password(newer)


def test_submissions_are_rate_limited(s3, spy):
    from core import expenses, privacy
    company_with_ai("Flood Ltd", False)
    me, pw = make("Flood Ltd")
    c = client(me, pw)
    for _ in range(privacy.REQUESTS_PER_DAY):
        assert c.post("/me/requests/", {"kind": "access"}, secure=True).status_code == 302
    assert c.post("/me/requests/", {"kind": "access"}, secure=True).status_code == 429
    for _ in range(expenses.SUBMISSIONS_PER_HOUR):
        assert submit(c, receipt_pdf()).status_code == 302
    assert submit(c, receipt_pdf()).status_code == 429


def test_blurry_still_goes_to_review(s3, spy):
    from core.models import ExpenseReport
    ai_company("Blurry Ltd")
    me, pw = make("Blurry Ltd")
    submit(client(me, pw), BLURRY)
    assert ExpenseReport.objects.get(employee=me).review_reason


def test_a_mail_relay_that_is_down_is_said_not_a_server_error(django_app):
    from django.test import override_settings
    from django_otp.plugins.otp_totp.models import TOTPDevice
    hr, pw = make("No Mail GmbH", "hr")
    c = client(hr, pw)
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1",
                           EMAIL_PORT=9, EMAIL_TIMEOUT=2):          # nothing listens on the discard port
        r = c.post("/mfa/", {"action": "send-link"}, secure=True)
    assert r.status_code == 503 and b"could not send" in r.content
    assert not TOTPDevice.objects.filter(user=hr.user).exists()
