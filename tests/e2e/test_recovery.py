"""Recovery, end to end: kill -9, rotation while down, merge, inspect.

Real processes (``python -m streamer ...``), real files, real sockets. Waiting is always
"poll until a condition holds, or fail at a generous deadline with the service log";
nothing asserts on timing. Random choices (corpus, kill moments) come from seeded RNGs,
so a failure names a reproducible seed - although *where* a kill lands still depends on
the machine, which is the point of killing at random moments.

What makes the counts of two runs comparable (docs/recovery.md explains it):

* replay time (stream time = characters ingested / rate), so first_seen/last_seen are
  the same numbers in every run;
* ``half_life = 1e20`` seconds: every decay factor is exactly 1.0 in float64, so rescores
  (timer-driven, at machine-dependent moments) change no count;
* the corpus reaches the service as *complete* files, one per batch, renamed into the
  watched directory in name order. Then the sequence of batches the engine sees is a
  function of the corpus alone: a file is read from a committed offset (always a batch
  boundary) to its end in one batch, and files are handed out in the order they were
  opened, which survives a restart (restored positions are stored in that order). Candidate
  counts (pieces are cut with the counts so far) and count-min sketch tables (conservative
  update is order-dependent where keys share counters) are functions of the batch
  sequence, not only of the input: see test_batch_partition_matters_for_sketch_not_exact.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import numpy as np
import pytest
from helpers import DEADLINE, VOCAB, DaemonProcess, append_lines, streamer_env

from streamer.core.candidates import CandidateTable
from streamer.core.engine import Engine, EngineConfig
from streamer.storage import snapshot

#: Made-up words (none shares a character with VOCAB): the service must find them.
INJECTED = ("蓝鲸币", "绿萝熊", "紫苏塔")
assert not set("".join(INJECTED)) & set("".join(VOCAB))


def sentence(rng: random.Random, inject: str | None = None) -> str:
    return helpers.sentence(rng, inject, lengths=(4, 10))


def corpus_lines(rng: random.Random, n: int, every: int = 5) -> list[str]:
    """n lines; every `every`-th line carries one of the injected words."""
    return [sentence(rng, rng.choice(INJECTED) if i % every == 0 else None) + sentence(rng)
            for i in range(n)]


def text_of(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def streamer(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `python -m streamer ...` command."""
    return subprocess.run([sys.executable, "-m", "streamer", *args], cwd=cwd, env=streamer_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


CONFIG = """
[sources]
globs = {globs}
from_beginning = {from_beginning}
scan_interval = "100ms"
poll_interval = "50ms"
rotate_wait = "300ms"
[engine]
memory = "{memory}"
exact = {exact}
min_count = 5
half_life = 1e20
known = []
[time]
mode = "replay"
chars_per_second = 1000
[intervals]
rescore = "300ms"
snapshot = "{snapshot}"
export = "1h"
[state]
dir = "state"
keep = 2
[export]
dir = "exports"
formats = []
[log]
level = "info"
"""


class Service(DaemonProcess):
    """One daemon directory: config, inbox, state; spawned and killed as a real process."""

    poll_interval = 0.02

    def __init__(self, root: Path, *, memory: str = "8MB", exact: bool = True,
                 snapshot_interval: str = "250ms",
                 globs: tuple[str, ...] = ("inbox/*.txt",),
                 from_beginning: bool = True) -> None:
        super().__init__(root)
        self.staging = root / "staging"
        self.staging.mkdir(exist_ok=True)
        self.state = root / "state"
        self.config.write_text(CONFIG.format(memory=memory, exact=str(exact).lower(),
                                             snapshot=snapshot_interval,
                                             globs=json.dumps(list(globs)),
                                             from_beginning=str(from_beginning).lower()),
                               encoding="utf-8")

    def start(self, *args: str) -> Service:
        self.spawn(*args)
        self.wait_for(lambda: self.health() == 200, "the service to become healthy")
        return self

    def all_logs(self) -> str:
        return "".join(p.read_text(encoding="utf-8", errors="replace")
                       for p in sorted(self.root.glob("daemon-*.log")))

    # ---------------------------------------------------------------- HTTP

    def health(self) -> int:
        try:
            return self.request("/healthz")[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def committed(self) -> dict[str, int]:
        """Committed offset of every file the service follows, by file name (newest row
        first: open files are listed before closed ones)."""
        out: dict[str, int] = {}
        for row in self.stats()["sources"]:
            name = Path(str(row.get("path"))).name
            if row.get("committed_offset") is not None:
                out.setdefault(name, int(row["committed_offset"]))
        return out

    def all_consumed(self, names: list[str]) -> bool:
        """Every named inbox file is committed up to its size: nothing is left to read,
        so the counts are final (a duplicate would already be in them)."""
        committed = self.committed()
        return all(committed.get(n) == (self.inbox / n).stat().st_size for n in names)

    # ---------------------------------------------------------------- input

    def drop(self, name: str, lines: list[str]) -> None:
        """A complete file appears in the inbox at once (written aside, then renamed)."""
        tmp = self.staging / name
        tmp.write_bytes(text_of(lines).encode("utf-8"))
        os.rename(tmp, self.inbox / name)

    # ---------------------------------------------------------------- state

    def final_engine_state(self) -> dict[str, Any]:
        result = snapshot.load_latest(self.state)
        assert result is not None, f"no snapshot in {self.state}"
        return result.state["engine"]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(subdir: str = "svc", **kwargs: Any) -> Service:
        svc = Service(tmp_path / subdir, **kwargs)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.cleanup()


# =========================================================================== comparing


#: State that legitimately differs between two runs over the same batches:
#: ``discovered`` (words listed by some rescore: rescores run on a timer) and the
#: candidates' ``examples`` (a listed word collects one context per batch, and which words
#: are listed depends on when the last rescore ran). Neither is a count.
TIMING_DEPENDENT = {"discovered", "candidates.examples"}


def state_differences(a: Any, b: Any, path: str = "",
                      skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Paths (dotted) where two state trees differ; arrays compared bytewise."""
    if path.lstrip(".") in skip:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path} keys {sorted(set(a) ^ set(b), key=str)[:10]}"]
        out: list[str] = []
        for k in a:
            out += state_differences(a[k], b[k], f"{path}.{k}", skip)
        return out
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            n = int((a != b).sum()) if a.shape == b.shape else -1
            return [f"{path} (array, {n} elements differ)"]
        return []
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]


def candidate_counts(state: dict[str, Any]) -> dict[str, int]:
    """Tracked piece -> all-time count, from an engine state."""
    c = state["candidates"]
    used = np.asarray(c["used"], dtype=bool)
    table = CandidateTable.from_state(c)
    return {table.text_of(i): int(c["total"][i]) for i in np.flatnonzero(used).tolist()}


# =========================================================================== kill -9


def crash_corpus(seed: int, files: int, lines: tuple[int, int] = (30, 90)) -> list[
        tuple[str, list[str]]]:
    """The fixed corpus of the crash test: `files` complete files, names in feed order.
    Each file is far below sources.batch_bytes, so it is read as one batch."""
    rng = random.Random(seed)
    corpus = [(f"part-{i:04d}.txt", corpus_lines(rng, rng.randint(*lines)))
              for i in range(files)]
    assert all(len(text_of(c).encode()) < 2**20 for _, c in corpus)  # batch_bytes: 1MB
    return corpus


def run_to_end(svc: Service, corpus: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """Start (or restart) the service, feed what is left of the corpus, wait until every
    file is consumed, stop it with SIGTERM; return its final engine state."""
    for name, lines in corpus:
        if not (svc.inbox / name).exists():
            svc.drop(name, lines)
    svc.start()
    names = [name for name, _ in corpus]
    svc.wait_for(lambda: svc.all_consumed(names), "every file to be consumed")
    stats = svc.stats()
    assert svc.stop() == 0, svc.log()[-3000:]
    state = svc.final_engine_state()
    assert stats["lines_ingested"] == state["lines_ingested"]
    return state


def crash_cycles(svc: Service, corpus: list[tuple[str, list[str]]], kills: int,
                 seed: int) -> list[dict[str, Any]]:
    """Start the service `kills` times and SIGKILL it at a random moment each time,
    dropping corpus files in order meanwhile. Returns one record per kill.

    Modes, chosen at random: "anytime" (40%) kills anywhere from the spawn on - during
    interpreter start, snapshot load, the first scan, ingestion, a snapshot write;
    "ingesting" (40%) waits until the service has ingested a new batch since it started
    (so the kill lands with work in flight or just done, before or after a snapshot), then
    a random 0-0.4 s more; "writing" (20%) feeds a file and kills as soon as a snapshot
    write has begun (its temporary file exists), usually before it is renamed."""
    rng = random.Random(seed)
    pending = [c for c in corpus if not (svc.inbox / c[0]).exists()]
    records = []
    for _ in range(kills):
        mode = rng.choices(("anytime", "ingesting", "writing"), (2, 2, 1))[0] \
            if pending else "anytime"
        leftovers = set(svc.state.glob(".tmp-*"))
        t0 = time.monotonic()
        svc.spawn()
        record: dict[str, Any] = {"mode": mode, "lines_seen": None}
        if mode == "writing":
            svc.wait_for(lambda: svc.health() == 200, "the service to become healthy")
            for _ in range(min(len(pending), rng.randint(1, 2))):
                svc.drop(*pending.pop(0))
            end = time.monotonic() + DEADLINE
            while not set(svc.state.glob(".tmp-*")) - leftovers:  # tight: writes are short
                assert svc.proc is not None and svc.proc.poll() is None, svc.log()[-3000:]
                assert time.monotonic() < end, "no snapshot write began\n" + svc.log()[-3000:]
                time.sleep(0.001)
        elif mode == "ingesting":
            svc.wait_for(lambda: svc.health() == 200, "the service to become healthy")
            before = svc.lines()
            for _ in range(min(len(pending), rng.randint(1, 3))):
                svc.drop(*pending.pop(0))
            record["lines_seen"] = svc.wait_for(
                lambda b=before: (n := svc.lines()) > b and n, "a new batch ingested")
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            kill_at = t0 + rng.uniform(0.05, 1.6)
            drops = sorted(rng.uniform(0.0, 1.6) for _ in range(rng.randint(0, 3)))
            for at in drops:
                if not pending or at > kill_at - t0:
                    break
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                svc.drop(*pending.pop(0))
            time.sleep(max(0.0, kill_at - time.monotonic()))
        if mode == "writing":
            svc.kill9()
            record["alive"] = record["serving"] = True
        else:
            record["alive"] = svc.proc is not None and svc.proc.poll() is None
            record["serving"] = mode == "ingesting" or svc.health() == 200
            svc.kill9()
        # a new temporary file left behind: the kill landed during a snapshot write
        record["during_write"] = bool(set(svc.state.glob(".tmp-*")) - leftovers)
        records.append(record)
    return records


def restored_lines(log: str) -> int | None:
    """Lines a run restored from its snapshot (None: it started empty or never got that
    far), from the daemon's "restored <file>: N lines, ..." log line."""
    for line in log.splitlines():
        if " restored snapshot-" in line and " lines, " in line:
            return int(line.split(": ", 2)[2].split(" lines")[0])
    return None


def crash_experiment(root: Path, *, kills: int, seed: int, files: int, exact: bool,
                     memory: str) -> dict[str, Any]:
    """One uninterrupted reference run and one run killed `kills` times, over the same
    corpus; returns both final engine states and what happened (for the test and for
    scripts/bench_crash.py)."""
    corpus = crash_corpus(seed, files)
    t0 = time.monotonic()
    ref = Service(root / "reference", memory=memory, exact=exact)
    crashed = Service(root / "crashed", memory=memory, exact=exact)
    try:
        ref_state = run_to_end(ref, corpus)
        records = crash_cycles(crashed, corpus, kills, seed + 1)
        state = run_to_end(crashed, corpus)
    finally:
        ref.cleanup()
        crashed.cleanup()
    restored = [restored_lines(p.read_text(encoding="utf-8", errors="replace"))
                for p in sorted(crashed.root.glob("daemon-*.log"),
                                key=lambda p: int(p.stem.split("-")[1]))]
    return {
        "corpus_lines": sum(len(lines) for _, lines in corpus),
        "files": files,
        "kills": len(records),
        "records": records,
        "restored": restored,  # per run, in order (the last one is the final run)
        "reference": ref_state,
        "crashed": state,
        "seconds": time.monotonic() - t0,
        "set_aside": sorted(p.name for p in crashed.state.glob("*.bad-*")),
        "published": (published_rows(ref.state), published_rows(crashed.state)),
        "logs": crashed.all_logs,
    }


def published_rows(state_dir: Path) -> list[dict[str, Any]]:
    """The word list the final snapshot holds (its final rescore), without the example
    context (examples are collected at rescore-timing-dependent moments, see
    TIMING_DEPENDENT) and with NaN (the emergence of a run without decay) as "nan"."""
    result = snapshot.load_latest(state_dir)
    assert result is not None
    pub = result.state["published"]
    rows = [dict(zip(pub["fields"], row, strict=True)) for row in pub["words"]]
    for row in rows:
        row.pop("example", None)
        for k, v in row.items():  # emergence is NaN without decay: make it comparable
            if isinstance(v, float) and math.isnan(v):
                row[k] = "nan"
    return rows


@pytest.mark.parametrize("exact, memory", [(True, "8MB"), (False, "16MB")],
                         ids=["exact", "sketch-16MB"])
def test_kill9_at_random_moments_gives_the_counts_of_one_uninterrupted_run(
        tmp_path: Path, exact: bool, memory: str) -> None:
    """20+ SIGKILLs at random moments, a restart after each; the final state equals the
    uninterrupted run's: lines/units, the n-gram counter (exact table, or the count-min
    sketch byte for byte), unigram and cut tables, every candidate slot (keys, texts,
    counts, first/last seen) and the neighbour tables."""
    kills = 22
    result = crash_experiment(tmp_path, kills=kills, seed=20240505 + int(exact), files=36,
                              exact=exact, memory=memory)
    ref, got = result["reference"], result["crashed"]
    assert ref["lines_ingested"] == result["corpus_lines"]
    assert got["lines_ingested"] == result["corpus_lines"]
    assert got["counter"]["kind"] == ("exact" if exact else "sketch")
    diffs = state_differences(ref, got, skip=TIMING_DEPENDENT)
    assert not diffs, diffs
    assert candidate_counts(got) == candidate_counts(ref)
    ref_words, got_words = result["published"]  # the final rescore of equal states
    assert got_words == ref_words and len(got_words) >= len(INJECTED)
    assert result["set_aside"] == []  # no kill ever left a damaged snapshot behind
    assert result["kills"] == kills
    assert all(r["alive"] for r in result["records"])  # killed by us, never died alone
    # the kills were real crashes with work to redo: a run that restored state, and runs
    # killed while alive after ingesting something new
    assert sum(1 for r in result["records"] if r["lines_seen"] is not None) >= 3
    assert any(n for n in result["restored"][:-1])


# =========================================================================== in process


def restore_through_file(engine: Engine, path: Path) -> Engine:
    """What a restart does to the engine: state -> snapshot file -> state -> engine."""
    snapshot.write_file(path, engine.state_dict(), fingerprint=engine.fingerprint())
    return Engine.from_state(snapshot.load_file(path, fingerprint=engine.fingerprint()).state)


def ingest_all(engine: Engine, batches: list[list[str]], *, restore_every: int = 0,
               path: Path | None = None) -> Engine:
    """Ingest batches at replay stream times; optionally restart (through a snapshot
    file) before every `restore_every`-th batch."""
    chars = 0
    for i, batch in enumerate(batches):
        if restore_every and i and i % restore_every == 0:
            assert path is not None
            engine = restore_through_file(engine, path)
        chars += sum(map(len, batch))
        engine.ingest(batch, 1.7e9 + chars / 1000)
    return engine


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "sketch"])
def test_restore_between_batches_continues_exactly(tmp_path: Path, exact: bool) -> None:
    """The engine half of exactly-once: restoring a snapshot taken between two batches and
    going on gives the state of never having stopped, bit for bit."""
    rng = random.Random(31)
    batches = [corpus_lines(rng, rng.randint(10, 60)) for _ in range(30)]
    cfg = EngineConfig(memory=4 * 2**20, min_count=5, exact=exact, half_life=1e20)
    whole = ingest_all(Engine(cfg), batches)
    restarted = ingest_all(Engine(cfg), batches, restore_every=1, path=tmp_path / "s.snap")
    assert state_differences(whole.state_dict(), restarted.state_dict()) == []


def eviction_corpus(seed: int) -> list[list[str]]:
    """Many distinct made-up words, so that a small candidate table keeps evicting."""
    rng = random.Random(seed)
    rare = [chr(c) for c in range(0x4E00 + 3000, 0x4E00 + 3300)]
    words = ["".join(rng.choice(rare) for _ in range(rng.randint(2, 4))) for _ in range(400)]

    def line() -> str:
        return (sentence(rng, rng.choice(words) if rng.random() < 0.7 else None)
                + sentence(rng, rng.choice(words)))

    return [[line() for _ in range(rng.randint(20, 80))] for _ in range(60)]


def test_restore_after_evictions_continues_exactly(tmp_path: Path) -> None:
    batches = eviction_corpus(5)
    cfg = EngineConfig(memory=8 * 2**20, min_count=5, exact=True, half_life=1e20,
                       capacity=384)
    whole = ingest_all(Engine(cfg), batches)
    assert whole.candidates.evicted > 0
    restarted = ingest_all(Engine(cfg), batches, restore_every=1, path=tmp_path / "s.snap")
    assert candidate_counts(restarted.state_dict()) == candidate_counts(whole.state_dict())
    assert state_differences(whole.state_dict(), restarted.state_dict()) == []


def test_batch_partition_matters_for_sketch_not_exact() -> None:
    """Why the crash test feeds complete files: the same lines cut into other batches give
    the same exact n-gram table, but other candidate counts (pieces are cut with the
    counts so far) and, where keys share counters, another count-min table (conservative
    update is order-dependent, and a batch adds its orders 2, 3, 4 one after the other).
    A file that grows while it is read is cut into batches by timing, so even two
    uninterrupted runs over it differ in these tables; a restart does not add to that."""
    rng = random.Random(7)
    lines = corpus_lines(rng, 1500)

    def run(cfg: EngineConfig, step: int) -> dict[str, Any]:
        return ingest_all(Engine(cfg), [lines[i:i + step]
                                        for i in range(0, len(lines), step)]).state_dict()

    exact = EngineConfig(memory=4 * 2**20, min_count=5, exact=True, half_life=1e20)
    a, b = run(exact, 100), run(exact, 37)
    for key in ("keys", "counts", "total"):
        assert np.array_equal(a["counter"][key], b["counter"][key])
    assert np.array_equal(a["unigrams"], b["unigrams"])
    assert candidate_counts(a) != candidate_counts(b)

    sketch = EngineConfig(memory=4 * 2**20, min_count=5, half_life=1e20)
    a, b = run(sketch, 100), run(sketch, 37)
    assert a["counter"]["total"] == b["counter"]["total"]
    assert not np.array_equal(a["counter"]["table"], b["counter"]["table"])


# =========================================================================== rotation while down

#: One tag character per group of lines (none is in VOCAB or INJECTED): the final
#: unigram count of a tag is how many lines of its group were counted.
TAGS = "甲乙丙丁戊"
assert not set(TAGS) & set("".join(VOCAB) + "".join(INJECTED))


def tagged(tag: str, rng: random.Random, n: int) -> list[str]:
    return [f"{tag}，{sentence(rng)}{sentence(rng)}" for _ in range(n)]


def tag_counts(state: dict[str, Any]) -> dict[str, int]:
    from streamer.core.units import dense_index, encode

    ids = dense_index(encode(TAGS, "mixed").ids)
    # counters hold clock units (streamer/decay.py); no decay here, so a whole number
    # of units per occurrence
    unit = state["clock"]["unit"]
    counts = np.asarray(state["unigrams"])[ids] / unit
    return {t: round(c) for t, c in zip(TAGS, counts.tolist(), strict=True) if c}


def settle(svc: Service, expected: int, sentinel: str = "zz-sentinel.txt") -> int:
    """Wait for `expected` lines, then for one more line in a fresh file: sources poll
    every file each round, so by then every earlier line was handed out and a duplicate
    would show. Returns the count without the sentinel."""
    svc.wait_for(lambda: svc.lines() >= expected, f"{expected} lines ingested")
    svc.drop(sentinel, ["哨兵"])
    size = (svc.inbox / sentinel).stat().st_size
    svc.wait_for(lambda: svc.committed().get(sentinel) == size, "the sentinel line")
    return svc.lines() - 1


def stop_and_state(svc: Service) -> dict[str, Any]:
    assert svc.stop() == 0, svc.log()[-3000:]
    return svc.final_engine_state()


def consume(svc: Service, path: Path) -> None:
    size = path.stat().st_size
    svc.wait_for(lambda: svc.committed().get(path.name) == size, f"{path.name} consumed")


def run_then_stop(svc: Service, path: Path, lines: list[str], how: signal.Signals) -> None:
    """Restart, append `lines`, wait until they are consumed, stop with `how`. Snapshots
    only at shutdown (the timer is 1 h): after SIGKILL the state on disk does not hold
    these lines, so they must be read again after the restart."""
    svc.start()
    append_lines(path, lines)
    consume(svc, path)
    if how == signal.SIGKILL:
        svc.kill9()
    else:
        assert svc.stop(how) == 0


@pytest.mark.parametrize("how, globs", [
    (signal.SIGTERM, ("inbox/*.log", "inbox/*.txt")),
    (signal.SIGKILL, ("inbox/*.log", "inbox/*.txt")),
    (signal.SIGKILL, ("inbox/*.log*", "inbox/*.txt")),
], ids=["sigterm", "sigkill", "sigkill-rotated-name-watched"])
def test_rename_and_create_while_down_counts_every_line_once(
        service: Callable[..., Service], how: signal.Signals, globs: tuple[str, ...]) -> None:
    """app.log is renamed to app.log.1 while the service is down, app.log.1 still gets
    lines (a writer that held it open), and a new app.log is created. After the restart
    the old file is found by device+inode+fingerprint and finished from the stored offset,
    then the new one is read from 0: every line once. After SIGKILL the stored offset is
    older than what was consumed, so part of app.log.1 is read a second time - and counted
    once, because the state from before the kill did not hold it either."""
    svc = service(globs=globs, snapshot_interval="1h")
    rng = random.Random(41)
    log, rotated = svc.inbox / "app.log", svc.inbox / "app.log.1"
    groups = {t: tagged(t, rng, n) for t, n in zip("甲乙丙丁", (150, 120, 80, 100), strict=True)}
    svc.start()
    append_lines(log, groups["甲"])
    consume(svc, log)
    assert svc.stop() == 0  # snapshot: 甲 counted, offset at its end
    run_then_stop(svc, log, groups["乙"], how)
    # while down: rotate, the old writer finishes in the rotated file, a new file starts
    os.rename(log, rotated)
    append_lines(rotated, groups["丙"])
    append_lines(log, groups["丁"])

    svc.start()
    total = sum(len(g) for g in groups.values())
    assert settle(svc, total) == total
    state = stop_and_state(svc)
    assert state["lines_ingested"] == total + 1
    assert tag_counts(state) == {t: len(g) for t, g in groups.items()}
    # resumed at the stored offset: after SIGKILL the one of the last snapshot (before 乙)
    stored = len(text_of(groups["甲"] if how == signal.SIGKILL
                         else groups["甲"] + groups["乙"]).encode())
    assert f"finishing it from offset {stored}" in svc.log(), svc.log()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_copytruncate_while_down(service: Callable[..., Service],
                                 how: signal.Signals) -> None:
    """copytruncate while the service is down: app.log is copied to app.log.1 (not watched)
    and truncated; new lines, fewer bytes than the stored offset, follow. The restart sees
    size < offset, reads app.log again from 0: the new lines once, the old ones (now only
    in the copy) not again.

    What it cannot promise: after SIGKILL, lines consumed after the last snapshot are in
    the state of no snapshot and, after the truncation, only in the copy - they are lost.
    (The same lines survive a rename-and-create rotation, see the test above.)"""
    svc = service(globs=("inbox/*.log", "inbox/*.txt"), snapshot_interval="1h")
    rng = random.Random(43)
    log = svc.inbox / "app.log"
    first, second, after = tagged("甲", rng, 150), tagged("乙", rng, 100), tagged("丙", rng, 60)
    svc.start()
    append_lines(log, first)
    consume(svc, log)
    assert svc.stop() == 0
    run_then_stop(svc, log, second, how)
    shutil.copyfile(log, svc.inbox / "app.log.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append_lines(log, after)
    assert log.stat().st_size < len(text_of(first + second).encode())

    svc.start()
    lost = len(second) if how == signal.SIGKILL else 0
    expected = len(first) + len(second) - lost + len(after)
    assert settle(svc, expected) == expected
    state = stop_and_state(svc)
    tags = {"甲": len(first), "丙": len(after)}
    if not lost:
        tags["乙"] = len(second)
    assert tag_counts(state) == tags
    # size < stored offset, or other first bytes: either way read again from 0
    log_text = svc.log()
    assert "truncated while stopped" in log_text or "different file" in log_text, log_text


def test_truncated_and_regrown_past_the_offset_is_decided_by_the_fingerprint(
        service: Callable[..., Service]) -> None:
    """Truncated while down and then written past the stored offset: size alone cannot
    tell. The stored fingerprint (sha1 of the first 256 bytes) decides:

    * other first bytes: a different file, read from 0 - every new line once;
    * the same first 256 bytes: taken for the same file grown by appends; reading resumes
      at the stored offset and the new bytes before it are never read. Here the new
      content starts with the same 300-byte header line: the 丁 lines that fill the space
      up to the old offset are skipped; the 戊 lines after it are read once."""
    svc = service(globs=("inbox/*.log", "inbox/*.txt"), snapshot_interval="1h")
    rng = random.Random(47)
    other, same = svc.inbox / "other.log", svc.inbox / "same.log"
    header = "甲，" + "".join(rng.choice(VOCAB) for _ in range(60))[:100] + "。"
    assert len(header.encode()) >= 256
    old = [header, *tagged("甲", rng, 80)]
    svc.start()
    append_lines(other, old)
    append_lines(same, old)
    consume(svc, other)
    consume(svc, same)
    assert svc.stop() == 0
    offset = len(text_of(old).encode())

    # other.log: new content, longer than the old, different first bytes
    new_other = tagged("乙", rng, 200)
    assert len(text_of(new_other).encode()) > offset
    with open(other, "r+b") as f:
        f.truncate(0)
    append_lines(other, new_other)
    # same.log: the same header line, 丁 lines exactly up to the old offset, then 戊 lines
    filler: list[str] = []
    used = len(header.encode()) + 1
    while offset - used > 200:
        filler.append(tagged("丁", rng, 1)[0])
        used += len(filler[-1].encode()) + 1
    pad = offset - used - len("丁，\n".encode())
    assert pad >= 0
    filler.append("丁，" + "x" * pad)
    tail = tagged("戊", rng, 40)
    with open(same, "r+b") as f:
        f.truncate(0)
    append_lines(same, [header, *filler, *tail])
    assert len(text_of([header, *filler]).encode()) == offset

    svc.start()
    expected = 2 * len(old) + len(new_other) + len(tail)
    assert settle(svc, expected) == expected
    state = stop_and_state(svc)
    assert tag_counts(state) == {"甲": 2 * len(old), "乙": len(new_other), "戊": len(tail)}
    assert "is a different file than in the last run" in svc.log()


def test_from_end_applies_to_the_first_start_only(service: Callable[..., Service]) -> None:
    """sources.from_beginning = false: at the first start (no snapshot yet) a file that is
    already there is followed from its end. A restart resumes from the stored offsets
    instead, and a file that appeared while the service was down is new: read from 0."""
    svc = service(from_beginning=False, snapshot_interval="1h")
    rng = random.Random(53)
    old = svc.inbox / "existing.txt"
    append_lines(old, tagged("甲", rng, 5))
    svc.start()
    size = old.stat().st_size
    svc.wait_for(lambda: svc.committed().get(old.name) == size, "existing.txt opened")
    assert svc.lines() == 0
    append_lines(old, tagged("乙", rng, 3))
    svc.wait_for(lambda: svc.lines() == 3, "lines appended after the start")
    assert svc.stop() == 0
    append_lines(old, tagged("丙", rng, 2))  # while down
    svc.drop("new.txt", tagged("丁", rng, 4))
    svc.start()
    assert settle(svc, 9) == 9
    assert tag_counts(stop_and_state(svc)) == {"乙": 3, "丙": 2, "丁": 4}


# =========================================================================== merge


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus split in two shards (a.txt, b.txt) and whole.txt = a.txt + b.txt."""
    d = tmp_path_factory.mktemp("shards")
    lines = corpus_lines(random.Random(99), 4000)
    (d / "a.txt").write_text(text_of(lines[:2000]), encoding="utf-8")
    (d / "b.txt").write_text(text_of(lines[2000:]), encoding="utf-8")
    (d / "whole.txt").write_text(text_of(lines), encoding="utf-8")
    return d


def discover_state(d: Path, name: str, *opts: str) -> Path:
    out = d / f"{name}{'-'.join(('',) + opts).replace('--', '')}.snap"
    if not out.exists():
        proc = streamer("discover", f"{name}.txt", "--min-count", "5", "--no-progress",
                        "--save-state", str(out), "-o", os.devnull, *opts, cwd=d)
        assert proc.returncode == 0, proc.stderr
    return out


def merge(d: Path, out: str, *inputs: Path) -> subprocess.CompletedProcess[str]:
    return streamer("snapshot", "merge", *map(str, inputs), "-o", out, cwd=d)


def published(state: dict[str, Any]) -> dict[str, Any]:
    """word -> Word of the list a rescore of this state publishes (default thresholds of
    the state, min_count 5, same stream time)."""
    engine = Engine.from_state(state)
    return {w.word: w for w in engine.rescore(1.8e9).words}


def test_merge_of_exact_shards_equals_the_whole_run(shards: Path) -> None:
    """Exact counters add up to the whole corpus's table: keys and counts, as well as the
    unigram table and the totals. The pieces, though, were cut with each shard's own
    counts, so candidate counts and neighbour tables are those of two half runs, not of
    one whole run; the published list is compared on what is comparable."""
    a, b = (discover_state(shards, n, "--exact", "--memory", "8MB") for n in "ab")
    whole = discover_state(shards, "whole", "--exact", "--memory", "8MB")
    proc = merge(shards, "merged-exact.snap", a, b)
    assert proc.returncode == 0, proc.stderr
    m = snapshot.load_file(shards / "merged-exact.snap")
    w = snapshot.load_file(whole)
    assert m.header["fingerprint"] == w.header["fingerprint"]
    assert m.header["metadata"]["source"] == "merge"
    M, W = m.state, w.state
    assert M["counter"]["kind"] == "exact"
    for key in ("keys", "counts", "total"):
        assert np.array_equal(M["counter"][key], W["counter"][key]), key
    assert np.array_equal(M["unigrams"], W["unigrams"])
    for key in ("total_units", "units_ingested", "lines_ingested"):
        assert M[key] == W[key], key
    assert M["lines_ingested"] == 4000

    # published words: cohesion comes from the counters (identical), counts and neighbour
    # entropies from the pieces (cut per shard). Measured on this corpus: the same 75
    # words; asserted: the made-up words are found by both, every word listed by both has
    # exactly the same pmi, and the lists overlap by at least 90% (Jaccard).
    pm, pw = published(M), published(W)
    assert set(INJECTED) <= set(pm) & set(pw)
    both = set(pm) & set(pw)
    assert all(pm[x].pmi == pw[x].pmi for x in both)
    assert len(both) / len(set(pm) | set(pw)) >= 0.9, (sorted(set(pm) ^ set(pw)))


def sketch_positions(sketch: Any, keys: np.ndarray) -> np.ndarray:
    """Flat table index of each key's `depth` counters (n x depth), computed as
    streamer/_sketch.c documents: block = (k * m0) >> shift, and in it, for row r,
    r * G + the next `bits` top bits of k * m1."""
    blocks, m0, m1, shift, depth, bits = sketch._params()
    k = keys.astype(np.uint64)
    block = (k * np.uint64(m0)) >> np.uint64(shift) if shift < 64 else np.zeros_like(k)
    h = k * np.uint64(m1)
    out = np.empty((len(k), depth), np.int64)
    for r in range(depth):
        top = (h >> np.uint64(64 - bits)).astype(np.int64) if bits else 0
        out[:, r] = block.astype(np.int64) * 16 + r * (1 << bits) + top
        h = h << np.uint64(bits)
    return out


def test_merge_of_sketch_shards_equals_the_whole_run_where_no_keys_share_a_counter(
        shards: Path) -> None:
    """Count-min tables with conservative update add exactly where a counter belongs to
    one key (it then holds that key's count in every run). A counter shared by several
    keys holds an order-dependent value (conservative update is not additive), so the sum
    of the shards' tables is neither above nor below the whole run's there in general. So:
    at a 64MB budget (a 32MB table) the merged table equals the whole run's at every
    counter that one key owns; counters no key touches stay 0; every key's merged estimate
    is at least its true count (the count-min guarantee survives merging); and a key that
    owns at least one of its counters is estimated exactly, merged or not."""
    from streamer.core.sketch import CountMinSketch, counter_from_state

    a, b = (discover_state(shards, n, "--memory", "64MB") for n in "ab")
    whole = discover_state(shards, "whole", "--memory", "64MB")
    assert merge(shards, "merged-sketch.snap", a, b).returncode == 0
    M = counter_from_state(snapshot.load_file(shards / "merged-sketch.snap").state["counter"])
    W = counter_from_state(snapshot.load_file(whole).state["counter"])
    truth = snapshot.load_file(discover_state(shards, "whole", "--exact", "--memory", "8MB"))
    keys = np.asarray(truth.state["counter"]["keys"])
    counts = np.asarray(truth.state["counter"]["counts"])
    assert isinstance(M, CountMinSketch) and isinstance(W, CountMinSketch)
    assert M.total == W.total == int(counts.sum())

    pos = sketch_positions(W, keys)
    probe = CountMinSketch(W.blocks, W.depth, W.seed)  # check the layout on the kernel
    for i in range(0, len(keys), len(keys) // 16):
        probe.table[:] = 0
        probe.add(keys[i:i + 1])
        assert sorted(np.flatnonzero(probe.table).tolist()) == sorted(pos[i].tolist())
    owners = np.bincount(pos.ravel(), minlength=W.table.size)
    mt, wt = M.table.ravel(), W.table.ravel()
    private = owners == 1
    owner = np.empty(W.table.size, np.int64)
    owner[pos.ravel()] = np.repeat(np.arange(len(keys)), W.depth)
    assert np.array_equal(mt[private], wt[private])
    assert np.array_equal(mt[private], counts[owner[private]])
    assert not mt[owners == 0].any() and not wt[owners == 0].any()
    assert (M.query(keys) >= counts).all()
    owns_one = private[pos].any(axis=1)
    assert owns_one.mean() > 0.99
    assert np.array_equal(M.query(keys[owns_one]), counts[owns_one])
    assert np.array_equal(W.query(keys[owns_one]), counts[owns_one])


def test_merge_refuses_other_configurations_and_damaged_inputs(shards: Path) -> None:
    a = discover_state(shards, "a", "--exact", "--memory", "8MB")
    other = discover_state(shards, "b", "--exact", "--memory", "16MB")
    proc = merge(shards, "never.snap", a, other)
    assert proc.returncode == 2
    assert "different engine configurations" in proc.stderr
    fa = snapshot.load_file(a).header["fingerprint"]
    fo = snapshot.load_file(other).header["fingerprint"]
    assert fa in proc.stderr and fo in proc.stderr and fa != fo
    assert len(proc.stderr.strip().splitlines()) == 1  # one line, no traceback

    damaged = shards / "damaged.snap"
    data = bytearray(a.read_bytes())
    data[-100] ^= 0x01
    damaged.write_bytes(bytes(data))
    truncated = shards / "truncated.snap"
    truncated.write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    for bad, words in ((damaged, "checksum"), (truncated, "truncated"),
                       (shards / "a.txt", "not a snapshot")):
        proc = merge(shards, "never.snap", a, bad)
        assert proc.returncode == 2, proc.stderr
        assert str(bad.name) in proc.stderr and words in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (shards / "never.snap").exists()


def test_merged_daemon_snapshots_seed_a_service(service: Callable[..., Service],
                                                shards: Path, tmp_path: Path) -> None:
    """Two services count one shard each; their snapshots merge (the daemon's format
    wraps the engine state) into a file that `streamer snapshot inspect` verifies and
    `streamer run --state-from` loads; its n-gram table is the whole corpus's."""
    lines = (shards / "whole.txt").read_text(encoding="utf-8").splitlines()
    finals = []
    for name, part in (("a", lines[:2000]), ("b", lines[2000:])):
        svc = service(subdir=f"shard-{name}")
        run_to_end(svc, [(f"{name}.txt", part)])
        finals.append(snapshot.list_snapshots(svc.state)[-1])
    d = tmp_path / "merge"
    d.mkdir()
    proc = merge(d, "merged.snap", *finals)
    assert proc.returncode == 0, proc.stderr
    inspect = streamer("snapshot", "inspect", "merged.snap", cwd=d)
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    assert "[verified]" in inspect.stdout and "source: 'merge'" in inspect.stdout

    whole = snapshot.load_file(discover_state(shards, "whole", "--exact", "--memory", "8MB"))
    merged = snapshot.load_file(d / "merged.snap").state
    assert np.array_equal(merged["counter"]["keys"], whole.state["counter"]["keys"])
    # the daemons count in clock units (streamer/decay.py), discover in occurrences
    in_units = np.asarray(whole.state["counter"]["counts"]) * merged["clock"]["unit"]
    assert np.array_equal(merged["counter"]["counts"], in_units)

    seeded = service(subdir="seeded")
    seeded.start("--state-from", str(d / "merged.snap"))
    assert seeded.lines() == 4000
    seeded.drop("more.txt", lines[:10])
    seeded.wait_for(lambda: seeded.lines() == 4010, "new lines on top of the seed")
    assert seeded.stop() == 0


def test_discover_counts_characters_like_the_service(shards: Path) -> None:
    lines = (shards / "a.txt").read_text(encoding="utf-8").splitlines()
    state = snapshot.load_file(discover_state(shards, "a", "--exact", "--memory", "8MB")).state
    assert state["lines_ingested"] == len(lines)
    assert state["chars_ingested"] == sum(map(len, lines))  # what `streamer run` counts


# =========================================================================== inspect


def daemon_like_state(lines: list[str]) -> tuple[dict[str, Any], str]:
    engine = Engine(EngineConfig(memory=4 * 2**20, min_count=5))
    engine.ingest(lines, 1.7e9)
    pos = {"path": "inbox/a.txt", "dev": 1, "ino": 2, "fingerprint": "0" * 40,
           "fingerprint_bytes": 256, "offset": 12345}
    return {"format": "streamer-daemon/1", "engine": engine.state_dict(),
            "sources": {"files": [pos]}}, engine.fingerprint()


def inspect_cli(path: Path, *opts: str) -> subprocess.CompletedProcess[str]:
    return streamer("snapshot", "inspect", str(path), *opts, cwd=path.parent)


def test_inspect_a_file(tmp_path: Path) -> None:
    state, fp = daemon_like_state(corpus_lines(random.Random(3), 200))
    good = snapshot.write_file(tmp_path / "good.snap", state, fingerprint=fp,
                               metadata={"lines_ingested": 200, "sources": state["sources"]})
    proc = inspect_cli(good)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    header = snapshot.load_file(good).header
    for text in ("status      ok", f"fingerprint {fp}", f"{header['checksum']} [verified]",
                 "lines_ingested: 200", "files: inbox/a.txt offset 12345", "engine: dict of",
                 "counter: dict of", f"file size   {good.stat().st_size:,} bytes"):
        assert text in out, (text, out)

    info = json.loads(inspect_cli(good, "--json").stdout)
    assert info["status"] == "ok" and info["checksum"] == "verified"
    assert info["header"]["metadata"]["sources"]["files"][0]["offset"] == 12345
    assert info["state"]["engine"]["items"]["lines_ingested"]["value"] == 200

    data = bytearray(good.read_bytes())
    data[-10] ^= 0x40
    flipped = tmp_path / "flipped.snap"
    flipped.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.snap"
    truncated.write_bytes(good.read_bytes()[:-1000])
    foreign = tmp_path / "notes.snap"
    foreign.write_text("not a snapshot\n", encoding="utf-8")
    empty = tmp_path / "empty.snap"
    empty.write_bytes(b"")
    for path, status, checksum in ((flipped, "checksum", "mismatch"),
                                   (truncated, "truncated", "truncated"),
                                   (foreign, "foreign", "unavailable"),
                                   (empty, "empty", "unavailable")):
        proc = inspect_cli(path)
        assert proc.returncode == 1, (path, proc.stdout, proc.stderr)
        assert f"status      {status}" in proc.stdout, proc.stdout
        info = json.loads(inspect_cli(path, "--json").stdout)
        assert (info["status"], info["checksum"]) == (status, checksum)
    # --no-verify reads header and tree only: the flipped payload byte goes unnoticed
    proc = inspect_cli(flipped, "--no-verify")
    assert proc.returncode == 0 and "[not-verified]" in proc.stdout

    missing = inspect_cli(tmp_path / "missing.snap")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_inspect_a_directory(tmp_path: Path) -> None:
    """A state directory as the daemon leaves it: snapshots (the newest marked *), files
    the loader set aside, a temporary file of an interrupted write. Exit 1 while a
    damaged snapshot is still where the loader will try it, 0 once it is set aside."""
    d = tmp_path / "state"
    rng = random.Random(4)
    for n in (100, 200, 300):
        state, fp = daemon_like_state(corpus_lines(rng, n))
        newest = snapshot.write_snapshot(d, state, fingerprint=fp, keep=3)
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0x40
    newest.write_bytes(bytes(data))
    (d / f".tmp-{newest.name}.99999").write_bytes(b"STRMSNAP partial")

    proc = inspect_cli(d)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = proc.stdout.splitlines()
    assert len(rows) == 4, proc.stdout
    assert rows[2].startswith("* ") and newest.name in rows[2] and "checksum" in rows[2]
    assert rows[0].endswith("ok") and rows[1].endswith("ok")
    assert "temporary" in rows[3]

    result = snapshot.load_latest(d, fingerprint=fp)  # what the daemon does at start
    assert result is not None and result.path.name != newest.name
    proc = inspect_cli(d)
    assert proc.returncode == 0, proc.stdout
    assert f"{newest.name}.bad-checksum" in proc.stdout and "set-aside:checksum" in proc.stdout
    rows = json.loads(inspect_cli(d, "--json").stdout)
    assert [r["kind"] for r in rows] == ["snapshot", "snapshot", "temporary", "bad"]
    assert [r["newest"] for r in rows] == [False, True, False, False]

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = inspect_cli(empty)
    assert proc.returncode == 0 and proc.stdout.strip() == "no snapshots"


def test_inspect_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`streamer snapshot inspect FILE | head -1`: the reader closes the pipe early; the
    command stops without a traceback (status 141, as a shell reports SIGPIPE)."""
    snap = Path(__file__).resolve().parents[1] / "data" / "snapshot-v1.snap"
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "snapshot", "inspect", str(snap),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=streamer_env(), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody reads: the first flush meets EPIPE
    err = proc.stderr.read().decode()
    status = proc.wait(60)
    assert "Traceback" not in err, err
    assert status == 141, (status, err)
