"""The files a FileSource follows, and the I/O on them: glob scans, opening (at a start or a
stored position), change checks and reads. Runs in worker threads, off the event loop.

What a change means is decided in :mod:`streamer.input.changes`; this module stats, opens,
reads and logs accordingly.

Descriptors are bounded: at most ``max_open`` files are open at once (by default the
process's RLIMIT_NOFILE minus a reserve for snapshots, exports and HTTP, see
:func:`default_max_open`). A file matched while the bound is reached is tracked without a
descriptor until one is free; when one is needed, files read to their end and idle longest
are closed ("parked") and reopened by identity (device+inode, then the fingerprint check
of a stat showing a change) when their size or modification time changes.

Scans do not use :func:`glob.glob`: it follows directory symlinks without memory, so a
link to ``.`` under a ``**`` pattern never ends. :func:`match_pattern` walks breadth-first,
enters each directory (device+inode) once, stops after ``SCAN_ENTRIES`` entries or when
asked to, and so finds each file under its shortest name.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import logging
import os
import resource
import stat
import threading
import time
from collections import deque
from collections.abc import Callable

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
#: descriptors left to the rest of the process by default_max_open (snapshots, exports,
#: HTTP clients, the interpreter's own): at least this many, or a quarter of the limit
FD_RESERVE = 64
#: directory entries one scan of one pattern looks at, at most (a bound on the time and
#: memory of a scan of a huge or hostile tree; the rest is logged and left out)
SCAN_ENTRIES = 1_000_000
#: resource errors (not the file's fault) are logged at most once per this many seconds
RESOURCE_LOG_SECONDS = 60.0
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_EMPTY_FINGERPRINT = fingerprint(b"")


def default_max_open() -> int:
    """Files a source may hold open: ``soft RLIMIT_NOFILE - descriptors open now -
    max(FD_RESERVE, limit / 4)``, at least 8."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    return max(8, soft - in_use - max(FD_RESERVE, soft // 4))


