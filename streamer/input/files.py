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
so lines keep their order. A copytruncated file is read again from 0, and everything it
held that was not read yet is lost: lines written between the copy and the truncation, and
the whole unread backlog. The bytes dropped are logged and counted (``dropped_bytes``);
that is inherent to copytruncate, not something a reader can fix.

At most ``max_open_files`` files are open at once (see :mod:`streamer.input.open_files`):
idle ones are closed and reopened by identity when they change.

Lines follow :mod:`streamer.input.lines`, with one warning per long line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Any

from streamer.input.changes import closable
from streamer.input.lines import LineLimits
from streamer.input.open_files import OpenFiles
from streamer.input.positions import Batch, FilePosition
from streamer.input.tailed import TailedFile

log = logging.getLogger(__name__)

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
        max_open_files: int | None = None,
    ) -> None:
        self.limits = LineLimits(max_line_bytes, batch_lines, batch_bytes)
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = [os.path.expanduser(p) for p in patterns]
        self.queue = queue
        self.from_beginning = from_beginning
        self.scan_interval = scan_interval
        self.poll_interval = poll_interval
        self.rotate_wait = rotate_wait
        self.source_id = source_id
        self._committed: dict[int, FilePosition] = {}  # by TailedFile.uid
        self._closed_unacked: dict[int, TailedFile] = {}  # closed, last position uncommitted
        self._restored: list[FilePosition] = []  # from restore(), applied when run() starts
        self._restore_called = False  # not the first start: every unknown file is new
        self._recent_closed: deque[dict[str, Any]] = deque(maxlen=_RECENT_CLOSED)
        self._stop_requested = False
        self._open_files = OpenFiles(self.patterns, source_id, self.limits, self._committed,
                                     max_open=max_open_files,
                                     should_stop=lambda: self._stop_requested)
        #: bytes of lines consumed (committed), cumulative: it never goes down when a
        #: file is deleted or truncated. Starts at the sum of the restored offsets.
        self.bytes_committed = 0
        self._started = False
        self._wake: asyncio.Event | None = None
        self._running = False
        self._ran = False

    # ------------------------------------------------------------------ public API

    @property
    def scans(self) -> int:
        """Glob scans completed (the one at start included)."""
        return self._open_files.scans

    @property
    def started(self) -> bool:
        """Whether the first scan is done and the files it found are being read."""
        return self._started

    @property
    def max_open_files(self) -> int:
        return self._open_files.max_open

    @property
    def dropped_bytes(self) -> int:
        """Unread bytes lost to truncations (copytruncate), all files, this run."""
        return self._open_files.dropped_bytes

    @property
    def resource_errors(self) -> int:
        """Opens that failed for want of descriptors or memory (retried later)."""
        return self._open_files.resource_errors

    def problems(self) -> dict[str, str]:
        """Watched directories that cannot be listed now: path -> why."""
        return self._open_files.problems()

    def unreadable_roots(self) -> dict[str, str]:
        """The fixed directories of the patterns among ``problems()`` (for a health
        check: an unlistable subdirectory of a ``**`` pattern leaves the rest readable)."""
        return self._open_files.unreadable_roots()

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
        self.bytes_committed = sum(p.offset for p in restored)

    async def run(self) -> None:
        """Read until ``stop()``; put batches into the queue (blocking when it is full)."""
        if self._running or self._ran:
            raise RuntimeError("a FileSource runs once")
        self._running = self._ran = True
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            # from_beginning is for the very first start only: after a restore, a file
            # without a stored position appeared while the service was down.
            start = "begin" if self.from_beginning or self._restore_called else "end"
            await asyncio.to_thread(self._open_files.startup, self._restored, start)
            self._restored = []  # applied: committed positions take over
            self._started = True
            next_scan = loop.time() + self.scan_interval
            while not self._stop_requested:
                if loop.time() >= next_scan:
                    await asyncio.to_thread(self._open_files.scan)
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
            self._open_files.close_all()
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
        previous = self._committed.get(position.handle)
        if previous is not None:
            self.bytes_committed += max(0, position.consumed - previous.consumed)
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
        return [self._status_of(f) for f in list(self._open_files.files.values())] + list(
            self._recent_closed
        )

    # -------------------------------------------------------------- event loop side

    async def _poll(self) -> bool:
        """Check every file, then hand out at most one batch per file. True if a file
        has more to read right away (the caller then polls again without sleeping)."""
        now = time.monotonic()
        await asyncio.to_thread(self._open_files.check_all, now)
        busy = False
        # Detached (rotated) files first: their lines were written before the new file's.
        files = sorted(self._open_files.files.values(), key=lambda f: (f.attached, f.uid))
        for f in files:
            if self._stop_requested:
                break
            if f.fd is None:
                if not (f.parked or f.attached or not f.opened):  # gone while closed
                    lines = self._close(f)
                    if lines:
                        await self.queue.put(Batch(self.source_id, lines, f.position()))
                continue
            if f.after is not None:
                if not (f.after.drained or f.after.fd is None):
                    continue
                f.after = None
            if f.has_data():
                lines = await asyncio.to_thread(self._open_files.fill, f)
                if lines:
                    await self.queue.put(Batch(self.source_id, lines, f.position()))
                busy = busy or f.more
            if f.fd is None or f.has_data():
                continue
            f.drained = True  # read to the end: a successor at its old path may start
            if not f.attached and closable(state=f.state, idle=now - f.last_change,
                                           rotate_wait=self.rotate_wait,
                                           scanned=self._open_files.scans > f.detached_scan):
                lines = self._close(f)
                if lines:
                    await self.queue.put(Batch(self.source_id, lines, f.position()))
        return busy

    def _status_of(self, f: TailedFile) -> dict[str, Any]:
        return f.status(self.source_id, self._committed.get(f.uid))

    def _close(self, f: TailedFile) -> list[str]:
        """Close a detached file that is fully read; hand out an unterminated last line.
        Its position is kept until its last batch has been committed."""
        lines = self._open_files.close(f)
        self._recent_closed.append(self._status_of(f))
        committed = self._committed.get(f.uid)
        if committed is not None and committed.offset >= f.offset and not lines:
            del self._committed[f.uid]
        else:
            self._closed_unacked[f.uid] = f
        return lines
