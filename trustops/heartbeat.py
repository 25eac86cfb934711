"""The far end of the dead man's switch. Alertmanager on the ops host POSTs its always-firing
Watchdog alert here, on another host, every few seconds; when none has arrived for TIMEOUT seconds
(Prometheus, Alertmanager or the whole ops host gone) this pages the way Alertmanager would (a
webhook payload to the pager URL, or the local sink's file when none is set), repeats the page
every REPEAT seconds while it lasts, and sends the resolved notice when heartbeats come back.
The last heartbeat is kept on disk, so a restart of this receiver neither forgets an outage nor
starts a new grace period.
Usage: trustops-heartbeat HOST PORT DIR [--timeout S] [--repeat S] [--grace S] [--pager-url URL]"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from trustops.alert_sink import append as sink_append

HEARTBEAT_ALERT = "Watchdog"                 # the rule in the alerting role's meta-rules.yml
HEARTBEAT_PATH = "/heartbeat"
PAGE_ALERT = "WatchdogHeartbeatMissing"      # what this receiver pages with (runbooks/<name>.md)
RUNBOOKS = "https://github.com/trustops/trustops/blob/main/runbooks"
PAGER_RECEIVER = "pager"                     # the alert sink's file for pages: alerts-pager.jsonl
STATE_FILE = "heartbeat.json"
MAX_BODY = 256 * 1024                        # a Watchdog notification is ~1 KiB
log = logging.getLogger("trustops-heartbeat")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def is_heartbeat(payload: object) -> bool:
    """An Alertmanager webhook payload that carries the firing Watchdog alert (a resolved one, or any
    other alert, is not a sign of life of the whole pipeline)."""
    if not isinstance(payload, dict) or payload.get("status") != "firing":
        return False
    alerts = payload.get("alerts")
    return isinstance(alerts, list) and any(
        isinstance(a, dict) and a.get("status") == "firing" and isinstance(a.get("labels"), dict)
        and a["labels"].get("alertname") == HEARTBEAT_ALERT for a in alerts)


def page_payload(status: str, host: str, since: float, now: float, timeout: float) -> dict:
    """The page in Alertmanager's webhook shape (version 4), so the pager and the sink take it as
    they take Alertmanager's own."""
    labels = {"alertname": PAGE_ALERT, "severity": "critical", "instance": host, "host": host}
    annotations = {
        "summary": f"No heartbeat from the alerting pipeline for {int(now - since)}s",
        "description": (f"{host} has had no Watchdog notification from Alertmanager on the ops host since "
                        f"{_iso(since)} (allowed: {int(timeout)}s): Prometheus, Alertmanager or the ops host is "
                        "down, so no other alert can page."),
        "runbook_url": f"{RUNBOOKS}/{PAGE_ALERT}.md"}
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": _iso(since),
             "endsAt": _iso(now) if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": f"{PAGE_ALERT}:{host}"}
    return {"version": "4", "status": status, "receiver": PAGER_RECEIVER, "groupKey": f"{PAGE_ALERT}:{host}",
            "truncatedAlerts": 0, "groupLabels": {"alertname": PAGE_ALERT}, "commonLabels": labels,
            "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


class Switch:
    """The switch's state: when the last heartbeat came, and whether (and when) it paged."""

    def __init__(self, directory: Path, timeout: float, repeat: float, grace: float, pager_url: str = "",
                 host: str = "", clock=time.time) -> None:
        self.directory, self.timeout, self.repeat, self.pager_url = directory, timeout, repeat, pager_url
        self.host = host or os.uname().nodename
        self.clock = clock
        self.lock = threading.Lock()
        self.started = clock()
        self.grace = max(timeout, grace)   # before the first heartbeat ever: a new site is still converging
        state = self._load()
        self.last_beat: float | None = state.get("last_beat")
        self.paged_at: float | None = state.get("paged_at")

    def overdue(self, now: float) -> bool:
        if self.last_beat is None:
            return now - self.started > self.grace
        return now - self.last_beat > self.timeout

    def _load(self) -> dict:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text())
            return {k: float(v) for k, v in state.items() if k in ("last_beat", "paged_at") and v is not None}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, AttributeError) as exc:   # a torn or edited file: start over, say so
            log.warning("ignoring unreadable %s: %s", STATE_FILE, exc)
            return {}

    def _save(self) -> None:
        tmp = self.directory / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"last_beat": self.last_beat, "paged_at": self.paged_at}))
        os.replace(tmp, self.directory / STATE_FILE)

    def _send(self, status: str, now: float) -> bool:
        since = self.started if self.last_beat is None else self.last_beat
        payload = page_payload(status, self.host, since, now, self.timeout)
        try:
            if self.pager_url:
                requests.post(self.pager_url, json=payload, timeout=10).raise_for_status()
            else:
                sink_append(self.directory, PAGER_RECEIVER, payload)
        except (requests.RequestException, OSError) as exc:
            log.error("could not send the %s page (%s: %s); trying again", status, type(exc).__name__, exc)
            return False
        log.warning("sent %s page %s (no heartbeat since %s)", status, PAGE_ALERT, _iso(since))
        return True

    def beat(self) -> None:
        with self.lock:
            now = self.clock()
            if self.paged_at is not None and self._send("resolved", now):
                self.paged_at = None
            self.last_beat = now
            self._save()

    def check(self) -> None:
        """Pages when the heartbeat is overdue and no page went out within REPEAT seconds."""
        with self.lock:
            now = self.clock()
            if not self.overdue(now):
                return
            if self.paged_at is None or now - self.paged_at >= self.repeat:
                if self._send("firing", now):
                    self.paged_at = now
                    self._save()


