"""The lab's mail relay: a real SMTP server (RFC 5321 subset a relay client uses) that keeps every
message it accepts as one file in a Maildir, so tests and operators read what the app sent.

It stands in for the SMTP relay an operator configures in the cloud (`app_smtp_host`). It runs in
its own lab container from the S3 image's Python, so it imports nothing but the standard library.
A message is written to tmp/ and renamed into new/ once complete: a connection cut during DATA
leaves nothing behind, and a reader never sees half a message.
"""
from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import secrets
import sys
import time
from pathlib import Path

MAX_LINE = 1000           # RFC 5321 4.5.3.1.6: a command line, CRLF included
MAX_MESSAGE = 10 << 20    # refuse larger messages with 552 (the app sends short notices)
MAX_RECIPIENTS = 100
IDLE_TIMEOUT = 60.0
STREAM_LIMIT = 64 << 10   # longest line read whole; longer ones are refused, never buffered


class Session:
    """One SMTP conversation; each command answers with one reply line."""

    def __init__(self, maildir: Path, hostname: str):
        self.maildir, self.hostname = maildir, hostname
        self.sender: str | None = None
        self.recipients: list[str] = []

    def reset(self) -> None:
        self.sender, self.recipients = None, []

    def command(self, line: str) -> tuple[str, bool]:
        """(reply, wants DATA body next)."""
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in ("HELO", "EHLO"):
            self.reset()
            if verb == "EHLO":
                return f"250-{self.hostname}\r\n250-SIZE {MAX_MESSAGE}\r\n250 8BITMIME", False
            return f"250 {self.hostname}", False
        if verb == "MAIL":
            if not arg.upper().startswith("FROM:"):
                return "501 syntax: MAIL FROM:<address>", False
            self.reset()
            self.sender = _address(arg[5:])
            return "250 OK", False
        if verb == "RCPT":
            if self.sender is None:
                return "503 MAIL first", False
            if not arg.upper().startswith("TO:") or not _address(arg[3:]):
                return "501 syntax: RCPT TO:<address>", False
            if len(self.recipients) >= MAX_RECIPIENTS:
                return "452 too many recipients", False
            self.recipients.append(_address(arg[3:]))
            return "250 OK", False
        if verb == "DATA":
            if not self.recipients:
                return "503 RCPT first", False
            return "354 end data with <CR><LF>.<CR><LF>", True
        if verb == "RSET":
            self.reset()
            return "250 OK", False
        if verb == "NOOP":
            return "250 OK", False
        if verb == "VRFY":
            return "252 cannot verify, but will accept", False
        if verb == "QUIT":
            return "221 bye", False
        return "502 command not implemented", False

    def deliver(self, body: bytes) -> str:
        name = f"{time.time():.6f}.{os.getpid()}.{secrets.token_hex(4)}.eml"
        head = (f"X-Lab-Mail-From: {self.sender}\r\n"
                f"X-Lab-Rcpt-To: {', '.join(self.recipients)}\r\n").encode()
        tmp = self.maildir / "tmp" / name
        with open(tmp, "xb") as fh:
            fh.write(head + body)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, self.maildir / "new" / name)
        self.reset()
        return f"250 OK queued as {name}"


def _address(text: str) -> str:
    text = text.strip().split(" ")[0]  # drop ESMTP parameters such as SIZE=
    return text[1:-1] if text.startswith("<") and text.endswith(">") else text


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """A line with its end; b"" for a line over the stream's limit (skipped); None at EOF/idle."""
    try:
        raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
    except ValueError:      # over the limit: asyncio has dropped it from its buffer
        return b""
    except (asyncio.TimeoutError, ConnectionError):
        return None
    return raw if raw.endswith(b"\n") else None


async def _data(reader: asyncio.StreamReader) -> bytes | None:
    """The message up to the lone dot, dot-unstuffed; None when cut off, b"" when too large."""
    lines, size, too_big = [], 0, False
    while True:
        raw = await _read_line(reader)
        if raw is None:
            return None
        if raw in (b".\r\n", b".\n"):
            return b"" if too_big else b"".join(lines)
        if raw.startswith(b"."):
            raw = raw[1:]
        size += len(raw)
        too_big = too_big or not raw or size > MAX_MESSAGE
        if not too_big:
            lines.append(raw)


async def _serve(reader, writer, maildir: Path, hostname: str) -> None:
    session = Session(maildir, hostname)

    async def reply(text: str) -> None:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    try:
        await reply(f"220 {hostname} ESMTP trustops lab mail sink")
        while True:
            raw = await _read_line(reader)
            if raw is None:
                return
            if len(raw) > MAX_LINE or not raw:
                await reply("500 line too long")
                continue
            answer, wants_data = session.command(raw.decode("utf-8", "replace").strip())
            await reply(answer)
            if answer.startswith("221"):
                return
            if wants_data:
                body = await _data(reader)
                if body is None:
                    return
                await reply(session.deliver(body) if body else "552 message too large")
    except ConnectionError:
        return
    finally:
        writer.close()


def prepare(maildir: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)


def messages(maildir: Path) -> list[email.message.EmailMessage]:
    """Every complete message in the sink, oldest first (for tests and operators)."""
    new = maildir / "new"
    if not new.is_dir():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(new.iterdir(), key=lambda p: p.name)]


async def _main(host: str, port: int, maildir: Path) -> None:
    prepare(maildir)
    hostname = os.uname().nodename
    server = await asyncio.start_server(lambda r, w: _serve(r, w, maildir, hostname), host, port,
                                        limit=STREAM_LIMIT)
    print(f"mail sink listening on {host}:{port}, writing to {maildir}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--maildir", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        asyncio.run(_main(args.listen, args.port, args.maildir))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"mail sink: cannot serve on {args.listen}:{args.port} / {args.maildir}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
