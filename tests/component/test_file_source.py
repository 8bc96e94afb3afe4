"""FileSource (streamer.input.files): real files in tmp_path, renamed, truncated and deleted
under a running source, a real event loop, no mocks (see source_harness)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path

import msgpack
import pytest
from source_harness import (
    FAST,
    append,
    assert_exactly_once,
    numbered,
    restoring,
    text,
    wait_until,
)

from streamer.input.files import FileSource
from streamer.input.positions import FilePosition


async def read_and_stop(start, path: Path, lines: list[str]) -> tuple[str, list[dict]]:
    """Write ``lines`` to ``path``, run a source over its directory's *.txt until it read
    them, stop it; return the pattern and its committed positions."""
    append(path, text(lines))
    pattern = str(path.parent / "*.txt")
    h = start(lambda q: FileSource([pattern], q, **FAST))
    await h.wait_lines(len(lines))
    await h.stop()
    return pattern, h.source.committed_positions()


async def test_appended_lines_delivered_once(tmp_path: Path, start) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    expected: list[str] = []
    for k in range(20):
        chunk = numbered(f"w{k}", 25)
        expected += chunk
        append(path, text(chunk))
        if k % 5 == 0:
            await h.wait_lines(len(expected))
    await h.wait_lines(len(expected))
    await h.wait_scans()
    assert h.lines == expected
    [st_] = h.file_status("a.txt")
    assert st_["lines"] == len(expected) and st_["state"] == "open"
    assert st_["committed_offset"] == path.stat().st_size


async def test_partial_line_waits_for_newline(tmp_path: Path, start) -> None:
    path = tmp_path / "a.txt"
    append(path, "first\nhello wor")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(1)
    await wait_until(lambda: h.counter("a.txt", "bytes_read") == 15, "partial read")
    await h.wait_scans()
    assert h.lines == ["first"]
    positions = h.source.committed_positions()
    assert positions[0]["offset"] == len(b"first\n")
    append(path, "ld\r\n")
    await h.wait_lines(2)
    assert h.lines == ["first", "hello world"]


async def test_multibyte_character_split_across_writes(tmp_path: Path, start) -> None:
    path = tmp_path / "a.txt"
    data = "新词发现\n".encode()
    append(path, data[:4])  # 新 + the first byte of 词
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await wait_until(lambda: h.counter("a.txt", "bytes_read") == 4, "first half read")
    append(path, data[4:])
    await h.wait_lines(1)
    assert h.lines == ["新词发现"]
    assert h.file_status("a.txt")[0]["replaced_bytes"] == 0


async def test_new_files_under_glob_are_picked_up(tmp_path: Path, start) -> None:
    (tmp_path / "logs" / "deep").mkdir(parents=True)
    h = start(
        lambda q: FileSource(
            [str(tmp_path / "inbox" / "*.txt"), str(tmp_path / "logs" / "**" / "*.log")],
            q,
            from_beginning=False,  # applies to files present at start only
            **FAST,
        )
    )
    await h.wait_scans(1)
    (tmp_path / "inbox").mkdir()
    append(tmp_path / "inbox" / "one.txt", "one\n")
    append(tmp_path / "inbox" / "skip.md", "not matched\n")
    append(tmp_path / "logs" / "deep" / "two.log", "two\n")
    append(tmp_path / "logs" / "top.log", "three\n")
    await h.wait_lines(3)
    await h.wait_scans()
    assert sorted(h.lines) == ["one", "three", "two"]


async def test_from_beginning_false_starts_at_end(tmp_path: Path, start) -> None:
    old = tmp_path / "old.txt"
    append(old, "old-1\nold-2\nbeing writ")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, from_beginning=False, **FAST))
    await wait_until(lambda: h.file_status("old.txt"), "old.txt opened")
    append(old, "ten\nnew-1\n")
    await h.wait_lines(2)
    await h.wait_scans()
    # The line being written at start is delivered whole, older lines are not.
    assert h.lines == ["being written", "new-1"]


@pytest.mark.parametrize("pattern", ["*.log", "*.log*"], ids=["rotated-unwatched", "watched"])
async def test_rename_and_create_rotation(tmp_path: Path, start, pattern: str) -> None:
    path = tmp_path / "a.log"
    h = start(lambda q: FileSource([str(tmp_path / pattern)], q, **FAST))
    expected: list[str] = []
    f = open(path, "ab", buffering=0)

    def following_current_file() -> bool:
        ino = os.stat(path).st_ino
        return any(s["ino"] == ino for s in h.file_status("a.log"))

    try:
        for r in range(6):
            # A file created and rotated away to an unwatched name before the source
            # ever saw it cannot be read by any polling tailer; wait until it is seen.
            await wait_until(following_current_file, "the current a.log to be opened")
            for k in range(4):
                chunk = numbered(f"r{r}k{k}", 50)
                expected += chunk
                f.write(text(chunk).encode())
                await asyncio.sleep(0)  # let the source read part of it
            last = numbered(f"r{r}-before-rotate", 20)
            expected += last
            f.write(text(last).encode())  # written just before the rename
            os.rename(path, tmp_path / f"a.log.{r}")
            late = numbered(f"r{r}-after-rename", 5)
            expected += late
            f.write(text(late).encode())  # the writer has not reopened yet
            f.close()
            f = open(path, "ab", buffering=0)
            if r % 2:
                await h.wait_lines(len(expected))
        final = numbered("final", 30)
        expected += final
        f.write(text(final).encode())
    finally:
        f.close()
    await h.wait_lines(len(expected))
    if pattern == "*.log":  # every rotated file is finished and closed
        await wait_until(
            lambda: sum(s["state"] == "rotated" and s["closed"]
                        for s in h.source.status()) >= 6,
            "rotated files closed",
        )
    await h.wait_scans()
    assert_exactly_once(h.lines, expected)
    # Per-file order is kept, and each old file is finished before its successor.
    assert h.lines == expected


async def test_copytruncate(tmp_path: Path, start, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    path = tmp_path / "a.log"
    pre = numbered("pre", 100)
    append(path, text(pre))
    h = start(lambda q: FileSource([str(tmp_path / "*.log")], q, **FAST))
    await h.wait_lines(100)
    shutil.copyfile(path, tmp_path / "a.log.1")
    os.truncate(path, 0)
    post = numbered("post", 50)
    for i in range(0, 50, 10):
        append(path, text(post[i : i + 10]))
    await h.wait_lines(150)
    await h.wait_scans()
    assert_exactly_once(h.lines, pre + post)
    [st_] = h.file_status("a.log")
    assert st_["truncations"] == 1 and st_["state"] == "truncated"
    assert any("truncated" in r.getMessage() for r in caplog.records)


async def test_truncate_and_refill_beyond_old_offset(tmp_path: Path, start) -> None:
    """Truncated and refilled past the old offset between two polls: the changed first
    bytes still reveal it, so the new content is read from 0 whatever the timing."""
    path = tmp_path / "a.log"
    pre = numbered("pre", 20)
    append(path, text(pre))
    h = start(lambda q: FileSource([str(tmp_path / "*.log")], q, **FAST))
    await h.wait_lines(20)
    post = numbered("post", 200)
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(text(post).encode())
    await h.wait_lines(220)
    await h.wait_scans()
    assert_exactly_once(h.lines, pre + post)


async def test_deleted_file_is_gone_and_source_keeps_running(
    tmp_path: Path, start, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    path = tmp_path / "a.txt"
    append(path, "first\n")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, batch_lines=100, **FAST))
    await h.wait_lines(1)
    rest = numbered("rest", 3000)
    append(path, text(rest) + "no newline")
    path.unlink()  # while most of it is unread: the open descriptor still reads it
    await wait_until(
        lambda: any(s["state"] == "gone" and s["closed"] for s in h.file_status("a.txt")),
        "state gone",
    )
    # the status says closed as the source closes the file; its unterminated last line
    # is queued right after, and reaches the consumer a moment later
    await h.wait_lines(len(rest) + 2)
    assert h.lines == ["first", *rest, "no newline"]
    assert any("gone" in r.getMessage() for r in caplog.records)
    append(tmp_path / "b.txt", "still running\n")
    await h.wait_lines(len(rest) + 3)
    assert h.lines[-1] == "still running"
    # A gone file's position is dropped once its last batch has been committed.
    assert [Path(p["path"]).name for p in h.source.committed_positions()] == ["b.txt"]


async def test_invalid_utf8_replaced_and_counted(tmp_path: Path, start) -> None:
    path = tmp_path / "a.txt"
    append(path, b"ok\xff\xfebad\n" + "半".encode()[:2] + b"\n" + "好\n".encode())
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(3)
    assert h.lines == ["ok\ufffd\ufffdbad", "\ufffd", "好"]
    assert h.file_status("a.txt")[0]["replaced_bytes"] == 4


@pytest.mark.parametrize("with_separators", [True, False], ids=["clauses", "no-separators"])
async def test_long_line_cut_into_pieces(
    tmp_path: Path, start, caplog, with_separators: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="streamer.input")
    unit = "新词发现，测试文本 abc;" if with_separators else "汉字😀词"
    line = unit * (5_000_000 // len(unit.encode()))
    data = line.encode()
    assert len(data) > 4_900_000
    path = tmp_path / "big.txt"
    path.write_bytes(b"")
    max_line = 65_536
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, max_line_bytes=max_line, **FAST))
    step = 500_001  # odd: writes end inside multi-byte characters
    for i in range(0, len(data), step):
        append(path, data[i : i + step])
    # All but the last piece arrive without a newline; the newline releases the rest.
    await wait_until(
        lambda: h.counter("big.txt", "bytes_read") == len(data),
        "everything read",
    )
    append(path, b"\nnext\n")
    await wait_until(lambda: h.lines[-1:] == ["next"], "next line", timeout=30)
    pieces = h.lines[:-1]
    assert "".join(pieces) == line
    assert all(len(p.encode()) <= max_line for p in pieces)
    assert len(pieces) >= len(data) // max_line
    if with_separators:  # every cut is right after a clause separator
        assert all(p[-1] in " ，;" for p in pieces[:-1])
    [st_] = h.file_status("big.txt")
    assert st_["long_lines"] == 1 and st_["replaced_bytes"] == 0
    cuts = [r for r in caplog.records if "long line" in r.getMessage()]
    assert len(cuts) == 1


async def test_restore_resumes_exactly_after_rotation_while_down(
    tmp_path: Path, start, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    append(a, text(numbered("a", 100)) + "a-0001")  # last line incomplete
    append(b, text(numbered("b", 100)))
    append(c, text(numbered("c", 10)))
    pattern = str(tmp_path / "*.txt")
    h1 = start(lambda q: FileSource([pattern], q, **FAST))
    await h1.wait_lines(210)
    await h1.stop()
    positions = h1.source.committed_positions()
    json.dumps(positions)
    positions = msgpack.unpackb(msgpack.packb(positions))
    assert {Path(p["path"]).name: p["offset"] for p in positions} == {
        "a.txt": a.stat().st_size - len("a-0001"),
        "b.txt": b.stat().st_size,
        "c.txt": c.stat().st_size,
    }

    # While the service is down: finish a's partial line, write more, rotate a by rename,
    # start a new a.txt; b grows; c is deleted; d appears.
    append(a, "00\n" + text(numbered("a", 50, 1000)))
    os.rename(a, tmp_path / "a.txt.1")
    append(a, text(numbered("new-a", 40)))
    append(b, text(numbered("b", 30, 1000)))
    c.unlink()
    append(tmp_path / "d.txt", text(numbered("d", 5)))

    h2 = start(restoring([pattern], positions, from_beginning=False))
    expected2 = (
        ["a-000100"]
        + numbered("a", 50, 1000)
        + numbered("new-a", 40)
        + numbered("b", 30, 1000)
        + numbered("d", 5)
    )
    await h2.wait_lines(len(expected2))
    await wait_until(
        lambda: any(s["state"] == "rotated" and s["closed"]
                    for s in h2.source.status()),
        "rotated file finished",
    )
    await h2.wait_scans()
    assert_exactly_once(h1.lines + h2.lines, numbered("a", 100) + numbered("b", 100)
                        + numbered("c", 10) + expected2)
    # The renamed file is finished before the new file at its path is read.
    assert h2.lines.index("a-001049") < h2.lines.index("new-a-000000")
    messages = [r.getMessage() for r in caplog.records]
    assert any("rotated while stopped" in m for m in messages)
    assert any("gone" in m and "c.txt" in m for m in messages)


async def test_restore_same_inode_new_content_reads_from_zero(tmp_path: Path, start) -> None:
    """Same path, device and inode but other first bytes (reused inode, or rewritten in
    place) is another file: read from 0, never from the stored offset."""
    a = tmp_path / "a.txt"
    pattern, positions = await read_and_stop(start, a, numbered("old", 10))
    with open(a, "r+b") as f:  # same inode, longer, different content
        f.truncate(0)
        f.write(text(numbered("other", 30)).encode())

    h2 = start(restoring([pattern], positions))
    await h2.wait_lines(30)
    await h2.wait_scans()
    assert h2.lines == numbered("other", 30)


async def test_restore_deleted_and_recreated_while_down(tmp_path: Path, start) -> None:
    """A file deleted and created again under the same name while down is new (ext4
    often hands the new file the freed inode: identity must not rest on it alone)."""
    a = tmp_path / "a.txt"
    pattern, positions = await read_and_stop(start, a, numbered("old", 10))
    a.unlink()
    append(a, text(numbered("recreated", 30)))

    h2 = start(restoring([pattern], positions, from_beginning=False))
    await h2.wait_lines(30)
    await h2.wait_scans()
    assert h2.lines == numbered("recreated", 30)


async def test_rotation_while_blocked_by_backpressure(tmp_path: Path, start) -> None:
    """While the engine is behind, the source keeps the rotated file open and finishes
    it once the queue drains."""
    path = tmp_path / "a.log"
    append(path, "first\n")
    h = start(
        lambda q: FileSource([str(tmp_path / "*.log")], q, batch_lines=10, **FAST), maxsize=1
    )
    await h.wait_lines(1)
    h.consume_task.cancel()
    old = numbered("old", 500)
    append(path, text(old))
    await wait_until(h.queue.full, "queue full")
    os.rename(path, tmp_path / "a.log.1")
    new = numbered("new", 50)
    append(path, text(new))
    h.consume_task = asyncio.create_task(h._consume())
    await h.wait_lines(551)
    await h.wait_scans()
    assert h.lines == ["first", *old, *new]


async def test_restore_truncated_while_down(tmp_path: Path, start) -> None:
    a = tmp_path / "a.txt"
    pattern, positions = await read_and_stop(start, a, numbered("old", 10))
    with open(a, "r+b") as f:  # same first bytes, shorter than the stored offset
        f.truncate(len("old-000000\n") * 3)

    h2 = start(restoring([pattern], positions))
    await h2.wait_lines(3)
    await h2.wait_scans()
    assert h2.lines == numbered("old", 3)


async def test_unreadable_matches_are_reported_once(tmp_path: Path, start, caplog) -> None:
    """Tests run as root, for whom chmod 000 changes nothing; a directory named like a
    file and a broken symlink stand in for unreadable files (see also the chmod test)."""
    caplog.set_level(logging.INFO, logger="streamer.input")
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "broken.txt").symlink_to(tmp_path / "nowhere")
    append(tmp_path / "good.txt", "good\n")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(1)
    await h.wait_scans(5)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dir.txt" in m and "directory" in m for m in messages) == 1
    assert sum("broken.txt" in m and "symbolic link" in m for m in messages) == 1
    # A symlink repaired later is picked up.
    append(tmp_path / "nowhere", "repaired\n")
    await h.wait_lines(2)
    assert h.lines == ["good", "repaired"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_permission_denied_is_reported_once(tmp_path: Path, start, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamer.input")
    locked = tmp_path / "locked.txt"
    append(locked, "secret\n")
    locked.chmod(0)
    append(tmp_path / "good.txt", "good\n")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(1)
    await h.wait_scans(5)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("locked.txt" in m and "unreadable" in m for m in messages) == 1
    locked.chmod(0o644)
    await h.wait_lines(2)
    assert sorted(h.lines) == ["good", "secret"]


async def test_batches_are_bounded_and_backpressure_stops_reading(
    tmp_path: Path, start
) -> None:
    path = tmp_path / "a.txt"
    lines = numbered("x", 20_000)
    append(path, text(lines))
    h = start(
        lambda q: FileSource([str(tmp_path / "*.txt")], q, batch_lines=100, **FAST),
        maxsize=2,
    )
    h.consume_task.cancel()  # nobody consumes: the source must block on the full queue
    await wait_until(h.queue.full, "queue full")
    await h.wait_scans(0)
    # A few batches at most have been taken from the file.
    assert h.file_status("a.txt")[0]["offset"] <= 4 * 100 * len("x-000000\n")
    h.consume_task = asyncio.create_task(h._consume())
    await h.wait_lines(len(lines))
    assert h.lines == lines
    assert all(len(b.lines) <= 100 for b in h.batches)

    big = tmp_path / "b.txt"
    append(big, text(["y" * 1000] * 200))
    h2 = start(lambda q: FileSource([str(big)], q, batch_bytes=10_000, **FAST))
    await h2.wait_lines(200)
    assert all(sum(map(len, b.lines)) <= 10_000 for b in h2.batches)


async def test_stop_returns_and_positions_round_trip(tmp_path: Path, start) -> None:
    append(tmp_path / "a.txt", "one\n")
    h = start(lambda q: FileSource([str(tmp_path / "*.txt")], q, **FAST))
    await h.wait_lines(1)
    await h.stop()
    [pos] = h.source.committed_positions()
    assert FilePosition.from_dict(pos).to_dict() == pos
    assert pos["fingerprint_bytes"] == 4 and pos["offset"] == 4
    with pytest.raises(ValueError):
        FilePosition.from_dict({"path": "x"})
