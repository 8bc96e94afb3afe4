"""Snapshot directory: naming, keep-K retention, leftovers, set-aside and fallback loading.

The daemon hands :func:`write_snapshot` a dict (the engine's ``state_dict()`` plus source
positions) between two batches, so the counts and the offsets stored together agree.
Restoring the newest good snapshot (:func:`load_latest`) and resuming every source at its
stored offset gives exactly-once counting across restarts, crashes and ``kill -9``. The
bytes of one file are :mod:`streamer.storage.snapshot_format`'s business; this module
decides which files a directory holds. It logs as "streamer.storage.snapshot", the name
operators filter on.

Files in a snapshot directory::

    snapshot-20260509T073525.123456Z-000042.snap   a snapshot (UTC time of writing, seq)
    .tmp-snapshot-...-000042.snap.<pid>            being written by <pid>, or left by a
                                                   killed writer (ignored by the loader,
                                                   removed by the next write)
    snapshot-...-000041.snap.bad-<reason>          set aside by the loader, never deleted

Names sort in creation order even if the clock steps back: a new name is never older than
the newest existing one, and seq grows by one per write.

A full disk: when a write fails for lack of space (ENOSPC, EDQUOT), the partial
temporary file is removed, every older good snapshot except the newest one is deleted to
make room (logged with the reason) and the write is tried once more. The newest good
snapshot is never deleted for room, nor is a set-aside file, so a restart still has a
state to resume from. A read-only or forbidden directory (EROFS, EACCES, EPERM) deletes
nothing, and so does EFBIG: a file-size limit (RLIMIT_FSIZE, the file system's largest
file) applies to each file, so deleting others cannot help. Either way
:class:`SnapshotWriteError` says which it was (``kind``), and
:func:`intervals_without_snapshot` turns the time of the last success into the
"no snapshot for N intervals" a health check reports.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.storage.atomic import fsync_dir, remove_leftover_temps
from streamer.storage.snapshot_format import (
    UNUSABLE,
    LoadResult,
    check_size,
    format_created,
    load_file,
    read_header,
    write_file,
)

__all__ = [
    "BAD_RE",
    "TEMP_RE",
    "SnapshotWriteError",
    "error_kind",
    "intervals_without_snapshot",
    "list_snapshots",
    "load_latest",
    "newest_header",
    "newest_signature",
    "read_newest",
    "write_snapshot",
]

log = logging.getLogger("streamer.storage.snapshot")

_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{8}T\d{6}\.\d{6}Z)-(\d+)\.snap$")
#: Temporary files (snapshot_format.temp_name): the final name and the writer's pid.
TEMP_RE = re.compile(r"^\.tmp-(snapshot-\d{8}T\d{6}\.\d{6}Z-\d+\.snap)\.(?P<pid>\d+)$")
#: Files set aside by the loader: the original name, the reason slug and a counter.
BAD_RE = re.compile(r"^(snapshot-\d{8}T\d{6}\.\d{6}Z-\d+\.snap)\.bad-([a-z-]+?)(?:-(\d+))?$")
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"

#: errnos of a write that ran out of room: disk full, quota. Deleting older snapshots helps.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errnos of a directory that cannot be written at all: retrying or deleting cannot help.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


# --------------------------------------------------------------------------- errors


class SnapshotWriteError(OSError):
    """A snapshot could not be written; no existing good snapshot was lost.

    ``kind`` is "no-space" (ENOSPC or EDQUOT even after pruning older snapshots),
    "file-too-large" (EFBIG: a per-file size limit, nothing was deleted), "read-only"
    (EROFS, EACCES or EPERM: nothing was deleted) or "io" (any other OSError);
    ``errno`` is the underlying error's, ``directory`` the snapshot directory and
    ``pruned`` the older snapshots deleted to make room before giving up.
    """

    def __init__(self, directory: Path, kind: str, cause: OSError, pruned: list[Path]):
        what = {
            "no-space": "no space left for a new snapshot"
            + (f" even after deleting {len(pruned)} older snapshot(s)" if pruned else "")
            + "; the newest snapshot is kept",
            "file-too-large": "the snapshot exceeds the file size limit (RLIMIT_FSIZE or "
                              "the file system's largest file); no snapshot was deleted",
            "read-only": "the state directory cannot be written (read-only or permission "
                         "denied); no snapshot was deleted",
            "io": "the write failed",
        }[kind]
        self.message = f"cannot write a snapshot in {directory}: {what} ({cause.strerror or cause})"
        super().__init__(cause.errno, self.message)
        self.kind = kind
        self.directory = directory
        self.pruned = pruned

    def __str__(self) -> str:
        return self.message


def error_kind(exc: BaseException) -> str:
    """Kind of a failed write: "no-space", "file-too-large", "read-only", "io" (other
    OSError) or "invalid" (a state that cannot be stored: TypeError, ValueError)."""
    if isinstance(exc, SnapshotWriteError):
        return exc.kind
    if isinstance(exc, OSError):
        if exc.errno in NO_SPACE_ERRNOS:
            return "no-space"
        if exc.errno == errno.EFBIG:
            return "file-too-large"
        if exc.errno in READ_ONLY_ERRNOS:
            return "read-only"
        return "io"
    if isinstance(exc, TypeError | ValueError):
        return "invalid"
    return "error"


def intervals_without_snapshot(last_success: float | None, started: float, now: float,
                               interval: float) -> int:
    """Whole snapshot intervals since the last successful snapshot (or since ``started``
    when there was none): ``floor((now - max(last_success, started)) / interval)``, all
    in seconds, never negative."""
    since = started if last_success is None else max(last_success, started)
    return max(0, math.floor((now - since) / interval)) if interval > 0 else 0


# --------------------------------------------------------------------------- names


def _sort_key(path: Path) -> tuple[str, int]:
    m = _SNAPSHOT_RE.match(path.name)
    assert m is not None
    return m.group(1), int(m.group(2))


def list_snapshots(directory: str | os.PathLike[str]) -> list[Path]:
    """Snapshot files in ``directory``, oldest first (the last one is the newest).

    Only final names count: temporary and set-aside files are not listed. A missing
    directory has no snapshots.
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    paths = [directory / n for n in names if _SNAPSHOT_RE.match(n)]
    return sorted(paths, key=_sort_key)


