"""Alerts to Alertmanager's v2 API the way Prometheus sends them: one alert per (rule, source)
while it fires, re-posted every `resend_every` with `endsAt` computed at send time (4 x
resend_every ahead, so Alertmanager keeps it firing while we post and resolves it by itself if
this monitor dies), and posted once more with `endsAt` = the resolve time when the attack stops.

A post is built when it is sent, never when it is queued: an alert held back by an Alertmanager
outage arrives with a fresh `endsAt` and the real count of events at send time. The backlog and
delivery failures are written to stderr (the journal), not only to metrics.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone

from trustops.monitors.rules import SEVERITIES, Detection

MAX_RESOLVED = 10_000       # resolved posts waiting for Alertmanager; the oldest go first past it
MAX_FIRING_PER_RULE = 100   # alerts one rule may fire, one per source; past it the rule's sources are aggregated
MAX_FIRING = 1_000          # alerts firing in all
TOP_OFFENDERS = 10          # named in an aggregate alert
_TOP_KEPT = 100             # candidates kept for them (the smallest goes when full)
LOG_EVERY = 60.0            # at most one backlog line a minute while Alertmanager is away


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _log(msg: str) -> None:
    print(f"trustops-monitor: {msg}", file=sys.stderr, flush=True)


class AlertBook:
    """What fires now, and what Alertmanager has not been told yet."""

    def __init__(self, url: str | None, instance: str, runbook_base: str, resolve_after: float = 600,
                 resend_every: float = 60, timeout: float = 2.0, refresh=None, log=_log, ca_file: str | None = None,
                 max_per_rule: int = MAX_FIRING_PER_RULE, max_firing: int = MAX_FIRING, top=None) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts" if url else None
        self.ca_file = ca_file     # verify an https Alertmanager (its front) against this CA
        self._tls = None
        self.instance = instance
        self.runbook_base = runbook_base.rstrip("/")
        self.resolve_after = resolve_after
        self.resend_every = resend_every
        self.timeout = timeout
        self.refresh = refresh or (lambda d: d)   # Detection -> the same with the count at send time
        self.log = log
        self.top = top                      # rule -> [(events, source)], most first: its top offenders now
        self.max_per_rule = max_per_rule
        self.max_firing = max_firing
        self.per_rule: dict[str, int] = {}  # rule -> its per-source alerts firing
        self.aggregated: dict[str, int] = {}  # rule -> detections folded into its aggregate alert
        self.firing: dict[str, dict] = {}   # key -> {"labels", "startsAt", "last", "detection"}
        self.due: dict[str, None] = {}      # firing alerts to post at the next flush (new ones, or all on resend)
        self.resolved: deque[dict] = deque()  # resolved posts, endsAt fixed at the resolve time
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        self._next_try = 0.0
        self._backoff = 0.5
        self._last_resend = 0.0
        self._failing_since: float | None = None
        self._last_log = 0.0
        self._sender: threading.Thread | None = None  # posts in the background (start_sender)
        self._inflight: tuple | None = None  # (now, due keys, resolved, batch, error: None while posting)
        self._wake = threading.Event()
        self._stopping = False
        self.on_sent = None  # called on the sender thread after each post (the daemon wakes its loop)

    @staticmethod
    def key(rule: str, group: str) -> str:
        return f"{rule}|{group}"

    @property
    def queue(self) -> list:
        """Posts waiting for Alertmanager (firing alerts due and resolved ones)."""
        return [*self.due, *self.resolved]

    def _labels(self, d: Detection) -> dict:
        # host and instance as on Prometheus' alerts: the inventory's host name (the config's instance)
        return {"alertname": d.rule, "severity": d.severity, "instance": self.instance, "host": self.instance,
                "rule": d.rule,
                "source": d.group, "service": "trustops-monitor", **({"mitre_technique": d.mitre} if d.mitre else {})}

    def _annotations(self, d: Detection) -> dict:
        return {"summary": d.summary, "description": d.description,
                "runbook_url": f"{self.runbook_base}/{d.rule}.md"}

    def _post(self, entry: dict, now: float, ends: float) -> dict:
        agg = entry.get("aggregate")
        if agg is not None:
            rule = entry["labels"]["rule"]
            top = sorted(agg["top"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OFFENDERS]
            if self.top is not None:  # the engine's count now, over every source it tracks
                top = [(src, n) for n, src in self.top(rule, TOP_OFFENDERS)] or top
            names = ", ".join(f"{src} ({n})" for src, n in top) or "none left in the rule's window (old lines)"
            annotations = {
                "summary": f"{rule} flood: {agg['sources']} detections from sources beyond its {self.max_per_rule} "
                           f"per-source alerts (perhaps spoofed); top: {names}",
                "description": f"{rule} fired {agg['sources']} times for sources beyond the {self.max_per_rule} it "
                               f"alerts on one by one (a source counts again after each cooldown); they are "
                               f"aggregated here. Top offenders (events so far): {names}.",
                "runbook_url": f"{self.runbook_base}/{rule}.md"}
        else:
            annotations = self._annotations(self.refresh(Detection(**entry["detection"])))
        return {"labels": entry["labels"], "annotations": annotations, "startsAt": entry["startsAt"],
                "endsAt": rfc3339(ends)}

    def aggregate(self, rule: str, severity: str, mitre: str | None, group: str, count: int, first: float,
                  now: float | None = None) -> None:
        """A detection folded into its rule's one aggregate alert: counted (and, without the
        engine's counts, among the first sources kept for the top offenders)."""
        now = time.time() if now is None else now
        k = self.key(rule, "*")
        entry = self.firing.get(k)
        if entry is None:
            labels = {"alertname": rule, "severity": severity, "instance": self.instance, "rule": rule,
                      "source": "many", "service": "trustops-monitor", "aggregate": "true",
                      **({"mitre_technique": mitre} if mitre else {})}
            entry = self.firing[k] = {"labels": labels, "startsAt": rfc3339(min(first, now)), "last": now,
                                      "aggregate": {"sources": 0, "top": {}}}
            self.due[k] = None
        entry["last"] = now
        agg = entry["aggregate"]
        agg["sources"] += 1
        self.aggregated[rule] = self.aggregated.get(rule, 0) + 1
        if self.top is None:
            top = agg["top"]
            if group in top or len(top) < _TOP_KEPT:
                top[group] = max(top.get(group, 0), count)

    def aggregated_more(self, rule: str, n: int, now: float | None = None) -> None:
        """n more detections folded into the rule's aggregate alert (made by `aggregate`), counted
        in bulk; the top offenders come from the engine (`top`)."""
        entry = self.firing[self.key(rule, "*")]
        entry["last"] = time.time() if now is None else now
        entry["aggregate"]["sources"] += n
        self.aggregated[rule] = self.aggregated.get(rule, 0) + n

    def overflows(self, rule: str, group: str) -> bool:
        """Whether a detection for (rule, group) would be aggregated (the caller can then skip
        building its texts: a flood brings a million of them)."""
        return ((self.per_rule.get(rule, 0) >= self.max_per_rule or len(self.firing) >= self.max_firing)
                and self.key(rule, group) not in self.firing)

    def detected(self, d: Detection, now: float | None = None) -> None:
        now = time.time() if now is None else now
        k = self.key(d.rule, d.group)
        entry = self.firing.get(k)
        if entry is None and (self.per_rule.get(d.rule, 0) >= self.max_per_rule
                              or len(self.firing) >= self.max_firing):
            self.aggregate(d.rule, d.severity, d.mitre, d.group, d.count, d.first_ts, now)
            return
        if entry is None:
            self.per_rule[d.rule] = self.per_rule.get(d.rule, 0) + 1
            self.firing[k] = {"labels": self._labels(d), "startsAt": rfc3339(min(d.first_ts, now)), "last": now,
                              "detection": d.as_dict()}
            self.due[k] = None
            return
        entry["last"] = now
        entry["detection"] = d.as_dict()
        if SEVERITIES.index(d.severity) < SEVERITIES.index(entry["labels"]["severity"]):
            # worse than it fired as (a login after failures for the same user, after one for another
            # user): it is posted again at once under its new severity; the old one ends by its endsAt
            entry["labels"] = self._labels(d)
            self.due[k] = None

    def tick(self, now: float | None = None) -> int:
        """Resolve alerts whose condition ended (nothing new for `resolve_after`), and mark every
        firing alert due again each `resend_every`. Returns how many resolved."""
        now = time.time() if now is None else now
        done = [k for k, e in self.firing.items() if now - e["last"] >= self.resolve_after]
        for k in done:
            entry = self.firing.pop(k)
            self.due.pop(k, None)
            if "aggregate" not in entry:
                rule = entry["labels"]["rule"]
                self.per_rule[rule] -= 1
            self.resolved.append(self._post(entry, now, now))
            while len(self.resolved) > MAX_RESOLVED:
                self.resolved.popleft()
                self.dropped += 1
        if self.firing and now - self._last_resend >= self.resend_every:
            self.due.update(dict.fromkeys(self.firing))
            self._last_resend = now
        return len(done)

    def flush(self, now: float | None = None) -> bool:
        """Post what is due, built now; on failure keep it and back off (0.5 s doubling to 30 s).
        With a sender thread (`start_sender`) the post goes out on that thread and this call
        returns at once: Alertmanager being slow or away never holds up reading the logs, and
        an alert detected during a flood goes out while the backlog is still being read. All
        state changes stay on the caller's thread (the engine is not thread-safe): the thread
        only performs the HTTP request, and the next call settles its outcome."""
        if self._sender is not None:
            self._settle_sent()
            if self._inflight is not None:
                return False
        if (not self.due and not self.resolved) or self.url is None:
            return True
        now = time.time() if now is None else now
        if now < self._next_try:
            return False
        ends = now + 4 * self.resend_every
        due = list(self.due)
        resolved = list(self.resolved)
        batch = [self._post(self.firing[k], now, ends) for k in due] + resolved
        if self._sender is not None:
            self._inflight = (now, due, resolved, batch, None)
            self._wake.set()
            return False
        return self._settle(now, due, resolved, batch, self._deliver(batch))

    def _deliver(self, batch: list) -> str | None:
        """POST a batch; the error as text, or None when Alertmanager took it."""
        import urllib.error  # only the daemon posts; replay does not pay for the import
        import urllib.request

        req = urllib.request.Request(self.url, data=json.dumps(batch).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            if self._tls is None and self.url.startswith("https:"):
                import ssl
                self._tls = ssl.create_default_context(cafile=self.ca_file)
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls) as resp:
                if not 200 <= resp.status < 300:
                    return f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc)) or exc.__class__.__name__
        return None

    def _settle(self, now: float, due: list, resolved: list, batch: list, error: str | None) -> bool:
        if error is not None:
            self.failures += 1
            self._next_try = time.time() + self._backoff if self._sender is not None else now + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            if self._failing_since is None:
                self._failing_since = now
            if self._failures_logged(now):
                self.log(f"Alertmanager {self.url} did not take {len(batch)} alerts ({error}); "
                         f"{len(self.firing)} firing, {len(self.resolved)} resolved waiting, "
                         f"{self.failures} failed posts so far; next try in {self._backoff:g} s")
            return False
        for k in due:
            self.due.pop(k, None)
        sent = {id(r) for r in resolved}  # the sent ones; the deque may have dropped some meanwhile
        while self.resolved and id(self.resolved[0]) in sent:
            self.resolved.popleft()
        self.sent += len(batch)
        if self._failing_since is not None:
            self.log(f"Alertmanager {self.url} reachable again: delivered {len(batch)} alerts held for "
                     f"{now - self._failing_since:.0f} s")
            self._failing_since = None
        self._backoff = 0.5
        self._next_try = 0.0
        return True

    # -- the sender thread -------------------------------------------------------------------
    def start_sender(self) -> None:
        """Post from a thread of its own from now on (the daemon; replay and tests post inline)."""
        if self._sender is None and self.url is not None:
            self._stopping = False
            self._sender = threading.Thread(target=self._send_loop, name="alert-sender", daemon=True)
            self._sender.start()

    def stop_sender(self, timeout: float = 5.0) -> None:
        """Stop the thread after the post in flight (if any), settle it, and post inline again."""
        if self._sender is None:
            return
        self._stopping = True
        self._wake.set()
        self._sender.join(timeout)
        self._settle_sent()
        self._sender = None
        self._inflight = None  # one still in flight past the timeout stays due: posted again

    def _send_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            job = self._inflight
            if job is not None and job[4] is None:
                error = self._deliver(job[3])
                self._inflight = (*job[:4], error or "")  # "" when delivered: settled by the owner thread
                if self.on_sent is not None:
                    self.on_sent()
            if self._stopping:
                return

    def _settle_sent(self) -> None:
        job = self._inflight
        if job is not None and job[4] is not None:
            self._inflight = None
            self._settle(job[0], job[1], job[2], job[3], job[4] or None)

    def _failures_logged(self, now: float) -> bool:
        if now - self._last_log >= LOG_EVERY or self._failing_since == now:
            self._last_log = now
            return True
        return False

    # -- persistence (part of the checkpoint) ----------------------------------------------
    def dump(self) -> dict:
        return {"firing": self.firing, "due": list(self.due), "resolved": list(self.resolved),
                "dropped": self.dropped}

    def restore(self, data: dict | None) -> None:
        """The checkpoint's alerts; a checkpoint of the older format (posts built at queue time)
        keeps only what still fires, to be re-posted fresh."""
        if not data:
            return
        for k, e in (data.get("firing") or {}).items():
            if isinstance(e, dict) and "aggregate" in e:
                self.firing[k] = e
            elif isinstance(e, dict) and "detection" in e:
                self.firing[k] = e
                rule = e["labels"]["rule"]
                self.per_rule[rule] = self.per_rule.get(rule, 0) + 1
        self.due.update(dict.fromkeys(k for k in data.get("due", []) if k in self.firing))
        self.due.update(dict.fromkeys(self.firing))  # a restart re-posts what fires
        self.resolved.extend(r for r in data.get("resolved", []) if isinstance(r, dict))
        self.dropped = int(data.get("dropped", 0))