class OpenFiles:
    """The open files of one FileSource by device+inode, and what is done to them.

    ``startup``, ``scan``, ``check_all`` and ``fill`` run in a worker thread and hold
    ``lock`` while they do; ``close`` and ``close_all`` run on the event loop and take it
    around the descriptor. The loop reads ``files`` between those calls.
    ``committed`` is the source's: a file opened here is entered at its start position,
    so that a snapshot taken before its first batch still knows where it starts.
    """

    def __init__(self, patterns: list[str], source_id: str, limits: LineLimits,
                 committed: dict[int, FilePosition], *, max_open: int | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.source_id = source_id
        self.limits = limits
        self.files: dict[Key, TailedFile] = {}
        self.scans = 0  # glob scans completed (the one at start included)
        self.lock = threading.Lock()
        self.max_open = max_open if max_open is not None else default_max_open()
        if self.max_open < 1:
            raise ValueError(f"max_open must be at least 1, not {self.max_open}")
        self.open_count = 0  # descriptors of self.files that are open
        self.dropped_bytes = 0  # unread backlog lost to truncations, all files
        self.resource_errors = 0  # opens that failed for want of descriptors or memory
        self._resource_logged = -RESOURCE_LOG_SECONDS
        self._resource_unlogged = 0
        self._no_idle = False  # _room found no idle file in the current pass
        self._committed = committed
        self._matcher = _Matcher(patterns, source_id, should_stop)
        self._next_uid = 0

    def problems(self) -> dict[str, str]:
        """Watched directories that cannot be listed: path -> why (as logged)."""
        return dict(self._matcher.dir_problems)

    def unreadable_roots(self) -> dict[str, str]:
        """The problems of the fixed directories of the patterns (``inbox`` of
        ``inbox/**/*.txt``): nothing of such a pattern can be read."""
        roots = {split_pattern(p)[0] or "." for p in self._matcher.patterns}
        return {k: v for k, v in self._matcher.dir_problems.items() if k in roots}

    def _resource_error(self, what: str, exc: OSError) -> None:
        """Out of descriptors or memory: not the file's fault, so not reported against
        it; counted, and logged once per RESOURCE_LOG_SECONDS with the count."""
        self.resource_errors += 1
        self._resource_unlogged += 1
        now = time.monotonic()
        if now - self._resource_logged >= RESOURCE_LOG_SECONDS:
            log.warning("%s: cannot %s: %s (%d time(s) since the last such message);"
                        " retrying", self.source_id, what, exc.strerror or exc,
                        self._resource_unlogged)
            self._resource_logged = now
            self._resource_unlogged = 0

    def _room(self) -> bool:
        """Whether one more file may be opened; parks idle files to make room."""
        if self.open_count < self.max_open:
            return True
        if self._no_idle:  # none was idle earlier in this pass
            return False
        # idle: attached (reopenable by path), read to the end, nothing new seen since
        idle = [f for f in self.files.values()
                if f.fd is not None and f.attached and f.drained and not f.has_data()]
        idle.sort(key=lambda f: f.last_change)
        # park several at once: one pass over the files per max_open/8 openings
        for f in idle[:max(1, self.max_open // 8)]:
            self._park(f)
        self._no_idle = not idle
        return self.open_count < self.max_open

    def _park(self, f: TailedFile) -> None:
        assert f.fd is not None
        os.close(f.fd)
        f.fd = None
        f.parked = True
        self.open_count -= 1

    def _track(self, path: str, st: os.stat_result, start: str,
               restore: FilePosition | None) -> TailedFile:
        """Track a matched file without a descriptor (the bound is reached): it is opened
        by :meth:`_reopen` once one is free; until then nothing is read from it."""
        self._next_uid += 1
        if restore is not None:
            digest, fp_bytes, offset = restore.fingerprint, restore.fingerprint_bytes, \
                restore.offset
        else:
            (digest, fp_bytes), offset = _EMPTY_FINGERPRINT, 0
        f = TailedFile(uid=self._next_uid, path=path, fd=None, dev=st.st_dev, ino=st.st_ino,
                       fingerprint=digest, fingerprint_bytes=fp_bytes, offset=offset,
                       read_offset=offset, splitter=LineSplitter(self.limits.max_line_bytes),
                       size=-1, mtime_ns=-1, last_change=time.monotonic(),
                       parked=restore is not None, opened=restore is not None, start=start)
        f.state = "waiting"
        self.files[f.key] = f
        self._committed[f.uid] = f.position()
        return f

    def open(self, path: str, start: str = "begin", *, restore: FilePosition | None = None,
              attached: bool = True) -> TailedFile | None:
        """Open a file and start tracking it at ``start`` ("begin" or "end"), or with
        ``restore`` at the stored offset if it is the stored file (else None).

        With ``max_open`` files open and none idle, an attached file is tracked without a
        descriptor (:meth:`_track`), its identity checked when it is opened."""
        if attached and not self._room():
            st = _stat_quiet(path)
            if st is None or not stat.S_ISREG(st.st_mode) or key_of(st) in self.files:
                return None
            return self._track(path, st, start, restore)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self._resource_error("open files", exc)
            else:
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
        self.open_count += 1
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
            self._no_idle = False
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
                    if old.attached and old.path == path and old.fd is not None:
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
            self._no_idle = False
            for f in list(self.files.values()):
                try:
                    if f.fd is None:
                        if f.opened and not f.parked:
                            continue  # gone while closed: the source closes it
                        if not self._reopen(f):
                            continue
                    self._check(f, now)
                except OSError as exc:
                    self._os_error(f, "check", exc)
                else:
                    self._os_ok(f, "check")

    def _reopen(self, f: TailedFile) -> bool:
        """Open a parked or waiting file again if it changed (or was never opened) and a
        descriptor is free. Its identity: the device+inode its path names now; the
        caller's check then compares the fingerprint (another content: read from 0)."""
        st = _stat_quiet(f.path)
        if st is None or key_of(st) != f.key:
            self._moved_while_closed(f)
            return False
        if f.opened and (st.st_size, st.st_mtime_ns) == (f.size, f.mtime_ns):
            return False  # unchanged: stays parked
        if not self._room():
            return False
        try:
            fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self._resource_error("open files", exc)
                return False
            raise
        fst = os.fstat(fd)
        if key_of(fst) != f.key:  # replaced since the stat: seen again at the next poll
            os.close(fd)
            return False
        f.fd, f.parked = fd, False
        self.open_count += 1
        if not f.opened:
            f.opened = True
            f.state = "open"
            offset = 0 if f.start == "begin" else _line_start_near_end(fd, fst.st_size)
            f.offset = f.read_offset = offset
            f.fingerprint, f.fingerprint_bytes = _fingerprint(fd, fst.st_size)
            f.size, f.mtime_ns = fst.st_size, fst.st_mtime_ns
            self._committed[f.uid] = f.position()
            log.info("%s: opened %s at offset %d of %d (dev %d, inode %d)",
                     self.source_id, f.path, offset, fst.st_size, f.dev, f.ino)
        elif f.state == "waiting":
            f.state = "open"
        return True

    def _moved_while_closed(self, f: TailedFile) -> None:
        """The path of a file without a descriptor names another file or nothing."""
        if not f.opened:  # nothing read yet: forget it (a scan finds it if still watched)
            self.files.pop(f.key, None)
            self._committed.pop(f.uid, None)
            return
        found = _find_in_dir(os.path.dirname(f.path), f.dev, f.ino)
        if found is not None and self._room():
            with contextlib.suppress(OSError):
                fd = os.open(found, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
                f.fd, f.parked = fd, False
                self.open_count += 1
                self._detach(f)
                return
        if found is not None:
            return  # no descriptor free: try again at the next poll
        log.warning("%s: %s was deleted or moved away while closed to stay within"
                    " max_open_files; lines appended to it after offset %d are lost",
                    self.source_id, f.path, f.read_offset)
        f.parked, f.attached, f.drained = False, False, True
        f.state = "gone"

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
        dropped = f.restart(_fingerprint(f.fd, os.fstat(f.fd).st_size))
        self.dropped_bytes += dropped
        log.warning("%s: truncated: %s (%s); reading again from 0: %d bytes of unread"
                    " backlog dropped (copytruncate loses everything not yet read)",
                    self.source_id, f.path, why, dropped)

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
                self.open_count -= 1
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
            self.open_count = 0


class _Matcher:
    """The regular files the patterns match now; a match that cannot be tailed (a
    directory, a broken link, unreadable) is logged once, and again only if its problem
    changes or it comes back after it was gone. So is a watched directory that cannot
    be listed; those are also kept in ``dir_problems`` while they last."""

    def __init__(self, patterns: list[str], source_id: str,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.patterns = patterns
        self.source_id = source_id
        self.should_stop = should_stop
        self.dir_problems: dict[str, str] = {}
        self._reported: dict[str, str] = {}  # path -> problem already logged

    def report(self, path: str, problem: str) -> None:
        if self._reported.get(path) != problem:
            self._reported[path] = problem
            log.warning("%s: skipping %s: %s", self.source_id, path, problem)

    def ok(self, path: str) -> None:
        self._reported.pop(path, None)

    def scan(self) -> dict[str, os.stat_result]:
        """Path -> stat of each regular file matched, one name per file (hard links,
        directory symlinks): the first found, i.e. the shortest."""
        found: dict[str, os.stat_result] = {}
        seen: set[str] = set()
        keys: set[Key] = set()
        dir_problems: dict[str, str] = {}
        for pattern in self.patterns:
            for path in match_pattern(pattern, dir_problems, self.should_stop):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    if os.path.islink(path):
                        self.report(path, "broken symbolic link")
                    continue  # else: gone since the listing
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
        for path, problem in dir_problems.items():
            if self._reported.get(path) != problem:
                self._reported[path] = problem
                log.error("%s: cannot scan %s: %s; its files are not read until it can be"
                          " listed", self.source_id, path, problem)
            seen.add(path)
        for path in set(self.dir_problems) - set(dir_problems):
            log.info("%s: %s can be listed again", self.source_id, path)
        self.dir_problems = dir_problems
        for path in list(self._reported):
            if path not in seen:
                del self._reported[path]  # report again if it comes back broken
        return found


def split_pattern(pattern: str) -> tuple[str, list[str]]:
    """(the fixed directory of a glob pattern, its remaining components):
    ``inbox/**/*.txt`` -> (``inbox``, [``**``, ``*.txt``]); the directory is "" for a
    pattern relative to the working directory without a fixed part."""
    parts = pattern.split(os.sep)
    i = 0
    while i < len(parts) - 1 and not glob.has_magic(parts[i]):
        i += 1
    root = os.sep.join(parts[:i])
    if not root and pattern.startswith(os.sep):
        root = os.sep
    return root, [p for p in parts[i:] if p]


def _closure(comps: list[str], states: set[int]) -> frozenset[int]:
    """``**`` matches zero directories too: a state before it is also one after it."""
    out = set(states)
    for i in states:
        while i < len(comps) and comps[i] == "**":
            i += 1
            out.add(i)
    return frozenset(out)


def _step(comps: list[str], states: frozenset[int], name: str) -> frozenset[int]:
    """The pattern states after one more path component ``name`` (glob's rules: names
    starting with "." are matched only by components that start with "." too)."""
    hidden = name.startswith(".")
    out: set[int] = set()
    for i in states:
        if i == len(comps):
            continue
        c = comps[i]
        if c == "**":
            if not hidden:
                out.add(i)
        elif (not hidden or c.startswith(".")) and fnmatch.fnmatchcase(name, c):
            out.add(i + 1)
    return _closure(comps, out)


def match_pattern(pattern: str, problems: dict[str, str],
                  should_stop: Callable[[], bool] = lambda: False,
                  max_entries: int = SCAN_ENTRIES) -> list[str]:
    """The paths matching a glob pattern (``**``: any number of directories), like
    ``glob.glob(pattern, recursive=True)`` but breadth-first, entering each directory
    (device+inode) once however many symlinks lead to it, and bounded: at most
    ``max_entries`` directory entries, and none after ``should_stop()`` says so.
    Directories that cannot be listed go into ``problems`` (path -> why)."""
    root, comps = split_pattern(pattern)
    n = len(comps)
    matches: list[str] = []
    try:
        st = os.stat(root or ".")
    except FileNotFoundError:
        return matches
    except OSError as exc:
        problems[root or "."] = exc.strerror or str(exc)
        return matches
    if not stat.S_ISDIR(st.st_mode):
        problems[root] = "not a directory"
        return matches
    visited = {key_of(st)}
    todo: deque[tuple[str, frozenset[int]]] = deque([(root, _closure(comps, {0}))])
    entries = 0
    while todo and not should_stop():
        directory, states = todo.popleft()
        try:
            with os.scandir(directory or ".") as it:
                listing = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems[directory or "."] = exc.strerror or str(exc)
            continue
        for entry in listing:
            entries += 1
            if entries > max_entries:
                problems[root or "."] = (f"more than {max_entries} entries under it; the"
                                         " scan stopped there")
                return matches
            after = _step(comps, states, entry.name)
            if not after:
                continue
            path = os.path.join(directory, entry.name) if directory else entry.name
            if n in after:
                matches.append(path)
            if min(after) < n:
                try:
                    if not entry.is_dir():  # follows symlinks, like glob
                        continue
                    key = key_of(os.stat(path))
                except OSError:
                    continue
                if key not in visited:
                    visited.add(key)
                    todo.append((path, after))
    return matches


def _find_in_dir(directory: str, dev: int, ino: int) -> str | None:
    """A name of the file ``dev``/``ino`` in ``directory``, if it has one there."""
    try:
        with os.scandir(directory or ".") as entries:
            for entry in entries:
                if entry.inode() != ino or not entry.is_file(follow_symlinks=False):
                    continue
                path = os.path.join(directory, entry.name)
                if os.stat(path).st_dev == dev:
                    return path
    except OSError:
        return None
    return None


def _find_renamed(pos: FilePosition, tracked: dict[Key, TailedFile]) -> str | None:
    """A file with the stored device+inode in the stored file's directory, not tracked."""
    if (pos.dev, pos.ino) in tracked:
        return None
    return _find_in_dir(os.path.dirname(pos.path), pos.dev, pos.ino)


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
