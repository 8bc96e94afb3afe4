"""`streamer run` as a real process on real files.

Every test starts ``python -m streamer run`` in a temporary directory (replay time, small
memory, sub-second intervals, a free localhost port), writes files the way producers and
log rotators do, and asserts on what the service publishes: /stats and /words over HTTP,
exports/latest.jsonl, the snapshot directory. Waiting is always "poll until a condition
holds, or fail at a generous deadline" - never a fixed sleep for correctness and never an
assertion on timing.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    VOCAB,
    DaemonProcess,
    append,
    append_lines,
    background,
    merged,
    streamer_env,
    toml_text,
)

from streamer.storage import snapshot

#: A made-up word. Its PMI is about ln(units per occurrence), so it is injected into one
#: line in six: often enough to pass min_count quickly, rare enough to be cohesive.
INJECTED = "蓝鲸币"
assert not set(INJECTED) & set("".join(VOCAB))


BASE_CONFIG = """
[sources]
globs = ["inbox/*.txt"]
scan_interval = "100ms"
poll_interval = "50ms"
rotate_wait = "500ms"
[engine]
memory = "8MB"
min_count = 5
known = []
[time]
mode = "replay"
chars_per_second = 1000
[intervals]
rescore = "0.5s"
snapshot = "1s"
export = "1s"
[state]
dir = "state"
[export]
dir = "exports"
[log]
level = "debug"
"""


def merge_config(base: str, extra: str) -> str:
    """Overlay `extra` TOML onto `base` (section by section, key by key)."""
    import tomllib

    return toml_text(merged(tomllib.loads(base), tomllib.loads(extra)))


class Service(DaemonProcess):
    """One test's daemon: its directory, config, process and HTTP client."""

    stop_timeout = 30.0

    def __init__(self, root: Path, extra_config: str = "") -> None:
        super().__init__(root)
        self.config.write_text(merge_config(BASE_CONFIG, extra_config), encoding="utf-8")

    def start(self, *args: str) -> Service:
        self.spawn(*args)
        self.wait_for(lambda: self.health()[0] == 200, "the service to become healthy")
        return self

    # ---------------------------------------------------------------- HTTP

    def health(self) -> tuple[int, Any]:
        try:
            return self.request("/healthz")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def file_status(self, name: str) -> dict[str, Any] | None:
        """The newest /stats row for inbox/<name> (open files come first)."""
        for row in self.stats()["sources"]:
            if Path(str(row.get("path"))).name == name:
                return row
        return None

    def words(self, **query: Any) -> list[dict[str, Any]]:
        status, body = self.request("/words?" + urllib.parse.urlencode(query))
        assert status == 200, body
        return body["words"]

    def latest(self) -> dict[str, dict[str, Any]]:
        path = self.root / "exports" / "latest.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        return {d["word"]: d for d in map(json.loads, text.splitlines()) if d}

    def known_vocab(self) -> Path:
        """Write VOCAB as a known lexicon, add it to the config; returns its path."""
        known = self.root / "known.txt"
        known.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
        self.config.write_text(merge_config(self.config.read_text(),
                                            f'[engine]\nknown = ["{known}"]\n'),
                               encoding="utf-8")
        return known

    # ---------------------------------------------------------------- waiting

    def wait_lines(self, n: int, what: str = "") -> int:
        self.wait_for(lambda: self.lines() >= n, what or f"{n} lines ingested")
        return self.lines()

    def settle(self, sentinel: str = "zz-sentinel.txt") -> int:
        """Write one line to a fresh file and wait until it is counted: by then every
        earlier write has been seen too (sources poll every file each round), so the count
        is final and a duplicate would have shown. Returns the count without it."""
        append_lines(self.inbox / sentinel, ["哨兵"])
        self.wait_for(lambda: (self.file_status(sentinel) or {}).get("committed_offset")
                      == len("哨兵\n".encode()), "the sentinel line")
        return self.lines() - 1


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(extra_config: str = "", subdir: str = "svc") -> Service:
        svc = Service(tmp_path / subdir, extra_config)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.cleanup()


# =========================================================================== discovery


