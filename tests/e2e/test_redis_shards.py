"""Shard services reading ONE Redis stream in one consumer group, and the merged view
(`streamer run --shard DIR ...`) over their state directories: real redis-server, real
`python -m streamer run` processes, kill -9.

Every service counts exactly with no decay (engine.exact, half_life = 0), so "every entry
once" is checked as lines (and characters) counted == lines in the entries added, and the
group's pending list empty at the end (everything acknowledged). Which shard reads which
entry is up to Redis (each XREADGROUP takes the next batch_entries entries), so the split
differs from run to run; the sums do not.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from helpers import (
    INJECTED,
    LiveService,
    RedisServer,
    assert_counts_equal,
    background,
    chars_of,
    durable_lines,
    engine_state,
    entries_of,
    lines_of,
    pending,
    redis_service,
    redis_status,
    shared_words,
    xadd,
)

#: the shards' group, and the group of the one service they are compared with
SHARDS = "shards"
SINGLE = "single"
N_SHARDS = 3
#: the view's (and the single service's) min_count; a shard's is that / N (README)
MIN_COUNT = 6
INTERVALS = {"rescore": "300ms", "export": "500ms"}


def exact(min_count: int) -> dict[str, dict[str, Any]]:
    """Exact counters without decay: counts add by key whatever the sharding."""
    return {"engine": {"exact": True, "half_life": 0, "min_count": min_count},
            "intervals": INTERVALS}


def shard(root: Path, server: RedisServer, k: int, **redis: Any) -> LiveService:
    """Shard k: a member of group SHARDS, its own state directory (so its own consumer
    name), small reads so that the shards take turns."""
    return redis_service(root / f"shard{k}", server, group=SHARDS, batch_entries=20,
                         config=exact(MIN_COUNT // N_SHARDS), **redis)


def view(root: Path, shards: list[LiveService]) -> LiveService:
    """The merged view over the shards' state directories (created if missing)."""
    for s in shards:
        (s.root / "state").mkdir(exist_ok=True)
    return LiveService(root / "view", {
        **exact(MIN_COUNT), "sources": {"globs": []},
        "view": {"shards": [str(s.root / "state") for s in shards], "interval": "200ms"}})


def total_lines(services: list[LiveService]) -> int:
    return sum(s.lines() for s in services)


# =========================================================================== the same counts


