"""The client's address. Behind the web front, nginx overwrites X-Forwarded-For with the address it
saw (`proxy_set_header X-Forwarded-For $remote_addr`), and only nginx reaches the app (its port is
published on 127.0.0.1). The rightmost entry is the one nginx wrote, so a value a client sent
itself is never believed, even under a front that appends instead of overwriting."""
from __future__ import annotations

import ipaddress


def client_ip(request) -> str | None:
    """The address, normalised, or None when there is no valid one (a request made in code)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    candidate = forwarded.split(",")[-1].strip() if forwarded else request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def typed_username(request, credentials: dict | None) -> str:
    """The username as typed, cut to the length a username can have (django-axes' username
    callable: a longer one would not fit its table and fail the request)."""
    source = credentials if credentials is not None else getattr(request, "POST", {})
    return str((source or {}).get("username") or "")[:150]
