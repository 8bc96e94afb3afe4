"""What a change to a tailed file means: a stat in, a verdict out.

Pure decisions, no I/O: the caller stats the path or the descriptor and passes the result;
where a verdict needs the file's first bytes, the caller passes ``head(n)``, which returns
them and is called only when they matter (so an unchanged file costs no read). What to do
about a verdict (log, reopen, read again from 0) is :class:`streamer.input.files.FileSource`'s.

The rules (polling, no inotify): the path naming another inode, or nothing, means the open
file was renamed or deleted (:func:`path_change`); it is then finished through its
descriptor, ``gone`` when no name is left, else ``rotated`` (:func:`detached_state`), and
closed once :func:`closable`. The size dropping below the read offset, or the first bytes
no longer matching the fingerprint (truncated and refilled between two polls), means
copytruncate (:func:`content_change`). A stored position resumes only in the file it was
taken of (:func:`resume`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Container
from enum import Enum

from streamer.input.positions import FINGERPRINT_BYTES, FileIdentity, fingerprint_matches

Key = tuple[int, int]  # device, inode
Head = Callable[[int], bytes]  # n -> the file's first n bytes (fewer if it is shorter)


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


class PathChange(Enum):
    """What the path of an attached file names now."""

    SAME = "same"  # still the open file
    MOVED = "moved"  # nothing, or nothing to open: the open file was renamed or deleted
    REPLACED = "replaced"  # moved, and a regular file not yet tracked is at the path


def path_change(key: Key, st: os.stat_result | None, tracked: Container[Key]) -> PathChange:
    """``st``: a stat of the path of the open file ``key`` (None: nothing there)."""
    if st is not None and key_of(st) == key:
        return PathChange.SAME
    if st is not None and stat.S_ISREG(st.st_mode) and key_of(st) not in tracked:
        return PathChange.REPLACED
    return PathChange.MOVED


def detached_state(nlink: int) -> str:
    """The state of a file its path no longer names: ``gone`` without any name left
    (deleted), else ``rotated`` (renamed away, perhaps to another watched name)."""
    return "gone" if nlink == 0 else "rotated"


def closable(*, state: str, idle: float, rotate_wait: float, scanned: bool) -> bool:
    """Whether a detached file read to the end can be closed.

    A deleted file can (nothing will be added); a rotated one once it has not grown for
    ``rotate_wait`` seconds (``idle``: writers still holding it get that long to finish)
    and a glob scan since it was detached (``scanned``) did not find it under another
    watched name.
    """
    return state == "gone" or (idle >= rotate_wait and scanned)


class ContentChange(Enum):
    """What an fstat of an open file says about its content."""

    UNCHANGED = "unchanged"  # same size and modification time
    GREW = "grew"  # changed, and its first bytes are still the fingerprinted ones
    GREW_SHORT = "grew short"  # GREW, and the fingerprint can now cover more bytes
    SHRUNK = "shrunk"  # smaller than the read offset: truncated (copytruncate)
    REWRITTEN = "rewritten"  # other first bytes: truncated and refilled between polls


def content_change(st: os.stat_result, identity: FileIdentity, *, size: int, mtime_ns: int,
                   read_offset: int, head: Head) -> ContentChange:
    """``st``: an fstat of the open file last seen with ``size`` and ``mtime_ns``, read up
    to ``read_offset``. Reads ``head`` only when the size or mtime changed."""
    if st.st_size < read_offset:
        return ContentChange.SHRUNK
    if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
        return ContentChange.UNCHANGED
    n = identity.fingerprint_bytes
    if n and not fingerprint_matches(head(n), identity.fingerprint, n):
        return ContentChange.REWRITTEN
    if n < FINGERPRINT_BYTES and st.st_size > n:
        return ContentChange.GREW_SHORT
    return ContentChange.GREW


class Resume(Enum):
    """Where a stored position resumes in the file found at its path (or a new name)."""

    AT_OFFSET = "at offset"  # the stored file, at least as long as the stored offset
    FROM_ZERO = "from zero"  # the stored file, shorter than the offset: truncated meanwhile
    OTHER_INODE = "other inode"  # another file (the stored one may be elsewhere)
    OTHER_CONTENT = "other content"  # same inode, other first bytes: reused or rewritten


def resume(stored: FileIdentity, offset: int, st: os.stat_result, head: Head) -> Resume:
    """``st``: a stat of the file found; reads ``head`` only for the stored inode."""
    if key_of(st) != (stored.dev, stored.ino):
        return Resume.OTHER_INODE
    n = stored.fingerprint_bytes
    if not fingerprint_matches(head(n), stored.fingerprint, n):
        return Resume.OTHER_CONTENT
    return Resume.FROM_ZERO if st.st_size < offset else Resume.AT_OFFSET
