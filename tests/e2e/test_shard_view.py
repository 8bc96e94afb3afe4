"""Three shard services and a merged view (`streamer run --shard DIR ...`) against one
service over the same text: real processes, real files, real snapshots.

Each shard tails its own third of the input; the view reads the shards' state
directories. With exact counters and no decay the view's merged state counts what one
service counts: the same lines, characters and units, the same n-gram and unigram tables
(compared in the view's own snapshot against the single service's), hence the same pmi
for every word both publish. Candidate tallies, neighbours and so scores are not
shard-exact (docs/architecture.md, "What the merged list is"); the test checks the
injected words are published by both with at most their true number of occurrences.
"""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest
from helpers import (
    INJECTED,
    LiveService,
    append_lines,
    assert_counts_equal,
    background,
    shared_words,
)

from streamer.storage import snapshot

#: exact counters, no decay: the count phase adds by key whatever the sharding
EXACT = {"engine": {"exact": True, "half_life": 0, "min_count": 5},
         "intervals": {"rescore": "300ms", "snapshot": "500ms", "export": "500ms"}}


def view_config(shards: list[Path], extra: dict | None = None) -> dict:
    cfg = {**EXACT, "view": {"shards": [str(s) for s in shards], "interval": "200ms"}}
    return {**cfg, **(extra or {})}


@pytest.fixture
def lines() -> list[str]:
    return background(random.Random(11), 3000, INJECTED)


def test_three_shards_and_a_view_count_what_one_service_counts(tmp_path: Path,
                                                               lines: list[str]) -> None:
    services: list[LiveService] = []
    try:
        single = LiveService(tmp_path / "single", EXACT)
        append_lines(single.inbox / "all.txt", lines)
        shards = []
        for k in range(3):
            shard = LiveService(tmp_path / f"shard{k}", EXACT)
            append_lines(shard.inbox / "part.txt", lines[k::3])
            shards.append(shard)
        view = LiveService(tmp_path / "view", view_config([s.root / "state" for s in shards]))
        for s in shards:
            (s.root / "state").mkdir()
        services += [single, *shards, view]
        for s in (single, *shards):
            s.start()
        view.launch([], log_mode="ab")
        for k, s in enumerate(shards):
            s.wait_for(lambda s=s, k=k: s.stats()["lines_ingested"] == len(lines[k::3]),
                       "the shard's lines")
            # the final snapshot holds every line it counted
            assert s.stop() == 0
        single.wait_for(lambda: single.stats()["lines_ingested"] == len(lines), "all lines")
        single.rescored()

        view.wait_for(lambda: view.health_status() == 200, "the view to be healthy")
        stats = view.wait_for(lambda: (s := view.stats())["lines_ingested"] == len(lines)
                              and s, "the view to hold every shard's lines")
        view.rescored()
        rows = stats["view"]["shards"]
        assert [r["lines_ingested"] for r in rows] == [len(lines[k::3]) for k in range(3)]
        assert all(r["problem"] is None and r["snapshot"] for r in rows)
        shared_words(view, single, lines)

        status, metrics = view.http("GET", "/metrics")[0], view.http("GET", "/metrics")[2]
        text = metrics.decode()
        assert status == 200 and "streamer_view_shards 3" in text
        assert text.count("streamer_view_shard_snapshot_age_seconds{") == 3

        assert_counts_equal(view, single)
    finally:
        for s in services:
            s.cleanup()


def test_view_reports_a_bad_shard_and_keeps_its_previous_state(tmp_path: Path,
                                                               lines: list[str]) -> None:
    shard = LiveService(tmp_path / "shard", EXACT)
    view = LiveService(tmp_path / "view", view_config([shard.root / "state"]))
    try:
        append_lines(shard.inbox / "part.txt", lines[:600])
        shard.start()
        shard.wait_for(lambda: shard.stats()["lines_ingested"] == 600, "600 lines")
        assert shard.stop() == 0
        view.start()
        view.wait_for(lambda: view.stats()["lines_ingested"] == 600, "the shard's lines")

        # a newer snapshot that is damaged: the view keeps what it had, says which shard
        state = shard.root / "state"
        newest = snapshot.list_snapshots(state)[-1]
        bad = state / newest.name.replace("-0000", "-9999", 1)
        shutil.copyfile(newest, bad)
        with open(bad, "r+b") as f:
            f.seek(-64, 2)
            f.write(b"\0" * 64)

        def degraded() -> dict | None:
            status, body = view.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = view.wait_for(degraded, "/healthz degraded")
        assert str(state) in body["reason"] and bad.name in body["reason"], body
        assert view.stats()["lines_ingested"] == 600
        assert bad.exists()  # a shard's directory is read-only to the view
        bad.unlink()
        view.wait_for(lambda: view.health_status() == 200, "healthy again")

        # the shard restarted with other engine settings: its new snapshot is refused by
        # name and the file merged before keeps its place
        other = snapshot.write_snapshot(state, {"engine": {}}, fingerprint="0123456789abcdef",
                                        keep=5)
        body = view.wait_for(lambda: (b := degraded()) and other.name in b["reason"] and b,
                             "/healthz degraded for the other configuration")
        assert "different engine configuration" in body["reason"], body
        assert newest.name in body["reason"]  # kept
        assert view.stats()["lines_ingested"] == 600
    finally:
        shard.cleanup()
        view.cleanup()


