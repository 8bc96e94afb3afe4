"""The files a FileSource follows, and the I/O on them: glob scans, opening (at a start or a
stored position), change checks and reads. Runs in worker threads, off the event loop.

What a change means is decided in :mod:`streamer.input.changes`; this module stats, opens,
reads and logs accordingly.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
import threading
import time

from streamer.input.changes import (
    ContentChange,
    Key,
    PathChange,
    Resume,
    content_change,
    key_of,
    path_change,
    resume,
)
from streamer.input.lines import READ_SIZE, LineLimits, Lines, LineSplitter
from streamer.input.positions import FINGERPRINT_BYTES, FilePosition, fingerprint
from streamer.input.tailed import TailedFile

log = logging.getLogger(__name__)

#: bytes read from the end of a file to start at a line boundary (from_beginning=False)
_TAIL_PROBE = 64 * 1024


class OpenFiles:
    """The open files of one FileSource by device+inode, and what is done to them.

    ``startup``, ``scan``, ``check_all`` and ``fill`` run in a worker thread and hold
    ``lock`` while they do; ``close`` and ``close_all`` run on the event loop and take it
    around the descriptor. The loop reads ``files`` between those calls.
    ``committed`` is the source's: a file opened here is entered at its start position,
    so that a snapshot taken before its first batch still knows where it starts.
    """

    def __init__(self, patterns: list[str], source_id: str, limits: LineLimits,
                 committed: dict[int, FilePosition]) -> None:
        self.source_id = source_id
        self.limits = limits
        self.files: dict[Key, TailedFile] = {}
        self.scans = 0  # glob scans completed (the one at start included)
        self.lock = threading.Lock()
        self._committed = committed
        self._matcher = _Matcher(patterns, source_id)
        self._next_uid = 0

    def open(self, path: str, start: str = "begin", *, restore: FilePosition | None = None,
              attached: bool = True) -> TailedFile | None:
        """Open a file and start tracking it at ``start`` ("begin" or "end"), or with
        ``restore`` at the stored offset if it is the stored file (else None)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            self._matcher.report(path, f"unreadable: {exc}")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                self._matcher.report(path, "not a regular file")
                return None
            if key_of(st) in self.files:  # raced with a rename: tracked
                os.close(fd)
                return None
            if restore is not None:
                verdict = resume(restore.identity, restore.offset, st, lambda n: _head(fd, n))
                if verdict in (Resume.OTHER_INODE, Resume.OTHER_CONTENT):
                    os.close(fd)
                    return None
                offset = restore.offset
                if verdict is Resume.FROM_ZERO:
                    log.warning("%s: truncated while stopped: %s is %d bytes, stored offset %d;"
                                " reading again from 0", self.source_id, path, st.st_size, offset)
                    offset = 0
            else:
                offset = 0 if start == "begin" else _line_start_near_end(fd, st.st_size)
            digest, fp_bytes = _fingerprint(fd, st.st_size)
        except OSError as exc:
            os.close(fd)
            self._matcher.report(path, f"unreadable: {exc}")
            return None
        self._matcher.ok(path)
        self._next_uid += 1
        f = TailedFile(uid=self._next_uid, path=path, fd=fd, dev=st.st_dev, ino=st.st_ino,
                       fingerprint=digest, fingerprint_bytes=fp_bytes, offset=offset,
                       read_offset=offset, splitter=LineSplitter(self.limits.max_line_bytes),
                       size=st.st_size, mtime_ns=st.st_mtime_ns,
                       last_change=time.monotonic(), attached=attached)
        if not attached:
            f.state = "rotated"
            f.detached_scan = self.scans
        self.files[f.key] = f
        self._committed[f.uid] = f.position()
        log.info("%s: opened %s at offset %d of %d (dev %d, inode %d)",
                 self.source_id, path, offset, st.st_size, f.dev, f.ino)
        return f

    def startup(self, restored: list[FilePosition], start: str) -> None:
        """First scan: resume the files of ``restored`` positions, then open the other
        matched files at ``start`` ("begin" or "end")."""
        with self.lock:
            matched = self._matcher.scan()
            at_path: list[TailedFile] = []
            unresolved: list[FilePosition] = []
            for pos in restored:
                if (pos.dev, pos.ino) in self.files:
                    continue  # duplicate entry
                st = _stat_quiet(pos.path)
                if st is None or key_of(st) != (pos.dev, pos.ino):
                    unresolved.append(pos)
                    continue
                f = self.open(pos.path, restore=pos, attached=pos.path in matched)
                if f is not None:
                    at_path.append(f)
                else:
                    # The inode is in use by this path, so the stored file cannot exist
                    # elsewhere: the inode was reused, or the file rewritten in place.
                    log.warning("%s: %s is a different file than in the last run (inode"
                                " reused or content replaced); reading it from 0",
                                self.source_id, pos.path)
            predecessors: dict[str, TailedFile] = {}
            for pos in unresolved:
                found = _find_renamed(pos, self.files)
                f = None
                if found is not None:
                    f = self.open(found, restore=pos, attached=found in matched)
                if f is None:
                    log.warning("%s: gone: %s (dev %d, inode %d) no longer exists;"
                                " dropping its position", self.source_id, pos.path, pos.dev,
                                pos.ino)
                    continue
                log.info("%s: rotated while stopped: %s -> %s; finishing it from offset %d",
                         self.source_id, pos.path, found, f.offset)
                if not f.attached:
                    f.path = pos.path  # the name it was followed under, as when running
                    f.detached_scan = self.scans + 1  # closable after the next scan
                predecessors[pos.path] = f
            for f in at_path:
                f.after = predecessors.get(f.path)
            for path, st in matched.items():
                if key_of(st) not in self.files:
                    f = self.open(path, start)
                    if f is not None:
                        f.after = predecessors.get(path)
            self.scans += 1

    def _predecessor(self, path: str, new: TailedFile) -> TailedFile | None:
        """The detached, not yet drained file last followed at ``path``."""
        for f in self.files.values():
            if f is not new and not f.attached and f.path == path and not f.drained:
                return f
        return None

    def scan(self) -> None:
        """Pick up new files; notice watched files that moved to another watched name."""
        with self.lock:
            by_key = {key_of(st): path for path, st in self._matcher.scan().items()}
            moved_from: dict[str, TailedFile] = {}
            # Known files under new watched names (a.log -> a.log.1 with a glob a.log*):
            # still the same files, never read again.
            for key, path in by_key.items():
                f = self.files.get(key)
                if f is not None and (not f.attached or f.path != path):
                    log.info("%s: %s is now %s (still watched)", self.source_id, f.path, path)
                    if f.attached:  # renamed since the last poll: a rotation
                        moved_from[f.path] = f
                        f.drained = False
                    f.path, f.attached = path, True
                    if f.state == "rotated":
                        f.state = "open"
            for key, path in by_key.items():
                if key in self.files:
                    continue
                for old in list(self.files.values()):
                    if old.attached and old.path == path:
                        self._detach(old)  # rotated since the last poll
                new = self.open(path)
                if new is not None:
                    new.after = moved_from.get(path) or self._predecessor(path, new)
            self.scans += 1

    def _detach(self, f: TailedFile) -> None:
        """The path no longer names ``f``: finish it through the open descriptor."""
        assert f.fd is not None
        f.detach(self.scans, os.fstat(f.fd).st_nlink)
        if f.state == "gone":
            log.info("%s: %s was deleted; reading what is left", self.source_id, f.path)
        else:
            log.info("%s: rotated: %s moved away; finishing the old file (inode %d)",
                     self.source_id, f.path, f.ino)

    def check_all(self, now: float) -> None:
        with self.lock:
            for f in list(self.files.values()):
                if f.fd is None:
                    continue
                try:
                    self._check(f, now)
                except OSError as exc:
                    self._os_error(f, "check", exc)
                else:
                    self._os_ok(f, "check")

    def _check(self, f: TailedFile, now: float) -> None:
        """Rotation, deletion, truncation and growth of one file."""
        fd = f.fd
        assert fd is not None
        if f.attached:
            change = path_change(f.key, _stat(f.path), self.files)
            if change is not PathChange.SAME:
                self._detach(f)
            if change is PathChange.REPLACED:
                new = self.open(f.path)
                if new is not None:
                    new.after = f
        fst = os.fstat(fd)
        if not f.attached and f.state != "gone" and fst.st_nlink == 0:
            f.state = "gone"
            log.info("%s: %s was deleted; reading what is left", self.source_id, f.path)
        change = content_change(fst, f.identity, size=f.size, mtime_ns=f.mtime_ns,
                                read_offset=f.read_offset, head=lambda n: _head(fd, n))
        if change is ContentChange.SHRUNK:
            self._truncated(f, f"size {fst.st_size} < read offset {f.read_offset}")
        elif change is ContentChange.REWRITTEN:
            self._truncated(f, "its first bytes changed")
        elif change is ContentChange.GREW_SHORT:
            f.fingerprint, f.fingerprint_bytes = _fingerprint(fd, fst.st_size)
        if fst.st_size != f.size:
            f.last_change = now
        f.size, f.mtime_ns = fst.st_size, fst.st_mtime_ns

    def _truncated(self, f: TailedFile, why: str) -> None:
        assert f.fd is not None
        log.warning("%s: truncated: %s (%s); reading again from 0", self.source_id, f.path, why)
        f.restart(_fingerprint(f.fd, os.fstat(f.fd).st_size))

    def _os_error(self, f: TailedFile, operation: str, exc: OSError) -> None:
        """Keep the file and retry on the next poll; log each new error once."""
        if f.errors.get(operation) != str(exc):
            f.errors[operation] = str(exc)
            log.warning("%s: unreadable: %s: %s", self.source_id, f.path, exc)

    def _os_ok(self, f: TailedFile, operation: str) -> None:
        if f.errors.pop(operation, None) is not None:
            log.info("%s: %s is readable again", self.source_id, f.path)

    def fill(self, f: TailedFile) -> list[str]:
        """Read and split up to one batch of lines from ``f``."""
        out = Lines()
        with self.lock:
            if f.fd is None:
                return out.lines
            splitter = f.splitter
            try:
                while True:
                    splitter.take_into(out, self.limits.batch_lines, self.limits.batch_bytes)
                    if out.full:
                        break
                    data = os.pread(f.fd, READ_SIZE, f.read_offset)
                    if not data:
                        break
                    f.read_offset += len(data)
                    f.bytes_read += len(data)
                    f.size = max(f.size, f.read_offset)
                    f.last_change = time.monotonic()
                    splitter.feed(data)
            except OSError as exc:
                self._os_error(f, "read", exc)
            else:
                self._os_ok(f, "read")
            self._account(f, out)
            f.more = out.full
        return out.lines

    def _account(self, f: TailedFile, out: Lines) -> None:
        for at in f.add(out):
            log.warning("%s: long line cut: %s at offset %d is longer than %d bytes;"
                        " handing it out in pieces", self.source_id, f.path, at,
                        self.limits.max_line_bytes)

    def close(self, f: TailedFile) -> list[str]:
        """Close a file that is fully read; return its unterminated last line, if any."""
        out = Lines()
        piece = f.splitter.flush()
        if piece is not None:
            log.warning("%s: %s ended without a newline; handing out its last %d bytes",
                        self.source_id, f.path, piece.consumed)
            out.add(piece)
            self._account(f, out)
        with self.lock:
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None
        self.files.pop(f.key, None)
        log.info("%s: %s %s: closed after %d bytes, %d lines",
                 self.source_id, f.state, f.path, f.offset, f.lines)
        return out.lines

    def close_all(self) -> None:
        """Close every descriptor; the records stay (their counters are still reported)."""
        with self.lock:
            for f in self.files.values():
                if f.fd is not None:
                    os.close(f.fd)
                    f.fd = None


