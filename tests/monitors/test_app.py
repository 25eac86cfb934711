"""The third input: the benefits app's sign-in log (monitors/app.py), its rules on both engines,
its config, and the daemon on an app host whose log does not exist yet."""
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.monitors.hostile import assert_counted_by_reason
from trustops.monitors import events as ev
from trustops.monitors import speedups
from trustops.monitors.app import REASONS, AppParser
from trustops.monitors.events import Event
from trustops.monitors.monitor import ConfigError, Monitor, load_config, replay
from trustops.monitors.rules import Engine, load_rules
from trustops.monitors.speedups import FastEngine, available

SAMPLE = Path(__file__).parent / "samples" / "app-auth.jsonl"
T0 = 1_796_190_000.0
ENGINES = [Engine, pytest.param(FastEngine, marks=pytest.mark.skipif(not available(), reason="C extension not built"))]


def line(event="signin.failed", user="alice", source="203.0.113.9", company=3, time="2026-12-02T05:40:00.123Z",
         **extra) -> str:
    return json.dumps({"time": time, "event": event, "user": user, "source": source, "company": company, **extra})


# ------------------------------------------------------------------------------- parser

def test_the_sample_parses_whole_with_exact_counts():
    p = AppParser()
    evts = [e for raw in SAMPLE.read_text().splitlines() for e in p.feed(raw)]
    assert p.unparsed == 0 and len(evts) == 24
    assert Counter(e.type for e in evts) == {ev.APP_SIGNIN_FAILED: 11, ev.APP_SIGNIN_LOCKED: 9,
                                             ev.APP_SIGNIN_SUCCEEDED: 4}
    first = evts[0]
    assert (first.user, first.source, first.ts) == ("anna.schmidt", "198.51.100.20", 1796190000.123)
    assert evts[3].user == "élodie.martin" and evts[3].source == "2001:db8:4::17"
    assert evts[4].user is None  # nothing typed: no account to group by
    assert {e.outcome for e in evts} == {"signin_failed", "signin_locked", "signin_succeeded"}


def test_the_app_writes_what_the_parser_reads():
    """The contract from the app's side: app/core/authlog.py's line format (its own tests check
    the writer; here its exact output shape, time format included, is fed to the parser)."""
    import datetime as dt
    now = dt.datetime(2026, 12, 2, 5, 40, 0, 123456, tzinfo=dt.timezone.utc)
    raw = json.dumps({"time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                      "event": "signin.locked", "user": "bob", "source": "::ffff:198.51.100.7", "company": None},
                     ensure_ascii=False, separators=(",", ":"))
    [e] = AppParser().feed(raw)
    assert (e.type, e.user, e.source, e.ts) == (ev.APP_SIGNIN_LOCKED, "bob", "::ffff:c633:6407", 1796190000.123)


HOSTILE = {
    "not_json": ["", "hello", "{", '{"time": NaN', "[" * 100_000 + "]" * 100_000, "{" + '"a":[' * 50_000,
                 '{"time": 1' + "0" * 5000 + "}", "\ufeff" + line(), "[1, 2]", "{}garbage"],
    "missing_key": ["{}", json.dumps({"time": "2026-12-02T05:40:00Z", "event": "signin.failed"}),
                    line().replace('"company"', '"companyX"')],
    "wrong_type": [line(user=None), line(user=["a"]), line(source=17), line(time=1796190000), line(event=1),
                   line(company="3"), line(company=True), line(company=1.5), line(user={"$ne": ""})],
    "bad_time": [line(time="yesterday"), line(time="2026-13-02T05:40:00.123Z"), line(time="2026-02-30T05:40:00Z"),
                 line(time="1969-12-31T23:59:59Z"), line(time="2026-12-02 05:40:00Z"), line(time="2026-12-02T05:40:00"),
                 line(time="2026-12-02T05:40:00." + "1" * 5000 + "Z"), line(time="2026-12-02T25:40:00Z"),
                 line(time="0000-01-01T00:00:00Z")],
    "unknown_event": [line(event="signin.maybe"), line(event=""), line(event="SIGNIN.FAILED")],
    "bad_value": [line(user="x" * 151), line(user="x" * 10_000_000), line(source="not-an-ip"),
                  line(source="1" * 5000), line(source="203.0.113.9\n"), line(company=10 ** 30),
                  line(user="\ud800"), line(source="999.1.1.1")],
}


def test_hostile_lines_are_counted_by_reason_and_never_raise():
    p = AppParser()
    assert_counted_by_reason(p, HOSTILE, REASONS)
    assert len(p.feed(line())) == 1  # and the stream goes on


@pytest.mark.parametrize("seed", range(2))
def test_mangled_lines_never_raise_and_each_is_an_event_or_counted(seed):
    import random
    rng = random.Random(seed)
    good = SAMPLE.read_text().splitlines()
    pieces = ['"', "{", "}", "[", "]", ":", ",", "\\", "\\u0000", "\\ud800", "null", "true", "1e999", "-0",
              "9" * 400, "\x00", "\u2028", "é", " ", "Z", "+99:99", "T", ".", "signin.", "::", "%"]
    p = AppParser()
    events = 0
    n = 20_000
    for _ in range(n):
        s = list(rng.choice(good))
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(s) + 1)
            op = rng.random()
            if op < 0.4:
                s[i:i + 1] = [rng.choice(pieces)]
            elif op < 0.7:
                s.insert(i, rng.choice(pieces))
            else:
                del s[i:]
        events += len(p.feed("".join(s)))
    assert events + p.unparsed == n
    assert p.unparsed > n // 2 and set(p.reasons) <= set(REASONS)