def test_injected_word_becomes_listed_as_new(service: Callable[..., Service]) -> None:
    svc = service()
    svc.known_vocab()
    svc.start()
    rng = random.Random(20240101)
    feed = svc.inbox / "feed.txt"
    written = 0
    for _ in range(6):  # a steady stream: chunks appended while the service runs
        chunk = background(rng, 400, inject=(INJECTED,), every=6)
        append_lines(feed, chunk)
        written += len(chunk)
        svc.wait_lines(written)

    word = svc.wait_for(lambda: svc.latest().get(INJECTED), f"{INJECTED} in latest.jsonl")
    assert word["new"] is True and word["known"] is False
    assert word["total_count"] >= 5
    assert word["first_seen"] and word["last_seen"] and INJECTED in word["example"]
    new_words = {w["word"] for w in svc.words(new="true", limit=1000)}
    assert INJECTED in new_words
    # the background vocabulary is in the known lexicon: listed perhaps, never as new
    assert not new_words & set(VOCAB)
    status, detail = svc.request("/words/" + urllib.parse.quote(INJECTED))
    assert status == 200 and detail["word"] == INJECTED and detail["history"]


# =========================================================================== sources


def test_rotation_by_rename_and_create_loses_and_duplicates_nothing(
        service: Callable[..., Service]) -> None:
    svc = service('[sources]\nglobs = ["inbox/*.log", "inbox/*.txt"]\n').start()
    rng = random.Random(1)
    log_path = svc.inbox / "app.log"
    append_lines(log_path, background(rng, 100))
    svc.wait_lines(100)  # the file is open and followed
    # more lines, then rotate at once, before the service can have read them
    append_lines(log_path, background(rng, 400))
    os.rename(log_path, svc.inbox / "app.log.1")  # out of the glob
    append_lines(log_path, background(rng, 300))  # the new file at the same path
    append_lines(log_path, background(rng, 200))
    svc.wait_lines(1000)
    assert svc.settle() == 1000
    log = svc.log()
    assert "rotated" in log, log


def test_copytruncate_loses_and_duplicates_nothing(service: Callable[..., Service]) -> None:
    svc = service('[sources]\nglobs = ["inbox/*.log", "inbox/*.txt"]\n').start()
    rng = random.Random(2)
    path = svc.inbox / "app.log"
    append_lines(path, background(rng, 300))
    svc.wait_lines(300)  # copytruncate only keeps lines the reader has already read
    shutil.copyfile(path, svc.inbox / "app.log.1")
    with open(path, "r+b") as f:
        f.truncate(0)
    append_lines(path, background(rng, 50))  # shorter than before: size < offset
    svc.wait_lines(350)
    append_lines(path, background(rng, 400))  # grows past the old size again
    svc.wait_lines(750)
    assert svc.settle() == 750
    assert "truncated" in svc.log()
    row = svc.file_status("app.log")
    assert row is not None and row["truncations"] == 1


def test_partial_lines_and_split_multibyte_character(service: Callable[..., Service]) -> None:
    svc = service().start()
    path = svc.inbox / "partial.txt"
    first, second = "第一行完整的句子", "第二行在三次写入中完成字"

    line1 = len((first + "\n").encode())

    def seen(nbytes: int) -> Callable[[], bool]:
        """Read up to nbytes, and the first line consumed by the engine."""
        def check() -> bool:
            row = svc.file_status("partial.txt") or {}
            return row.get("bytes_read") == nbytes and row.get("committed_offset") == line1
        return check

    data = (first + "\n").encode() + "第二行在三次".encode()
    append(path, data)
    svc.wait_for(seen(len(data)), "the partial line to be read")
    assert svc.lines() == 1  # the partial line waits for its newline
    tail = "写入中完成字".encode()
    cut = len(tail) - 2  # inside the last character (3 bytes in UTF-8)
    append(path, tail[:cut])
    svc.wait_for(seen(len(data) + cut), "half a character to be read")
    assert svc.lines() == 1
    append(path, tail[cut:] + b"\n")
    svc.wait_lines(2)
    st = svc.stats()
    assert st["lines_ingested"] == 2
    # characters, not bytes or replacement characters: the split character arrived whole
    assert st["chars_ingested"] == len(first) + len(second)
    assert svc.file_status("partial.txt")["replaced_bytes"] == 0


