"""Evidence cannot be quietly edited: every record carries the hash of the one before it, and
`trustops controls verify` names the first record that does not fit."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trustops import cli
from trustops.controls import evidence, report
from trustops.controls.evidence import ChainError, Evidence, EvidenceStore


def record(i: int, ok: bool = True) -> Evidence:
    return Evidence(f"command:check-{i}", "command", f"check-{i}", f"2026-12-01T10:{i % 60:02d}:00+00:00", 0.1, ok,
                    f"exit {0 if ok else 1}", f"check-{i}", "0" * 64)


def filled(tmp_path, n: int = 5) -> EvidenceStore:
    store = EvidenceStore(tmp_path / "evidence.jsonl")
    for i in range(n):
        store.append([record(i, ok=i != 1)])
    return store


def lines(store: EvidenceStore) -> list[dict]:
    return [json.loads(l) for l in store.path.read_text().splitlines()]


def rewrite(store: EvidenceStore, recs: list[dict]) -> None:
    store.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))


def test_an_intact_chain_verifies_and_its_head_is_the_last_record(tmp_path, capsys):
    store = filled(tmp_path)
    recs = lines(store)
    assert recs[0]["prev"] == evidence.GENESIS and all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:]))
    rep = store.verify()
    assert (rep.records, rep.head, rep.unchained) == (5, recs[-1]["hash"], 0)
    assert cli.main(["controls", "verify", "--evidence", str(store.path)]) == 0
    assert f"5 records chained, intact; head {rep.head}" in capsys.readouterr().out


def test_editing_an_old_record_is_detected_and_named(tmp_path, capsys):
    store = filled(tmp_path)
    recs = lines(store)
    recs[1]["ok"], recs[1]["result"], recs[1]["summary"] = True, "pass", "exit 0"   # a failure quietly made a pass
    rewrite(store, recs)
    with pytest.raises(ChainError, match=r"line 2 \(command:check-1 at .*\) was edited after it was written"):
        store.verify()
    assert cli.main(["controls", "verify", "--evidence", str(store.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2 (command:check-1" in err
    # recomputing the edited record's own hash does not help: the next record still points at the old one
    recs[1]["hash"] = evidence.record_hash(recs[1])
    rewrite(store, recs)
    with pytest.raises(ChainError, match=r"line 3 \(command:check-2 .*prev is not the hash of the record before"):
        store.verify()


@pytest.mark.parametrize("how", ["remove", "swap", "insert"])
def test_removing_reordering_or_inserting_records_is_detected(tmp_path, how):
    store = filled(tmp_path)
    recs = lines(store)
    if how == "remove":
        del recs[2]
    elif how == "swap":
        recs[2], recs[3] = recs[3], recs[2]
    else:
        recs.insert(2, {k: v for k, v in recs[2].items() if k not in ("prev", "hash")})
    rewrite(store, recs)
    with pytest.raises(ChainError, match=r"line 3 "):
        store.verify()


def test_old_evidence_without_hashes_gets_one_line_then_a_chain_that_seals_it(tmp_path, capsys):
    store = EvidenceStore(tmp_path / "evidence.jsonl")
    old = [{k: v for k, v in json.loads(json.dumps(record(i).__dict__)).items() if k != "result"} for i in range(3)]
    store.path.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert cli.main(["controls", "verify", "--evidence", str(store.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "all 3 records were written before evidence was hash-chained" in err
    assert "Traceback" not in err
    assert len(store.latest()) == 3                        # old evidence still counts for statuses
    store.append([record(7)])
    rep = store.verify()
    assert (rep.records, rep.unchained) == (1, 3)
    old[0]["ok"] = False                                   # an old record edited after the chain began
    text = store.path.read_text().splitlines()
    text[0] = json.dumps(old[0])
    store.path.write_text("\n".join(text) + "\n")
    with pytest.raises(ChainError, match=r"line 4 .*the 3 records before it: one of those was edited"):
        store.verify()


def test_no_file_and_garbage_get_one_line_too(tmp_path, capsys):
    missing = tmp_path / "none.jsonl"
    assert cli.main(["controls", "verify", "--evidence", str(missing)]) == 1
    assert "no evidence file" in capsys.readouterr().err
    store = filled(tmp_path)
    with open(store.path, "ab") as f:
        f.write(b"\xff\xfe not json at all\n")
    store.append([record(9)])
    with pytest.raises(ChainError, match="line 6 is not a record and is not the last line"):
        store.verify()             # only a crash's torn last line may be unreadable


def test_the_report_states_the_chain_head(tmp_path):
    from trustops.controls import engine
    from trustops.controls.catalogue import load

    store = filled(tmp_path)
    head = store.verify().head
    out = report.write(engine.statuses(load(), store), tmp_path / "r", store=store)
    texts = {p.name: p.read_text() for p in out}
    assert head in texts["trust-page.html"] and head in texts["trust-page.md"] and head in texts["internal-report.md"]
    assert json.loads(texts["trust.json"])["evidence_chain"] == {"intact": True, "head": head, "records": 5,
                                                               "problem": None}
    recs = lines(store)
    recs[0]["summary"] = "edited"
    rewrite(store, recs)
    out = report.write(engine.statuses(load(), store), tmp_path / "r", store=store)
    feed = json.loads((tmp_path / "r" / "trust.json").read_text())
    assert not feed["evidence_chain"]["intact"] and feed["evidence_chain"]["problem"] == report.feed.CHAIN_PROBLEM
    assert "did not verify" in (tmp_path / "r" / "trust-page.html").read_text()
    internal = (tmp_path / "r" / "internal-report.md").read_text()
    assert "BROKEN" in internal and "line 1" in internal    # the details, with the file's path, stay internal


WRITER = textwrap.dedent("""
    import sys
    from trustops.controls.evidence import Evidence, EvidenceStore
    store, tag, n = EvidenceStore(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(n):
        store.append([Evidence(f"command:{tag}-{i}", "command", tag, "2026-12-01T10:00:00+00:00", 0.0, True,
                               "x" * 2000, tag, "0" * 64)])
""")


def test_concurrent_writers_make_one_chain_and_a_killed_writer_breaks_nothing(tmp_path):
    path = tmp_path / "evidence.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}", "60"]) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = EvidenceStore(path)
    assert store.verify().records == 240
    killed = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "killed", "100000"])
    deadline = time.monotonic() + 30
    while path.stat().st_size < 600_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    store.append([record(1)])
    rep = store.verify()
    assert rep.records > 241 and len(rep.torn) <= 1


def test_a_hostile_record_is_skipped_not_a_crash(tmp_path):
    from trustops.controls import engine
    from trustops.controls.catalogue import Check, Control

    check = Check("command", "check-0")
    for i, bad in enumerate(({"started": "yesterday"}, {"started": "2026-12-01T10:00:00"}, {"ok": "yes"},
                             {"result": "vibes"}, {"check": ["x"]})):
        store = filled(tmp_path / str(i), 1)
        with open(store.path, "a") as f:
            f.write(json.dumps(dict(lines(store)[0], **bad)) + "\n")
        latest = store.latest()
        assert latest[check.key].started == "2026-12-01T10:00:00+00:00", bad
        engine.status(Control("T-01", "A", "s", "o", "Stated", "7d", (check,)), latest)


def test_dropping_the_newest_records_is_caught_against_the_published_head(tmp_path, capsys):
    store = filled(tmp_path)
    published = store.verify().head
    recs = lines(store)
    rewrite(store, recs[:3])                      # intact, just shorter
    assert store.verify().records == 3
    assert cli.main(["controls", "verify", "--evidence", str(store.path), "--head", published]) == 1
    assert f"the published head {published[:16]}... is not in the chain" in capsys.readouterr().err
    store.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    assert cli.main(["controls", "verify", "--evidence", str(store.path), "--head", published]) == 0
    store.append([record(8)])                     # newer records extend a published head: fine
    assert cli.main(["controls", "verify", "--evidence", str(store.path), "--head", published]) == 0


def test_records_with_hostile_fields_are_counted_and_skipped_everywhere(tmp_path):
    """A record whose summary is an object, whose ok and result disagree, whose digest is not one,
    and a line nested too deep to parse: verify, status and the report carry on and say how many."""
    from trustops.controls import engine
    from trustops.controls.catalogue import load

    store = filled(tmp_path, 2)
    good = lines(store)[0]
    hostile = [dict(good, summary={"html": "<script>"}), dict(good, ok=True, result="fail"),
               dict(good, ok=False, result="pass"), dict(good, output_sha256=["x"]), dict(good, duration_s=-1)]
    store.append([])   # nothing: hostile records go in raw, as an attacker (or a bug) would write them
    with open(store.path, "a") as f:
        for rec in hostile:
            f.write(json.dumps(rec) + "\n")
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    latest, skipped = store.read()
    assert skipped == len(hostile) and latest[good["check"]].summary == good["summary"]
    with pytest.raises(ChainError):      # they are not chained either
        store.verify()
    statuses = engine.statuses(load(), store)
    out = report.write(statuses, tmp_path / "r", store=store)
    assert f"{len(hostile)} record(s) skipped" in (tmp_path / "r" / "internal-report.md").read_text() and out


def test_a_torn_last_line_is_skipped_then_cut_by_the_next_append_and_garbage_elsewhere_is_refused(tmp_path):
    store = filled(tmp_path, 3)
    intact = store.path.read_bytes()
    with open(store.path, "ab") as f:
        f.write(b'{"check": "half a rec')          # a writer killed mid-record
    assert store.verify().torn == (4,) and store.verify().records == 3
    store.append([record(7)])
    assert store.path.read_bytes().startswith(intact) and b"half a rec" not in store.path.read_bytes()
    assert store.verify().torn == () and store.verify().records == 4
    lines_ = store.path.read_bytes().splitlines(keepends=True)
    store.path.write_bytes(b"".join(lines_[:2] + [b"{not json\n"] + lines_[2:]))
    with pytest.raises(ChainError, match="line 3 is not a record"):
        store.verify()


def test_verify_checks_against_the_head_the_last_report_published(tmp_path, capsys):
    """Without --head, verify compares against the last report's trust.json: a forged rewrite of
    the records that report pinned (hashes recomputed, so intact on its own) is caught."""
    from trustops.controls import engine
    from trustops.controls.catalogue import load

    store = filled(tmp_path)
    out = tmp_path / "report"
    report.write(engine.statuses(load(), store), out, store=store)
    published = report.published_head(out)
    assert published == store.verify().head
    args = ["controls", "verify", "--evidence", str(store.path), "--out", str(out)]
    assert cli.main(args) == 0 and "published in" in capsys.readouterr().out
    prev, forged = evidence.GENESIS, []
    for rec in lines(store):                      # flip one result and recompute every hash
        rec = dict(rec, prev=prev, summary="forged")
        rec["hash"] = prev = evidence.record_hash(rec)
        forged.append(rec)
    rewrite(store, forged)
    assert store.verify().records == 5            # intact on its own
    assert cli.main(args) == 1
    assert f"the published head {published[:16]}... is not in the chain" in capsys.readouterr().err