def test_control_characters_in_a_username_are_escaped_for_the_pages():
    [e] = AppParser().feed(line(user="alice\n[FIRING] all clear\x1b[2J"))
    assert e.user == "alice\\n[FIRING] all clear\\x1b[2J" and e.user.isprintable()
    [e] = AppParser().feed(line(user="ÄÖÜ 名前"))
    assert e.user == "ÄÖÜ 名前"  # printable non-ASCII names stay as typed


@pytest.mark.parametrize("pure", ["1", "0"])
def test_replay_of_a_hostile_file_skips_bad_lines_and_keeps_the_rest(monkeypatch, tmp_path, pure):
    if pure == "0" and not speedups._speedups:
        pytest.skip("C extension not built")
    monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", pure)
    log = tmp_path / "auth.log"
    bad = [raw for lines in HOSTILE.values() for raw in lines if "\n" not in raw]
    log.write_bytes(b"\n".join(r.encode("utf-8", "surrogatepass") for r in bad) + b"\n\xff\xfe\n"
                    + SAMPLE.read_bytes())
    pipe = replay([log], input_type="app")
    huge = sum(len(r.encode()) > 64 * 1024 for r in bad)
    assert huge == 3
    assert pipe.errors == {("0:auth.log", "unparsed"): len(bad) - huge, ("0:auth.log", "too_long"): huge,
                           ("0:auth.log", "invalid_utf8"): 1}
    assert sum(pipe.events.values()) == 24
    assert sorted(d.rule for d in pipe.detections) == ["AppAccountBruteForce", "AppCredentialStuffing",
                                                       "AppSignInAfterFailures"]


def test_counts_by_source_show_failed_and_locked_out_attempts():
    """What the runbooks' `replay --counts-by-source` shows: the lockouts too (an attack goes on
    against the lockout), per address."""
    pipe = replay([SAMPLE], by_source=True)
    assert pipe.by_source["signin_failed"]["203.0.113.50"] == 5
    assert pipe.by_source["signin_locked"] == {"203.0.113.50": 7, "192.0.2.14": 1, "192.0.2.15": 1}


# ------------------------------------------------------------------------------- rules

@pytest.fixture(params=ENGINES, ids=["python", "c"])
def engine(request):
    return request.param(load_rules())


def ev_(kind, ts, user="alice", source="203.0.113.9"):
    return Event({"f": ev.APP_SIGNIN_FAILED, "s": ev.APP_SIGNIN_SUCCEEDED, "l": ev.APP_SIGNIN_LOCKED}[kind],
                 T0 + ts, source=source, user=user)


def fired(engine, events):
    return [d for e in events for d in engine.process(e)]