def test_new_file_appearing_under_the_glob(service: Callable[..., Service]) -> None:
    svc = service('[sources]\nglobs = ["inbox/**/*.txt"]\n').start()
    rng = random.Random(3)
    append_lines(svc.inbox / "a.txt", background(rng, 20))
    svc.wait_lines(20)
    (svc.inbox / "later").mkdir()
    append_lines(svc.inbox / "later" / "b.txt", background(rng, 30))
    append_lines(svc.inbox / "c.txt", background(rng, 40))
    (svc.inbox / "ignored.md").write_text("不匹配的文件\n", encoding="utf-8")
    svc.wait_lines(90)
    assert svc.settle() == 90


def test_file_deleted_while_being_read(service: Callable[..., Service]) -> None:
    svc = service().start()
    rng = random.Random(4)
    big = svc.inbox / "big.txt"
    lines = background(rng, 2000)
    append_lines(big, lines * 40)  # ~ 8 MB
    svc.wait_for(lambda: (svc.file_status("big.txt") or {}).get("bytes_read", 0) > 0,
                 "big.txt being read")
    big.unlink()
    append_lines(svc.inbox / "after.txt", background(rng, 100))
    svc.wait_for(lambda: (svc.file_status("after.txt") or {}).get("lines") == 100,
                 "the file written after the deletion")
    assert svc.health()[0] == 200
    svc.wait_for(lambda: (svc.file_status("big.txt") or {}).get("state") == "gone",
                 "big.txt reported gone")
    assert "deleted" in svc.log()


def test_invalid_utf8_and_a_50mb_line_do_not_stop_the_service(
        service: Callable[..., Service]) -> None:
    svc = service().start()
    bad = svc.inbox / "bad.txt"
    append(bad, b"\xff\xfe\xfd invalid \x80\x81 bytes\n" + "正常的一行\n".encode()
           + b"\xe4\xbd\n")  # a character cut short by a newline
    svc.wait_lines(3, "the lines with invalid bytes")
    assert svc.file_status("bad.txt")["replaced_bytes"] > 0

    huge = svc.inbox / "huge.txt"
    blob = base64.b64encode(random.Random(5).randbytes(38 * 2**20))  # ~ 50 MB, no newline
    assert len(blob) >= 50 * 10**6
    append(huge, b"\xe5\x9c\xa8" + blob + "，以及结尾\n".encode())
    after = svc.inbox / "after.txt"
    rng = random.Random(6)
    append_lines(after, background(rng, 50))
    svc.wait_for(lambda: (svc.file_status("after.txt") or {}).get("committed_offset")
                 == after.stat().st_size, "lines written after the huge line")
    svc.wait_for(lambda: (svc.file_status("huge.txt") or {}).get("committed_offset")
                 == huge.stat().st_size, "the huge line consumed")
    row = svc.file_status("huge.txt")
    assert row["long_lines"] >= 1
    assert svc.health()[0] == 200
    # and the service keeps ingesting
    before = svc.lines()
    append_lines(after, background(rng, 10))
    svc.wait_lines(before + 10)
    assert svc.health()[0] == 200


# =========================================================================== lifecycle


def test_bad_configuration_exits_2_naming_the_key(service: Callable[..., Service]) -> None:
    svc = service("[engine]\nmin_count = 0\n")
    proc = svc.spawn()
    assert proc.wait(60) == 2
    out = svc.log()
    assert "engine.min_count" in out and str(svc.config) in out, out
    assert not (svc.root / "state").exists()


def test_sigterm_exits_0_with_final_snapshot_and_export(
        service: Callable[..., Service]) -> None:
    # long timer intervals: whatever is on disk afterwards was written at shutdown
    svc = service('[intervals]\nsnapshot = "1h"\nexport = "1h"\nrescore = "1h"\n').start()
    rng = random.Random(7)
    append_lines(svc.inbox / "a.txt", background(rng, 500, inject=(INJECTED,), every=6))
    svc.wait_lines(500)
    assert svc.stop(signal.SIGTERM) == 0
    log = svc.log()
    assert "snapshot written (shutdown)" in log and "export written (shutdown)" in log, log
    result = snapshot.load_latest(svc.root / "state")
    assert result is not None
    assert result.header["metadata"]["lines_ingested"] == 500
    latest = svc.latest()
    assert INJECTED in latest, sorted(latest)[:20]
    assert list((svc.root / "exports").glob("words-*.jsonl"))

    # a restart resumes: nothing is read twice, and the list is published at once
    svc.start()
    assert svc.lines() == 500
    svc.wait_for(lambda: INJECTED in {w["word"] for w in svc.words(limit=1000)},
                 "the restored word list")
    append_lines(svc.inbox / "a.txt", background(rng, 10))
    svc.wait_lines(510)
    assert svc.stop(signal.SIGINT) == 0


