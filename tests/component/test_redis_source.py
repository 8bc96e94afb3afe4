"""The Redis stream source against a real redis-server, in process: entries to lines,
missing fields, acknowledgements after snapshots, the pending re-read after a restart;
and the [redis] settings and --source redis://... with their errors."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import RedisServer, streamer_env

from streamer.input import Batch, RedisPosition, RedisStreamSource
from streamer.input.redis_stream import redacted
from streamer.service.config import (
    Config,
    ConfigError,
    add_override_arguments,
    apply_overrides,
    load,
    parse_redis_source,
)

# =========================================================================== in process


def source(server: RedisServer, queue: asyncio.Queue[Batch], **kw: Any) -> RedisStreamSource:
    args: dict[str, Any] = {"url": server.url, "stream": "s", "group": "g", "consumer": "c1",
                            "block": 0.05, "claim_interval": 0.2}
    args.update(kw)
    return RedisStreamSource(queue, **args)


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (value := check()):
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return value


async def take(queue: asyncio.Queue[Batch], entries: int) -> list[Batch]:
    """Batches from the queue until they hold `entries` entries."""
    got: list[Batch] = []
    while sum(len(b.position.ids) for b in got) < entries:
        got.append(await asyncio.wait_for(queue.get(), 30))
    return got


async def stopped(src: RedisStreamSource, task: asyncio.Task[None]) -> None:
    src.stop()
    await asyncio.wait_for(task, 30)
    await src.drain(5)


def test_an_entry_is_one_or_more_lines_cut_as_in_files(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("s", {"text": "一行"})
    r.xadd("s", {"text": "第一\n第二\n第三"})  # 3 lines, the last without newline
    r.xadd("s", {"text": "甲\r\n乙\n"})  # CRLF stripped; a final newline ends a line
    r.xadd("s", {"text": "x" * 300})  # longer than max_line_bytes: cut in pieces
    r.xadd("s", {"text": ""})  # nothing to count
    r.xadd("s", {"body": "no text field"})
    r.xadd("s", {"text": b"bad \xff byte"})

    async def main() -> tuple[list[Batch], RedisStreamSource]:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue, max_line_bytes=256)
        task = asyncio.create_task(src.run())
        batches = await take(queue, 5)
        for b in batches:
            src.commit(b.position)  # type: ignore[arg-type]
        await stopped(src, task)
        return batches, src

    batches, src = asyncio.run(main())
    lines = [line for b in batches for line in b.lines]
    assert lines[:6] == ["一行", "第一", "第二", "第三", "甲", "乙"]
    assert lines[6:8] == ["x" * 256, "x" * 44]
    assert lines[8] == "bad \ufffd byte"
    assert len(lines) == 9
    st = src.status()[0]
    assert st["entries_without_field"] == 1
    assert st["entries_counted"] == 7  # the empty and the field-less ones too: nothing to count
    assert st["long_lines"] == 1 and st["replaced_bytes"] == 1
    assert st["lines"] == 9
    # counted but never in a snapshot: nothing acknowledged, all still pending
    assert r.xpending("s", "g")["pending"] == 7
    assert st["entries_acked"] == 0


def test_acks_follow_snapshots_and_a_restart_counts_only_what_no_snapshot_held(
        redis_server: RedisServer) -> None:
    """The source's half of exactly once: commit -> snapshot positions -> acknowledge
    -> XACK; a restart from a snapshot acks what it counted and re-reads the rest."""
    r = redis_server.client()
    ids = [r.xadd("s", {"text": f"第{i}条"}) for i in range(30)]

    async def first_run() -> list[dict[str, Any]]:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue, batch_entries=10)
        task = asyncio.create_task(src.run())
        batches = await take(queue, 30)
        assert [i for b in batches for i in b.position.ids] == ids
        src.commit(batches[0].position)  # type: ignore[arg-type]
        snap1 = src.committed_positions()  # a snapshot holding batch 0 ...
        src.acknowledge(snap1)  # ... is on disk
        await until(lambda: r.xpending("s", "g")["pending"] == 20, "batch 0 acked")
        src.commit(batches[1].position)  # type: ignore[arg-type]
        snap2 = src.committed_positions()  # batch 1 counted and snapshotted, not acked:
        assert sorted(snap2[0]["counted"]) == ids[10:20]  # the killed process never sent it
        src.stop()
        task.cancel()
        return snap2

    snap = asyncio.run(first_run())
    assert r.xpending("s", "g")["pending"] == 20

    async def restart() -> tuple[list[Batch], RedisStreamSource]:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue, batch_entries=10)
        src.restore(snap)
        task = asyncio.create_task(src.run())
        batches = await take(queue, 10)
        for b in batches:
            src.commit(b.position)  # type: ignore[arg-type]
        src.acknowledge(src.committed_positions())
        await until(lambda: r.xpending("s", "g")["pending"] == 0, "everything acked")
        await stopped(src, task)
        return batches, src

    batches, src = asyncio.run(restart())
    assert [i for b in batches for i in b.position.ids] == ids[20:]  # only the uncounted
    st = src.status()[0]
    assert st["entries_skipped"] == 10 and st["entries_acked"] == 20
    assert st["counted_unacked"] == 0 and st["acks_owed"] == 0


def test_reading_pauses_at_max_unacked_until_a_snapshot_is_acknowledged(
        redis_server: RedisServer) -> None:
    r = redis_server.client()
    ids = [r.xadd("s", {"text": f"第{i}条"}) for i in range(20)]

    async def main() -> list[Batch]:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue, batch_entries=5, max_unacked=8)
        task = asyncio.create_task(src.run())
        got = await take(queue, 10)  # 5 + 5: the second read starts below the bound
        for b in got:
            src.commit(b.position)  # type: ignore[arg-type]
        await until(lambda: src.status()[0]["paused"], "reading paused")
        assert queue.empty() and src.status()[0]["counted_unacked"] == 10
        src.acknowledge(src.committed_positions())  # a snapshot holding them is on disk
        more = await take(queue, 10)
        await stopped(src, task)
        return got + more

    batches = asyncio.run(main())
    assert [i for b in batches for i in b.position.ids] == ids


def test_entries_deleted_while_pending_are_lost_not_counted(redis_server: RedisServer) -> None:
    r = redis_server.client()
    ids = [r.xadd("s", {"text": f"第{i}条"}) for i in range(6)]
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "c1", {"s": ">"})  # delivered to c1, which then died
    r.xdel("s", ids[1], ids[4])

    async def main() -> tuple[list[Batch], RedisStreamSource]:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue)
        task = asyncio.create_task(src.run())
        batches = await take(queue, 4)
        await until(lambda: src.entries_lost == 2, "2 entries lost")
        await until(lambda: r.xpending("s", "g")["pending"] == 4, "the deleted ones acked")
        await stopped(src, task)
        return batches, src

    batches, src = asyncio.run(main())
    assert [i for b in batches for i in b.position.ids] == [ids[0], ids[2], ids[3], ids[5]]


def test_a_missing_group_is_created_from_now_or_from_the_start(
        redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("old", {"text": "旧的"})

    async def first_batch(stream: str, start: str) -> Batch:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        src = source(redis_server, queue, stream=stream, start=start)
        task = asyncio.create_task(src.run())
        await until(lambda: src.connected, "connected")
        r.xadd(stream, {"text": "新的"})
        batch = await asyncio.wait_for(queue.get(), 30)
        await stopped(src, task)
        return batch

    assert asyncio.run(first_batch("old", "now")).lines == ["新的"]
    r.xgroup_destroy("old", "g")
    assert asyncio.run(first_batch("old", "begin")).lines[0] == "旧的"
    # a stream that does not exist yet is created with the group (MKSTREAM)
    assert asyncio.run(first_batch("fresh", "begin")).lines == ["新的"]


def test_commit_takes_only_redis_positions(redis_server: RedisServer) -> None:
    src = RedisStreamSource(asyncio.Queue(), url=redis_server.url, stream="s", group="g",
                            consumer="c")
    with pytest.raises(TypeError):
        src.commit("0-1")  # type: ignore[arg-type]
    src.commit(RedisPosition(("1-0", "2-0")))
    assert sorted(src.committed_positions()[0]["counted"]) == ["1-0", "2-0"]


def test_redacted_hides_the_password() -> None:
    assert redacted("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted("redis://u:secret@h") == "redis://u:***@h"
    assert redacted("redis://h:1") == "redis://h:1"


# =========================================================================== settings


def overrides(*argv: str, cfg: Config | None = None) -> Config:
    p = argparse.ArgumentParser()
    add_override_arguments(p)
    return apply_overrides(cfg or Config(), p.parse_args(list(argv)))


def test_source_url_sets_the_redis_section_and_globs_apart() -> None:
    cfg = overrides("--source", "redis://10.0.0.5:6380/news?group=g1&field=body&consumer=a"
                    "&start=now&db=2", "--source", "more/*.txt")
    r = cfg.redis
    assert (r.url, r.stream, r.group, r.field, r.consumer, r.start) == (
        "redis://10.0.0.5:6380/2", "news", "g1", "body", "a", "now")
    assert cfg.sources.globs == ("more/*.txt",)
    only = overrides("--source", "redis://h/a%20b?group=g")
    assert only.sources.globs == () and only.redis.stream == "a b"
    assert only.redis.url == "redis://h" and only.redis.field == "text"


@pytest.mark.parametrize(("value", "problem"), [
    ("redis://h:1/s", "missing group=GROUP"),
    ("redis://h:1/?group=g", "give the stream as the path"),
    ("redis://h:1/s?group=g&colour=red", "unknown parameter 'colour'"),
    ("redis://h:1/s?group=g&group=h", "group must have one non-empty value"),
    ("redis://h:1/s?group=g&start=later", "must be one of 'begin', 'now'"),
    ("redis://h:99999/s?group=g", "must be redis://HOST:PORT"),
    ("redis:///s?group=g", "must be redis://HOST:PORT"),
    ("redis://h/s?group=g&db=x", "db must be a database number"),
])
def test_bad_source_urls_name_the_flag(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        overrides("--source", value)
    msg = str(info.value)
    assert msg.startswith("command line: --source: ") and problem in msg, msg


def test_two_redis_sources_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most one Redis stream"):
        overrides("--source", "redis://h/a?group=g", "--source", "redis://h/b?group=g")


@pytest.mark.parametrize(("text", "problem"), [
    ('[redis]\nurl = "redis://h:1"\ngroup = "g"\n', "redis.stream: must be set"),
    ('[redis]\nurl = "redis://h:1"\nstream = "s"\n', "redis.group: must be set"),
    ('[redis]\nurl = "http://h:1"\nstream = "s"\ngroup = "g"\n', "redis.url: must be redis://"),
    ('[redis]\nurl = "redis://h:1/news"\nstream = "s"\ngroup = "g"\n',
     "redis.url: must be redis://HOST:PORT or rediss://HOST:PORT (optionally /DB), got "
     "'redis://h:1/news' (the path is a database number; the stream is redis.stream)"),
    ('[redis]\nurl = "redis://h"\nstream = "s"\ngroup = "g"\nstart = "end"\n',
     "redis.start: must be one of"),
    ('[redis]\nurl = "redis://h"\nstream = "s"\ngroup = "g"\nbatch_entries = 0\n',
     "redis.batch_entries: must be an integer >= 1"),
    ('[redis]\nurl = "redis://h"\nstream = "s"\ngroup = "g"\nclaim_idle = "30s"\n'
     '[intervals]\nsnapshot = "1m"\n', "redis.claim_idle: must be longer than intervals"),
    ('[redis]\nurl = "redis://h"\nstream = "s"\ngroup = "g"\ncolour = 1\n',
     "redis.colour: unknown key"),
])
def test_bad_redis_settings_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"{path}: {problem}" in str(info.value), str(info.value)


def test_redis_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('[redis]\nurl = "rediss://:pw@cache:6380/1"\nstream = "news"\n'
                    'group = "g"\nblock = "250ms"\nclaim_idle = "10m"\n', encoding="utf-8")
    r = load(path).redis
    assert (r.url, r.block, r.claim_idle) == ("rediss://:pw@cache:6380/1", 0.25, 600.0)


def test_parse_redis_source_keeps_the_password() -> None:
    assert parse_redis_source("redis://:pw@h:1/s?group=g")["url"] == "redis://:pw@h:1"


def test_run_without_the_client_exits_2_naming_the_extra(tmp_path: Path) -> None:
    """`streamer run` with a Redis source where redis-py is not installed (hidden from
    this child process): one line, status 2, nothing started."""
    code = ("import sys; sys.modules['redis'] = None\n"
            "from streamer.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "--no-http", "--state-dir", str(tmp_path / "st"),
         "--export-dir", str(tmp_path / "ex"), "--no-known",
         "--source", "redis://127.0.0.1:1/s?group=g"],
        capture_output=True, text=True, env=streamer_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert err[-1] == ("streamer run: error: command line: --source: the Redis source needs "
                       "the redis client: pip install 'streamer[redis]'"), done.stderr


def test_run_with_a_bad_source_url_exits_2_naming_the_flag(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--no-http", "--no-known",
         "--source", "redis://127.0.0.1:6379/news"],
        capture_output=True, text=True, env=streamer_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "streamer run: error: command line: --source: 'redis://127.0.0.1:6379/news': "
        "missing group=GROUP (the consumer group to join)")
    assert not (tmp_path / "state").exists()  # nothing was started


def test_the_snapshot_header_holds_the_number_of_counted_ids_not_the_ids() -> None:
    """The ids go into the state; the header (metadata, read by `snapshot inspect` and by
    every listing) holds their number, so that it stays small whatever the rate."""
    from streamer.service.state import positions_summary
    from streamer.storage.snapshot_inspect import _format_positions

    positions = {"redis": [{"source": "redis", "stream": "news", "group": "g",
                            "consumer": "c", "counted": [f"{i}-0" for i in range(5000)]}],
                 "files": [{"path": "a.txt", "offset": 7}]}
    summary = positions_summary(positions)
    assert summary == {"redis": [{"source": "redis", "stream": "news", "group": "g",
                                  "consumer": "c", "counted_ids": 5000}],
                       "files": [{"path": "a.txt", "offset": 7}]}
    assert "    redis: stream 'news' group 'g' consumer 'c': 5000 counted entries not yet " \
           "acknowledged" in _format_positions(summary)