def test_credential_stuffing_needs_ten_distinct_accounts_from_one_source(engine):
    nine = [ev_("f", i, user=f"u{i}") for i in range(9)] + [ev_("f", 9 + i, user="u0") for i in range(20)]
    assert fired(engine, nine) == []  # many failures, but nine accounts
    [d] = fired(engine, [ev_("l", 40, user="u9")])  # a lockout counts: the app refused the tenth
    assert (d.rule, d.group, d.severity, d.mitre) == ("AppCredentialStuffing", "203.0.113.9", "warning", "T1110.004")
    assert d.count == 30


def test_credential_stuffing_window_is_ten_minutes(engine):
    slow = [ev_("f", i * 70.0, user=f"u{i}") for i in range(10)]  # 10 accounts over 10.5 minutes
    assert [d.rule for d in fired(engine, slow)] == []


def test_brute_force_on_one_account_counts_distinct_sources(engine):
    same_source = [ev_("f", i) for i in range(30)]
    assert [d.rule for d in fired(engine, same_source)] == []  # one source: the app's lockout, not this rule
    many = [ev_("f", 40 + i, source=f"192.0.2.{i}") for i in range(4)] + [ev_("l", 50, source="192.0.2.99")]
    [d] = fired(engine, many)
    assert (d.rule, d.group, d.severity, d.mitre) == ("AppAccountBruteForce", "alice", "warning", "T1110.001")
    assert "account alice" in d.summary


def test_success_after_failures_for_the_same_account_is_critical(engine):
    attempts = [ev_("f", i * 60.0, source=f"192.0.2.{i % 2}") for i in range(4)] + [ev_("l", 300, source="192.0.2.1")]
    assert fired(engine, attempts) == []
    [d] = fired(engine, [ev_("s", 1500, source="192.0.2.7")])
    assert (d.rule, d.group, d.severity, d.count) == ("AppSignInAfterFailures", "alice", "critical", 5)
    assert fired(engine, [ev_("s", 1510)]) == []  # the failures were accounted for


def test_success_for_another_account_does_not_page(engine):
    fails = [ev_("f", i, user="alice", source=f"192.0.2.{i}") for i in range(4)]
    assert [d.rule for d in fired(engine, fails + [ev_("s", 10, user="bob", source="198.51.100.1")])] == []


@pytest.mark.parametrize("after, rules", [(29 * 60.0, ["AppSignInAfterFailures"]), (31 * 60.0, [])])
def test_success_after_failures_counts_only_the_last_30_minutes(engine, after, rules):
    tries = [ev_("f", i, source=f"192.0.2.{i}") for i in range(3)] + [ev_("l", 5, source="192.0.2.3")] * 2
    assert [d.rule for d in fired(engine, tries + [ev_("s", after, source="192.0.2.3")])] == rules


def test_success_from_a_stuffing_source_warns(engine):
    stuffing = [ev_("f", i, user=f"u{i % 5}", source="203.0.113.50") for i in range(10)]
    fired(engine, stuffing)
    [d] = fired(engine, [ev_("s", 30, user="u7", source="203.0.113.50")])
    assert (d.rule, d.group, d.severity) == ("AppSignInAfterFailuresFromSource", "203.0.113.50", "warning")
    assert d.summary.startswith("App sign-in as u7 from 203.0.113.50 succeeded after 10 failed")  # who got in


def test_an_empty_username_is_never_a_group(engine):
    anon = [ev_("f", i, user=None, source=f"192.0.2.{i}") for i in range(20)] + [ev_("s", 30, user=None)]
    assert [d.rule for d in fired(engine, anon)] == []


