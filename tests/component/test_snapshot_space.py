"""Snapshots on a full or read-only disk: a real small tmpfs, incompressible states.

A state of random bytes does not compress, so a snapshot of ``BLOB`` bytes takes that
much room: the tmpfs sizes below hold two snapshots plus a little, so keep=2 leaves no
room for the third file a write needs before retention can delete the oldest.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import remount, tmpfs

from streamer.storage.snapshot import (
    SnapshotWriteError,
    intervals_without_snapshot,
    list_snapshots,
    load_latest,
    write_snapshot,
)
from streamer.storage.snapshot_store import error_kind

FP = "space-test"
MiB = 2**20
BLOB = 3 * MiB


def noise(seed: int) -> dict[str, np.ndarray]:
    return {"blob": np.random.default_rng(seed).integers(0, 256, BLOB, dtype=np.uint8)}


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    size = getattr(request, "param", 8 * MiB)
    with tmpfs(tmp_path / "disk", size) as mnt:
        yield mnt


def test_full_disk_prunes_older_snapshots_and_keeps_writing(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.storage.snapshot")
    directory = small_disk / "state"
    written = [write_snapshot(directory, noise(0), fingerprint=FP, keep=2)]
    for i in range(1, 6):
        newest_before = list_snapshots(directory)[-1]
        path = write_snapshot(directory, noise(i), fingerprint=FP, keep=2)
        written.append(path)
        # the newest good snapshot is never given up for room
        assert list_snapshots(directory) == [newest_before, path]
        assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]
    pruned = [r.getMessage() for r in caplog.records if "to make room" in r.getMessage()]
    assert len(pruned) >= 3, "the disk never filled: the test's sizes are wrong"
    assert all("No space left on device" in m for m in pruned)
    result = load_latest(directory, fingerprint=FP)
    assert result is not None and result.path == written[-1]
    assert result.state["blob"].tobytes() == noise(5)["blob"].tobytes()


@pytest.mark.parametrize("small_disk", [5 * MiB], indirect=True)
def test_no_room_even_for_one_more_keeps_the_newest(small_disk: Path) -> None:
    directory = small_disk / "state"
    only = write_snapshot(directory, noise(0), fingerprint=FP, keep=2)
    with pytest.raises(SnapshotWriteError) as info:
        write_snapshot(directory, noise(1), fingerprint=FP, keep=2)
    err = info.value
    assert err.kind == "no-space" and err.errno == errno.ENOSPC and err.pruned == []
    assert "no space left for a new snapshot" in str(err) and str(directory) in str(err)
    assert list_snapshots(directory) == [only]
    assert sorted(os.listdir(directory)) == [only.name]  # the partial file is gone
    result = load_latest(directory, fingerprint=FP)
    assert result is not None and result.state["blob"].tobytes() == noise(0)["blob"].tobytes()


def test_read_only_directory_deletes_nothing(small_disk: Path) -> None:
    directory = small_disk / "state"
    kept = [write_snapshot(directory, noise(i), fingerprint=FP, keep=2) for i in range(2)]
    remount(small_disk, "ro")
    try:
        with pytest.raises(SnapshotWriteError) as info:
            write_snapshot(directory, noise(2), fingerprint=FP, keep=2)
        assert info.value.kind == "read-only" and info.value.errno == errno.EROFS
        assert "no snapshot was deleted" in str(info.value)
        assert list_snapshots(directory) == kept
    finally:
        remount(small_disk, "rw")
    newest = write_snapshot(directory, noise(2), fingerprint=FP, keep=2)
    assert list_snapshots(directory) == [kept[1], newest]


_FSIZE_CHILD = """
import resource, sys
import numpy as np
from streamer.storage.snapshot import SnapshotWriteError, write_snapshot
resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))
blob = np.random.default_rng(9).integers(0, 256, 3 * 2**20, dtype=np.uint8)
try:
    write_snapshot(sys.argv[1], {"blob": blob}, fingerprint="space-test", keep=2)
except SnapshotWriteError as e:
    print(e.kind, e.errno, e)
"""


def test_file_size_limit_deletes_nothing(tmp_path: Path) -> None:
    """EFBIG (RLIMIT_FSIZE in a child process): a per-file limit, so pruning other
    snapshots cannot help and none is deleted."""
    directory = tmp_path / "state"
    kept = [write_snapshot(directory, {"n": i}, fingerprint=FP, keep=2) for i in range(2)]
    done = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(directory)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kind, code, message = done.stdout.split(" ", 2)
    assert (kind, int(code)) == ("file-too-large", errno.EFBIG), done.stdout
    assert "no snapshot was deleted" in message
    assert list_snapshots(directory) == kept
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]


def test_error_kinds_and_intervals_without_snapshot() -> None:
    assert error_kind(OSError(errno.ENOSPC, "full")) == "no-space"
    assert error_kind(OSError(errno.EDQUOT, "quota")) == "no-space"
    assert error_kind(OSError(errno.EFBIG, "too big")) == "file-too-large"
    assert error_kind(OSError(errno.EROFS, "ro")) == "read-only"
    assert error_kind(PermissionError(errno.EACCES, "denied")) == "read-only"
    assert error_kind(OSError(errno.EIO, "io")) == "io"
    assert error_kind(TypeError("set")) == "invalid"
    # floor((now - max(last, started)) / interval), seconds
    assert intervals_without_snapshot(None, started=100.0, now=250.0, interval=60.0) == 2
    assert intervals_without_snapshot(130.0, started=100.0, now=250.0, interval=60.0) == 2
    assert intervals_without_snapshot(200.0, started=100.0, now=250.0, interval=60.0) == 0
    assert intervals_without_snapshot(300.0, started=100.0, now=250.0, interval=60.0) == 0
