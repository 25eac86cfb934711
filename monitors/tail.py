"""Following log files by inode, exactly once across rotation, truncation and restarts.

A `FileTail` hands out complete lines only; a partial last line waits for its newline. Its
position (device, inode, offset of the first byte not yet handed out) goes into the checkpoint,
so a restart resumes where it stopped. Rotation by rename is found by the path pointing at a
new inode: the old file is drained first, then the new one read from its start. When the file
behind a checkpoint was rotated while the monitor was down, it is found again by its inode in
the same directory and drained first. Copytruncate shows as a file shorter than the offset.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20

try:  # the C helper measures the longest line of a block without splitting it
    from trustops.monitors._speedups import longest_line
except ImportError:
    longest_line = None


class Block(bytes):
    """Several complete lines joined by b"\\n", handed out as one item by a FileTail made with
    `blocks=True`: the C scanner reads them in place, with no bytes object per line. `n` is how
    many lines it holds."""
    n: int

    def lines(self) -> list[bytes]:
        return self.split(b"\n")


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

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._fh = None
        self._dev = self._ino = None
        self._offset = 0               # first byte not yet handed out
        self._read_pos = 0             # where the next read() starts (offset + len(buffer))
        self._buf = b""
        self._skipping = False         # inside an over-long line, dropping until its newline
        self._first = True
        self.at_eof = True

    # -- state ---------------------------------------------------------------------------
    def checkpoint(self) -> dict | None:
        if self._ino is None:
            return self.position
        return {"dev": self._dev, "inode": self._ino, "offset": self._offset}

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
        except OSError:
            return False
        st = os.fstat(fh.fileno())
        self._close()
        self._fh, self._dev, self._ino = fh, st.st_dev, st.st_ino
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

    def _find_by_inode(self, dev: int, ino: int) -> Path | None:
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_ino == ino and st.st_dev == dev and entry.is_file(follow_symlinks=False):
                return Path(entry.path)
        return None

    def _first_open(self) -> list[bytes]:
        """Resume from the checkpoint; if its file was rotated away meanwhile, drain it first."""
        self._first = False
        pos = self.position
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        out: list[bytes] = []
        if pos:
            if st is not None and (st.st_dev, st.st_ino) == (pos["dev"], pos["inode"]):
                self._open(self.path, pos["offset"])
                return out
            old = self._find_by_inode(pos["dev"], pos["inode"])
            if old is not None and self._open(old, pos["offset"]):
                out = self._drain(final=True)
                self.stats.rotations += 1
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
        buf = self._buf + data if self._buf else data
        if self.blocks and longest_line is not None and self._split_block(buf, out):
            return
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

    def _split_block(self, buf: bytes, out: list[bytes]) -> bool:
        """buf's complete lines as one Block; False (nothing done) when there are none or one is
        over-long, and the lines are split one by one instead."""
        end = buf.rfind(b"\n")
        first = buf.find(b"\n") + 1 if self._skipping else 0  # the end of an over-long line goes
        if end < first:
            return False
        block = memoryview(buf)[first:end]
        longest, n = longest_line(block)
        if longest > self.max_line:
            return False
        if self._skipping:
            self._skipping = False
            self.stats.too_long += 1
        item = Block(block)
        item.n = n
        out.append(item)
        self.stats.lines += n
        self._offset += end + 1
        self._keep(buf[end + 1:])
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
        if self._fh is None:
            try:
                os.stat(self.path)
            except OSError:
                return out
            self._open(self.path, 0)  # a file that appeared later: from its start
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
            out += self._drain(final=True)  # anything written to the old file before the switch
            self.stats.rotations += 1
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
