"""The monitor's Prometheus metrics (namespace `trustops_monitor`). Labels are bounded: input
names, event outcomes, rule names; an address only on ssh_failing_source_attempts (at most ten)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

NS = "trustops_monitor"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.lines = Counter("lines_read", "Log lines read, by input.", ["input"], namespace=NS, registry=r)
        self.lines_skipped = Counter("lines_skipped", "Lines skipped, by input and reason: invalid_utf8 "
                                     "(or NUL bytes), too_long, unparsed (not understood), error (handling "
                                     "raised; logged to the journal).", ["input", "reason"],
                                     namespace=NS, registry=r)
        self.events = Counter("events", "Security events parsed, by source type and outcome.",
                              ["source_type", "outcome"], namespace=NS, registry=r)
        self.detections = Counter("detections", "Detections, by rule and severity.", ["rule", "severity"],
                                  namespace=NS, registry=r)
        self.rotations = Counter("file_rotations", "Rotations seen, by input and kind (rename, truncate).",
                                 ["input", "kind"], namespace=NS, registry=r)
        self.lag_seconds = Gauge("lag_seconds", "How long unread data has waited at the end of the input.",
                                 ["input"], namespace=NS, registry=r)
        self.lag_bytes = Gauge("lag_bytes", "Bytes between the read position and the end of the file.",
                               ["input"], namespace=NS, registry=r)
        self.last_read = Gauge("last_read_timestamp_seconds", "When the input was last read (Unix time).",
                               ["input"], namespace=NS, registry=r)
        self.alerts_sent = Counter("alerts_sent", "Alert posts accepted by Alertmanager.", namespace=NS,
                                   registry=r)
        self.alert_failures = Counter("alert_send_failures", "Failed attempts to post to Alertmanager.",
                                      namespace=NS, registry=r)
        self.alerts_dropped = Counter("alerts_dropped", "Resolved-alert posts dropped undelivered (the oldest "
                                      "first, past 10,000 waiting).", namespace=NS, registry=r)
        self.alerts_aggregated = Counter("alerts_aggregated", "Detections folded into their rule's one aggregate "
                                         "alert (past max_alerts_per_rule or max_alerts), by rule.", ["rule"],
                                         namespace=NS, registry=r)
        self.groups_evicted = Counter("groups_evicted", "Sources dropped from a rule's state to stay within its "
                                      "bound (least recently seen first), by rule.", ["rule"], namespace=NS,
                                      registry=r)
        self.alerts_queued = Gauge("alerts_queued", "Alert posts waiting for Alertmanager.", namespace=NS,
                                   registry=r)
        self.alerts_firing = Gauge("alerts_firing", "Alerts firing now.", namespace=NS, registry=r)
        self.build_info = Gauge("build_info", "1, labelled with the hot path this daemon runs: c (the "
                                "_speedups extension) or python.", ["hot_path"], namespace=NS, registry=r)
        # The one metric labelled by an address, bounded to hostauth.CROSS_HOST_TOP sources: SSH reaches
        # a host only from its admin networks or the jump host, and Prometheus must see one source
        # failing on several hosts (SshFailuresAcrossHosts), which no single monitor sees.
        self.ssh_failing_sources = Gauge("ssh_failing_source_attempts", "Failed SSH attempts from a source while "
                                         "SshBruteForce tracks it (a failure in its window), top sources only.",
                                         ["source"], namespace=NS, registry=r)
        self.groups = Gauge("tracked_groups", "Sources held in detection windows (bounded).", namespace=NS,
                            registry=r)
