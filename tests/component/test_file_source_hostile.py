"""FileSource under hostile conditions: more files than descriptors allowed, symlink loops,
a copytruncate with unread backlog, deleted files, directories that cannot be listed.
Real files and a real event loop (see source_harness)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from source_harness import (
    FAST,
    append,
    assert_exactly_once,
    numbered,
    text,
    wait_until,
)

from streamer.input.files import FileSource
from streamer.input.open_files import match_pattern
from streamer.input.positions import Batch

LINE = len("pre-000000\n")  # bytes of one numbered line


async def test_more_files_than_max_open_each_line_once(tmp_path: Path, start) -> None:
    expected = []
    for i in range(30):
        lines = numbered(f"f{i:02d}", 3)
        append(tmp_path / f"f{i:02d}.txt", text(lines))
        expected += lines
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, max_open_files=4, **FAST))
    open_now: list[int] = []

    def sample() -> bool:
        open_now.append(sum(1 for s in h.source.status() if not s["closed"]))
        return len(h.lines) >= len(expected)

    await wait_until(sample, "every line of 30 files")
    assert max(open_now) <= 4, open_now
    # a parked (closed, idle) file that grows is reopened by identity and read on
    await h.wait_scans()
    assert h.counter("f00.txt", "parked")
    append(tmp_path / "f00.txt", text(["f00-late"]))
    await h.wait_lines(len(expected) + 1)
    await h.wait_scans()
    assert_exactly_once(h.lines, [*expected, "f00-late"])
    assert sum(1 for s in h.source.status() if not s["closed"]) <= 4
    assert h.source.bytes_committed == sum(
        (tmp_path / f"f{i:02d}.txt").stat().st_size for i in range(30))


async def test_parked_file_rewritten_is_read_from_zero(tmp_path: Path, start) -> None:
    for i in range(6):
        append(tmp_path / f"f{i}.txt", text(numbered(f"f{i}", 2)))
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, max_open_files=2, **FAST))
    await h.wait_lines(12)
    await h.wait_scans()
    assert h.counter("f0.txt", "parked")
    with open(tmp_path / "f0.txt", "r+b") as f:  # same inode, other content, longer
        f.write(text(numbered("new", 4)).encode())
    await h.wait_lines(16)
    assert h.lines[12:] == numbered("new", 4)
    assert h.counter("f0.txt", "truncations") == 1


async def test_copytruncate_counts_the_unread_backlog_dropped(tmp_path: Path, caplog) -> None:
    """The consumer holds two batches of 10 lines while 100 are in the file: the truncation
    drops the other 80 unread lines, and says so in bytes."""
    caplog.set_level(logging.WARNING, logger="streamer.input")
    path = tmp_path / "a.log"
    append(path, text(numbered("pre", 100)))
    queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
    src = FileSource([str(tmp_path / "*.log")], queue, batch_lines=10, **FAST)
    task = asyncio.create_task(src.run())
    try:
        await wait_until(queue.full, "the queue to fill")
        await asyncio.sleep(0.1)  # the source is now blocked putting its second batch
        os.truncate(path, 0)
        append(path, text(numbered("post", 5)))
        got: list[str] = []
        committed = []
        while len(got) < 25:
            batch = await asyncio.wait_for(queue.get(), 10)
            got += batch.lines
            src.commit(batch.position)
            committed.append(src.bytes_committed)
        assert got == numbered("pre", 20) + numbered("post", 5)
        assert src.dropped_bytes == 80 * LINE
        [row] = src.status()
        assert row["dropped_bytes"] == 80 * LINE and row["truncations"] == 1
        assert any(f"{80 * LINE} bytes of unread backlog dropped" in r.getMessage()
                   for r in caplog.records)
        # cumulative: the truncation does not take back what was consumed before it
        assert committed == sorted(committed)
        assert src.bytes_committed == 20 * LINE + 5 * len("post-000000\n")
    finally:
        src.stop()
        await asyncio.wait_for(task, 10)


async def test_bytes_committed_survive_deletion(tmp_path: Path, start) -> None:
    append(tmp_path / "a.txt", text(numbered("a", 10)))
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(10)
    (tmp_path / "a.txt").unlink()
    await wait_until(lambda: h.counter("a.txt", "closed"), "a.txt closed")
    await h.wait_scans()
    line = len("a-000000\n")
    assert h.source.bytes_committed == 10 * line
    append(tmp_path / "b.txt", text(numbered("b", 3)))
    await h.wait_lines(13)
    await wait_until(lambda: h.source.bytes_committed == 13 * line, "b.txt committed")


def test_symlink_loops_enter_each_directory_once(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "ok.txt").write_text("x\n")
    (inbox / "sub" / "deep.txt").write_text("y\n")
    (inbox / ".hidden.txt").write_text("z\n")
    os.symlink(".", inbox / "l1")
    os.symlink(".", inbox / "l2")
    os.symlink("..", inbox / "sub" / "up")
    problems: dict[str, str] = {}
    found = match_pattern(str(inbox / "**" / "*.txt"), problems)
    assert found == [str(inbox / "ok.txt"), str(inbox / "sub" / "deep.txt")]
    assert problems == {}
    # like glob: "**" matches zero directories, "*" does not match hidden names
    assert match_pattern(str(inbox / "*.txt"), problems) == [str(inbox / "ok.txt")]
    assert match_pattern(str(inbox / ".*.txt"), problems) == [str(inbox / ".hidden.txt")]


def test_scan_is_bounded(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"{i:02d}.txt").write_text("x\n")
    problems: dict[str, str] = {}
    found = match_pattern(str(tmp_path / "*.txt"), problems, max_entries=5)
    assert len(found) == 5
    assert "more than 5 entries" in problems[str(tmp_path)]
    stopped = match_pattern(str(tmp_path / "**" / "*.txt"), {}, should_stop=lambda: True)
    assert stopped == []


async def test_unlistable_directory_is_reported_once(tmp_path: Path, start, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    (tmp_path / "notadir").write_text("a file where a directory is expected\n")
    pattern = str(tmp_path / "notadir" / "*.txt")
    h = start(lambda q: FileSource([pattern], q, **FAST))
    await h.wait_scans(5)
    assert h.source.problems() == {str(tmp_path / "notadir"): "not a directory"}
    assert h.source.unreadable_roots() == h.source.problems()
    reports = [r for r in caplog.records if "cannot scan" in r.getMessage()]
    assert len(reports) == 1, reports
    (tmp_path / "notadir").unlink()
    (tmp_path / "notadir").mkdir()
    append(tmp_path / "notadir" / "a.txt", text(["now"]))
    await h.wait_lines(1)
    assert h.source.problems() == {}
    assert any("can be listed again" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not apply to root")
async def test_permission_denied_directory_is_reported(tmp_path: Path, start, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    inbox.chmod(0)
    try:
        h = start(lambda q: FileSource([str(inbox / "*.txt")], q, **FAST))
        await h.wait_scans(5)
        [(path, why)] = h.source.problems().items()
        assert path == str(inbox) and "Permission denied" in why
        assert len([r for r in caplog.records if "cannot scan" in r.getMessage()]) == 1
    finally:
        inbox.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not apply to root")
async def test_unlistable_subdirectory_leaves_the_rest_readable(tmp_path: Path, start) -> None:
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed").chmod(0)
    append(tmp_path / "a.txt", text(["readable"]))
    try:
        h = start(lambda q: FileSource([str(tmp_path / "**" / "*.txt")], q, **FAST))
        await h.wait_lines(1)
        await h.wait_scans()
        assert list(h.source.problems()) == [str(tmp_path / "closed")]
        assert h.source.unreadable_roots() == {}
    finally:
        (tmp_path / "closed").chmod(0o755)
