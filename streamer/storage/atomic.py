"""Atomic file replacement: the one way streamer writes a file that others may read.

:func:`atomic_write` creates a temporary file in the target's directory, lets the caller
write it, then flushes, fsyncs, renames it over the target and fsyncs the directory. A
reader (or a process restarted after ``kill -9`` or a power cut) sees either the previous
complete file or the new complete file, never a partial one. On any error, and on
KeyboardInterrupt, the temporary file is removed and the previous file is untouched.

A writer killed mid-write cannot clean up: its temporary file stays behind. Each caller
names its temporary files so that they can be recognised later (a hidden name carrying
the writer's pid) and calls :func:`remove_leftover_temps` before writing into a directory:
files of dead processes are deleted, files of running ones are left alone, since they may
still be being written.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_dir", "pid_alive", "remove_leftover_temps", "write_bytes"]

log = logging.getLogger("streamer.storage.atomic")

#: errnos of an fsync the filesystem does not support on directories (nothing to do then).
_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make creations, renames and deletions in ``directory`` durable.

    A filesystem that cannot fsync a directory (EINVAL, ENOTSUP, EBADF) is accepted
    silently: nothing more can be done there. Every other error propagates, in particular
    EIO: the rename already happened but may not survive a power cut, and a failed
    write-back is reported once, to whoever fsyncs next - swallowing it would let a
    caller believe a file is safe when it may be lost. Opening the directory can fail
    too (a directory without read permission); that is raised for the same reason.
    """
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (for any user), as far as can be told.

    Used to decide whether a temporary file may be deleted, so doubt counts as alive:
    deleting a running writer's file breaks its write, keeping a dead one's costs only
    disk space until the next check. Hence PermissionError (the process exists, owned by
    another user) and any unexpected OSError mean alive; only ProcessLookupError means
    dead. Pids no process can have - zero, negative (``kill`` would address a process
    group) or beyond the platform's range (OverflowError) - are dead.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False
    except OSError:  # PermissionError above all: exists, not ours to signal
        return True
    return True


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], *, temp_name: str | None = None, sync_dir: bool = True
) -> Iterator[BinaryIO]:
    """Replace ``path`` atomically with what the ``with`` body writes to the yielded file.

    The temporary file is ``temp_name`` in the same directory as ``path`` (the same
    filesystem, so the rename is atomic), by default ``.<name>.<pid>.<random>.tmp``;
    it is created exclusively (an existing file of that name is an error, never
    overwritten) with mode 0o666 minus the umask, like any new file. The yielded file is
    a buffered binary file positioned at 0; seeking back to patch a header is fine.

    When the body returns: flush, fsync the file, ``os.replace`` it over ``path`` and, if
    ``sync_dir``, :func:`fsync_dir` the directory (a caller replacing several files in
    one directory may pass False and fsync the directory once at the end). When the body
    or any of these steps raises, the temporary file is removed and ``path`` is left as
    it was. Only the directory fsync comes after the rename: if it fails, ``path`` is
    already the new file but may not survive a power cut, and the error is raised. Cost:
    one fsync of the data, one of the directory.
    """
    path = Path(path)
    name = temp_name or f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp = path.with_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_bytes(
    path: str | os.PathLike[str], data: bytes, *, temp_name: str | None = None,
    sync_dir: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, temp_name=temp_name, sync_dir=sync_dir) as f:
        f.write(data)


def remove_leftover_temps(
    directory: str | os.PathLike[str], pattern: re.Pattern[str], *, own_pid_is_stale: bool
) -> list[Path]:
    """Delete the temporary files of writers that are gone; return the paths deleted.

    Only names that ``pattern`` matches are considered (so no other file is ever
    touched); its group ``pid`` is the writer's pid. A file of a running process is kept.
    A file of this process is kept too, unless ``own_pid_is_stale``: a caller with one
    writer per directory, not writing now, knows such a file is left over from an earlier
    process that had the same pid (a restarted daemon often does, e.g. pid 1 in a
    container). A missing or unreadable directory has no leftovers; a file that cannot be deleted is
    logged and skipped. O(files in directory).
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() and not own_pid_is_stale:
            continue
        if pid != os.getpid() and pid_alive(pid):
            log.debug("leaving %s: process %d is still running", name, pid)
            continue
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            continue
        except OSError as e:  # housekeeping: it must not stop the write that follows
            log.warning("could not remove leftover temporary file %s: %s", directory / name, e)
            continue
        removed.append(directory / name)
        log.info("removed leftover temporary file %s (interrupted write)", directory / name)
    return removed