def test_changed_engine_shape_is_refused_unless_reset(service: Callable[..., Service]) -> None:
    svc = service().start()
    append_lines(svc.inbox / "a.txt", background(random.Random(8), 50))
    svc.wait_lines(50)
    assert svc.stop() == 0
    svc.config.write_text(merge_config(svc.config.read_text(), '[engine]\nmemory = "16MB"\n'),
                          encoding="utf-8")
    proc = svc.spawn()
    assert proc.wait(60) == 2
    assert "different engine configuration" in svc.log() and "--reset-state" in svc.log()
    svc.start("--reset-state")
    assert "moved" in svc.log()
    # started empty: the stored positions went aside with the counts, so a.txt is read
    # again from its start and counted once
    svc.wait_lines(50)
    assert svc.settle() == 50
    assert list((svc.root / "state").glob("reset-*/snapshot-*.snap"))
    assert svc.stop() == 0


def test_sighup_reloads_known_lexicons(service: Callable[..., Service]) -> None:
    svc = service()
    known = svc.known_vocab()
    svc.start()
    append_lines(svc.inbox / "a.txt", background(random.Random(9), 1500, (INJECTED,), every=6))
    svc.wait_for(lambda: (svc.latest().get(INJECTED) or {}).get("known") is False,
                 f"{INJECTED} listed")
    append(known, INJECTED + "\n")
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGHUP)
    svc.wait_for(lambda: (svc.latest().get(INJECTED) or {}).get("known") is True,
                 f"{INJECTED} known after SIGHUP")
    assert "reloaded known lexicons" in svc.log()
    assert svc.stop() == 0


# =========================================================================== crash / resume


def _final_engine_state(svc: Service) -> dict[str, Any]:
    result = snapshot.load_latest(svc.root / "state")
    assert result is not None
    return result.state["engine"]


def _all_consumed(svc: Service, names: tuple[str, ...]) -> bool:
    """Every file's committed offset is its size: nothing left to read, the count is final
    (a duplicate would already be in it)."""
    for name in names:
        row = svc.file_status(name)
        if row is None or row.get("committed_offset") != (svc.inbox / name).stat().st_size:
            return False
    return True


def test_kill9_and_restart_resumes_with_identical_counts(
        service: Callable[..., Service]) -> None:
    """Feed a fixed corpus through three files while SIGKILLing the service at random
    moments; restart each time. At the end the counts equal one uninterrupted run's,
    exactly: every line counted once, none lost, none twice.

    The files grow while they are read, so how lines are cut into batches depends on
    timing (in the reference run too). Exact n-gram counts do not depend on it, so the
    exact table is compared whole; candidate counts and count-min tables do depend on the
    batch sequence - tests/test_recovery.py compares those, with complete files."""
    import numpy as np

    extra = ('[engine]\nexact = true\nhalf_life = "100000h"\n'
             '[intervals]\nsnapshot = "300ms"\nrescore = "700ms"\n')
    rng = random.Random(10)
    names = ("a.txt", "b.txt", "c.txt")
    chunks = [(names[i % 3], background(rng, rng.randint(50, 250), (INJECTED,), every=5))
              for i in range(30)]
    total = sum(len(c) for _, c in chunks)

    # reference: one uninterrupted run over the same input
    ref = service(extra, subdir="reference")
    for name, lines in chunks:
        append_lines(ref.inbox / name, lines)
    ref.start()
    ref.wait_for(lambda: _all_consumed(ref, names), "the reference run to read everything")
    ref_stats = ref.stats()
    assert ref_stats["lines_ingested"] == total
    assert ref.stop() == 0
    ref_state = _final_engine_state(ref)

    crash = service(extra, subdir="crash")
    kills = random.Random(11)
    pending = list(chunks)
    for _ in range(6):
        crash.start()
        for _ in range(kills.randint(1, 6)):
            if pending:
                name, lines = pending.pop(0)
                append_lines(crash.inbox / name, lines)
            time.sleep(kills.uniform(0.0, 0.3))  # jitter only: where the kill lands
        time.sleep(kills.uniform(0.0, 1.5))
        crash.kill9()
    for name, lines in pending:
        append_lines(crash.inbox / name, lines)
    crash.start()
    crash.wait_for(lambda: _all_consumed(crash, names), "the crashed run to read everything")
    stats = crash.stats()
    assert crash.stop() == 0
    state = _final_engine_state(crash)
    assert crash.runs == 7

    for key in ("lines_ingested", "chars_ingested", "units_ingested"):
        assert stats[key] == ref_stats[key], key
        assert state[key] == ref_state[key], key
    assert stats["lines_ingested"] == total
    assert np.array_equal(state["unigrams"], ref_state["unigrams"])
    assert state["counter"]["kind"] == "exact"
    assert state["counter"]["total"] == ref_state["counter"]["total"]
    assert np.array_equal(state["counter"]["keys"], ref_state["counter"]["keys"])
    assert np.array_equal(state["counter"]["counts"], ref_state["counter"]["counts"])


