"""The merged view of shard services: their newest snapshots, added up and published.

    shard A: state.dir ─┐  every view.interval: newest_signature() of each directory
    shard B: state.dir ─┼─> one changed? ─(a thread)─> read_newest() of every shard,
    shard C: state.dir ─┘   Engine.from_state, added one by one into a fresh base
                            (EngineState.merge: sketches add, tables merge)
          ─(engine lock)─> the view's once-listed registry carried over, engine swapped
          ─> Publisher.rescore ─> /words, exports, latest.jsonl, dashboard, /metrics

The view is ``streamer run`` with ``view.shards`` set: the same daemon with no sources.
Shard states travel as the shards' own snapshot files, in directories the view can read
(the same disk, NFS, or copies made with ``rsync --delay-updates``); docs/architecture.md
("Shards and the merged view") states the limits and docs/decisions.md why.

* Each merge starts from nothing and adds every shard's newest usable snapshot once:
  merging is addition, so adding a shard's new state onto a base that already holds its
  old one would count its text twice. Memory at the peak: the published engine, the base
  being built and the one shard state being added (three engine states).
* Only a change is loaded: a shard's newest snapshot is identified by (name, mtime,
  size); when none changed, nothing is read.
* A shard whose newest snapshot cannot be read (damaged, a different engine
  configuration, its directory gone) contributes the file the view used last, while that
  file still exists; when it does not, the previous merged state stays published. Either
  way /healthz says ``degraded`` naming the shard and why. A shard that has not written a
  snapshot yet, or whose directory does not exist yet, contributes nothing (degraded). A
  shard that stopped for good keeps its last state in the view; its snapshot age grows in
  /metrics.
* After a restart the view publishes the merged state of its own last snapshot at once,
  until a merge replaces it; a merge that could read no shard at all does not replace it.
* Published first_seen does not jump: the registry of words the view listed, with the
  first_seen each had when first listed, is carried from each merged engine to the next
  (and through the view's own snapshots across its restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.core.engine import Engine, EngineConfig
from streamer.core.memory import release_freed_memory
from streamer.service.pipeline import Pipeline
from streamer.service.publisher import Publisher
from streamer.service.telemetry import Counters
from streamer.storage import snapshot

log = logging.getLogger(__name__)

Signature = tuple[str, int, int]


class ShardConfigError(Exception):
    """A shard cannot take part at all (start-up): missing directory, other engine."""


@dataclass
class ShardStatus:
    """What the view knows of one shard (event-loop thread; read by telemetry)."""

    dir: str
    #: the snapshot file the current merged state holds, its header time and lines
    snapshot: str | None = None
    created: float | None = None
    lines_ingested: int = 0
    #: (name, mtime, size) of the file merged last, and of the newest file tried last
    merged: Signature | None = None
    tried: Signature | None = None
    #: why the shard's newest snapshot is not what the view holds (None: it is)
    problem: str | None = None
    errors: int = 0

    def row(self, now: float) -> dict[str, Any]:
        return {"dir": self.dir, "snapshot": self.snapshot, "created": self.created,
                "age_s": None if self.created is None else round(now - self.created, 3),
                "lines_ingested": self.lines_ingested, "problem": self.problem,
                "errors": self.errors}


@dataclass
class _Loaded:
    """One shard's part of a merge (from the loading thread)."""

    path: Path | None = None          # the file merged, None when nothing of it was
    signature: Signature | None = None
    created: float | None = None
    lines: int = 0
    problem: str | None = None        # why it is not the shard's newest snapshot


@dataclass
class _Built:
    """A merge's outcome (from the loading thread)."""

    engine: Engine | None             # None: abandoned, the published state stays
    shards: list[_Loaded] = field(default_factory=list)
    seconds: float = 0.0
    #: (shard index, why) when a shard that contributed before cannot be read at all
    abandoned: tuple[int, str] | None = None


