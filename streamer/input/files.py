"""Tailing files matched by globs: scan, open, read, commit.

A source turns bytes into batches of lines and puts them into a bounded
``asyncio.Queue`` given by the caller (``await queue.put`` blocks while the engine is
behind, so nothing is buffered without bound). Every batch carries a position (see
:mod:`streamer.input.positions`). The daemon calls ``commit(position)`` after the engine
ingested the batch, snapshots ``committed_positions()`` together with the engine state,
and after a restart calls ``restore(positions)`` before ``run()``.

Files are polled, not watched: every ``poll_interval`` each open file is ``fstat``-ed
through its descriptor and its path is ``stat``-ed; :mod:`streamer.input.changes` says
what a change means (renamed, deleted, truncated, grown). A renamed or deleted file is
read to the end through its open descriptor before a new file at its path is read from 0,
so lines keep their order. Lines written to a copytruncated file between the copy and the
truncation are lost; that is inherent to copytruncate, not something a reader can fix.

Lines follow :mod:`streamer.input.lines`, with one warning per long line.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import stat
import threading
import time
from collections import deque
from typing import Any

from streamer.input.changes import (
    ContentChange,
    Key,
    PathChange,
    Resume,
    closable,
    content_change,
    key_of,
    path_change,
    resume,
)
from streamer.input.lines import READ_SIZE, Lines, LineSplitter, validate_limits
from streamer.input.positions import FINGERPRINT_BYTES, Batch, FilePosition, fingerprint
from streamer.input.tailed import TailedFile

log = logging.getLogger(__name__)

#: bytes read from the end of a file to start at a line boundary (from_beginning=False)
_TAIL_PROBE = 64 * 1024
#: closed files kept in status() so that "gone"/"rotated" stay visible for a while
_RECENT_CLOSED = 100


class FileSource:
    """Tails every file matched by ``patterns`` (``glob`` syntax, ``**`` recursive).

    ``from_beginning`` applies to the very first start only (``restore`` not called):
    read the files that exist when ``run()`` starts whole (True) or only what is appended
    later (False; the start is moved back to the beginning of the line being written, if
    any). Files that appear later are read from 0, and so are files without a stored
    position after a ``restore``: they appeared while the service was down.

    Call ``stop()`` (from the event loop's thread) to end ``run()``: the batch being
    built is still put into the queue, then every file is closed. Commit positions in
    the order their batches were delivered.
    """

    def __init__(
        self,
        patterns: list[str] | str,
        queue: asyncio.Queue[Batch],
        *,
        from_beginning: bool = True,
        scan_interval: float = 1.0,
        max_line_bytes: int = 1 << 20,
        batch_lines: int = 2000,
        batch_bytes: int = 1 << 20,
        poll_interval: float = 0.2,
        rotate_wait: float = 5.0,
        source_id: str = "files",
    ) -> None:
        validate_limits(max_line_bytes, batch_lines, batch_bytes)
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = [os.path.expanduser(p) for p in patterns]
        self.queue = queue
        self.from_beginning = from_beginning
        self.scan_interval = scan_interval
        self.max_line_bytes = max_line_bytes
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self.poll_interval = poll_interval
        self.rotate_wait = rotate_wait
        self.source_id = source_id
        self._files: dict[Key, TailedFile] = {}  # open files by device+inode
        self._committed: dict[int, FilePosition] = {}  # by TailedFile.uid
        self._closed_unacked: dict[int, TailedFile] = {}  # closed, last position uncommitted
        self._restored: list[FilePosition] = []  # from restore(), applied when run() starts
        self._restore_called = False  # not the first start: every unknown file is new
        self._recent_closed: deque[dict[str, Any]] = deque(maxlen=_RECENT_CLOSED)
        self._matcher = _Matcher(self.patterns, source_id)
        self._next_uid = 0
        self._scans = 0
        self._io_lock = threading.Lock()
        self._stop_requested = False
        self._wake: asyncio.Event | None = None
        self._running = False
        self._ran = False

    # ------------------------------------------------------------------ public API

    @property
    def scans(self) -> int:
        """Glob scans completed (the one at start included)."""
        return self._scans

    def restore(self, positions: list[dict[str, Any]]) -> None:
        """Resume from committed positions; call before ``run()``.

        Each file is matched by identity (device+inode+fingerprint) at its stored path,
        or else under another name in the same directory (renamed while the service
        was down: it is finished from the stored offset, then the new file at the path
        is read from 0). A stored file found nowhere is logged and dropped; a different
        file at a stored path is a new file and is read from 0.
        """
        if self._running:
            raise RuntimeError("restore() must be called before run()")
        restored = []
        for data in positions:
            try:
                restored.append(FilePosition.from_dict(data))
            except ValueError as exc:
                log.warning("%s: ignoring stored position: %s", self.source_id, exc)
        self._restored = restored
        self._restore_called = True

    async def run(self) -> None:
        """Read until ``stop()``; put batches into the queue (blocking when it is full)."""
        if self._running or self._ran:
            raise RuntimeError("a FileSource runs once")
        self._running = self._ran = True
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._startup)
            next_scan = loop.time() + self.scan_interval
            while not self._stop_requested:
                if loop.time() >= next_scan:
                    await asyncio.to_thread(self._scan)
                    next_scan = loop.time() + self.scan_interval
                busy = await self._poll()
                if self._stop_requested:
                    break
                if not busy:
                    delay = min(self.poll_interval, next_scan - loop.time())
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._close_all()
            self._running = False

    def stop(self) -> None:
        """Ask ``run()`` to return after the batch it is building (loop thread only)."""
        self._stop_requested = True
        if self._wake is not None:
            self._wake.set()

    def commit(self, position: FilePosition) -> None:
        """Record that the batch ending at ``position`` has been consumed."""
        if not isinstance(position, FilePosition):
            raise TypeError(f"not a FilePosition: {position!r}")
        self._committed[position.handle] = position
        closed = self._closed_unacked.get(position.handle)
        if closed is not None and position.offset >= closed.offset:
            del self._closed_unacked[position.handle]
            del self._committed[position.handle]

    def committed_positions(self) -> list[dict[str, Any]]:
        """Committed positions, JSON/msgpack-able, for snapshots (see ``restore``)."""
        restored = self._restored
        if restored:  # run() has not applied them yet: they are still the whole state
            return [p.to_dict() for p in restored]
        # list() first: the I/O thread may add entries meanwhile (list() is atomic).
        return [p.to_dict() for p in list(self._committed.values())]

    def status(self) -> list[dict[str, Any]]:
        """Per-file counters and state, open files first, then recently closed ones."""
        return [self._status_of(f) for f in list(self._files.values())] + list(
            self._recent_closed
        )

    # -------------------------------------------------------------- event loop side

    async def _poll(self) -> bool:
        """Check every file, then hand out at most one batch per file. True if a file
        has more to read right away (the caller then polls again without sleeping)."""
        now = time.monotonic()
        await asyncio.to_thread(self._check_all, now)
        busy = False
        # Detached (rotated) files first: their lines were written before the new file's.
        files = sorted(self._files.values(), key=lambda f: (f.attached, f.uid))
        for f in files:
            if self._stop_requested:
                break
            if f.fd is None:
                continue
            if f.after is not None:
                if not (f.after.drained or f.after.fd is None):
                    continue
                f.after = None
            if f.has_data():
                lines = await asyncio.to_thread(self._fill, f)
                if lines:
                    await self.queue.put(Batch(self.source_id, lines, f.position()))
                busy = busy or f.more
            if f.fd is None or f.has_data():
                continue
            f.drained = True  # read to the end: a successor at its old path may start
            if not f.attached and closable(state=f.state, idle=now - f.last_change,
                                           rotate_wait=self.rotate_wait,
                                           scanned=self._scans > f.detached_scan):
                lines = self._close(f)
                if lines:
                    await self.queue.put(Batch(self.source_id, lines, f.position()))
        return busy

    def _status_of(self, f: TailedFile) -> dict[str, Any]:
        return f.status(self.source_id, self._committed.get(f.uid))

    def _close(self, f: TailedFile) -> list[str]:
        """Close a detached file that is fully read; hand out an unterminated last line."""
        out = Lines()
        piece = f.splitter.flush()
        if piece is not None:
            log.warning("%s: %s ended without a newline; handing out its last %d bytes",
                        self.source_id, f.path, piece.consumed)
            out.add(piece)
            self._account(f, out)
        with self._io_lock:
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None
        self._files.pop(f.key, None)
        log.info("%s: %s %s: closed after %d bytes, %d lines",
                 self.source_id, f.state, f.path, f.offset, f.lines)
        self._recent_closed.append(self._status_of(f))
        committed = self._committed.get(f.uid)
        if committed is not None and committed.offset >= f.offset and not out.lines:
            del self._committed[f.uid]
        else:
            self._closed_unacked[f.uid] = f
        return out.lines

    def _close_all(self) -> None:
        """Close every descriptor; counters stay visible in status()."""
        with self._io_lock:
            for f in self._files.values():
                if f.fd is not None:
                    os.close(f.fd)
                    f.fd = None

    # -------------------------------------------------------- I/O thread side (sync)

    def _open(self, path: str, start: str = "begin", *, restore: FilePosition | None = None,
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
            if key_of(st) in self._files:  # raced with a rename: tracked
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
                       read_offset=offset, splitter=LineSplitter(self.max_line_bytes),
                       size=st.st_size, mtime_ns=st.st_mtime_ns,
                       last_change=time.monotonic(), attached=attached)
        if not attached:
            f.state = "rotated"
            f.detached_scan = self._scans
        self._files[f.key] = f
        self._committed[f.uid] = f.position()
        log.info("%s: opened %s at offset %d of %d (dev %d, inode %d)",
                 self.source_id, path, offset, st.st_size, f.dev, f.ino)
        return f

    def _startup(self) -> None:
        """First scan: apply restored positions, then open the other matched files."""
        with self._io_lock:
            matched = self._matcher.scan()
            at_path: list[TailedFile] = []
            unresolved: list[FilePosition] = []
            for pos in self._restored:
                if (pos.dev, pos.ino) in self._files:
                    continue  # duplicate entry
                st = _stat_quiet(pos.path)
                if st is None or key_of(st) != (pos.dev, pos.ino):
                    unresolved.append(pos)
                    continue
                f = self._open(pos.path, restore=pos, attached=pos.path in matched)
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
                found = _find_renamed(pos, self._files)
                f = None
                if found is not None:
                    f = self._open(found, restore=pos, attached=found in matched)
                if f is None:
                    log.warning("%s: gone: %s (dev %d, inode %d) no longer exists;"
                                " dropping its position", self.source_id, pos.path, pos.dev,
                                pos.ino)
                    continue
                log.info("%s: rotated while stopped: %s -> %s; finishing it from offset %d",
                         self.source_id, pos.path, found, f.offset)
                if not f.attached:
                    f.path = pos.path  # the name it was followed under, as when running
                    f.detached_scan = self._scans + 1  # closable after the next scan
                predecessors[pos.path] = f
            for f in at_path:
                f.after = predecessors.get(f.path)
            # from_beginning is for the very first start only: after a restore, a file
            # without a stored position appeared while the service was down.
            start = "begin" if self.from_beginning or self._restore_called else "end"
            for path, st in matched.items():
                if key_of(st) not in self._files:
                    f = self._open(path, start)
                    if f is not None:
                        f.after = predecessors.get(path)
            self._scans += 1
            self._restored = []  # applied: committed positions take over

    def _predecessor(self, path: str, new: TailedFile) -> TailedFile | None:
        """The detached, not yet drained file last followed at ``path``."""
        for f in self._files.values():
            if f is not new and not f.attached and f.path == path and not f.drained:
                return f
        return None

    def _scan(self) -> None:
        """Pick up new files; notice watched files that moved to another watched name."""
        with self._io_lock:
            by_key = {key_of(st): path for path, st in self._matcher.scan().items()}
            moved_from: dict[str, TailedFile] = {}
            # Known files under new watched names (a.log -> a.log.1 with a glob a.log*):
            # still the same files, never read again.
            for key, path in by_key.items():
                f = self._files.get(key)
                if f is not None and (not f.attached or f.path != path):
                    log.info("%s: %s is now %s (still watched)", self.source_id, f.path, path)
                    if f.attached:  # renamed since the last poll: a rotation
                        moved_from[f.path] = f
                        f.drained = False
                    f.path, f.attached = path, True
                    if f.state == "rotated":
                        f.state = "open"
            for key, path in by_key.items():
                if key in self._files:
                    continue
                for old in list(self._files.values()):
                    if old.attached and old.path == path:
                        self._detach(old)  # rotated since the last poll
                new = self._open(path)
                if new is not None:
                    new.after = moved_from.get(path) or self._predecessor(path, new)
            self._scans += 1

    def _detach(self, f: TailedFile) -> None:
        """The path no longer names ``f``: finish it through the open descriptor."""
        assert f.fd is not None
        f.detach(self._scans, os.fstat(f.fd).st_nlink)
        if f.state == "gone":
            log.info("%s: %s was deleted; reading what is left", self.source_id, f.path)
        else:
            log.info("%s: rotated: %s moved away; finishing the old file (inode %d)",
                     self.source_id, f.path, f.ino)

    def _check_all(self, now: float) -> None:
        with self._io_lock:
            for f in list(self._files.values()):
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
            change = path_change(f.key, _stat(f.path), self._files)
            if change is not PathChange.SAME:
                self._detach(f)
            if change is PathChange.REPLACED:
                new = self._open(f.path)
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

    def _fill(self, f: TailedFile) -> list[str]:
        """Read and split up to one batch of lines from ``f``."""
        out = Lines()
        with self._io_lock:
            if f.fd is None:
                return out.lines
            splitter = f.splitter
            try:
                while True:
                    splitter.take_into(out, self.batch_lines, self.batch_bytes)
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
        for at in f.account(out):
            log.warning("%s: long line cut: %s at offset %d is longer than %d bytes;"
                        " handing it out in pieces", self.source_id, f.path, at,
                        self.max_line_bytes)


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