def handler(switch: Switch) -> type[BaseHTTPRequestHandler]:
    class Heartbeat(BaseHTTPRequestHandler):
        timeout = 10   # a client that sends its body slowly is dropped, not waited for

        def do_POST(self):  # noqa: N802 - http.server's naming
            if self.path != HEARTBEAT_PATH:
                self.send_error(404)
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.send_error(411, "Content-Length required")
                return
            if not 0 <= length <= MAX_BODY:
                self.send_error(413, f"body over {MAX_BODY} bytes")
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "not JSON")
                return
            if not is_heartbeat(payload):
                self.send_error(422, f"not a firing {HEARTBEAT_ALERT} notification")
                return
            switch.beat()
            self.send_response(200)
            self.end_headers()

        def log_message(self, fmt, *args):
            pass

    return Heartbeat


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustops-heartbeat", description=__doc__.split("\n")[0])
    p.add_argument("host", help="address to listen on (the host's private address)")
    p.add_argument("port", type=int)
    p.add_argument("directory", type=Path, help="state, and alerts-pager.jsonl when no pager URL is set")
    p.add_argument("--timeout", type=float, default=300, help="seconds without a heartbeat before paging")
    p.add_argument("--repeat", type=float, default=3600, help="seconds between pages while it lasts")
    p.add_argument("--grace", type=float, default=900,
                   help="seconds to wait for the very first heartbeat (a site being converged)")
    p.add_argument("--instance", default="",
                   help="this host's name in the page's host and instance labels (the inventory's; default: the node name)")
    p.add_argument("--tick", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--pager-url", default=os.environ.get("TRUSTOPS_PAGER_URL", ""),
                   help="webhook that pages (default $TRUSTOPS_PAGER_URL; empty: DIR/alerts-pager.jsonl)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.timeout, args.repeat, args.tick) <= 0 or args.grace < 0:
        print("trustops-heartbeat: --timeout, --repeat and --tick must be above 0, --grace not below 0",
              file=sys.stderr)
        return 2
    if not args.directory.is_dir():
        print(f"trustops-heartbeat: {args.directory} is not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    switch = Switch(args.directory, args.timeout, args.repeat, args.grace, args.pager_url, host=args.instance)
    server = ThreadingHTTPServer((args.host, args.port), handler(switch))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info("listening on %s:%d%s; pages after %ss without a heartbeat", args.host, args.port, HEARTBEAT_PATH,
             args.timeout)
    while True:
        switch.check()
        time.sleep(args.tick)


if __name__ == "__main__":
    sys.exit(main())