def test_three_shards_and_a_view_count_what_one_service_counts(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """3 shards in one group + the view, against one service reading the same stream in
    its own group: the view counts what the single service counts (lines, characters,
    units; the n-gram and unigram tables of their snapshots are equal), the shards' lines
    add up to the entries', nothing is left pending.

    The published lists are not equal (each shard cuts pieces with the counts it has:
    docs/architecture.md, "What the merged list is"). What holds, and is asserted: every
    word the single service publishes (74 here, each seen >= 250 times) the view
    publishes, with the same pmi, and the injected words are among them; the view adds
    27-39 rare pieces (counts 6-24) that the shards, at min_count 6 / 3 = 2, cut out.
    Measured over 14 runs (which entries each shard reads changes from run to run): the
    whole lists share 0.65-0.73 of the words in either, the top 20 by score 0.45-0.65
    (scores use candidate tallies and neighbour tables, which are not shard-exact)."""
    rng = random.Random(20261203)
    texts = entries_of(background(rng, 3000, INJECTED), rng)
    total = lines_of(texts)
    shards = [shard(tmp_path, redis_server, k) for k in range(N_SHARDS)]
    single = redis_service(tmp_path / "single", redis_server, group=SINGLE,
                           config=exact(MIN_COUNT))
    merged = view(tmp_path, shards)
    services = [*shards, single, merged]
    try:
        for s in (*shards, single):
            s.start()
        merged.launch([], log_mode="ab")
        xadd(redis_server, texts, pause=0.02, chunk=20)  # a live feed the shards share
        single.wait_for(lambda: single.lines() == total, "the single service's lines")
        single.wait_for(lambda: total_lines(shards) == total, "the shards' lines")
        parts = [s.lines() for s in shards]
        for s in shards:
            assert s.stop() == 0  # a final snapshot, then its acks
        assert pending(redis_server, SHARDS) == 0
        single.rescored()

        merged.wait_for(lambda: merged.health_status() == 200, "the view to be healthy")
        stats = merged.wait_for(lambda: (st := merged.stats())["lines_ingested"] == total
                                and st, "the view to hold every shard's lines")
        merged.rescored()
        assert stats["chars_ingested"] == chars_of(texts)
        rows = stats["view"]["shards"]
        assert [r["lines_ingested"] for r in rows] == parts
        assert all(n > 0 for n in parts), parts  # the group dealt entries to all three
        assert all(r["problem"] is None and r["snapshot"] for r in rows)

        view_words, single_words = shared_words(merged, single, texts)
        # every word one service publishes the view publishes; the view's others are
        # rare pieces a shard (min_count 2) cut out where the single service did not
        assert set(single_words) <= set(view_words)
        extra = set(view_words) - set(single_words)
        assert all(view_words[w]["count"] < min(w["count"] for w in single_words.values())
                   for w in extra)

        assert_counts_equal(merged, single)
    finally:
        for s in services:
            s.cleanup()
    assert pending(redis_server, SINGLE) == 0


# =========================================================================== kill -9


def test_kill9_of_random_shards_at_random_moments_loses_and_doubles_nothing(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """20 SIGKILLs of a random shard at a random moment (restarted each time) while
    entries keep arriving (a feeder adds them until the last kill): at the end the
    shards' snapshots together count every line once, the view agrees, nothing is
    pending. A restarted shard re-reads its own pending entries (claim_idle stays at its
    default, far above the test's length, so no claims are involved)."""
    rng = random.Random(13)
    texts = entries_of(background(rng, 6000, INJECTED), rng)
    total = lines_of(texts)
    shards = [shard(tmp_path, redis_server, k) for k in range(N_SHARDS)]
    merged = view(tmp_path, shards)
    kills_done = threading.Event()
    added: list[int] = [0]

    def feed() -> None:
        """10 entries every 0.2 s until the kills are over (the entries last ~60 s,
        more than the kills take); the rest is added afterwards."""
        for i in range(0, len(texts), 10):
            if kills_done.is_set():
                return
            xadd(redis_server, texts[i:i + 10])
            added[0] = i + 10
            time.sleep(0.2)

    feeder = threading.Thread(target=feed)
    killed_counting = 0  # kills of a shard that had counted entries in that run
    try:
        for s in shards:
            s.start()
        feeder.start()
        for _ in range(20):
            s = shards[rng.randrange(N_SHARDS)]
            if rng.random() < 0.7:  # while reading, counting, snapshotting, acknowledging
                s.wait_for(lambda s=s: s.health_status() in (200, 503), "HTTP up")
                time.sleep(rng.uniform(0.0, 1.0))
                killed_counting += redis_status(s)["entries_counted"] > 0
            else:  # anywhere from the interpreter's start on
                time.sleep(rng.uniform(0.0, 1.0))
            s.kill9()
            s.spawn()
        kills_done.set()
        feeder.join()
        fed_during_kills = min(added[0], len(texts))
        xadd(redis_server, texts[fed_during_kills:])
        for s in shards:
            s.wait_for(lambda s=s: s.health_status() == 200, "the shard to be healthy")
        shards[0].wait_for(lambda: total_lines(shards) >= total, f"{total} lines counted")
        shards[0].wait_for(lambda: pending(redis_server, SHARDS) == 0, "everything acked")
        counted = total_lines(shards)
        for s in shards:
            assert s.stop() == 0, s.log()[-3000:]
        merged.start()
        stats = merged.wait_for(lambda: (st := merged.stats())["lines_ingested"] >= total
                                and st, "the view to hold every shard's lines")
    finally:
        kills_done.set()
        if feeder.is_alive():
            feeder.join()
        for s in (*shards, merged):
            s.cleanup()
    assert counted == total
    assert sum(durable_lines(s.root / "state") for s in shards) == total
    assert sum(engine_state(s.root / "state")["chars_ingested"] for s in shards) \
        == chars_of(texts)
    assert stats["lines_ingested"] == total and stats["chars_ingested"] == chars_of(texts)
    assert pending(redis_server, SHARDS) == 0
    logs = "".join(p.read_text(encoding="utf-8", errors="replace")
                   for s in shards for p in s.root.glob("daemon*.log"))
    # the kills left work to redo: entries delivered but in no snapshot were re-read
    assert "pending entr(ies) of consumer" in logs
    assert killed_counting >= 5
    assert fed_during_kills < len(texts)  # entries kept arriving until the last kill


# =========================================================================== dead for good


def test_a_shard_dead_for_good_has_its_pending_entries_claimed_by_the_others(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Shard A snapshots only when stopped (intervals.snapshot 1h): it counts a first
    share and stops cleanly (snapshot, acks), is started again, counts a share of the
    second entries and is killed -9 for good. Every entry it read in that run is pending
    under its name and in no snapshot, so the window between a snapshot's write and its
    XACK (docs/decisions.md) cannot arise. B and C (claim_idle 5 s) take A's pending
    entries over: A's last snapshot + B + C == every line, the view says the same."""
    rng = random.Random(14)
    first = entries_of(background(rng, 900, INJECTED), rng)
    second = entries_of(background(rng, 900, INJECTED), rng)
    total = lines_of(first) + lines_of(second)
    a = shard(tmp_path, redis_server, 0, snapshot_every="1h", claim_idle="2h")
    b, c = (shard(tmp_path, redis_server, k, claim_idle="5s", claim_interval="300ms")
            for k in (1, 2))
    shards = [a, b, c]
    merged = view(tmp_path, shards)
    try:
        for s in shards:
            s.start()
        xadd(redis_server, first, pause=0.02, chunk=20)
        a.wait_for(lambda: total_lines(shards) == lines_of(first), "the first entries")
        assert a.stop() == 0  # snapshot, then acks: A's first share is durable
        a_durable = durable_lines(a.root / "state")
        a.start()
        feeder = threading.Thread(target=xadd, args=(redis_server, second, 0.05, 10))
        feeder.start()
        a.wait_for(lambda: a.lines() > a_durable, "A to count some of the second entries")
        feeder.join()
        a.wait_for(lambda: total_lines(shards) == total, "every entry counted by someone")
        a_status = redis_status(a)
        a_pending = pending(redis_server, SHARDS, consumer=a_status["consumer"])
        # what A counted since its snapshot: read, counted, never acknowledged
        assert a_pending == a_status["counted_unacked"] == a_status["entries_counted"] > 0
        a_lines = a.lines() - a_durable
        a.kill9()  # for good

        b.wait_for(lambda: b.lines() + c.lines() + a_durable == total,
                   "B and C to count A's pending entries")
        b.wait_for(lambda: pending(redis_server, SHARDS) == 0, "all of them acknowledged")
        claimed = redis_status(b)["entries_claimed"] + redis_status(c)["entries_claimed"]
        assert b.stop() == 0 and c.stop() == 0
        merged.start()
        stats = merged.wait_for(lambda: (st := merged.stats())["lines_ingested"] == total
                                and st, "the view to hold every shard's lines")
    finally:
        for s in (*shards, merged):
            s.cleanup()
    assert claimed == a_pending
    assert a_lines > 0
    assert durable_lines(a.root / "state") == a_durable
    assert sum(durable_lines(s.root / "state") for s in shards) == total
    assert [r["lines_ingested"] for r in stats["view"]["shards"]] == \
        [durable_lines(s.root / "state") for s in shards]
    assert stats["chars_ingested"] == chars_of(first) + chars_of(second)
    assert pending(redis_server, SHARDS) == 0