def _next_name(directory: Path, now: float) -> str:
    """Name for a new snapshot that sorts after every existing one.

    The timestamp is the UTC time of writing, unless the clock stepped back below the
    newest existing name, which then lends its timestamp; seq is one more than the largest
    existing seq, so names never collide and never sort before older ones.
    """
    stamp = datetime.fromtimestamp(now, UTC).strftime(_STAMP_FORMAT)
    existing = [_sort_key(p) for p in list_snapshots(directory)]
    if not existing:
        return f"snapshot-{stamp}-{1:06d}.snap"
    newest_stamp = max(existing)[0]
    seq = max(s for _, s in existing) + 1
    return f"snapshot-{max(stamp, newest_stamp)}-{seq:06d}.snap"


def write_snapshot(
    directory: str | os.PathLike[str],
    state: dict[str, Any],
    *,
    fingerprint: str,
    metadata: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``state`` as a new snapshot in ``directory`` atomically; return its path.

    Leftover temporary files of dead writers are removed first. The file is written by
    :func:`~streamer.storage.snapshot_format.write_file` (temporary name, fsync, rename,
    fsync of the directory): after a crash or ``kill -9`` at any moment the directory
    holds either the old set of snapshots or the old set plus the complete new one.
    Afterwards the newest ``keep`` snapshots are kept and older ones deleted; a file
    whose header or size is wrong does not count as one of the ``keep`` (it is set aside
    like the loader does, never deleted). Payload checksums of older snapshots are not
    re-read here (that would read every file on every write).

    ``state`` must not be mutated while this runs (take it between batches; memory and
    cost as for ``write_file``). One writer per directory: two processes (or threads)
    writing snapshots into the same directory are not supported.

    ``fingerprint`` identifies the engine configuration that shapes the state;
    ``metadata`` is any small msgpack-able dict (source positions, counters) stored in the
    header, readable without loading the state. Raises TypeError for values that cannot be
    stored and ValueError for ``keep`` < 1; on any error the temporary file is removed and
    existing snapshots are untouched - except on a full disk, where older snapshots are
    deleted to make room (module docstring). OSErrors are raised as
    :class:`SnapshotWriteError` with their ``kind``.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = Path(directory)
    pruned: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # one writer per directory: a temporary file carrying our own pid is not a write
        # in progress but a leftover of an earlier process that had the same pid
        remove_leftover_temps(directory, TEMP_RE, own_pid_is_stale=True)
        try:
            final = write_file(directory / _next_name(directory, time.time()), state,
                               fingerprint=fingerprint, metadata=metadata)
        except OSError as e:
            if e.errno not in NO_SPACE_ERRNOS:
                raise
            # write_file removed its temporary file; retention only runs after a success,
            # so without this a disk filled by keep-K snapshots would never take another
            pruned = _make_room(directory, e)
            if not pruned:
                raise
            final = write_file(directory / _next_name(directory, time.time()), state,
                               fingerprint=fingerprint, metadata=metadata)
    except OSError as e:
        raise SnapshotWriteError(directory, error_kind(e), e, pruned) from e
    log.debug("wrote snapshot %s", final)
    try:
        _apply_retention(directory, keep, final)
    except OSError as e:  # the new snapshot is safe; old ones merely linger
        log.warning("could not prune old snapshots in %s: %s", directory, e)
    return final


def _make_room(directory: Path, cause: OSError) -> list[Path]:
    """Delete every good snapshot but the newest one; return what was deleted.

    The newest snapshot with a sound header and size is kept whatever happens: it is
    what a restart resumes from. Bad files are set aside (as retention does), not deleted.
    """
    kept: Path | None = None
    removed: list[Path] = []
    for path in reversed(list_snapshots(directory)):
        if kept is None:
            if _looks_usable(path):
                kept = path
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.error("could not delete old snapshot %s to make room: %s", path, e)
            continue
        removed.append(path)
        log.warning("deleted older snapshot %s (%d bytes) to make room: writing a new "
                    "snapshot failed (%s); keeping the newest, %s",
                    path, size, cause.strerror or cause, kept.name)
    if removed:
        with suppress(OSError):
            fsync_dir(directory)
    else:
        log.error("no room for a new snapshot in %s (%s) and no older snapshot to delete "
                  "(the newest is kept)", directory, cause.strerror or cause)
    return removed


def _looks_usable(path: Path) -> bool:
    """True when the snapshot's header reads and its size agrees with it (O(1), not its
    checksum); an unusable one is set aside, a vanished one is just not usable."""
    try:
        with open(path, "rb", buffering=0) as f:
            header, payload_start = read_header(f, path)
            check_size(path, header, payload_start, os.fstat(f.fileno()).st_size)
    except FileNotFoundError:
        return False
    except UNUSABLE as e:
        log.warning("snapshot %s is unusable (%s); setting it aside", path, e.message)
        _set_aside(path, e.reason)
        return False
    return True


def _apply_retention(directory: Path, keep: int, newest: Path) -> None:
    """Delete all but the newest ``keep`` good snapshots; set aside bad ones on the way
    (their header and size are checked, not their checksum: O(files), not O(bytes))."""
    good = 0
    for path in reversed(list_snapshots(directory)):
        if good >= keep:
            with suppress(FileNotFoundError):
                path.unlink()
                log.debug("removed old snapshot %s", path)
            continue
        if path != newest and not _looks_usable(path):
            continue
        good += 1


def _set_aside(path: Path, reason: str) -> Path | None:
    """Rename a bad snapshot to ``<name>.bad-<reason>[-N]`` without overwriting anything."""
    target = path.with_name(f"{path.name}.bad-{reason}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{reason}-{n}")
        n += 1
    try:
        os.rename(path, target)
        fsync_dir(path.parent)
    except OSError as e:
        log.error("could not set aside bad snapshot %s: %s", path, e)
        return None
    return target


def load_latest(
    directory: str | os.PathLike[str], *, fingerprint: str | None = None
) -> LoadResult | None:
    """Load the newest usable snapshot in ``directory``, or None to start empty.

    Snapshots are tried newest first. An empty, foreign, truncated, damaged or too-new
    file is logged (logger "streamer.storage.snapshot"), renamed to ``<name>.bad-<reason>`` and
    the previous one is tried. Temporary files of interrupted writes are ignored.

    When ``fingerprint`` is given, the first snapshot with a readable header whose
    fingerprint differs raises FingerprintMismatch and stays where it is: it is not
    damaged, the configuration changed. OSErrors other than a file vanishing propagate
    (a permission problem or a failing disk is not a reason to discard state).
    """
    directory = Path(directory)
    snapshots = list_snapshots(directory)
    if not snapshots:
        log.info("no snapshot in %s; starting empty", directory)
        return None
    set_aside = 0
    for path in reversed(snapshots):
        try:
            result = load_file(path, fingerprint=fingerprint)
        except FileNotFoundError:
            log.warning("snapshot %s vanished while loading; trying the previous one", path)
            continue
        except UNUSABLE as e:
            target = _set_aside(path, e.reason)
            set_aside += 1
            log.warning(
                "snapshot %s is unusable (%s); renamed to %s; falling back to the previous "
                "snapshot",
                path, e.message, target.name if target else "(rename failed)",
            )
            continue
        log.info("loaded snapshot %s (created %s)", path, format_created(result.header["created"]))
        return result
    log.error(
        "no usable snapshot in %s (%d set aside as bad); starting empty", directory, set_aside
    )
    return None


# --------------------------------------------------------------------------- reading others'


def newest_signature(directory: str | os.PathLike[str]) -> tuple[str, int, int] | None:
    """(name, mtime in ns, size) of the newest snapshot in ``directory``, None when it holds
    none: a cheap check (one listing, one stat) of whether a directory changed.

    Raises OSError when the directory cannot be listed (a missing one has no snapshots)."""
    for path in reversed(list_snapshots(directory)):
        try:
            st = path.stat()
        except FileNotFoundError:  # pruned by its writer between listing and stat
            continue
        return path.name, st.st_mtime_ns, st.st_size
    return None


def newest_header(directory: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """(path, header) of the newest snapshot in ``directory`` whose header reads, without
    reading its payload or changing anything there; None when there is none."""
    for path in reversed(list_snapshots(directory)):
        try:
            with open(path, "rb", buffering=0) as f:
                return path, read_header(f, path)[0]
        except FileNotFoundError:
            continue
        except UNUSABLE:
            continue
    return None


def read_newest(
    directory: str | os.PathLike[str], *, fingerprint: str | None = None
) -> tuple[LoadResult | None, list[str]]:
    """Load the newest usable snapshot of a directory another process writes (a shard's
    ``state.dir``), read-only: nothing is renamed, set aside or deleted there.

    Snapshots are tried newest first; an unusable one (empty, foreign, truncated,
    damaged, too new) is passed over for the one before it, and a file its writer
    pruned meanwhile is skipped. Returns (the loaded snapshot or None when none is
    usable, one "<name>: <problem>" line per file passed over). A snapshot made with
    another ``fingerprint`` raises FingerprintMismatch (the configuration differs: an
    older file would not help); other OSErrors propagate. Writers rename complete files
    into place (write_file), so a reader never sees half a file of a live writer.
    """
    problems: list[str] = []
    for path in reversed(list_snapshots(directory)):
        try:
            return load_file(path, fingerprint=fingerprint), problems
        except FileNotFoundError:
            continue
        except UNUSABLE as e:
            problems.append(f"{path.name}: {e.message}")
    return None, problems