def test_the_c_engine_runs_the_app_rules_in_python_and_agrees():
    if not available():
        pytest.skip("C extension not built")
    import random
    rng = random.Random(7)
    py, c = Engine(load_rules()), FastEngine(load_rules())
    ts = T0
    for i in range(6000):
        ts += rng.choice([0.0, 0.5, 1.0, 2.0] * 10 + [900.0])
        kind = rng.choice([ev.APP_SIGNIN_FAILED] * 3 + [ev.APP_SIGNIN_LOCKED, ev.APP_SIGNIN_SUCCEEDED]
                          + [ev.PG_AUTH_FAILED] * 3 + [ev.PG_AUTHORIZED])
        e = Event(kind, ts, source=rng.choice([None] + [f"192.0.2.{n}" for n in range(6)]),
                  user=rng.choice([None] + [f"u{n}" for n in range(14)]), reason="bad_password")
        assert [d.as_dict() for d in c.process(e)] == [d.as_dict() for d in py.process(e)], i
        if i % 1000 == 999:
            assert c.expire(ts - 600) == py.expire(ts - 600)
    assert c.detections_total == py.detections_total
    assert c.groups() == py.groups() and c.evicted == py.evicted
    fired_rules = {r for r, n in py.detections_total.items() if n}
    assert {"AppCredentialStuffing", "AppAccountBruteForce", "AppSignInAfterFailures",
            "AppSignInAfterFailuresFromSource", "PostgresPasswordSpraying"} <= fired_rules
    assert c.top("AppCredentialStuffing", 3) == py.top("AppCredentialStuffing", 3)
    assert c.hits("AppAccountBruteForce", "u1") == py.hits("AppAccountBruteForce", "u1")


def test_a_rule_mixing_app_and_postgres_types_falls_back_to_python(tmp_path):
    if not available():
        pytest.skip("C extension not built")
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"rules": [{"name": "AnyFailure", "severity": "warning",
                                            "match": {"type": [ev.PG_AUTH_FAILED, ev.APP_SIGNIN_FAILED]}}]}))
    eng = speedups.make_engine(load_rules(rules))
    assert type(eng) is Engine  # the C path would never show it the Postgres failures
    assert [d.rule for d in eng.process(Event(ev.PG_AUTH_FAILED, T0, source="192.0.2.1"))] == ["AnyFailure"]


# ------------------------------------------------------------------------------- config and daemon

def _config(tmp_path, inputs, **extra):
    return load_config(data={"instance": "app-1", "inputs": inputs, "state_dir": str(tmp_path / "state"),
                             "metrics": {"listen": None}, **extra})


def test_the_postgres_input_stays_on_the_c_path_with_the_app_rules_loaded(tmp_path):
    """The app rules run on a Python engine inside the C one (the C engine does not know their
    event types: before, it took them and silently never fired them); the Postgres input keeps
    its C scanner, and the build_info metric says so."""
    if not available():
        pytest.skip("C extension not built")
    cfg = _config(tmp_path, [{"name": "postgres", "type": "postgres", "path": str(tmp_path / "pg.log")},
                             {"name": "app", "type": "app", "path": str(tmp_path / "auth.log")}])
    assert any(r.name.startswith("App") for r in load_rules(cfg.rules_file))
    mon = Monitor(cfg)
    try:
        assert mon.metrics.registry.get_sample_value("trustops_monitor_build_info", {"hot_path": "c"}) == 1
        assert "postgres" in mon.pipeline.scanners and "app" not in mon.pipeline.scanners
    finally:
        for t in mon.tails.values():
            t.close()


def test_config_accepts_an_app_input_and_names_what_is_wrong(tmp_path):
    cfg = _config(tmp_path, [{"name": "app", "type": "app", "path": "/var/log/benefits/auth.log"}])
    assert cfg.inputs[0].type == "app"
    for bad, words in ((({"name": "app", "type": "apps", "path": "/x"},), "inputs[0].type"),
                       (({"name": "app", "type": "app", "journal_command": ["journalctl"]},), "give its path"),
                       (({"name": "app", "type": "app", "path": 7},), "inputs[0].path")):
        with pytest.raises(ConfigError) as exc:
            _config(tmp_path, list(bad))
        assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("pure", ["1", "0"])
