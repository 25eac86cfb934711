"""Following log files exactly once across rotation, truncation and restarts.

A file is known by its identity as log shippers know it: (device, inode) plus a fingerprint of
its first bytes (up to FINGERPRINT_BYTES; Filebeat's fingerprint, Vector's checksum), because
inodes are reused. A `FileTail` hands out complete lines only; a partial last line waits for
its newline. Its position (identity and offset of the first byte not yet handed out) goes into
the checkpoint, so a restart resumes where it stopped.

Rotation by rename is found by the path pointing at another file: the old one is still read
for `rotate_wait` seconds after it last grew (Fluent Bit's rotate_wait), so a writer that goes
on appending to it for a while loses nothing and its half-written last line is completed, and
the new one is read from its start. A file met at restart that is not the checkpoint's (same
inode, other first bytes: deleted and recreated, or copytruncated) is read from its start, and
the checkpoint's file is looked for in the directory by identity (renamed) or by fingerprint
alone (the copy copytruncate made), and drained from the checkpoint's offset first.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
FINGERPRINT_BYTES = 1024
_STATE = ("_fh", "_dev", "_ino", "_offset", "_read_pos", "_buf", "_skipping", "_fp", "_fp_len")


def fingerprint(fd: int, n: int) -> str:
    """A digest of the first n bytes of an open file."""
    return hashlib.sha256(os.pread(fd, n, 0)).hexdigest()[:32]


def _fingerprint_of(path: Path | str, n: int) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return fingerprint(fd, n) if os.fstat(fd).st_size >= n else None
    finally:
        os.close(fd)

try:  # the C helper measures the longest line of a block without splitting it
    from trustops.monitors._speedups import longest_line
except ImportError:
    longest_line = None


class Block:
    """Several complete lines joined by b"\\n", handed out as one item by a FileTail made with
    `blocks=True`: a view of the bytes as read (no copy of a read), which the C scanner reads in
    place, with no bytes object per line. `n` is how many lines it holds."""
    __slots__ = ("view", "n")

    def __init__(self, view: memoryview, n: int) -> None:
        self.view = view
        self.n = n

    def lines(self) -> list[bytes]:
        return self.view.tobytes().split(b"\n")


def count_lines(items: list[bytes]) -> int:
    """Lines in a read() result (a Block counts all of its lines)."""
    return sum(item.n if isinstance(item, Block) else 1 for item in items)


def expand(items: list[bytes]) -> list[bytes]:
    """A read() result as one bytes object per line."""
    if not any(isinstance(item, Block) for item in items):
        return items
    out: list[bytes] = []
    for item in items:
        if isinstance(item, Block):
            out += item.lines()
        else:
            out.append(item)
    return out


@dataclass
class TailStats:
    lines: int = 0
    too_long: int = 0
    rotations: int = 0
    truncations: int = 0


@dataclass
class FileTail:
    path: Path
    start_at_end: bool = False          # only for a file met for the first time with no checkpoint
    max_line: int = 64 * 1024
    position: dict | None = None        # {"dev", "inode", "offset"} from the checkpoint
    stats: TailStats = field(default_factory=TailStats)
    blocks: bool = False                # hand out lines as Blocks (for the C scanner)
    rotate_wait: float = 5.0            # a rotated file is still read until it has not grown this long

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._fh = None
        self._dev = self._ino = None
        self._offset = 0               # first byte not yet handed out
        self._read_pos = 0             # where the next read() starts (offset + len(buffer))
        self._buf = b""
        self._skipping = False         # inside an over-long line, dropping until its newline
        self._first = True
        self._open_error: str | None = None  # the last open() failure reported, not repeated each pass
        self.at_eof = True
        self._fp, self._fp_len = "", 0
        self._rotated: dict | None = None    # the renamed-away file still read during rotate_wait
        self._rotated_grew = 0.0

    # -- state ---------------------------------------------------------------------------
    def _position(self) -> dict:
        if self._fh is not None and self._fp_len < FINGERPRINT_BYTES:  # grows with the file to its full size
            n = min(FINGERPRINT_BYTES, os.fstat(self._fh.fileno()).st_size)
            if n > self._fp_len:
                self._fp, self._fp_len = fingerprint(self._fh.fileno(), n), n
        return {"dev": self._dev, "inode": self._ino, "offset": self._offset, "fp": self._fp,
                "fp_len": self._fp_len}

    def checkpoint(self) -> dict | None:
        if self._ino is None:
            return self.position
        pos = self._position()
        if self._rotated is not None:
            self._swap()
            pos["rotated"] = self._position()
            self._swap()
        return pos

    def _swap(self) -> None:
        """Exchange the reading state of the current file with the rotated one's."""
        rot = self._rotated
        self._rotated = {k: getattr(self, k) for k in _STATE}
        for k, v in rot.items():  # type: ignore[union-attr]
            setattr(self, k, v)

    def _retire(self) -> list[bytes]:
        """The current file becomes the rotated one (read on during rotate_wait); a rotated one
        still pending is finished first. Returns what finishing it gave."""
        out = self._finish_rotated() if self._rotated is not None else []
        self._rotated = {k: getattr(self, k) for k in _STATE}
        self._rotated_grew = time.monotonic()
        self._fh, self._dev, self._ino = None, None, None
        self._offset = self._read_pos = 0
        self._buf, self._skipping, self._fp, self._fp_len = b"", False, "", 0
        return out

    def _finish_rotated(self) -> list[bytes]:
        self._swap()
        out = self._drain(final=True)
        self._close()
        self._swap()
        self._rotated = None
        return out

    def _read_rotated(self, limit: int) -> list[bytes]:
        """Late writes to the rotated file; finished once it has not grown for rotate_wait."""
        self._swap()
        before = self._read_pos
        out = self._drain(limit=limit)
        at_eof = self.at_eof
        self._swap()
        now = time.monotonic()
        if self._rotated["_read_pos"] != before:  # type: ignore[index]
            self._rotated_grew = now
        elif at_eof and now - self._rotated_grew >= self.rotate_wait:
            out += self._finish_rotated()
        self.at_eof = at_eof
        return out

    def lag_bytes(self) -> int:
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        if self._ino != st.st_ino:
            return st.st_size
        return max(st.st_size - self._offset, 0)

    # -- opening -------------------------------------------------------------------------
    def _open(self, path: Path, offset: int) -> bool:
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return False
        except OSError as exc:  # there but not readable (permissions): said once in the journal, retried
            if self._open_error != str(exc):
                import sys
                print(f"trustops-monitor: cannot open {path} ({exc.strerror}); retrying every pass",
                      file=sys.stderr, flush=True)
                self._open_error = str(exc)
            return False
        self._open_error = None
        st = os.fstat(fh.fileno())
        self._close()
        self._fh, self._dev, self._ino = fh, st.st_dev, st.st_ino
        self._fp_len = min(FINGERPRINT_BYTES, st.st_size)
        self._fp = fingerprint(fh.fileno(), self._fp_len)
        if offset > st.st_size:  # truncated while we were away
            self.stats.truncations += 1
            offset = 0
        fh.seek(offset)
        self._offset = self._read_pos = offset
        self._buf, self._skipping = b"", False
        return True

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._fh = None

    def close(self) -> None:
        self._close()
        if self._rotated is not None and self._rotated["_fh"] is not None:
            self._rotated["_fh"].close()

    @staticmethod
    def _same_file(path: Path | str, st: os.stat_result, pos: dict) -> bool:
        """Whether the file at path (stat st) is the one behind checkpoint position pos."""
        if (st.st_dev, st.st_ino) != (pos.get("dev"), pos.get("inode")):
            return False
        n = int(pos.get("fp_len") or 0)
        return n == 0 or _fingerprint_of(path, n) == pos.get("fp")

    def _find(self, pos: dict) -> Path | None:
        """The checkpoint's file elsewhere in the directory: by identity (renamed away), else by
        its fingerprint alone (the copy copytruncate made) when it is long enough to hold the
        offset. The followed path itself is never the answer."""
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        n = int(pos.get("fp_len") or 0)
        by_print = None
        for entry in entries:
            if entry.path == str(self.path):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            if self._same_file(entry.path, st, pos):
                return Path(entry.path)
            if (by_print is None and n > 0 and st.st_size >= pos.get("offset", 0)
                    and _fingerprint_of(entry.path, n) == pos.get("fp")):
                by_print = Path(entry.path)
        return by_print

    def _first_open(self) -> list[bytes]:
        """Resume from the checkpoint. Its file, when rotated away or copied meanwhile, is read
        on (rotate_wait) before the path's file, which is read from its start unless it is the
        checkpoint's own."""
        self._first = False
        pos = self.position
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        out: list[bytes] = []
        if pos:
            rot = pos.get("rotated")
            if rot:
                old = self._find(rot)
                if old is not None and self._open(old, rot["offset"]):
                    out += self._retire()
            if st is not None and self._same_file(self.path, st, pos):
                self._open(self.path, pos["offset"])
                return out
            old = self._find(pos)
            if old is not None and self._open(old, pos["offset"]):
                self.stats.rotations += 1
                out += self._retire()
            elif st is not None and (st.st_dev, st.st_ino) == (pos.get("dev"), pos.get("inode")):
                self.stats.truncations += 1  # same inode, other content: recreated or truncated
            if st is not None:
                self._open(self.path, 0)
            return out
        if st is not None:
            self._open(self.path, st.st_size if self.start_at_end else 0)
        return out

    # -- reading -------------------------------------------------------------------------
    def _drain(self, final: bool = False, limit: int | None = None) -> list[bytes]:
        """Lines from the open file: to its end, or about `limit` bytes (memory stays bounded
        on a big backlog; `self.at_eof` says whether the end was reached)."""
        out: list[bytes] = []
        fh = self._fh
        self.at_eof = True
        if fh is None:
            return out
        read = 0
        while True:
            if limit is not None and read >= limit:
                self.at_eof = False
                return out
            data = fh.read(CHUNK)
            if not data:
                break
            read += len(data)
            self._read_pos += len(data)
            self._split(data, out)
        if final and self._buf:  # a rotated-away file's last line never gets its newline
            out.append(self._buf)
            self._offset += len(self._buf)
            self._buf = b""
            self.stats.lines += 1
        return out

    def _split(self, data: bytes, out: list[bytes]) -> None:
        if self.blocks and longest_line is not None and self._split_block(data, out):
            return
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")
        rest = lines.pop()  # after the last newline: a partial line, or b""
        if lines and self._skipping:  # the end of an over-long line: dropped with it
            self._skipping = False
            self.stats.too_long += 1
            del lines[0]
        if lines and max(map(len, lines)) > self.max_line:
            kept = [line for line in lines if len(line) <= self.max_line]
            self.stats.too_long += len(lines) - len(kept)
            lines = kept
        out += lines
        self.stats.lines += len(lines)
        self._offset += len(buf) - len(rest)
        self._keep(rest)

    def _split_block(self, data: bytes, out: list[bytes]) -> bool:
        """The complete lines of the kept partial line and `data`: that line as bytes, the rest as
        one Block over `data` itself (a read is never copied: two copies of each 1 MiB read and
        their page faults were some 8% of a UFW replay's profile). False (nothing done) when `data` has no complete
        line after the first or a line is over-long; its lines are then split one by one."""
        end = data.rfind(b"\n")
        first = data.find(b"\n") + 1 if self._buf or self._skipping else 0  # the kept line ends there
        if end < first:
            return False
        head = self._buf + data[:first - 1] if self._buf else None
        block = memoryview(data)[first:end]
        longest, n = longest_line(block)
        if longest > self.max_line or (head is not None and len(head) > self.max_line):
            return False
        if self._skipping:  # the end of an over-long line goes
            self._skipping = False
            self.stats.too_long += 1
        if head is not None:
            out.append(head)
        out.append(Block(block, n))
        self.stats.lines += n + (head is not None)
        self._offset += len(self._buf) + end + 1
        self._keep(data[end + 1:])
        return True

    def _keep(self, rest: bytes) -> None:
        """The partial last line waits for its newline."""
        if len(rest) > self.max_line:   # an over-long line still growing: drop what we have
            self._offset += len(rest)
            self._skipping = True
            rest = b""
        self._buf = rest

    def read(self, limit: int = 8 * CHUNK) -> list[bytes]:
        """Complete lines written since the last call, about `limit` bytes at most (old file first
        across a rotation); call again while it returns lines."""
        if self._first:
            out = self._first_open()
        else:
            out = []
        if self._rotated is not None:
            out += self._read_rotated(limit)
            if not self.at_eof:
                return out
        if self._fh is None:
            try:
                os.stat(self.path)
            except OSError:
                return out
            if not self._open(self.path, 0):  # a file that appeared later: from its start
                return out
        st_fd = os.fstat(self._fh.fileno())  # type: ignore[union-attr]
        if st_fd.st_size < self._read_pos:   # copytruncate (or truncation): start over
            self.stats.truncations += 1
            self._fh.seek(0)  # type: ignore[union-attr]
            self._offset = self._read_pos = 0
            self._buf, self._skipping = b"", False
        out += self._drain(limit=limit)
        if not self.at_eof:
            return out  # more to read: rotation is only decided at the end of the file
        try:
            st = os.stat(self.path)
        except OSError:
            return out  # renamed away, nothing new yet: keep the old file until one appears
        if (st.st_dev, st.st_ino) != (self._dev, self._ino):
            out += self._drain()  # anything written to the old file before the switch
            self.stats.rotations += 1
            out += self._retire()  # read on for rotate_wait: late writes, a line still being written
            if self._open(self.path, 0):
                out += self._drain()
        return out


class Checkpoint:
    """The monitor's durable state: file positions, journal cursor, and alerts not yet delivered.
    Written atomically (temp file + rename + fsync), so a crash leaves the old or the new one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"checkpoint {self.path} is unreadable ({exc}); move it away to start afresh") from exc
        return data if isinstance(data, dict) else {}

    def save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
