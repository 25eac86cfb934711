"""Alerts the way Alertmanager expects them (issue 17, defect 3): built at send time, re-posted
while firing, resolved with endsAt, real counts in the text, delivery trouble in the journal."""
import json
import time
import urllib.request
from datetime import datetime

import pytest

from tests.services import Alertmanager, Webhook, free_port
from trustops.monitors.alerts import AlertBook
from trustops.monitors.monitor import Monitor, load_config
from trustops.monitors.rules import Detection


def _det(first: float, last: float, count: int = 10) -> Detection:
    return Detection("PostgresBruteForce", "warning", "203.0.113.9", count, first, last,
                     f"Postgres brute force from 203.0.113.9: {count} failed logins so far", "d", "T1110.001")


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def capture():
    hook = Webhook()  # a real HTTP server recording what is posted to it
    yield hook
    hook.close()


def test_an_alert_held_by_an_outage_arrives_firing(tmp_path):
    """Before: endsAt was fixed at detection, so an alert detected an hour ago and delivered now
    arrived already resolved at a real Alertmanager."""
    now = time.time()
    book = AlertBook(f"http://127.0.0.1:{free_port()}", "db-1", "https://x/runbooks", resolve_after=600)
    book.detected(_det(now - 3600, now - 3600), now=now - 3600)
    assert not book.flush(now=now - 3600)  # Alertmanager is away
    am = Alertmanager(tmp_path / "am", "http://127.0.0.1:9/").start()
    try:
        book.url = f"{am.url}/api/v2/alerts"
        book._next_try = 0
        assert book.flush(now=time.time())
        got = json.load(urllib.request.urlopen(f"{am.url}/api/v2/alerts?active=true"))
        assert [a["labels"]["alertname"] for a in got] == ["PostgresBruteForce"], got
        assert got[0]["status"]["state"] == "active"
        assert _ts(got[0]["endsAt"]) > time.time()
    finally:
        am.stop()


def test_a_firing_alert_is_reposted_with_endsat_at_send_time_and_resolved_with_endsat(capture):
    t0 = 1_790_000_000.0
    book = AlertBook(f"http://127.0.0.1:{capture.port}", "db-1", "https://x/runbooks", resolve_after=600,
                     resend_every=60)
    book.detected(_det(t0 - 5, t0), now=t0)
    for step in range(0, 660, 30):  # no new detection: re-posted each minute, resolved after 10 minutes
        book.tick(now=t0 + step)
        book.flush(now=t0 + step)
    posts = [(capture.times[i], a) for i, batch in enumerate(capture.received) for a in batch]
    ends = [_ts(a["endsAt"]) for _, a in posts]
    assert len(posts) == 11, [a["endsAt"] for _, a in posts]  # t0, then each minute up to 9 m, then resolved
    assert ends[:10] == [t0 + 240 + 60 * i for i in range(10)]  # 4 x resend_every ahead of each send
    assert ends[10] == t0 + 600  # the resolve time
    assert {a["startsAt"] for _, a in posts} == {"2026-09-21T14:13:15Z"}
    assert not book.firing and not book.queue


def test_the_text_gives_the_real_count_at_send_time(tmp_path, capture):
    """Before: the text said 10 (the threshold) however long the attack went on."""
    log = tmp_path / "pg.log"
    log.write_text("")
    cfg = load_config(data={"instance": "db-1", "start_at": "beginning", "state_dir": str(tmp_path / "state"),
                            "inputs": [{"name": "postgres", "type": "postgres", "path": str(log),
                                        "log_line_prefix": "%m [%p] %h%q %u@%d "}],
                            "alertmanager": {"url": f"http://127.0.0.1:{capture.port}"},
                            "metrics": {"listen": None}})
    mon = Monitor(cfg)
    t = time.time() - 30

    def failures(n, pid0):
        with open(log, "a") as fh:
            for i in range(n):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + ".000 UTC"
                fh.write(f'{stamp} [{pid0 + i}] 203.0.113.9 app@db FATAL:  password authentication failed for '
                         f'user "app"\n{stamp} [{pid0 + i}] 203.0.113.9 app@db DETAIL:  Connection matched x\n')
    failures(10, 100)
    mon.step()
    failures(27, 200)
    mon.step()
    for book in mon.alerts.books:  # the next resend is due
        book._last_resend = 0
    mon.step()
    summaries = [a["annotations"]["summary"] for batch in capture.received for a in batch
                 if a["labels"]["alertname"] == "PostgresBruteForce"]
    assert summaries[0].endswith(": 10 failed logins so far"), summaries
    assert summaries[-1].endswith(": 37 failed logins so far"), summaries
    for tail in mon.tails.values():
        tail.close()


def test_delivery_trouble_and_recovery_are_logged(capture):
    lines = []
    port = free_port()
    book = AlertBook(f"http://127.0.0.1:{port}", "db-1", "https://x/runbooks", log=lines.append)
    now = time.time()
    book.detected(_det(now, now), now=now)
    assert not book.flush(now=now)
    assert not book.flush(now=now + 1)       # within a minute: not logged again
    assert len(lines) == 1 and "did not take 1 alerts" in lines[0] and "1 firing" in lines[0], lines
    book.url = f"http://127.0.0.1:{capture.port}/api/v2/alerts"
    assert book.flush(now=now + 2)
    assert len(lines) == 2 and "reachable again: delivered 1 alerts" in lines[1], lines