def test_the_daemon_waits_for_the_app_log_then_reads_it_from_its_start(monkeypatch, tmp_path, pure):
    """The monitor may start before the app has signed anyone in (start_at: end): the file does
    not exist yet, nothing fails, and when it appears its first lines are read."""
    if pure == "0" and not available():
        pytest.skip("C extension not built")
    monkeypatch.setenv("TRUSTOPS_MONITOR_PURE", pure)
    log = tmp_path / "benefits" / "auth.log"
    mon = Monitor(_config(tmp_path, [{"name": "app", "type": "app", "path": str(log)}], start_at="end"))
    try:
        assert mon.step() == 0
        mon.save()
        log.parent.mkdir()
        log.write_bytes(SAMPLE.read_bytes() + b'{"time": 1}\n')
        mon.step()
        reg = mon.metrics.registry
        assert reg.get_sample_value("trustops_monitor_lines_read_total", {"input": "app"}) == 25
        assert reg.get_sample_value("trustops_monitor_lines_skipped_total", {"input": "app", "reason": "unparsed"}) == 1
        assert reg.get_sample_value("trustops_monitor_events_total",
                                    {"source_type": "app", "outcome": "signin_failed"}) == 11
        assert reg.get_sample_value("trustops_monitor_detections_total",
                                    {"rule": "AppSignInAfterFailures", "severity": "critical"}) == 1
        assert {k.split("|")[0] for k in mon.alerts.firing} == {"AppCredentialStuffing", "AppAccountBruteForce",
                                                                "AppSignInAfterFailures"}
    finally:
        for t in mon.tails.values():
            t.close()


def _render_monitor_yml(tmp_path, **hostvars) -> dict:
    """The monitors role's template rendered as Ansible would (its two Ansible filters given)."""
    import jinja2
    import yaml
    role = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "monitors"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(role / "templates")), undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")
    env.filters["to_json"] = json.dumps
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    auth_log = env.from_string(defaults["monitors_app_auth_log"]).render()
    ca = tmp_path / "platform-ca.crt"   # the role copies the platform CA there first; the daemon checks it exists
    ca.write_text("")
    text = env.get_template("monitor.yml.j2").render(
        inventory_hostname="h-1", private_ip="10.10.1.4", monitors_postgres_log="/var/log/postgresql/x.log",
        monitors_ufw_from_shared_kernel_log=False, monitors_allowed_networks=["10.10.1.4/32"],
        monitors_alertmanager_urls=["https://10.10.3.4:9093", "https://10.10.3.5:9093"], monitors_ca_file=str(ca),
        monitors_metrics_port=9469,
        monitors_state_dir=str(tmp_path / "state"), monitors_app_auth_log=auth_log,
        **{"monitors_admin_networks": ["192.88.99.1/32"], **hostvars})
    path = tmp_path / "monitor.yml"
    path.write_text(text)
    load_config(path)  # the daemon accepts what the role writes
    return yaml.safe_load(text)


def test_the_role_adds_the_app_input_on_app_hosts_only(tmp_path):
    app = _render_monitor_yml(tmp_path, trustops_role="app", group_names=["app"])
    assert {"name": "app", "type": "app", "path": "/var/log/benefits/auth.log"} in app["inputs"]
    db = _render_monitor_yml(tmp_path, trustops_role="db", group_names=["db"])
    assert [i["type"] for i in db["inputs"]] == ["postgres", "hostauth", "ufw"]


def test_a_log_that_exists_but_cannot_be_opened_is_reported_not_a_crash(tmp_path, capsys):
    """Before: AttributeError out of step() on every pass (a crash loop under Restart=always) when
    the path existed but open() failed, as for an auth.log the monitor's user may not read. (Tests
    run as root, which reads anything: a directory at the path makes open() fail the same way.)"""
    log = tmp_path / "auth.log"
    mon = Monitor(_config(tmp_path, [{"name": "app", "type": "app", "path": str(log)}]))
    try:
        mon.step()
        log.mkdir()
        mon.step()
        mon.step()
        err = capsys.readouterr().err
        assert err.count(f"cannot open {log}") == 1, err  # once, not every pass
        log.rmdir()
        log.write_text(SAMPLE.read_text())
        mon.step()
        assert mon.metrics.registry.get_sample_value("trustops_monitor_lines_read_total", {"input": "app"}) == 24
    finally:
        for t in mon.tails.values():
            t.close()


def test_the_role_names_every_ops_host_as_a_peer(tmp_path):
    """Issue 19: each alert goes to every Alertmanager of the cluster (the daemon reads them all)."""
    from trustops.monitors.monitor import load_config as load
    db = _render_monitor_yml(tmp_path, trustops_role="db", group_names=["db"])
    assert db["alertmanager"]["urls"] == ["https://10.10.3.4:9093", "https://10.10.3.5:9093"]
    assert load(data=db).alertmanager_urls == db["alertmanager"]["urls"]
