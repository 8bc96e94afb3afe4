"""The verdicts of streamer.input.changes, from made-up stats: no file is touched.

The same rules are exercised on real files, renamed, truncated and deleted under a running
source, in the file source tests under tests/component.
"""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from streamer.input.changes import (
    ContentChange,
    PathChange,
    Resume,
    closable,
    content_change,
    detached_state,
    path_change,
    resume,
)
from streamer.input.positions import FINGERPRINT_BYTES, FileIdentity, fingerprint

REG, DIR = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755


def a_stat(*, ino: int = 7, dev: int = 1, size: int = 0, mtime_ns: int = 0,
           nlink: int = 1, mode: int = REG) -> os.stat_result:
    """An os.stat_result with the fields the decisions read (mode, ino, dev, nlink, size
    are its first items; st_mtime_ns is item 14, after the three float times)."""
    return os.stat_result([mode, ino, dev, nlink, 0, 0, size, 0, 0, 0,
                           0.0, 0.0, 0.0, 0, mtime_ns, 0])


def identity(content: bytes, ino: int = 7, dev: int = 1) -> FileIdentity:
    digest, n = fingerprint(content)
    return FileIdentity(dev, ino, digest, n)


def head_of(content: bytes, reads: list[int] | None = None):
    def head(n: int) -> bytes:
        if reads is not None:
            reads.append(n)
        return content[:n]
    return head


def test_stat_fixture_carries_what_the_decisions_read() -> None:
    st = a_stat(ino=9, dev=2, size=30, mtime_ns=123, nlink=0)
    assert (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_nlink) == (9, 2, 30, 123, 0)
    assert stat.S_ISREG(st.st_mode)


# ----------------------------------------------------------------------------- the path


def test_path_still_names_the_open_file() -> None:
    assert path_change((1, 7), a_stat(ino=7), tracked={(1, 7)}) is PathChange.SAME


def test_nothing_at_the_path_means_moved() -> None:
    assert path_change((1, 7), None, tracked={(1, 7)}) is PathChange.MOVED


def test_new_regular_file_at_the_path_is_a_replacement() -> None:
    assert path_change((1, 7), a_stat(ino=8), tracked={(1, 7)}) is PathChange.REPLACED


@pytest.mark.parametrize("st, tracked", [
    (a_stat(ino=8, mode=DIR), {(1, 7)}),  # a directory took the name: nothing to open
    (a_stat(ino=8), {(1, 7), (1, 8)}),  # already followed under another name
], ids=["directory", "tracked"])
def test_other_thing_at_the_path_means_moved(st: os.stat_result, tracked: set) -> None:
    assert path_change((1, 7), st, tracked) is PathChange.MOVED


def test_same_inode_on_another_device_is_another_file() -> None:
    assert path_change((1, 7), a_stat(ino=7, dev=2), tracked={(1, 7)}) is PathChange.REPLACED


def test_detached_file_is_gone_without_links_else_rotated() -> None:
    assert detached_state(0) == "gone"
    assert detached_state(1) == "rotated"
    assert detached_state(2) == "rotated"


@pytest.mark.parametrize("state, idle, scanned, expected", [
    ("gone", 0.0, False, True),  # deleted: nothing will be added
    ("rotated", 5.0, True, True),
    ("rotated", 4.9, True, False),  # a writer may still hold it
    ("rotated", 60.0, False, False),  # a scan may still find it under a watched name
])
def test_closable(state: str, idle: float, scanned: bool, expected: bool) -> None:
    assert closable(state=state, idle=idle, rotate_wait=5.0, scanned=scanned) is expected


# -------------------------------------------------------------------------- the content


def check(content_now: bytes, *, seen: bytes, read_offset: int | None = None,
          mtime_ns: int = 1, reads: list[int] | None = None) -> ContentChange:
    """The verdict for a file seen as ``seen`` (size, mtime 0) that now holds ``content_now``."""
    return content_change(
        a_stat(size=len(content_now), mtime_ns=mtime_ns), identity(seen),
        size=len(seen), mtime_ns=0,
        read_offset=len(seen) if read_offset is None else read_offset,
        head=head_of(content_now, reads))


def test_unchanged_file_is_not_read() -> None:
    reads: list[int] = []
    assert check(b"abc\n", seen=b"abc\n", mtime_ns=0, reads=reads) is ContentChange.UNCHANGED
    assert reads == []


def test_appended_file_grew() -> None:
    old = b"x" * FINGERPRINT_BYTES + b"\n"
    assert check(old + b"more\n", seen=old) is ContentChange.GREW


def test_appended_short_file_can_take_a_longer_fingerprint() -> None:
    assert check(b"ab\ncd\n", seen=b"ab\n") is ContentChange.GREW_SHORT


def test_touched_file_of_the_same_size_is_checked_and_kept() -> None:
    reads: list[int] = []
    assert check(b"ab\n", seen=b"ab\n", reads=reads) is ContentChange.GREW
    assert reads == [3]


def test_shorter_than_the_read_offset_is_shrunk() -> None:
    assert check(b"ab\n", seen=b"ab\ncd\n") is ContentChange.SHRUNK


def test_refilled_past_the_old_offset_is_rewritten() -> None:
    assert check(b"other content\n", seen=b"old\n") is ContentChange.REWRITTEN


def test_empty_file_has_nothing_to_compare() -> None:
    assert check(b"new\n", seen=b"") is ContentChange.GREW_SHORT


# ------------------------------------------------------------------- stored positions


def test_resume_in_the_stored_file_at_its_offset() -> None:
    content = b"line one\nline two\n"
    verdict = resume(identity(content), 9, a_stat(size=len(content)), head_of(content))
    assert verdict is Resume.AT_OFFSET


def test_stored_file_shorter_than_its_offset_is_read_from_zero() -> None:
    content = b"a line\n" * 100  # the fingerprint covers the first 256 bytes
    kept = content[:350]
    verdict = resume(identity(content), 700, a_stat(size=len(kept)), head_of(kept))
    assert verdict is Resume.FROM_ZERO


def test_another_inode_is_not_read_for_the_stored_file() -> None:
    reads: list[int] = []
    verdict = resume(identity(b"a\n"), 2, a_stat(ino=8, size=2), head_of(b"a\n", reads))
    assert verdict is Resume.OTHER_INODE and reads == []


def test_reused_inode_with_other_content_is_another_file() -> None:
    verdict = resume(identity(b"old\n"), 4, a_stat(size=10), head_of(b"recreated\n"))
    assert verdict is Resume.OTHER_CONTENT


def test_stored_fingerprint_is_a_prefix_of_a_longer_file() -> None:
    digest = hashlib.sha1(b"ab\n").hexdigest()
    stored = FileIdentity(1, 7, digest, 3)
    assert resume(stored, 3, a_stat(size=9), head_of(b"ab\ncd\nef\n")) is Resume.AT_OFFSET
