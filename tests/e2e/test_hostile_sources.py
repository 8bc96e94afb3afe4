"""`streamer run` processes against hostile inputs: a low open-file limit (RLIMIT_NOFILE set
in the child), symlink loops under a ``**`` glob, a watched directory that cannot be listed,
deleted and copytruncated files under /stats and /metrics."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import (
    BASE_CONFIG,
    DEADLINE,
    LiveService,
    append_lines,
    merged,
    streamer_env,
    toml_text,
)

from streamer.storage import snapshot


def _nofile(limit: int) -> Callable[[], None]:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return set_limit


def _wait_log(log: Path, proc: subprocess.Popen[bytes], check: Callable[[str], bool],
              what: str) -> str:
    end = time.monotonic() + DEADLINE
    while True:
        text = log.read_text(encoding="utf-8", errors="replace")
        if check(text):
            return text
        if proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"{what}: not seen (exit {proc.poll()})\n{text[-4000:]}")
        time.sleep(0.1)


def test_low_open_file_limit_counts_every_file_once(tmp_path: Path) -> None:
    """300 one-line files, RLIMIT_NOFILE 128, no HTTP: every line is counted exactly
    once, nothing fails for want of descriptors, and the run exits 0."""
    n = 300
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(n):
        (inbox / f"f{i:04d}.txt").write_text(f"第{i}行：描述符不够用的时候\n", encoding="utf-8")
    config = tmp_path / "streamer.toml"
    config.write_text(toml_text(merged(BASE_CONFIG, {
        "intervals": {"snapshot": "1h", "export": "1h"}})), encoding="utf-8")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", "--config", str(config), "--no-http"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=streamer_env(), preexec_fn=_nofile(128))
    try:
        def all_counted(text: str) -> bool:
            counts = re.findall(r"(\d+) lines, \d+ units ingested", text)
            return bool(counts) and int(counts[-1]) >= n

        _wait_log(log, proc, all_counted, f"{n} lines ingested")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(encoding="utf-8")
    assert "Too many open files" not in text, text[-4000:]
    result = snapshot.load_latest(tmp_path / "state")
    assert result is not None
    meta = result.header["metadata"]
    assert meta["lines_ingested"] == n
    positions = meta["sources"]["files"]
    assert len(positions) == n
    for pos in positions:  # every file consumed to its end, once
        assert pos["offset"] == (tmp_path / pos["path"]).stat().st_size, pos


def test_symlink_loops_under_a_recursive_glob(tmp_path: Path) -> None:
    svc = LiveService(tmp_path, {"sources": {"globs": ["inbox/**/*.txt"]}})
    (svc.inbox / "sub").mkdir()
    os.symlink(".", svc.inbox / "l1")
    os.symlink(".", svc.inbox / "l2")
    append_lines(svc.inbox / "ok.txt", ["符号链接的循环不该让服务卡住"])
    append_lines(svc.inbox / "sub" / "deep.txt", ["子目录里的文件也要读到"])
    try:
        svc.start()
        svc.wait_for(lambda: svc.stats()["lines_ingested"] == 2, "both files read")
        paths = sorted(row["path"] for row in svc.stats()["sources"])
        assert paths == ["inbox/ok.txt", "inbox/sub/deep.txt"]
        assert svc.stop(timeout=30) == 0
    finally:
        svc.cleanup()


def test_unlistable_watched_directory_is_reported(tmp_path: Path) -> None:
    """A watched directory whose listing fails (here a file where the glob expects a
    directory; chmod 000 does not stop root) turns /healthz 503 with the reason, is
    logged once, and is read as soon as it can be listed."""
    svc = LiveService(tmp_path, {"sources": {"globs": ["inbox/sub/*.txt"]}})
    (svc.inbox / "sub").write_text("not a directory\n")
    try:
        svc.launch([], log_mode="ab")

        def unhealthy() -> dict | None:
            status, body = svc.get("/healthz")
            return body if status == 503 and "cannot scan" in body.get("reason", "") else None

        body = svc.wait_for(unhealthy, "/healthz to name the directory")
        assert "inbox/sub: not a directory" in body["reason"], body
        assert body["status"] == "degraded", body
        assert svc.stats()["source_problems"] == {"inbox/sub": "not a directory"}
        time.sleep(0.5)  # several scans (every 100 ms)
        assert svc.log().count("cannot scan inbox/sub") == 1, svc.log()
        (svc.inbox / "sub").unlink()
        (svc.inbox / "sub").mkdir()
        append_lines(svc.inbox / "sub" / "a.txt", ["目录可以列出之后就读"])
        svc.wait_for(lambda: svc.health_status() == 200, "healthy again")
        svc.wait_for(lambda: svc.stats()["lines_ingested"] == 1, "the line read")
        assert svc.stop() == 0
    finally:
        svc.cleanup()


def test_bytes_ingested_never_goes_down_and_dropped_bytes_are_exposed(
        tmp_path: Path) -> None:
    svc = LiveService(tmp_path)
    try:
        svc.start()
        a = ["删除的文件不该让计数倒退"] * 20
        svc.feed(a, "a.txt")
        size_a = (svc.inbox / "a.txt").stat().st_size
        svc.wait_for(lambda: svc.stats()["bytes_ingested"] == size_a, "a.txt committed")
        (svc.inbox / "a.txt").unlink()
        svc.wait_for(lambda: all(r["closed"] for r in svc.stats()["sources"]), "a.txt closed")
        assert svc.stats()["bytes_ingested"] == size_a
        svc.feed(["截断的文件也不该"] * 10, "b.txt")
        size_b = (svc.inbox / "b.txt").stat().st_size
        svc.wait_for(lambda: svc.stats()["bytes_ingested"] == size_a + size_b,
                     "b.txt committed")
        os.truncate(svc.inbox / "b.txt", 0)  # copytruncate after everything was read
        svc.feed(["新的一行"], "b.txt")
        total = size_a + size_b + len("新的一行\n".encode())
        svc.wait_for(lambda: svc.stats()["bytes_ingested"] == total, "the new line")
        stats = svc.stats()
        assert stats["bytes_dropped"] == 0
        _, _, metrics = svc.http("GET", "/metrics")
        assert re.search(rb"^streamer_source_dropped_bytes_total 0$", metrics, re.M), metrics
        assert svc.stop() == 0
    finally:
        svc.cleanup()


def test_failing_exports_turn_health_degraded_until_they_succeed(tmp_path: Path) -> None:
    """An export directory that cannot be written (a file where it should be: root ignores
    permissions) turns /healthz 503 "degraded" with the reason; the service keeps
    counting, and health returns when exports succeed again."""
    svc = LiveService(tmp_path)
    try:
        svc.start()
        shutil.rmtree(svc.exports)
        svc.exports.write_text("not a directory\n")
        svc.feed(["导出目录坏了也照样计数"] * 20)

        def degraded() -> dict | None:
            status, body = svc.get("/healthz")
            return body if status == 503 and body.get("status") == "degraded" else None

        body = svc.wait_for(degraded, "/healthz degraded by the exports")
        assert body["reason"].startswith("exports failing: "), body
        svc.wait_for(lambda: svc.stats()["lines_ingested"] == 20, "lines still counted")
        svc.exports.unlink()
        svc.feed(["导出目录修好了"] * 5)
        svc.wait_for(lambda: svc.health_status() == 200, "healthy again")
        assert (svc.exports / "latest.jsonl").exists()
        assert svc.stop() == 0
    finally:
        svc.cleanup()
