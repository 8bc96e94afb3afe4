"""The one atomic writer: replace a file whole or not at all, and clean up after the dead.

Real files under tmp_path. os.fsync is replaced only to inject the errors a filesystem can
report; fsync_dir is wrapped (and still called) to see what the directory holds when it
is synced.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.storage import atomic
from streamer.storage.atomic import (
    atomic_write,
    fsync_dir,
    pid_alive,
    remove_leftover_temps,
    write_bytes,
)
from streamer.storage.sizes import format_bytes

TEMP = re.compile(r"^\.part-(?P<pid>\d+)$")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Boom(Exception):
    pass


def test_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failure_mid_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old and complete")
    with pytest.raises(Boom), atomic_write(target) as f:
        f.write(b"half of the new")
        f.flush()
        assert len(os.listdir(tmp_path)) == 2  # the temporary file exists meanwhile
        raise Boom
    assert target.read_bytes() == b"old and complete"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failing_rename_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_bytes(b"x")  # a non-empty directory cannot be replaced
    with pytest.raises(OSError):
        write_bytes(target, b"data")
    assert sorted(os.listdir(tmp_path)) == ["taken"]
    assert os.listdir(target) == ["inside"]


def test_an_existing_temp_name_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / ".part").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        write_bytes(tmp_path / "out", b"data", temp_name=".part")
    assert (tmp_path / ".part").read_bytes() == b"someone else's"
    assert not (tmp_path / "out").exists()


def test_the_directory_is_synced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def recording(directory: str | os.PathLike[str]) -> None:
        seen.append(sorted(os.listdir(directory)))
        fsync_dir(directory)

    monkeypatch.setattr(atomic, "fsync_dir", recording)
    write_bytes(tmp_path / "out", b"data")
    assert seen == [["out"]]  # synced once, with the final name in place and no temp
    write_bytes(tmp_path / "second", b"data", sync_dir=False)
    assert seen == [["out"]]  # left to the caller


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "out", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o640


def test_the_file_can_be_patched_before_it_is_renamed(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "out") as f:
        f.write(b"\0\0\0\0payload")
        f.seek(0)
        f.write(b"HEAD")
    assert (tmp_path / "out").read_bytes() == b"HEADpayload"


def test_fsync_dir_ignores_only_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")

    def failing(code: int):  # type: ignore[no-untyped-def]
        def fsync(fd: int) -> None:
            raise OSError(code, os.strerror(code))
        return fsync

    monkeypatch.setattr(os, "fsync", failing(errno.EINVAL))
    fsync_dir(tmp_path)  # a filesystem that cannot sync directories: nothing to do
    monkeypatch.setattr(os, "fsync", failing(errno.EIO))
    with pytest.raises(OSError) as caught:
        fsync_dir(tmp_path)  # a failed write-back must reach the caller
    assert caught.value.errno == errno.EIO


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(os.getppid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0)  # kill(0, ...) would address our own process group
    assert not pid_alive(-1)
    assert not pid_alive(2**80)  # beyond any pid: OverflowError inside


def test_leftover_temps_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f".part-{dead_pid()}"
    live = tmp_path / f".part-{os.getppid()}"
    mine = tmp_path / f".part-{os.getpid()}"
    other = tmp_path / ".part-notes"  # not ours: the pattern does not match
    for p in (dead, live, mine, other):
        p.write_bytes(b"partial")
    assert remove_leftover_temps(tmp_path, TEMP, own_pid_is_stale=False) == [dead]
    assert live.exists() and mine.exists() and other.exists()
    assert remove_leftover_temps(tmp_path, TEMP, own_pid_is_stale=True) == [mine]
    assert live.exists() and other.exists()
    assert remove_leftover_temps(tmp_path / "missing", TEMP, own_pid_is_stale=True) == []


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (256 * 2**20, "256.0 MiB"), (3 * 2**30, "3.0 GiB"), (5 * 2**50, "5120.0 TiB"),
])
def test_format_bytes_in_binary_units(n: int, text: str) -> None:
    assert format_bytes(n) == text