def test_the_queue_survives_a_restart_and_is_sent_fresh(capture):
    now = time.time()
    book = AlertBook(f"http://127.0.0.1:{free_port()}", "db-1", "https://x/runbooks")
    book.detected(_det(now - 900, now - 900), now=now - 900)
    book.flush(now=now - 900)
    saved = json.loads(json.dumps(book.dump()))
    again = AlertBook(f"http://127.0.0.1:{capture.port}", "db-1", "https://x/runbooks")
    again.restore(saved)
    assert again.flush(now=now)
    [batch] = capture.received
    assert [a["labels"]["alertname"] for a in batch] == ["PostgresBruteForce"]
    assert _ts(batch[0]["endsAt"]) == pytest.approx(now + 240, abs=1)


def test_the_sender_posts_over_tls_verified_against_the_configured_ca(tmp_path, capture):
    """Issue 19: the monitors post to Alertmanager's front over TLS, verified against the platform CA
    the config names (alertmanager.ca_file); a certificate of another CA is refused and the alert
    kept for the next try. Posted alerts carry host = instance = the inventory's host name."""
    import ssl

    from tests.services import _make_tls
    from trustops.monitors.monitor import ConfigError

    ca, cert, key = _make_tls(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    capture.server.socket = server.wrap_socket(capture.server.socket, server_side=True)
    url, t0 = f"https://127.0.0.1:{capture.port}", time.time()
    stranger = AlertBook(url, "db-1", "https://x/runbooks", ca_file=str(_make_tls(other)[0]))
    stranger.detected(_det(t0 - 5, t0), now=t0)
    assert not stranger.flush(now=t0) and stranger.queue and capture.received == []
    book = AlertBook(url, "db-1", "https://x/runbooks", ca_file=str(ca))
    book.detected(_det(t0 - 5, t0), now=t0)
    assert book.flush(now=t0) and not book.queue
    (alert,) = capture.received[0]
    assert alert["labels"]["host"] == alert["labels"]["instance"] == "db-1"
    with pytest.raises(ConfigError, match=r"^alertmanager\.ca_file '.*nope': no such file$"):
        load_config(data={"instance": "db-1", "inputs": [{"name": "pg", "type": "postgres", "path": str(tmp_path / "x")}],
                          "alertmanager": {"url": url, "ca_file": str(tmp_path / "nope")}})


def test_every_alert_goes_to_every_peer_and_a_dead_peer_holds_back_only_its_own(capture):
    """Issue 19 (Alertmanager as a cluster): the monitor posts each alert to every peer, as
    Prometheus does; a peer that is down gets what it missed when it is back, and the live one is
    not held back meanwhile. Its queue survives a restart per peer."""
    from trustops.monitors.alerts import AlertFanout
    lines: list[str] = []
    down = free_port()
    fan = AlertFanout([f"http://127.0.0.1:{capture.port}", f"http://127.0.0.1:{down}"], "db-1",
                      "https://x/runbooks", log=lines.append)
    now = time.time()
    fan.detected(_det(now, now), now=now)
    assert fan.flush(now=now)                   # the live peer took it
    assert [a["labels"]["alertname"] for a in capture.received[0]] == ["PostgresBruteForce"]
    assert len(fan.queue) == 1 and fan.sent == 1 and fan.failures == 1
    assert any(f"127.0.0.1:{down}" in line and "did not take 1 alerts" in line for line in lines), lines
    saved = json.loads(json.dumps(fan.dump()))
    second = Webhook()
    try:
        again = AlertFanout([f"http://127.0.0.1:{capture.port}", f"http://127.0.0.1:{down}"], "db-1",
                            "https://x/runbooks")
        again.restore(saved)
        again.books[1].url = f"http://127.0.0.1:{second.port}/api/v2/alerts"   # the dead peer is back
        assert again.flush(now=now + 1)
        assert [a["labels"]["alertname"] for b in second.received for a in b] == ["PostgresBruteForce"]
        assert again.queue == []
    finally:
        second.close()


def test_a_checkpoint_from_before_the_fan_out_is_read_for_every_peer(capture):
    from trustops.monitors.alerts import AlertFanout
    now = time.time()
    old = AlertBook(f"http://127.0.0.1:{free_port()}", "db-1", "https://x/runbooks")
    old.detected(_det(now, now), now=now)
    fan = AlertFanout([f"http://127.0.0.1:{capture.port}", f"http://127.0.0.1:{capture.port}/b"], "db-1",
                      "https://x/runbooks")
    fan.restore(json.loads(json.dumps(old.dump())))
    assert fan.flush(now=now + 1)
    assert len(capture.received) == 2 and all(len(b) == 1 for b in capture.received)


@pytest.mark.parametrize("am, error", [
    ({"url": "http://a:9093", "urls": ["http://b:9093"]}, "not both"),
    ({"urls": ["http://a:9093", "http://a:9093"]}, "names a peer twice"),
    ({"urls": ["a:9093"]}, "a:9093.*expected http"),
])
def test_a_bad_peer_list_is_one_line(tmp_path, am, error):
    from trustops.monitors.monitor import ConfigError
    data = {"inputs": [{"name": "pg", "type": "postgres", "path": str(tmp_path / "pg.log")}], "alertmanager": am}
    with pytest.raises(ConfigError, match=error) as info:
        load_config(data=data)
    assert "\n" not in str(info.value)