class _Matcher:
    """The regular files the patterns match now; a match that cannot be tailed (a
    directory, a broken link, unreadable) is logged once, and again only if its problem
    changes or it comes back after it was gone."""

    def __init__(self, patterns: list[str], source_id: str) -> None:
        self.patterns = patterns
        self.source_id = source_id
        self._reported: dict[str, str] = {}  # path -> problem already logged

    def report(self, path: str, problem: str) -> None:
        if self._reported.get(path) != problem:
            self._reported[path] = problem
            log.warning("%s: skipping %s: %s", self.source_id, path, problem)

    def ok(self, path: str) -> None:
        self._reported.pop(path, None)

    def scan(self) -> dict[str, os.stat_result]:
        """Path -> stat of each regular file matched, one name per file (hard links)."""
        found: dict[str, os.stat_result] = {}
        seen: set[str] = set()
        keys: set[Key] = set()
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    if os.path.islink(path):
                        self.report(path, "broken symbolic link")
                    continue  # else: gone since the glob
                except OSError as exc:
                    self.report(path, f"unreadable: {exc}")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    self.report(path, "is a directory")
                elif not stat.S_ISREG(st.st_mode):
                    self.report(path, "not a regular file")
                elif key_of(st) not in keys:
                    keys.add(key_of(st))
                    found[path] = st
        for path in list(self._reported):
            if path not in seen:
                del self._reported[path]  # report again if it comes back broken
        return found


