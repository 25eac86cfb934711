"""The sign-in log the monitors tail: every sign-in failure, success and lockout, one JSON object
a line, appended to the file named by BENEFITS_AUTH_LOG (settings.AUTH_LOG; unset: no file).

The contract with the monitors' parser (do not change it without them): keys exactly
  time     RFC 3339 UTC with milliseconds, "2026-12-02T05:40:00.123Z"
  event    one of EVENTS
  user     the username as typed, at most 150 characters ("" when none was typed, e.g. Entra ID)
  source   the client address (core.clientip)
  company  the account's company id, or null
Each line is written with one O_APPEND write, so the gunicorn workers never interleave lines."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os

from django.conf import settings
from django.shortcuts import render

from core.clientip import client_ip

FAILED, SUCCEEDED, LOCKED = "signin.failed", "signin.succeeded", "signin.locked"
EVENTS = (FAILED, SUCCEEDED, LOCKED)
USER_MAX = 150
log = logging.getLogger(__name__)


def timestamp(now: dt.datetime | None = None) -> str:
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def line(event: str, user: str, source: str, company: int | None, now: dt.datetime | None = None) -> bytes:
    if event not in EVENTS:
        raise ValueError(f"unknown sign-in event {event!r}")
    record = {"time": timestamp(now), "event": event, "user": str(user or "")[:USER_MAX], "source": source,
              "company": company}
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def write(event: str, user: str, request) -> None:
    path = settings.AUTH_LOG
    if not path:
        return
    data = line(event, user, (client_ip(request) if request is not None else None) or "", company_of(user))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError:   # a sign-in must not fail because the log cannot be written; say so loudly
        log.error("cannot write the auth log %s", path, exc_info=True)


def company_of(username: str) -> int | None:
    from core.models import Employee
    if not username:
        return None
    return Employee.objects.filter(user__username=str(username)[:USER_MAX]).values_list(
        "company_id", flat=True).first()


def typed_username(credentials: dict | None) -> str:
    return str((credentials or {}).get("username") or "")


def on_failed(sender, credentials, request=None, **kwargs) -> None:
    write(FAILED, typed_username(credentials), request)


def on_succeeded(sender, request, user, **kwargs) -> None:
    write(SUCCEEDED, user.get_username(), request)


def on_locked(sender, request=None, username=None, **kwargs) -> None:
    write(LOCKED, username or "", request)


def locked_out_response(request, credentials, *args, **kwargs):
    """What a locked-out account or source sees (django-axes' lockout callable): 429, no detail on
    which of the two is locked, and what to do."""
    return render(request, "core/locked.html", {"minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
                  status=429)
