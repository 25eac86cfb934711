"""The data export (GDPR Arts. 15 and 20): every RoPA field of every row that is about the person,
in JSON, with the receipts. Driven by ropa.yaml: a field added to the RoPA is exported without a
code change, and tests/app/test_privacy.py fails when a RoPA model about people has no rows here."""
from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import yaml
from django.apps import apps

ROPA = Path(__file__).resolve().parent.parent / "ropa.yaml"
# Kept, but not handed out: what would help an attacker more than the person (still named in the
# export, so the person knows it exists).
WITHHELD = {"auth.User.password": "a salted password hash (not exported)",
            "otp_totp.TOTPDevice.key": "the authenticator's secret key (not exported)",
            "otp_static.StaticToken.token": "an unused recovery code (not exported)"}


@lru_cache(maxsize=1)
def ropa_fields() -> dict[str, list[str]]:
    """model label -> its personal-data fields, from ropa.yaml's activities."""
    out: dict[str, list[str]] = {}
    for activity in yaml.safe_load(ROPA.read_text())["activities"]:
        for ref in activity["fields"]:
            label, _, name = ref.rpartition(".")
            out.setdefault(label, []).append(name)
    return out


def subject_rows(employee) -> dict[str, list]:
    """The rows of each RoPA model that are about this employee."""
    from axes.models import AccessAttempt, AccessAttemptExpiration, AccessFailureLog, AccessLog
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from core.models import AuditEvent
    user = employee.user
    attempts = list(AccessAttempt.objects.filter(username=user.username).order_by("pk"))
    return {"otp_totp.TOTPDevice": list(TOTPDevice.objects.filter(user=user).order_by("pk")),
            "otp_static.StaticDevice": list(StaticDevice.objects.filter(user=user).order_by("pk")),
            "otp_static.StaticToken": list(StaticToken.objects.filter(device__user=user).order_by("pk")),
            "axes.AccessAttempt": attempts,
            "axes.AccessAttemptExpiration": list(AccessAttemptExpiration.objects.filter(access_attempt__in=attempts)),
            "axes.AccessFailureLog": list(AccessFailureLog.objects.filter(username=user.username).order_by("pk")),
            "axes.AccessLog": list(AccessLog.objects.filter(username=user.username).order_by("pk")),
            "auth.User": [user], "core.Employee": [employee],
            "core.ExpenseReport": list(employee.expenses.order_by("pk")),
            "core.Notification": list(employee.notifications.order_by("pk")),
            "core.DataSubjectRequest": list(employee.requests.order_by("pk")),
            "core.AuditEvent": list(AuditEvent.objects.filter(actor=user).order_by("pk"))}


def plain(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value


def export(employee) -> dict:
    from core import receipts
    rows = subject_rows(employee)
    data: dict[str, object] = {"format": "benefits-export/1", "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                               "company": employee.company.name}
    for label, names in ropa_fields().items():
        model = apps.get_model(label)
        records = []
        for obj in rows.get(label, []):
            record = {}
            for name in names:
                field = model._meta.get_field(name)
                ref = f"{label}.{name}"
                record[name] = WITHHELD[ref] if ref in WITHHELD else plain(field.value_from_object(obj))
            if label == "core.ExpenseReport":
                record["receipt"] = {"type": obj.receipt_type,
                                     "content_base64": base64.b64encode(receipts.get(obj.receipt_key)).decode()}
            records.append(record)
        data[label] = records
    return data