def test_state_from_a_discover_run_seeds_the_service(service: Callable[..., Service]) -> None:
    """`streamer discover --save-state` over an archive, then `streamer run --state-from`:
    the archive's counts are there at once and new text adds to them."""
    svc = service()
    archive = svc.root / "archive.txt"
    archive.write_text("\n".join(background(random.Random(12), 1200, (INJECTED,), every=6)) + "\n",
                       encoding="utf-8")
    seed = svc.root / "seed.snap"
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "discover", str(archive), "--memory", "8MB",
         "--min-count", "5", "--save-state", str(seed), "--no-progress", "-o",
         str(svc.root / "words.tsv")],
        cwd=svc.root, env=streamer_env(), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    svc.start("--state-from", str(seed))
    assert svc.lines() == 1200
    discovered = {line.split("\t")[0] for line in
                  (svc.root / "words.tsv").read_text(encoding="utf-8").splitlines()}
    # published at once from the seed, before any new text arrived
    svc.wait_for(lambda: set(svc.latest()) & discovered, "words published from the seed")
    append_lines(svc.inbox / "new.txt", background(random.Random(13), 30))
    svc.wait_lines(1230)
    assert svc.stop() == 0
    # the seeded state is now the service's own: a plain restart keeps it ...
    svc.start()
    assert svc.lines() == 1230
    assert svc.stop() == 0
    # ... and a restart that still says --state-from must not throw it away
    assert svc.spawn("--state-from", str(seed)).wait(60) == 2
    assert "only seeds an empty state" in svc.log()


def test_stdin_and_http_ingest(service: Callable[..., Service]) -> None:
    svc = service('[http]\ningest_enabled = true\ningest_token = "s3cret"\n')
    svc.runs += 1
    svc.log_path = svc.root / "daemon-stdin.log"
    with open(svc.log_path, "wb") as log:
        svc.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", "--config", str(svc.config), "--stdin",
             "--listen", f"127.0.0.1:{svc.port}"],
            cwd=svc.root, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            env=streamer_env())
    svc.wait_for(lambda: svc.health()[0] == 200, "the service to become healthy")
    assert svc.proc.stdin is not None
    rng = random.Random(14)
    svc.proc.stdin.write("".join(x + "\n" for x in background(rng, 40)).encode())
    svc.proc.stdin.flush()
    svc.wait_lines(40)
    body = "\n".join(background(rng, 25)).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{svc.port}/ingest", data=body,
                                 headers={"Content-Type": "text/plain; charset=utf-8",
                                          "Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["accepted"] == 25
    svc.wait_lines(65)
    svc.proc.stdin.close()  # end of stdin: the service keeps running
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "streamer_lines_ingested_total 65" in metrics, metrics
    assert svc.health()[0] == 200
    assert svc.stop() == 0