def test_view_refuses_a_shard_of_another_engine_configuration_or_a_file(tmp_path: Path,
                                                              lines: list[str]) -> None:
    shard = LiveService(tmp_path / "shard", {"engine": {"memory": "16MB"}})
    try:
        append_lines(shard.inbox / "part.txt", lines[:300])
        shard.start()
        shard.wait_for(lambda: shard.stats()["lines_ingested"] == 300, "300 lines")
        assert shard.stop(signal.SIGTERM) == 0
    finally:
        shard.cleanup()
    view = LiveService(tmp_path / "view")
    proc = view.launch(["--shard", str(shard.root / "state")])
    assert proc.wait(60) == 2
    err = view.log()
    assert "--shard" in err and str(shard.root / "state") in err
    assert "different engine configuration" in err
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    proc = view.launch(["--shard", str(a_file)])
    assert proc.wait(60) == 2
    assert "not a directory" in view.log()


def test_a_shard_directory_that_appears_later_joins_the_view(tmp_path: Path,
                                                             lines: list[str]) -> None:
    """Shards and the view may start together: a shard's state directory that does not
    exist yet is reported (degraded, named) and merged once it holds a snapshot."""
    shard = LiveService(tmp_path / "shard", EXACT)
    view = LiveService(tmp_path / "view", view_config([shard.root / "state"]))
    try:
        view.launch([], log_mode="ab")

        def degraded() -> dict | None:
            status, body = view.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = view.wait_for(degraded, "/healthz degraded")
        assert "no such directory" in body["reason"] and str(shard.root) in body["reason"]
        append_lines(shard.inbox / "part.txt", lines[:300])
        shard.start()
        view.wait_for(lambda: view.health_status() == 200
                      and view.stats()["lines_ingested"] == 300, "the shard merged")
    finally:
        shard.cleanup()
        view.cleanup()


def test_a_restarted_view_publishes_its_own_last_state_until_shards_can_be_read(
        tmp_path: Path, lines: list[str]) -> None:
    """The view snapshots its merged state: restarted while its shard cannot be read, it
    publishes that state (same words, same first_seen), says which shard is missing, and
    merges again once the shard is back."""
    shard = LiveService(tmp_path / "shard", EXACT)
    view = LiveService(tmp_path / "view", view_config([shard.root / "state"]))
    try:
        append_lines(shard.inbox / "part.txt", lines[:900])
        shard.start()
        shard.wait_for(lambda: shard.stats()["lines_ingested"] == 900, "900 lines")
        assert shard.stop() == 0
        view.start()
        view.wait_for(lambda: view.stats()["lines_ingested"] == 900, "the shard merged")
        view.rescored()
        before = {w["word"]: w["first_seen"] for w in view.words(limit=10_000)}
        assert set(INJECTED) <= set(before)
        assert view.stop() == 0

        away = shard.root / "state-away"
        (shard.root / "state").rename(away)
        view.launch([], log_mode="ab")

        def degraded() -> dict | None:
            status, body = view.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = view.wait_for(degraded, "/healthz degraded")
        assert str(shard.root / "state") in body["reason"]
        assert view.stats()["lines_ingested"] == 900
        after = {w["word"]: w["first_seen"] for w in view.words(limit=10_000)}
        assert after == before
        away.rename(shard.root / "state")
        view.wait_for(lambda: view.health_status() == 200, "healthy again")
        assert {w["word"]: w["first_seen"] for w in view.words(limit=10_000)} == before
    finally:
        shard.cleanup()
        view.cleanup()
