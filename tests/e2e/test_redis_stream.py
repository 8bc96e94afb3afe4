"""A Redis stream as the service's source, end to end: real redis-server, real
`python -m streamer run` processes, kill -9, outages, a dead consumer, trimming.

Each entry is 1-3 lines of text (field "text"); the service counts exactly (engine.exact),
so "every entry once" is checked as lines and characters counted == lines and characters
added, and the group's pending list empty at the end (everything acknowledged).
"""

from __future__ import annotations

import random
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from helpers import (
    REDIS_GROUP,
    REDIS_STREAM,
    LiveService,
    RedisServer,
    chars_of,
    durable_lines,
    entries,
    lines_of,
    pending,
    redis_service,
    redis_status,
    xadd,
)

from streamer.storage import snapshot

STREAM = REDIS_STREAM
GROUP = REDIS_GROUP


def metric(svc: LiveService, name: str) -> float:
    with urllib.request.urlopen(svc.url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def all_logs(root: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace")
                   for p in sorted(root.glob("daemon*.log")))


# =========================================================================== kill -9


def test_kill9_at_random_moments_counts_every_entry_once(tmp_path: Path,
                                                         redis_server: RedisServer) -> None:
    """20 SIGKILLs at random moments (entries arriving meanwhile in half of the rounds),
    a restart after each, then a clean stop: every line counted once, nothing pending."""
    rng = random.Random(20261203)
    texts = entries(rng, 3000)
    svc = redis_service(tmp_path / "svc", redis_server)
    xadd(redis_server, texts[:600])
    rest = texts[600:]
    per_round = len(rest) // 10
    ran = 0  # rounds killed after counting new entries
    try:
        for round_ in range(20):
            feed = rest[:per_round] if round_ % 2 == 0 else []
            rest = rest[len(feed):]
            feeder = threading.Thread(target=xadd, args=(redis_server, feed, 0.02, 20))
            svc.spawn()
            feeder.start()
            if rng.random() < 0.75:  # while reading, counting, snapshotting, acking
                svc.wait_for(lambda: svc.health_status() in (200, 503), "HTTP up")
                before = svc.lines()
                if feed:
                    svc.wait_for(lambda b=before: svc.lines() > b, "new lines counted")
                    ran += 1
                time.sleep(rng.uniform(0.0, 1.0))
            else:  # anywhere from the interpreter's start on
                time.sleep(rng.uniform(0.05, 2.0))
            svc.kill9()
            feeder.join()
        xadd(redis_server, rest)
        total = lines_of(texts)
        svc.spawn()
        svc.wait_for(lambda: svc.lines() >= total, f"{total} lines counted")
        stats = svc.stats()
        assert svc.stop() == 0, svc.log()[-3000:]
    finally:
        svc.cleanup()
    assert stats["lines_ingested"] == total
    assert stats["chars_ingested"] == chars_of(texts)
    assert pending(redis_server) == 0
    result = snapshot.load_latest(svc.root / "state")
    assert result is not None and result.state["engine"]["lines_ingested"] == total
    # the kills left work to redo: entries delivered but in no snapshot were re-read
    assert "pending entr(ies) of consumer" in all_logs(svc.root)
    assert ran >= 3


# =========================================================================== outages


def test_redis_outage_degrades_and_recovers_without_losing_entries(tmp_path: Path) -> None:
    """redis-server (with its append-only file) stopped under a running service: the
    service keeps serving, /healthz says degraded and why, /metrics shows it; once Redis is
    back, it reconnects and counts what came meanwhile and since, once."""
    server = RedisServer(tmp_path / "redis", persist=True).start()
    rng = random.Random(7)
    first, second = entries(rng, 200), entries(rng, 200)
    svc = redis_service(tmp_path / "svc", server)
    try:
        xadd(server, first)
        svc.start()
        svc.wait_for(lambda: svc.lines() == lines_of(first), "the first entries counted")
        server.stop()

        def degraded() -> dict[str, Any] | None:
            status, body = svc.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = svc.wait_for(degraded, "/healthz degraded")
        assert "unreachable" in body["reason"] and STREAM in body["reason"], body
        assert svc.stats()["lines_ingested"] == lines_of(first)  # still serving
        assert metric(svc, "streamer_redis_connected") == 0
        assert redis_status(svc)["state"] == "disconnected"
        server.start()
        xadd(server, second)
        total = lines_of(first) + lines_of(second)
        svc.wait_for(lambda: svc.lines() == total, "the second entries counted")
        svc.wait_for(lambda: svc.health_status() == 200, "healthy again")
        assert metric(svc, "streamer_redis_connected") == 1
        assert metric(svc, "streamer_redis_reconnects_total") >= 1
        svc.wait_for(lambda: pending(server) == 0, "everything acknowledged")
        assert svc.stop() == 0
    finally:
        svc.cleanup()
        server.stop()
    log = svc.log()
    assert "retrying with backoff" in log and "reconnected to" in log


def test_redis_restarted_empty_group_is_created_again(tmp_path: Path,
                                                      redis_server: RedisServer) -> None:
    """Redis restarted without its data: the group is created again from the start of the
    (new) stream, with a warning, and new entries are counted."""
    rng = random.Random(8)
    first, second = entries(rng, 50), entries(rng, 50)
    svc = redis_service(tmp_path / "svc", redis_server)
    try:
        xadd(redis_server, first)
        svc.start()
        svc.wait_for(lambda: svc.lines() == lines_of(first), "the first entries counted")
        redis_server.stop()
        redis_server.start()
        xadd(redis_server, second)
        total = lines_of(first) + lines_of(second)
        svc.wait_for(lambda: svc.lines() == total, "the entries of the new stream counted")
        svc.wait_for(lambda: svc.health_status() == 200, "healthy again")
        assert svc.stop() == 0
    finally:
        svc.cleanup()
    assert "was missing (Redis restarted without its data?)" in svc.log()


# =========================================================================== claiming


def test_a_consumer_dead_for_good_has_its_entries_claimed(tmp_path: Path,
                                                          redis_server: RedisServer) -> None:
    """A counts and stops cleanly (snapshot, acks), reads more and is killed -9 for good;
    B (claim_idle 1 s) takes A's pending entries over: A's last snapshot + B == all."""
    rng = random.Random(9)
    first, second = entries(rng, 200), entries(rng, 300)
    a = redis_service(tmp_path / "a", redis_server, snapshot_every="1h", claim_idle="2h")
    b = redis_service(tmp_path / "b", redis_server, claim_idle="1s", claim_interval="200ms")
    try:
        xadd(redis_server, first)
        a.start()
        a.wait_for(lambda: a.lines() == lines_of(first), "A counted the first entries")
        assert a.stop() == 0
        assert pending(redis_server) == 0
        xadd(redis_server, second)
        a.start()
        total = lines_of(first) + lines_of(second)
        a.wait_for(lambda: a.lines() == total, "A counted the second entries")
        a.kill9()  # no snapshot since the first run's: the second entries are A's, pending
        assert pending(redis_server) == len(second)
        b.start()
        b.wait_for(lambda: b.lines() == lines_of(second), "B counted A's entries")
        claimed = redis_status(b)["entries_claimed"]
        b.wait_for(lambda: pending(redis_server) == 0, "B acknowledged them")
        assert b.stop() == 0
    finally:
        a.cleanup()
        b.cleanup()
    assert claimed == len(second)
    assert durable_lines(a.root / "state") == lines_of(first)
    assert durable_lines(a.root / "state") + durable_lines(b.root / "state") == total
    consumers = {c["name"] for c in redis_server.client().xinfo_consumers(STREAM, GROUP)}
    assert len(consumers) == 2  # the default consumer names differ by state directory


# =========================================================================== trimming


def test_entries_trimmed_or_deleted_while_down_are_counted_as_lost(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """While the service is down, the stream is trimmed past what the group read (and past
    entries it had read but not snapshotted): those are reported as lost, the rest is
    counted."""
    rng = random.Random(10)
    first, second, third = entries(rng, 300), entries(rng, 50), entries(rng, 500)
    svc = redis_service(tmp_path / "svc", redis_server, snapshot_every="1h", claim_idle="2h")
    try:
        xadd(redis_server, first)
        svc.start()
        svc.wait_for(lambda: svc.lines() == lines_of(first), "the first entries counted")
        assert svc.stop() == 0  # snapshot + acks
        svc.start()
        xadd(redis_server, second)
        svc.wait_for(lambda: svc.lines() == lines_of(first + second), "second counted")
        svc.kill9()  # the second entries: delivered, counted in no snapshot, pending
        xadd(redis_server, third)
        redis_server.client().xtrim(STREAM, maxlen=100, approximate=False)
        svc.start()
        kept = third[-100:]
        svc.wait_for(lambda: svc.lines() == lines_of(first + kept), "the kept ones counted")
        st = redis_status(svc)
        assert metric(svc, "streamer_redis_entries_lost_total") == 50 + 400
        # the deleted ones are acknowledged at once; the kept ones after the next snapshot
        svc.wait_for(lambda: pending(redis_server) == 100, "the deleted ones acknowledged")
        assert svc.stop(signal.SIGTERM) == 0
    finally:
        svc.cleanup()
    assert pending(redis_server) == 0
    assert st["entries_lost"] == 450
    log = svc.log()
    assert "400 entries of stream 'news' were trimmed before group 'streamers' read them" in log
    assert "50 pending entr(ies) of stream 'news' were deleted before they were counted" in log


def test_redis_down_at_start_the_service_serves_and_waits(tmp_path: Path,
                                                          redis_server: RedisServer) -> None:
    """Started while Redis is down: it serves (degraded, with the reason) instead of
    failing, and reads once Redis is up."""
    redis_server.stop()
    rng = random.Random(11)
    texts = entries(rng, 30)
    svc = redis_service(tmp_path / "svc", redis_server)
    try:
        svc.spawn()

        def degraded() -> dict[str, Any] | None:
            status, body = svc.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = svc.wait_for(degraded, "/healthz degraded")
        assert "unreachable" in body["reason"], body
        redis_server.start()
        xadd(redis_server, texts)
        svc.wait_for(lambda: svc.lines() == lines_of(texts), "the entries counted")
        svc.wait_for(lambda: svc.health_status() == 200, "healthy")
        assert svc.stop() == 0
    finally:
        svc.cleanup()
    assert pending(redis_server) == 0


def test_acks_owed_at_shutdown_are_sent_at_the_next_start_not_counted_again(
        tmp_path: Path) -> None:
    """Redis down when the service stops: the final snapshot holds the counted ids, the
    acks cannot go; at the next start they are sent and those entries are not counted
    again (the path a kill -9 between a snapshot and its acks takes)."""
    server = RedisServer(tmp_path / "redis", persist=True).start()
    rng = random.Random(12)
    texts = entries(rng, 100)
    svc = redis_service(tmp_path / "svc", server, snapshot_every="1h", claim_idle="2h")
    try:
        xadd(server, texts)
        svc.start()
        svc.wait_for(lambda: svc.lines() == lines_of(texts), "the entries counted")
        server.stop()
        assert svc.stop() == 0
        assert "ack(s) not sent at shutdown" in svc.log()
        server.start()
        assert pending(server) == len(texts)  # counted, snapshotted, not acknowledged
        svc.start()
        svc.wait_for(lambda: pending(server) == 0, "the owed acks sent")
        assert svc.lines() == lines_of(texts)  # restored, not counted again
        assert redis_status(svc)["entries_skipped"] == len(texts)
        assert svc.stop() == 0
    finally:
        svc.cleanup()
        server.stop()