class AlertFanout:
    """Every alert to every Alertmanager of a cluster, as Prometheus sends them: one AlertBook per
    peer, each with its own queue, backoff and outage log, fed the same detections. Losing a peer
    holds back only that peer's posts; the cluster deduplicates the notifications."""

    def __init__(self, urls: list[str], *args, **kw) -> None:
        self.books = [AlertBook(url, *args, **kw) for url in (urls or [None])]

    @property
    def first(self) -> AlertBook:
        return self.books[0]

    def detected(self, d: Detection, now: float | None = None) -> None:
        for b in self.books:
            b.detected(d, now)

    def aggregate(self, *args, **kw) -> None:
        for b in self.books:
            b.aggregate(*args, **kw)

    def aggregated_more(self, rule: str, n: int, now: float | None = None) -> None:
        for b in self.books:
            b.aggregated_more(rule, n, now)

    def overflows(self, rule: str, group: str) -> bool:
        return self.first.overflows(rule, group)

    def tick(self, now: float | None = None) -> int:
        return max(b.tick(now) for b in self.books)

    def flush(self, now: float | None = None) -> bool:
        return any([b.flush(now) for b in self.books])     # every peer, no short cut

    @property
    def queue(self) -> list:
        """Posts waiting, over all peers (a post two peers still need counts twice)."""
        return [p for b in self.books for p in b.queue]

    @property
    def firing(self) -> dict:
        return self.first.firing

    @property
    def aggregated(self) -> dict:
        return self.first.aggregated

    @property
    def sent(self) -> int:
        return sum(b.sent for b in self.books)

    @property
    def failures(self) -> int:
        return sum(b.failures for b in self.books)

    @property
    def dropped(self) -> int:
        return sum(b.dropped for b in self.books)

    @property
    def on_sent(self):
        return self.first.on_sent

    @on_sent.setter
    def on_sent(self, callback) -> None:
        for b in self.books:
            b.on_sent = callback

    def start_sender(self) -> None:
        for b in self.books:
            b.start_sender()

    def stop_sender(self, timeout: float = 5.0) -> None:
        for b in self.books:
            b.stop_sender(timeout)

    def dump(self) -> dict:
        return {"peers": {b.url or "": b.dump() for b in self.books}}

    def restore(self, data: dict | None) -> None:
        """Each peer's own part of the checkpoint; a peer the checkpoint does not know (new in the
        config, or a checkpoint from before the fan-out) starts from what fires, re-posted fresh."""
        if not data:
            return
        peers = data.get("peers")
        if not isinstance(peers, dict):
            peers = {}
            whole = data
        else:
            whole = next(iter(peers.values()), None)
        for b in self.books:
            part = peers.get(b.url or "")
            if isinstance(part, dict):
                b.restore(part)
            elif isinstance(whole, dict):
                b.restore({"firing": whole.get("firing"), "due": [], "dropped": 0})
