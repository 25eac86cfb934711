"""Alerts to Alertmanager's v2 API: one alert per (rule, source) while it fires, refreshed while
the attack goes on, resolved when it stops; queued and retried while Alertmanager is away.

Alertmanager deduplicates by label set, so every (re)post of a firing alert carries the same
labels; `endsAt` is always set, so an alert also resolves if this monitor dies.
"""
from __future__ import annotations

import json
import time
from collections import deque
from datetime import datetime, timezone

from trustops.monitors.rules import Detection

MAX_QUEUE = 10_000


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class AlertBook:
    """What fires now, and the posts waiting for Alertmanager."""

    def __init__(self, url: str | None, instance: str, runbook_base: str, resolve_after: float = 600,
                 resend_every: float = 60, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts" if url else None
        self.instance = instance
        self.runbook_base = runbook_base.rstrip("/")
        self.resolve_after = resolve_after
        self.resend_every = resend_every
        self.timeout = timeout
        self.firing: dict[str, dict] = {}     # key -> {"alert": payload, "last": ts, "sent": ts}
        self.queue: deque[dict] = deque()
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        self._next_try = 0.0
        self._backoff = 0.5

    @staticmethod
    def key(rule: str, group: str) -> str:
        return f"{rule}|{group}"

    def _payload(self, d: Detection, now: float) -> dict:
        return {
            "labels": {"alertname": d.rule, "severity": d.severity, "instance": self.instance,
                       "rule": d.rule, "source": d.group, "service": "trustops-monitor",
                       **({"mitre_technique": d.mitre} if d.mitre else {})},
            "annotations": {"summary": d.summary, "description": d.description,
                            "runbook_url": f"{self.runbook_base}/{d.rule}.md"},
            "startsAt": rfc3339(min(d.first_ts, now)),
            "endsAt": rfc3339(now + self.resolve_after),
        }

    def detected(self, d: Detection, now: float | None = None) -> None:
        now = time.time() if now is None else now
        k = self.key(d.rule, d.group)
        entry = self.firing.get(k)
        if entry is None:
            entry = self.firing[k] = {"alert": self._payload(d, now), "last": now, "sent": now}
            self._enqueue(dict(entry["alert"]))
            return
        entry["last"] = now
        if now - entry["sent"] >= self.resend_every:
            entry["alert"]["endsAt"] = rfc3339(now + self.resolve_after)
            entry["alert"]["annotations"] = self._payload(d, now)["annotations"]
            entry["sent"] = now
            self._enqueue(dict(entry["alert"]))

    def tick(self, now: float | None = None) -> int:
        """Resolve alerts whose condition ended (nothing new for `resolve_after`). Returns count."""
        now = time.time() if now is None else now
        done = [k for k, e in self.firing.items() if now - e["last"] >= self.resolve_after]
        for k in done:
            alert = dict(self.firing.pop(k)["alert"])
            alert["endsAt"] = rfc3339(now)
            self._enqueue(alert)
        return len(done)

    def _enqueue(self, alert: dict) -> None:
        self.queue.append(alert)
        while len(self.queue) > MAX_QUEUE:
            self.queue.popleft()
            self.dropped += 1

    def flush(self, now: float | None = None) -> bool:
        """Post everything queued; on failure keep it and back off (0.5 s doubling to 30 s)."""
        if not self.queue or self.url is None:
            return True
        now = time.time() if now is None else now
        if now < self._next_try:
            return False
        import urllib.error  # only the daemon posts; replay does not pay for the import
        import urllib.request

        batch = list(self.queue)
        req = urllib.request.Request(self.url, data=json.dumps(batch).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                ok = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            ok = False
        if not ok:
            self.failures += 1
            self._next_try = now + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            return False
        for _ in batch:
            self.queue.popleft()
        self.sent += len(batch)
        self._backoff = 0.5
        self._next_try = 0.0
        return True

    # -- persistence (part of the checkpoint) ----------------------------------------------
    def dump(self) -> dict:
        return {"queue": list(self.queue), "firing": self.firing}

    def restore(self, data: dict | None) -> None:
        if data:
            self.queue.extend(data.get("queue", []))
            self.firing.update(data.get("firing", {}))
