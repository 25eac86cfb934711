"""A webhook receiver for Alertmanager: every notification POSTed to /<receiver> is appended, with
the time it arrived, to <dir>/alerts-<receiver>.jsonl. The lab's pager and ticket system, and the
fallback when no real receiver is configured (the alerting role runs it on the ops host).
Usage: trustops-alert-sink HOST PORT DIR"""
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def append(directory: Path, receiver: str, payload: object) -> None:
    """One notification, with the time it arrived, as a line of <directory>/alerts-<receiver>.jsonl
    (also how the heartbeat receiver pages when no pager URL is set)."""
    record = {"received_at": time.time(), "receiver": receiver, "payload": payload}
    with open(directory / f"alerts-{receiver}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


class Sink(BaseHTTPRequestHandler):
    directory = Path(".")

    def do_POST(self):  # noqa: N802 - http.server's naming
        receiver = self.path.strip("/")
        if not re.fullmatch(r"[a-z]{1,32}", receiver):
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_error(400, "not JSON")
            return
        append(self.directory, receiver, payload)
        self.send_response(200)
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[1].isdigit():
        print("usage: trustops-alert-sink HOST PORT DIR", file=sys.stderr)
        return 2
    Sink.directory = Path(args[2])
    ThreadingHTTPServer((args[0], int(args[1])), Sink).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
