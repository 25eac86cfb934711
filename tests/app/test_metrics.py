"""The app's Prometheus endpoint: requests counted under their view's name (never the raw path),
sign-ins by method and outcome, and the data-subject requests that are open and overdue."""
from __future__ import annotations

import datetime as dt
import re
import secrets

from tests.app.test_security import HOST, client, make


def scrape() -> str:
    from django.test import Client
    r = Client(HTTP_HOST=HOST).get("/metrics", secure=True)
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain")
    return r.content.decode()


def value(text: str, name: str, **labels) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(w in (m.group(1) or "") for w in want):
            return float(m.group(2))
    return 0.0


def test_requests_and_sign_ins_are_counted(django_app):
    from django.test import Client
    before = scrape()
    emp, pw = make("Metrics AG")
    c = client(emp, pw)
    for _ in range(3):
        c.get("/expenses/", secure=True)
    Client(HTTP_HOST=HOST).post("/login/", {"username": emp.user.username, "password": secrets.token_urlsafe(12)}, secure=True)
    c.get(f"/no/such/{emp.user.username}", secure=True)
    after = scrape()
    key = dict(method="GET", view="my-expenses", status="2xx")
    assert value(after, "benefits_http_requests_total", **key) - value(before, "benefits_http_requests_total", **key) == 3
    assert value(after, "benefits_sign_ins_total", method="password", outcome="failure") \
        - value(before, "benefits_sign_ins_total", method="password", outcome="failure") == 1
    assert value(after, "benefits_http_request_duration_seconds_count", view="my-expenses") >= 3
    assert emp.user.username not in after          # raw paths never become label values
    assert 'view="unmatched"' in after


def test_open_and_overdue_data_subject_requests(django_app):
    from django.utils import timezone

    from core.models import DataSubjectRequest
    before = scrape()
    emp, _ = make("Metrics AG")
    fresh = DataSubjectRequest.objects.create(employee=emp, kind="deletion")
    late = DataSubjectRequest.objects.create(employee=emp, kind="access")
    DataSubjectRequest.objects.filter(pk=late.pk).update(received_at=timezone.now() - dt.timedelta(days=31))
    after = scrape()
    assert value(after, "benefits_dsr_overdue") - value(before, "benefits_dsr_overdue") == 1
    assert value(after, "benefits_dsr_open", kind="deletion") - value(before, "benefits_dsr_open", kind="deletion") == 1
    assert value(after, "benefits_dsr_oldest_open_age_seconds") >= 31 * 86400
    DataSubjectRequest.objects.filter(pk__in=[fresh.pk, late.pk]).update(status="done", closed_at=timezone.now())
    assert value(scrape(), "benefits_dsr_overdue") == value(before, "benefits_dsr_overdue")