class ShardView:
    """Merges the shards' newest snapshots every ``view.interval`` (see module docstring)."""

    def __init__(self, shards: tuple[str, ...], interval: float, engine_config: EngineConfig,
                 pipeline: Pipeline, publisher: Publisher, counters: Counters,
                 stopping: asyncio.Event) -> None:
        self.interval = interval
        self._config = engine_config
        self._fingerprint = engine_config.fingerprint()
        self._pipeline = pipeline
        self._publisher = publisher
        self._counters = counters
        self._stopping = stopping
        self.shards = [ShardStatus(d) for d in shards]
        #: paths of the files the current merged state holds, per shard (None: nothing)
        self._paths: list[Path | None] = [None] * len(shards)
        counters.view_shards = [s.row(time.time()) for s in self.shards]

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        """(start-up) The newest snapshot of every shard directory, if any, was made with
        this engine configuration (raises ShardConfigError naming the shard). A directory
        that does not exist yet is not an error (shards and the view may start together,
        a mount may come later): it is reported degraded until it holds a snapshot."""
        for s in self.shards:
            d = Path(s.dir)
            if d.exists() and not d.is_dir():
                raise ShardConfigError(f"shard {s.dir}: not a directory (a shard's "
                                       "state.dir, shared or copied here)")
            if not d.exists():
                log.warning("shard %s: no such directory yet", s.dir)
                continue
            try:
                found = snapshot.newest_header(d)
            except OSError as exc:
                raise ShardConfigError(f"shard {s.dir}: cannot read: "
                                       f"{exc.strerror or exc}") from None
            if found is not None and found[1]["fingerprint"] != self._fingerprint:
                raise ShardConfigError(
                    f"shard {s.dir}: {found[0].name} was made with a different engine "
                    f"configuration (fingerprint {found[1]['fingerprint']}, this view has "
                    f"{self._fingerprint}); the view and every shard need the same order, "
                    "units, memory, depth, seed, exact and capacity")

    # ------------------------------------------------------------------ the timer

    async def run(self) -> None:
        """Merge at once, then every interval, until the service stops."""
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except Exception:  # a bug; the next interval tries again
                log.exception("merging the shards failed; keeping the published state")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def refresh(self) -> bool:
        """Merge if a shard's newest snapshot changed; True when a new state was swapped in."""
        sigs = await asyncio.to_thread(self._signatures)
        if self._counters.view_merges and all(
                sig == s.tried for sig, s in zip(sigs, self.shards, strict=True)):
            self._publish_status()
            return False
        built = await asyncio.to_thread(self._build, list(self._paths))
        c = self._counters
        if built.engine is None:
            assert built.abandoned is not None
            i, why = built.abandoned
            self._note(self.shards[i], why)
            for s in self.shards:  # try again next interval, whatever the signatures say
                s.tried = None
            c.view_problem = f"shard {self.shards[i].dir}: {why}"
            self._publish_status()
            log.error("shards not merged: %s; the previous merged state stays published",
                      c.view_problem)
            return False
        if all(got.path is None for got in built.shards) and \
                self._pipeline.engine.lines_ingested:
            # no shard can be read (a restart while their directories are not mounted, say):
            # the state restored from the view's own snapshot stays published
            for s, got in zip(self.shards, built.shards, strict=True):
                self._note(s, got.problem)
                s.tried = None
            self._publish_status()
            return False
        for s, sig, got in zip(self.shards, sigs, built.shards, strict=True):
            # a directory that cannot be listed is tried again at every interval
            s.tried = None if isinstance(sig, str) else sig
            self._note(s, got.problem, got.path)
            s.snapshot = got.path.name if got.path else None
            s.merged, s.created, s.lines_ingested = got.signature, got.created, got.lines
        self._paths = [got.path for got in built.shards]
        await self._swap(built.engine)
        c.view_problem = None
        c.view_merges += 1
        c.view_merge_seconds = built.seconds
        c.view_last_merge = time.time()
        self._publish_status()
        log.info("merged %d shard snapshot(s) in %.3f s: %d lines",
                 sum(1 for p in self._paths if p is not None), built.seconds,
                 built.engine.lines_ingested)
        await self._publisher.rescore(reason="shards merged")
        return True

    @staticmethod
    def _note(s: ShardStatus, problem: str | None, path: Path | None = None) -> None:
        """Record a shard's problem (logged and counted when it changes) or its recovery."""
        if problem is not None and problem != s.problem:
            s.errors += 1
            log.warning("shard %s: %s", s.dir, problem)
        elif problem is None and s.problem is not None:
            log.info("shard %s: readable again (%s)", s.dir, path.name if path else "-")
        s.problem = problem

    def _publish_status(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._counters.view_shards = [s.row(now) for s in self.shards]

    def _signatures(self) -> list[Signature | str | None]:
        """(thread) Each shard's newest snapshot signature, None without one, or why its
        directory cannot be listed."""
        out: list[Signature | str | None] = []
        for s in self.shards:
            try:
                out.append(snapshot.newest_signature(s.dir))
            except OSError as exc:
                out.append(f"cannot list {s.dir}: {exc.strerror or exc}")
        return out

    # ------------------------------------------------------------------ merging

    def _build(self, previous: list[Path | None]) -> _Built:
        """(a thread) A fresh merged engine from every shard's newest usable snapshot."""
        t0 = time.perf_counter()
        out = _Built(None)
        base: Engine | None = None
        for i, (s, prev) in enumerate(zip(self.shards, previous, strict=True)):
            got, engine = self._load_shard(s, prev)
            if engine is None and prev is not None:
                # it contributed before and nothing of it can be read now: leaving it out
                # would make every count it holds drop from the published list
                out.abandoned = (i, got.problem or "unreadable")
                return out
            out.shards.append(got)
            if engine is None:
                continue
            if base is None:
                base = engine
            else:
                base.merge(engine)
            del engine
            release_freed_memory()
        out.engine = base if base is not None else Engine(self._config)
        out.seconds = time.perf_counter() - t0
        return out

    def _load_shard(self, s: ShardStatus, prev: Path | None) -> tuple[_Loaded, Engine | None]:
        """(a thread) The shard's newest usable state, else the file merged last, with the
        problem that made it fall back (None when the newest snapshot is used)."""
        problem: str | None = None
        result = None
        try:
            result, skipped = snapshot.read_newest(s.dir, fingerprint=self._fingerprint)
            if skipped:
                problem = "newest snapshot unusable: " + "; ".join(skipped)
            elif result is None:
                problem = ("no snapshot yet" if Path(s.dir).is_dir()
                           else "no such directory (yet)")
        except snapshot.FingerprintMismatch as exc:
            problem = (f"{exc.path.name} was made with a different engine configuration "
                       f"(fingerprint {exc.found}, the view has {exc.expected})")
        except OSError as exc:
            problem = f"cannot read {s.dir}: {exc.strerror or exc}"
        if result is None and prev is not None:
            with contextlib.suppress(snapshot.SnapshotError, OSError):
                result = snapshot.load_file(prev, fingerprint=self._fingerprint)
                problem = f"{problem}; keeping {prev.name}"
        if result is None:
            return _Loaded(problem=problem), None
        try:
            engine = engine_of(result, self._config)
        except (KeyError, TypeError, ValueError) as exc:
            return _Loaded(problem=f"{result.path.name}: not an engine state "
                                   f"({type(exc).__name__}: {exc})"), None
        try:
            st = result.path.stat()
            sig: Signature | None = (result.path.name, st.st_mtime_ns, st.st_size)
        except OSError:  # pruned by the shard since: it was read whole already
            sig = None
        return _Loaded(result.path, sig, float(result.header["created"]),
                       int(engine.lines_ingested), problem), engine

    async def _swap(self, engine: Engine) -> None:
        """Put the merged engine in place of the published one, between engine jobs."""
        pipeline = self._pipeline
        async with pipeline.lock:
            old = pipeline.engine
            await pipeline.in_worker(_carry_over, old, engine)
            pipeline.attach(engine)
            self._counters.generation += 1


def engine_of(result: snapshot.LoadResult, config: EngineConfig) -> Engine:
    """The engine of a shard's snapshot (a daemon snapshot, or a bare engine state)."""
    state = result.state
    engine_state = state["engine"] if isinstance(state.get("engine"), dict) else state
    # the view's own thresholds (min_count, min_pmi, ...) apply to the merged list
    return Engine.from_state(engine_state, None, config=config)


def _carry_over(old: Engine, new: Engine) -> None:
    """(engine thread) What the view keeps from one merged state to the next: the known
    lexicons, and the first_seen of every word it has listed (so it does not jump)."""
    new.set_known(old.known)
    new.listed.merge(old.listed)

