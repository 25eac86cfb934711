"""The far end of the dead man's switch. Alertmanager on the ops host POSTs its always-firing
Watchdog alert here, on another host, every few seconds; when none has arrived for TIMEOUT seconds
(Prometheus, Alertmanager or the whole ops host gone) this pages the way Alertmanager would (a
webhook payload to the pager URL, or the local sink's file when none is set), repeats the page
every REPEAT seconds while it lasts, and sends the resolved notice when heartbeats come back.
The last heartbeat is kept on disk, so a restart of this receiver neither forgets an outage nor
starts a new grace period. With Prometheus as an HA pair each replica's Watchdog is told apart
(its `prometheus_replica` label) and each is expected (--expect): one replica gone pages too,
though the other keeps the pipeline alive.
Usage: trustops-heartbeat HOST PORT DIR [--timeout S] [--repeat S] [--grace S] [--expect R ...] [--pager-url URL]"""
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
REPLICA_LABEL = "prometheus_replica"         # Prometheus's alert_relabel_configs keep it on Watchdog only
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


def heartbeat_replicas(payload: dict) -> set[str]:
    """The Prometheus replicas whose Watchdog fires in a heartbeat ("" for one without the label)."""
    return {str(a["labels"].get(REPLICA_LABEL, "")) for a in payload["alerts"]
            if isinstance(a, dict) and a.get("status") == "firing" and isinstance(a.get("labels"), dict)
            and a["labels"].get("alertname") == HEARTBEAT_ALERT}


def page_payload(status: str, host: str, since: float, now: float, timeout: float, replica: str = "") -> dict:
    """The page in Alertmanager's webhook shape (version 4), so the pager and the sink take it as
    they take Alertmanager's own."""
    labels = {"alertname": PAGE_ALERT, "severity": "critical", "instance": host, "host": host,
              **({"replica": replica} if replica else {})}
    source = f"Prometheus on {replica}" if replica else "the alerting pipeline"
    cause = (f"Prometheus on {replica} (or the whole {replica} host) is down, or no Alertmanager is left: the "
             "alerts it evaluates reach nobody" if replica else
             "Prometheus, Alertmanager or the ops host is down, so no other alert can page")
    annotations = {
        "summary": f"No heartbeat from {source} for {int(now - since)}s",
        "description": (f"{host} has had no Watchdog notification from {source} since {_iso(since)} (allowed: "
                        f"{int(timeout)}s): {cause}."),
        "runbook_url": f"{RUNBOOKS}/{PAGE_ALERT}.md"}
    key = f"{PAGE_ALERT}:{host}" + (f":{replica}" if replica else "")
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": _iso(since),
             "endsAt": _iso(now) if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": key}
    return {"version": "4", "status": status, "receiver": PAGER_RECEIVER, "groupKey": key,
            "truncatedAlerts": 0, "groupLabels": {"alertname": PAGE_ALERT}, "commonLabels": labels,
            "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


class Switch:
    """The switch's state: when the last heartbeat of each expected replica came, and whether (and
    when) it paged for it. No replicas expected: one heartbeat, whatever its labels."""

    def __init__(self, directory: Path, timeout: float, repeat: float, grace: float, pager_url: str = "",
                 host: str = "", clock=time.time, replicas: tuple[str, ...] | list[str] = ()) -> None:
        self.directory, self.timeout, self.repeat, self.pager_url = directory, timeout, repeat, pager_url
        self.host = host or os.uname().nodename
        self.clock = clock
        self.lock = threading.Lock()
        self.started = clock()
        self.grace = max(timeout, grace)   # before the first heartbeat ever: a new site is still converging
        self.replicas = tuple(dict.fromkeys(replicas)) or ("",)
        self.last_beat: dict[str, float] = {}
        self.paged_at: dict[str, float] = {}
        self._load()

    def overdue(self, now: float, replica: str = "") -> bool:
        last = self.last_beat.get(replica)
        if last is None:
            return now - self.started > self.grace
        return now - last > self.timeout

    def _load(self) -> None:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text())
            if "beats" in state:
                beats, paged = state["beats"], state.get("paged") or {}
            else:   # one heartbeat, as before replicas: it stands for each of them
                beats = {r: state["last_beat"] for r in self.replicas} if state.get("last_beat") else {}
                paged = {r: state["paged_at"] for r in self.replicas} if state.get("paged_at") else {}
            self.last_beat = {str(r): float(t) for r, t in beats.items() if r in self.replicas}
            self.paged_at = {str(r): float(t) for r, t in paged.items() if r in self.replicas}
        except FileNotFoundError:
            return
        except (ValueError, TypeError, AttributeError, KeyError) as exc:   # a torn or edited file: start over, say so
            log.warning("ignoring unreadable %s: %s", STATE_FILE, exc)
            self.last_beat, self.paged_at = {}, {}

    def _save(self) -> None:
        tmp = self.directory / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"beats": self.last_beat, "paged": self.paged_at}))
        os.replace(tmp, self.directory / STATE_FILE)

    def _send(self, status: str, now: float, replica: str) -> bool:
        last = self.last_beat.get(replica)
        since = self.started if last is None else last
        payload = page_payload(status, self.host, since, now, self.timeout, replica)
        try:
            if self.pager_url:
                requests.post(self.pager_url, json=payload, timeout=10).raise_for_status()
            else:
                sink_append(self.directory, PAGER_RECEIVER, payload)
        except (requests.RequestException, OSError) as exc:
            log.error("could not send the %s page (%s: %s); trying again", status, type(exc).__name__, exc)
            return False
        log.warning("sent %s page %s%s (no heartbeat since %s)", status, PAGE_ALERT,
                    f" for {replica}" if replica else "", _iso(since))
        return True

    def beat(self, replicas: set[str] | None = None) -> None:
        """A heartbeat carrying these replicas' Watchdogs (None: every expected one)."""
        with self.lock:
            now = self.clock()
            for replica in self.replicas:
                if replicas is not None and replica not in replicas and self.replicas != ("",):
                    continue
                if replica in self.paged_at and self._send("resolved", now, replica):
                    del self.paged_at[replica]
                self.last_beat[replica] = now
            self._save()

    def check(self) -> None:
        """Pages for each replica whose heartbeat is overdue and not paged within REPEAT seconds."""
        with self.lock:
            now = self.clock()
            for replica in self.replicas:
                if not self.overdue(now, replica):
                    continue
                paged = self.paged_at.get(replica)
                if (paged is None or now - paged >= self.repeat) and self._send("firing", now, replica):
                    self.paged_at[replica] = now
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
            switch.beat(heartbeat_replicas(payload))
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
    p.add_argument("--expect", action="append", default=[], metavar="REPLICA",
                   help="a Prometheus replica whose Watchdog must arrive (repeat for each; none: any Watchdog)")
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
    switch = Switch(args.directory, args.timeout, args.repeat, args.grace, args.pager_url, host=args.instance,
                    replicas=args.expect)
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
