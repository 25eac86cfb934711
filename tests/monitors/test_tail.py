"""Following files: rename rotation, copytruncate, truncation, restart mid-file, files that appear
later, partial lines and garbage. Every case checks exact counts: nothing lost, nothing twice."""
import os

import pytest

from trustops.monitors.monitor import Monitor, load_config, replay
from trustops.monitors.tail import Checkpoint, FileTail, longest_line


def lines(n, start=0, tag="l"):
    return "".join(f"{tag}{i}\n" for i in range(start, start + n)).encode()


def read_all(t):
    return [x.decode() for x in t.read()]


def tailing(tmp_path, content: bytes, **kw):
    """A file a.log holding `content`, a FileTail on it (keyword arguments passed on), and what it read."""
    f = tmp_path / "a.log"
    f.write_bytes(content)
    t = FileTail(f, **kw)
    return f, t, read_all(t)


def read_and_stop(f):
    """What a daemon reads of `f` before it stops, and the checkpoint it leaves."""
    t = FileTail(f)
    got = read_all(t)
    pos = t.checkpoint()
    t.close()
    return got, pos


def test_partial_line_waits_for_its_newline(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(b"one\ntw")
    t = FileTail(f)
    assert read_all(t) == ["one"]
    assert t.checkpoint()["offset"] == 4
    with open(f, "ab") as fh:
        fh.write(b"o\nthree\n")
    assert read_all(t) == ["two", "three"]


def test_rename_rotation_drains_the_old_file_first(tmp_path):
    f, t, got = tailing(tmp_path, lines(5))
    with open(f, "ab") as fh:
        fh.write(lines(3, 5))          # written before rotation, not yet read
    os.rename(f, tmp_path / "a.log.1")
    got += read_all(t)                 # path missing: the old file is still drained
    with open(tmp_path / "a.log.1", "ab") as fh:
        fh.write(lines(2, 8))          # a writer still holding the old file
    f.write_bytes(lines(4, 10))
    got += read_all(t)
    assert got == [f"l{i}" for i in range(14)]
    assert t.stats.rotations == 1


def test_copytruncate_starts_over(tmp_path):
    f, t, got = tailing(tmp_path, lines(6))
    with open(f, "r+b") as fh:          # logrotate copytruncate
        fh.truncate(0)
    with open(f, "ab") as fh:
        fh.write(lines(3, 6))
    got += read_all(t)
    assert got == [f"l{i}" for i in range(9)]
    assert t.stats.truncations == 1


def test_restart_resumes_from_checkpoint_exactly(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(lines(100) + b"partial")
    first, pos = read_and_stop(f)
    with open(f, "ab") as fh:
        fh.write(b"-done\n" + lines(50, 100))
    t2 = FileTail(f, position=pos)
    second = read_all(t2)
    assert first + second == [f"l{i}" for i in range(100)] + ["partial-done"] + [f"l{i}" for i in range(100, 150)]


def test_rotated_while_stopped_is_found_by_inode(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(lines(10))
    got, pos = read_and_stop(f)
    with open(f, "ab") as fh:
        fh.write(lines(5, 10))
    os.rename(f, tmp_path / "a.log.1")
    f.write_bytes(lines(3, 15))
    t2 = FileTail(f, position=pos)
    got += read_all(t2)
    assert got == [f"l{i}" for i in range(18)]


def test_truncated_while_stopped(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(lines(10))
    t = FileTail(f)
    read_all(t)
    pos = t.checkpoint()
    f.write_bytes(lines(2, 100))  # same inode, shorter
    t2 = FileTail(f, position=pos)
    assert read_all(t2) == ["l100", "l101"]
    assert t2.stats.truncations == 1


def test_file_that_appears_later_is_read_from_its_start(tmp_path):
    f = tmp_path / "late.log"
    t = FileTail(f, start_at_end=True)
    assert read_all(t) == []
    f.write_bytes(lines(3))
    assert read_all(t) == ["l0", "l1", "l2"]


def test_start_at_end_skips_history_only_without_checkpoint(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(lines(10))
    t = FileTail(f, start_at_end=True)
    assert read_all(t) == []
    with open(f, "ab") as fh:
        fh.write(lines(1, 10))
    assert read_all(t) == ["l10"]


def test_long_lines_are_counted_and_skipped(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(b"ok1\n" + b"x" * 5000 + b"\nok2\n" + b"y" * 3000)
    t = FileTail(f, max_line=1000)
    assert read_all(t) == ["ok1", "ok2"]
    with open(f, "ab") as fh:
        fh.write(b"y" * 3000 + b"\nok3\n")
    assert read_all(t) == ["ok3"]
    assert t.stats.too_long == 2


def test_garbage_is_counted_never_a_crash(tmp_path):
    good = ('2026-01-01 00:00:00.000 UTC [7] [unknown]@[unknown] LOG:  connection received: host=10.0.0.9 port=5\n'
            '2026-01-01 00:00:00.100 UTC [7] a@b FATAL:  password authentication failed for user "a"\n')
    f = tmp_path / "pg.log"
    f.write_bytes(good.encode() + b"\xff\xfe FATAL: \xc3\x28 connection \n" + bytes(range(256)) + b"\n"
                  + b"FATAL " + b"z" * 70000 + b"\n" + good.encode())
    pipe = replay([f])
    assert pipe.lines["0:pg.log"] == 7  # bytes(range(256)) holds a newline: two garbage lines
    assert pipe.errors[("0:pg.log", "invalid_utf8")] == 3
    assert pipe.errors[("0:pg.log", "too_long")] == 1
    assert pipe.events[("postgres", "pg_auth_failed:bad_password")] == 2


def _monitor(tmp_path, logfile, **extra):
    cfg = load_config(data={"inputs": [{"name": "pg", "type": "postgres", "path": str(logfile)}],
                            "state_dir": str(tmp_path / "state"), "metrics": {"listen": None},
                            "start_at": "beginning", **extra})
    cfg.metrics_listen = None
    return Monitor(cfg)


def _pg_lines(n, start=0):
    out = []
    for i in range(start, start + n):
        pid = 1000 + i
        out.append(f"2026-01-01 00:00:{i % 60:02d}.000 UTC [{pid}] [unknown]@[unknown] LOG:  connection received: "
                   f"host=10.0.0.{i % 200} port=1\n")
        out.append(f'2026-01-01 00:00:{i % 60:02d}.001 UTC [{pid}] app@db FATAL:  password authentication failed '
                   f'for user "app"\n')
        out.append(f'2026-01-01 00:00:{i % 60:02d}.001 UTC [{pid}] app@db DETAIL:  Connection matched pg_hba.conf '
                   f'line 3: "x"\n')
    return "".join(out).encode()


def test_daemon_restart_mid_file_counts_each_failure_once(tmp_path):
    f = tmp_path / "pg.log"
    f.write_bytes(_pg_lines(40))
    m = _monitor(tmp_path, f)
    m.step()
    assert m.pipeline.events[("postgres", "pg_auth_failed:bad_password")] == 40
    m.save()  # a clean stop (SIGTERM) saves; a SIGKILL may read again up to the last second's lines
    del m
    with open(f, "ab") as fh:
        fh.write(_pg_lines(25, 40))
    m2 = _monitor(tmp_path, f)
    m2.step()
    assert m2.pipeline.events[("postgres", "pg_auth_failed:bad_password")] == 25  # not 65
    os.rename(f, tmp_path / "pg.log.1")
    f.write_bytes(_pg_lines(5, 65))
    m2.step()
    assert m2.pipeline.events[("postgres", "pg_auth_failed:bad_password")] == 30
    m2.save()
    assert Checkpoint(tmp_path / "state" / "checkpoint.json").load()["inputs"]["pg"]["offset"] == f.stat().st_size


def test_a_backlog_is_read_in_bounded_batches(tmp_path):
    f = tmp_path / "big.log"
    f.write_bytes(lines(200_000))  # ~1.3 MB
    t = FileTail(f)
    batches = []
    while True:
        got = t.read(limit=256 * 1024)
        if not got:
            break
        batches.append(got)
    assert len(batches) >= 2  # reads go by 1 MiB chunks: a batch holds at most limit + 1 MiB
    assert all(sum(len(x) + 1 for x in b) <= 256 * 1024 + (1 << 20) for b in batches)
    assert [x.decode() for b in batches for x in b] == [f"l{i}" for i in range(200_000)]


def test_replay_reads_a_pipe(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    sample = Path(__file__).parent / "samples" / "real-journald-journalctl-k-json.txt"
    proc = subprocess.run([sys.executable, "-m", "trustops.monitors", "replay", "--type", "ufw", "--json", "-"],
                          input=sample.read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    import json
    out = json.loads(proc.stdout)
    assert out["lines"] == {"0:-": 80} and out["events"]["ufw:block"] == 4
    no_type = subprocess.run([sys.executable, "-m", "trustops.monitors", "replay", "-"], input=b"", capture_output=True)
    assert no_type.returncode == 2 and b"needs --type" in no_type.stderr


def test_journal_input_tracks_the_cursor(tmp_path):
    import json
    import time
    from pathlib import Path

    sample = Path(__file__).parent / "samples" / "real-journald-journalctl-k-json.txt"
    cfg = load_config(data={"inputs": [{"name": "kernel", "type": "ufw", "journal_command": ["cat", str(sample)]}],
                            "state_dir": str(tmp_path / "state"), "metrics": {"listen": None}})
    cfg.metrics_listen = None
    m = Monitor(cfg)
    deadline = time.monotonic() + 10
    while sum(m.pipeline.lines.values()) < 80 and time.monotonic() < deadline:
        m.wake.wait(0.2)
        m.step()
    assert m.pipeline.events[("ufw", "block")] == 4 and m.pipeline.events[("ufw", "audit")] == 40
    m.save()
    last_cursor = json.loads(sample.read_text().splitlines()[-1])["__CURSOR"]
    assert Checkpoint(tmp_path / "state" / "checkpoint.json").load()["inputs"]["kernel"]["cursor"] == last_cursor


@pytest.mark.skipif(longest_line is None, reason="C extension not built")
@pytest.mark.parametrize("seed", range(12))
def test_blocks_give_the_same_lines_counts_and_offsets(tmp_path, seed):
    """FileTail(blocks=True) (for the C scanner) against the line list: over-long lines, partial
    lines, writes in random pieces, reads in between."""
    import random

    from trustops.monitors.tail import Block, expand
    rng = random.Random(seed)
    f = tmp_path / "x.log"
    f.write_bytes(b"")
    plain, blocked = FileTail(f, max_line=100), FileTail(f, max_line=100, blocks=True)
    got_plain, got_blocked, saw_block = [], [], False
    data = b"".join(rng.choices([b"short line\n", b"x" * rng.randrange(101, 300) + b"\n", b"\n", b"partial",
                                 b"\r\n", b"y" * 100 + b"\n"], [300, 1, 20, 20, 20, 20])[0] for _ in range(6000))
    i = 0
    while i < len(data):
        n = rng.choice([1, 7, 150, 3000, 20_000])
        with open(f, "ab") as fh:
            fh.write(data[i:i + n])
        i += n
        got_plain += plain.read(limit=rng.choice([64, 1 << 20]))
        items = blocked.read(limit=rng.choice([64, 1 << 20]))
        saw_block |= any(isinstance(x, Block) for x in items)
        got_blocked += expand(items)
    got_plain += plain.read()
    got_blocked += expand(blocked.read())
    assert saw_block
    assert got_blocked == got_plain
    assert blocked.stats == plain.stats and blocked.stats.too_long > 0
    assert blocked.checkpoint() == plain.checkpoint()


# -- file identity and rotate_wait (issue 17, defects 4 and 5) -----------------------------------

def test_a_file_recreated_under_the_same_inode_while_stopped_is_read_from_its_start(tmp_path):
    """Before: known by inode alone, a file deleted and recreated while the daemon was down that got
    the same inode was read from the old offset (499 of 700 lines skipped). Rewriting the path in
    place gives the same state (same device and inode, other bytes)."""
    f = tmp_path / "a.log"
    f.write_bytes(lines(300, tag="old"))
    t = FileTail(f)
    assert len(read_all(t)) == 300
    pos = t.checkpoint()
    t.close()
    f.write_bytes(lines(700, tag="new"))  # O_TRUNC: the same inode, new content longer than the offset
    assert os.stat(f).st_ino == pos["inode"]
    t2 = FileTail(f, position=pos)
    assert read_all(t2) == [f"new{i}" for i in range(700)]
    assert t2.stats.truncations == 1


def test_copytruncate_while_stopped_loses_and_doubles_nothing(tmp_path):
    """Lines written after the checkpoint and before copytruncate are in the copy: found by its
    fingerprint and drained from the offset, then the truncated file from its start."""
    f = tmp_path / "a.log"
    f.write_bytes(lines(100))
    got, pos = read_and_stop(f)
    with open(f, "ab") as fh:
        fh.write(lines(50, 100))               # written while the daemon is down
    (tmp_path / "a.log.1").write_bytes(f.read_bytes())  # logrotate copytruncate: copy, then truncate
    with open(f, "r+b") as fh:
        fh.truncate(0)
    with open(f, "ab") as fh:
        fh.write(lines(400, 150))              # longer than the old offset
    t2 = FileTail(f, position=pos, rotate_wait=0)
    got += read_all(t2) + read_all(t2)
    assert got == [f"l{i}" for i in range(550)]


def test_late_writes_to_a_renamed_file_are_read_during_rotate_wait(tmp_path):
    """Before: at the switch the old file was drained once and closed: a writer still appending to
    it lost everything after, and its half-written last line was handed out cut."""
    f, t, got = tailing(tmp_path, lines(5), rotate_wait=0.3)
    with open(f, "ab") as fh:
        fh.write(b"hal")                       # a line being written when logrotate renames
    os.rename(f, tmp_path / "a.log.1")
    f.write_bytes(lines(3, 100))
    got += read_all(t)
    assert got == [f"l{i}" for i in range(5)] + ["l100", "l101", "l102"]
    with open(tmp_path / "a.log.1", "ab") as fh:
        fh.write(b"f\n" + lines(2, 5))         # the writer goes on for a while
    got += read_all(t)
    pos = t.checkpoint()
    assert pos["rotated"]["offset"] == (tmp_path / "a.log.1").stat().st_size
    import time
    time.sleep(0.4)
    with open(f, "ab") as fh:
        fh.write(lines(1, 103))
    got += read_all(t)
    assert got == [f"l{i}" for i in range(5)] + ["l100", "l101", "l102", "half", "l5", "l6", "l103"]
    assert "rotated" not in t.checkpoint()     # finished after rotate_wait without growth
    assert t.stats.rotations == 1


def test_a_restart_during_rotate_wait_reads_on_from_both_offsets(tmp_path):
    f, t, got = tailing(tmp_path, lines(5), rotate_wait=60)
    os.rename(f, tmp_path / "a.log.1")
    f.write_bytes(lines(3, 100))
    got += read_all(t)
    pos = t.checkpoint()
    t.close()
    with open(tmp_path / "a.log.1", "ab") as fh:
        fh.write(lines(2, 5))                  # late writes while the daemon is down
    with open(f, "ab") as fh:
        fh.write(lines(2, 103))
    t2 = FileTail(f, position=pos, rotate_wait=60)
    got += read_all(t2)
    assert sorted(got) == sorted([f"l{i}" for i in range(7)] + [f"l{i}" for i in range(100, 105)])
    assert len(got) == 12


def test_the_checkpoint_is_written_at_most_once_a_second(tmp_path, monkeypatch):
    """A flood wakes the loop for every write; the checkpoint (fsync'd) is not rewritten for each."""
    import trustops.monitors.tail as tail
    writes = []
    real = tail.Checkpoint.save
    monkeypatch.setattr(tail.Checkpoint, "save", lambda self, data: (writes.append(1), real(self, data)))
    f = tmp_path / "pg.log"
    f.write_bytes(b"")
    m = _monitor(tmp_path, f)
    for i in range(20):
        with open(f, "ab") as fh:
            fh.write(_pg_lines(1, i))
        m.step()
    assert len(writes) <= 2, len(writes)  # the first step, and perhaps one a second later
    m.save()
    assert Checkpoint(tmp_path / "state" / "checkpoint.json").load()["inputs"]["pg"]["offset"] == f.stat().st_size
