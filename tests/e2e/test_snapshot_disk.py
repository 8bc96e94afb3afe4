"""A real ``streamer run`` whose state directory is on a small tmpfs that fills up and is
then made read-only: snapshots keep being written once the disk is full (older ones are
deleted to make room, never the newest), and /healthz and /metrics say "degraded" with
the number of intervals without a snapshot while they fail, and recover afterwards.

Needs root for ``mount -t tmpfs`` (skipped with the reason otherwise); unmounted in
teardown. Waiting is "poll until a condition holds, or fail at a deadline with the log".
"""

from __future__ import annotations

import random
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import LiveService, background, fill, remount, tmpfs

from streamer.storage import snapshot

MiB = 2**20


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", 64 * MiB) as mnt:
        yield mnt


def metric(svc: LiveService, name: str) -> float:
    status, _, body = svc.http("GET", "/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def health(svc: LiveService) -> tuple[int, dict[str, Any]]:
    return svc.get("/healthz")


def test_snapshots_survive_a_full_disk_and_report_read_only(tmp_path: Path, disk: Path) -> None:
    state = disk / "state"
    svc = LiveService(tmp_path / "svc", {
        "engine": {"memory": "8MB"},
        "intervals": {"snapshot": "1s"},
        "state": {"dir": str(state), "keep": 2},
    })
    rng = random.Random(11)
    try:
        svc.start()
        svc.feed(background(rng, 3000))
        first = svc.wait_for(lambda: snapshot.list_snapshots(state), "a first snapshot")[-1]
        size = first.stat().st_size
        # room for the newest snapshot plus about half another: every later write only
        # fits once the older kept snapshot is gone
        ballast = fill(disk, leave=int(1.6 * size))
        made_room = 0
        for _ in range(6):
            before = svc.stats()["snapshots"]
            svc.feed(background(rng, 20))
            svc.wait_for(lambda b=before: svc.stats()["snapshots"] > b, "one more snapshot")
            made_room = svc.log().count("to make room")
        assert made_room >= 2, svc.log()
        assert len(snapshot.list_snapshots(state)) <= 2
        assert svc.health_status() == 200

        # full: not even one more snapshot fits beside the newest (the test deletes the
        # older kept one, which would otherwise make room for exactly one more write)
        while len(snapshot.list_snapshots(state)) > 1:  # a timer may write meanwhile
            for older in snapshot.list_snapshots(state)[:-1]:
                older.unlink()
            fill(disk, leave=size // 4)
        svc.feed(background(rng, 20))
        degraded = svc.wait_for(lambda: (h := health(svc))[0] == 503 and h[1], "degraded")
        assert degraded["status"] == "degraded", degraded
        assert re.match(r"snapshots failing: \d+ intervals without a snapshot "
                        r"\(last error: no-space: ", degraded["reason"]), degraded
        assert "the newest snapshot is kept" in degraded["reason"]
        assert metric(svc, "streamer_snapshot_failing_intervals") >= 1
        newest = snapshot.list_snapshots(state)[-1]
        assert snapshot.load_latest(state) is not None  # the newest good one is intact

        ballast.unlink()
        svc.wait_for(lambda: svc.health_status() == 200, "healthy once there is room")
        assert metric(svc, "streamer_snapshot_failing_intervals") == 0
        assert snapshot.list_snapshots(state)[-1] != newest

        # read-only: reported, nothing deleted
        kept = snapshot.list_snapshots(state)
        remount(disk, "ro")
        try:
            svc.feed(background(rng, 20))
            status, body = svc.wait_for(lambda: (h := health(svc))[0] == 503 and h,
                                        "degraded while read-only")
            assert body["status"] == "degraded"
            assert "last error: read-only: " in body["reason"], body
            assert "no snapshot was deleted" in body["reason"], body
            assert snapshot.list_snapshots(state) == kept
        finally:
            remount(disk, "rw")
        svc.wait_for(lambda: svc.health_status() == 200, "healthy once writable again")
        lines = svc.stats()["lines_ingested"]
        assert svc.stop(signal.SIGTERM) == 0
        result = snapshot.load_latest(state)
        assert result is not None and result.header["metadata"]["lines_ingested"] == lines
    finally:
        svc.cleanup()
