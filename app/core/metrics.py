"""Prometheus metrics of the app (prometheus-client): requests by view and status, latency, sign-ins
by method and outcome, and, read from the database at scrape time, the data-subject requests that
are open and overdue (the page promises answers within 30 days). Under gunicorn the workers share
the counters through PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets it up); in one process (tests,
runserver) the default registry serves. The endpoint is not public: nginx denies /metrics on the
public front and serves it to the ops host only, on the private network, and the app itself
answers only the addresses in BENEFITS_METRICS_ALLOWED (the ops host), whatever nginx does."""
from __future__ import annotations

import datetime as dt
import os
import time

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter("benefits_http_requests", "HTTP requests answered, by view and status class",
                   ["method", "view", "status"])
LATENCY = Histogram("benefits_http_request_duration_seconds", "Time to answer a request, by view", ["view"],
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SIGN_INS = Counter("benefits_sign_ins", "Sign-in attempts by method and outcome", ["method", "outcome"])


class CountRequests:
    """Counts each request under its URL pattern's name (bounded: never the raw path)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route) if match else "unmatched"
        if view != "metrics":
            REQUESTS.labels(request.method if request.method in ("GET", "POST", "HEAD") else "other", view,
                            f"{response.status_code // 100}xx").inc()
            LATENCY.labels(view).observe(time.perf_counter() - started)
        return response


class DataSubjectRequests:
    """Open and overdue data-subject requests, counted when Prometheus scrapes."""

    def collect(self):
        from django.utils import timezone

        from core.models import DataSubjectRequest
        open_ = GaugeMetricFamily("benefits_dsr_open", "Open data-subject requests, by kind", labels=["kind"])
        overdue = GaugeMetricFamily("benefits_dsr_overdue", "Open data-subject requests past their 30-day deadline")
        oldest = GaugeMetricFamily("benefits_dsr_oldest_open_age_seconds", "Age of the oldest open request")
        now = timezone.now()
        pending = list(DataSubjectRequest.objects.filter(status=DataSubjectRequest.OPEN)
                       .values_list("kind", "received_at"))
        deadline = dt.timedelta(days=DataSubjectRequest.DEADLINE_DAYS)
        for kind, _ in DataSubjectRequest.KINDS:
            open_.add_metric([kind], sum(1 for k, _ in pending if k == kind))
        overdue.add_metric([], sum(1 for _, received in pending if received + deadline < now))
        oldest.add_metric([], max(((now - received).total_seconds() for _, received in pending), default=0))
        return [open_, overdue, oldest]


def metrics(request):
    from core.clientip import client_ip
    if client_ip(request) not in settings.METRICS_ALLOWED:
        return HttpResponseForbidden("metrics are for the ops host only\n", content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    scrape = CollectorRegistry()
    scrape.register(DataSubjectRequests())
    body = generate_latest(registry) + generate_latest(scrape)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