def _find_renamed(pos: FilePosition, tracked: dict[Key, TailedFile]) -> str | None:
    """A file with the stored device+inode in the stored file's directory, not tracked."""
    directory = os.path.dirname(pos.path)
    try:
        with os.scandir(directory or ".") as entries:
            for entry in entries:
                if entry.inode() != pos.ino or not entry.is_file(follow_symlinks=False):
                    continue
                path = os.path.join(directory, entry.name)
                if os.stat(path).st_dev == pos.dev and (pos.dev, pos.ino) not in tracked:
                    return path
    except OSError:
        return None
    return None


def _head(fd: int, n: int) -> bytes:
    """The first ``n`` bytes of an open file (fewer if it is shorter)."""
    return os.pread(fd, n, 0) if n else b""


def _fingerprint(fd: int, size: int) -> tuple[str, int]:
    return fingerprint(_head(fd, min(size, FINGERPRINT_BYTES)))


def _stat(path: str) -> os.stat_result | None:
    """stat() that says None for 'nothing there' and raises for real errors."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _stat_quiet(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _line_start_near_end(fd: int, size: int) -> int:
    """Offset just after the last newline, so that starting at the end of a file never
    hands out the tail of a line being written; the end itself if no newline is near."""
    if size == 0:
        return 0
    n = min(size, _TAIL_PROBE)
    tail = os.pread(fd, n, size - n)
    i = tail.rfind(b"\n")
    return size if i < 0 else size - len(tail) + i + 1
