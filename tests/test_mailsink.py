"""The lab's mail relay (trustops.lab.mailsink) as the program the lab runs, on loopback: what a
real SMTP client sends arrives whole, and a cut, an oversized message or garbage leaves nothing
behind and does not stop the next client."""
from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage

import pytest

from trustops.lab import mailsink
from trustops.lab.system import wait_tcp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sink(tmp_path):
    port, maildir = _free_port(), tmp_path / "mail"
    proc = subprocess.Popen([sys.executable, mailsink.__file__, "--listen", "127.0.0.1", "--port", str(port),
                             "--maildir", str(maildir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_tcp("127.0.0.1", port, 15), proc.stderr.read1().decode() if proc.poll() is not None else "no listen"
    yield port, maildir
    proc.terminate()
    proc.wait(10)


def _send(port: int, to: str = "ada@example.test", body: str = "hello") -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "benefits@lab.test", to, "Your sign-in link"
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(msg)


def _raw(port: int, lines: list[bytes]) -> list[str]:
    """Speaks the given lines, returns every reply line seen."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        replies = [f.readline().decode().strip()]
        for line in lines:
            s.sendall(line)
            while True:
                r = f.readline().decode().strip()
                replies.append(r)
                if len(r) < 4 or r[3] != "-":
                    break
        return replies


def test_a_message_arrives_whole_with_its_envelope(sink):
    port, maildir = sink
    _send(port, body="line one\n.starts with a dot\n")
    [msg] = mailsink.messages(maildir)
    assert msg["Subject"] == "Your sign-in link" and msg["X-Lab-Rcpt-To"] == "ada@example.test"
    assert ".starts with a dot" in msg.get_content()
    assert list((maildir / "tmp").iterdir()) == []


def test_a_connection_cut_during_data_leaves_nothing(sink):
    port, maildir = sink
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        for cmd in (b"HELO x\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n", b"DATA\r\n"):
            s.sendall(cmd)
            f.readline()
        s.sendall(b"Subject: half\r\n\r\nthe first half and then the cable is pulled")
    _send(port)     # the sink still serves, and only the whole message is there
    assert [m["Subject"] for m in mailsink.messages(maildir)] == ["Your sign-in link"]
    assert list((maildir / "tmp").iterdir()) == []


def test_oversized_messages_and_garbage_are_refused_and_the_sink_goes_on(sink, monkeypatch):
    port, maildir = sink
    replies = _raw(port, [b"EHLO x\r\n", b"X" * 5000 + b"\r\n", b"RCPT TO:<a@b.test>\r\n", b"BOGUS\r\n",
                          b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n", b"DATA\r\n",
                          b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (mailsink.MAX_MESSAGE // 1000 + 10)
                          + b".\r\n", b"QUIT\r\n"])
    codes = [r[:3] for r in replies]
    assert codes[0] == "220" and "500" in codes and "503" in codes and "502" in codes
    assert "552" in codes and codes[-1] == "221", replies
    assert mailsink.messages(maildir) == []
    _send(port)
    assert len(mailsink.messages(maildir)) == 1


def test_a_bad_maildir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, mailsink.__file__, "--port", str(_free_port()), "--listen", "127.0.0.1",
                           "--maildir", str(blocker / "mail")], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "mail sink: cannot serve" in proc.stderr
