"""Error and anomaly reporting to PostHog (OPS-04), only when a project key is configured. What is
sent is pseudonymous and holds no personal data: a keyed hash of the user id (never the id, name
or email), the exception's type, and the URL pattern (never the path with its ids or the query)."""
from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings

log = logging.getLogger(__name__)
_client = None


def client():
    """The PostHog client, or None when no key is set (the lab's default)."""
    global _client
    if _client is None and settings.POSTHOG_API_KEY:
        from posthog import Posthog
        _client = Posthog(settings.POSTHOG_API_KEY, host=settings.POSTHOG_HOST)
    return _client


def pseudonym(user) -> str:
    if not getattr(user, "is_authenticated", False):
        return "anonymous"
    key = settings.SECRET_KEY.encode()
    return "u_" + hmac.new(key, f"posthog:{user.pk}".encode(), hashlib.sha256).hexdigest()[:24]


def event(request, exc: Exception) -> dict:
    match = getattr(request, "resolver_match", None)
    return {"distinct_id": pseudonym(request.user), "event": "$exception",
            "properties": {"$exception_type": type(exc).__name__, "route": match.route if match else "unresolved",
                           "method": request.method}}


class ReportErrors:
    """Middleware: unhandled exceptions go to PostHog (when configured), then on to Django."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exc):
        c = client()
        if c is not None:
            try:
                c.capture(**event(request, exc))
            except Exception:  # noqa: BLE001 - reporting must never break the response
                log.warning("could not report an error to PostHog", exc_info=True)
        return None
