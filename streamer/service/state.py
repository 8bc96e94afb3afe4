"""The service's state on disk: restored at start, captured and written by snapshots.

A snapshot holds ``{"format": STATE_FORMAT, "engine": Engine.state_dict(), "sources":
committed positions, "published": the published list}``. :class:`StateStore` loads it at
start (newest good snapshot, or a ``--state-from`` seed, or none after ``--reset-state``)
and writes it; :class:`Snapshots` takes one while the service runs.

Exactly once across restarts: the counts and the source offsets in a snapshot agree.
:meth:`Snapshots.take` holds the engine lock (``Pipeline.lock``, also held by the consumer
across ingest and commit) while it reads the committed positions and copies the engine
state in the engine thread. The copy is then serialised, hashed and fsynced by another
thread while ingestion goes on: the ingestion pause is a copy in memory, not a disk write
(docs/recovery.md has the measured pause). Once the file is on disk, sources that
acknowledge what they hand out (a Redis stream: XACK) are told which positions it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import operator
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.core.engine import Engine, EngineConfig
from streamer.core.lexicon import Lexicon
from streamer.core.memory import release_freed_memory
from streamer.core.results import Published, Word
from streamer.input import Source
from streamer.service.config import Config
from streamer.service.pipeline import Pipeline
from streamer.service.publisher import Publisher
from streamer.service.telemetry import Counters
from streamer.storage import snapshot
from streamer.storage.sizes import format_bytes

log = logging.getLogger(__name__)

#: Layout tag of the daemon's snapshot state (the dict handed to write_snapshot).
STATE_FORMAT = "streamer-daemon/1"

Positions = dict[str, list[dict[str, Any]]]


class StateError(Exception):
    """The state on disk cannot be used as it is; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a snapshot (or a seed) gives the service at start."""

    engine: Engine
    #: committed positions by source id; None for a seed (a batch run or a merge stored
    #: none): then it is a first start and sources.from_beginning applies
    positions: Positions | None
    published: Published


class StateStore:
    """The snapshots in ``state.dir``: load at start, set aside, write."""

    def __init__(self, cfg: Config, engine_config: EngineConfig, *, reset_state: bool = False,
                 state_from: str | None = None) -> None:
        self._cfg = cfg
        self._engine_config = engine_config
        self.dir = Path(cfg.state.dir)
        self.reset_state = reset_state
        self.state_from = state_from
        self.fingerprint = engine_config.fingerprint()

    def load(self, known: Lexicon | None) -> Restored | None:
        """The state to start from, or None to start empty (raises StateError)."""
        result = self._load_file()
        if result is None:
            return None
        restored = self._restore(result, known)
        if self.state_from:  # only now that the seed is known to be good
            self.set_aside("--state-from with --reset-state")
            log.info("seeded the state from %s", self.state_from)
        return restored

    def _load_file(self) -> snapshot.LoadResult | None:
        fp = self.fingerprint
        try:
            if self.state_from:
                existing = snapshot.list_snapshots(self.dir)
                if existing and not self.reset_state:
                    # A service unit that keeps --state-from in its command line must not
                    # throw its live state away on every restart.
                    raise StateError(
                        f"--state-from {self.state_from}: {self.dir} already holds "
                        f"{len(existing)} snapshot(s); --state-from only seeds an empty state "
                        "directory (add --reset-state to move them aside)")
                try:
                    return snapshot.load_file(self.state_from, fingerprint=fp)
                except snapshot.FingerprintMismatch as exc:
                    raise StateError(
                        f"--state-from {self.state_from}: made with a different engine "
                        f"configuration (fingerprint {exc.found}, this configuration has "
                        f"{exc.expected}); use the same order, units, memory, depth, seed, "
                        "exact and capacity as the run that wrote it") from None
                except snapshot.SnapshotError as exc:
                    raise StateError(f"--state-from {exc}") from None
                except OSError as exc:
                    raise StateError(f"--state-from {self.state_from}: "
                                     f"{exc.strerror or exc}") from None
            if self.reset_state:
                self.set_aside("--reset-state")
                log.warning("--reset-state: starting with an empty state")
                return None
            try:
                return snapshot.load_latest(self.dir, fingerprint=fp)
            except snapshot.FingerprintMismatch as exc:
                raise StateError(
                    f"{exc.path}: this state was written with a different engine "
                    f"configuration (fingerprint {exc.found}, now {exc.expected}): one of "
                    "engine.order, units, memory, depth, seed, exact, capacity changed. "
                    "Restore them, or start with --reset-state to move the old snapshots "
                    "aside and start empty") from None
        except OSError as exc:
            raise StateError(f"{self._cfg.where('state.dir')}: cannot read snapshots in "
                             f"{self.dir}: {exc.strerror or exc}") from None

    def _restore(self, result: snapshot.LoadResult, known: Lexicon | None) -> Restored:
        state = result.state
        seed = not isinstance(state.get("engine"), dict)
        # a bare engine state is a seed, e.g. from `streamer discover --save-state`
        engine_state = state if seed else state["engine"]
        try:
            engine = Engine.from_state(engine_state, known, config=self._engine_config)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"{result.path}: the snapshot verifies but its engine state cannot be "
                f"restored ({type(exc).__name__}: {exc}); start with --reset-state to move "
                "it aside and start empty") from None
        if seed and getattr(engine, "last_decay", None) is not None:
            # A batch run has no stream time (its clock starts at 0 and never decays): its
            # counts are taken as of the service's first rescore, not decayed over the
            # decades between 0 and now.
            engine.last_decay = None
        sources = state.get("sources")
        positions = None
        if isinstance(sources, dict):
            positions = {str(k): list(v) for k, v in sources.items() if isinstance(v, list)}
        published = published_from_state(state.get("published"))
        log.info("restored %s: %d lines, %d units ingested so far, %d published words, "
                 "positions of %d file(s)", result.path.name, int(engine.lines_ingested),
                 int(engine.units_ingested), len(published.words),
                 sum(len(v) for v in (positions or {}).values()))
        return Restored(engine, positions, published)

    def set_aside(self, why: str) -> None:
        """Move every snapshot out of the way (never delete state) and say where."""
        existing = snapshot.list_snapshots(self.dir)
        if not existing:
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.dir / f"reset-{stamp}"
        n = 2
        while target.exists():
            target = self.dir / f"reset-{stamp}-{n}"
            n += 1
        target.mkdir(parents=True)
        for p in existing:
            os.replace(p, target / p.name)
        log.warning("%s: moved %d snapshot(s) to %s", why, len(existing), target)

    def write(self, state: dict[str, Any], metadata: dict[str, Any]) -> tuple[Path, int]:
        """(writer thread) Write a captured state atomically; returns (path, bytes).

        The published list is turned into rows here, not under the engine lock."""
        if isinstance(state.get("published"), Published):
            state = {**state, "published": published_state(state["published"])}
        path = snapshot.write_snapshot(self.dir, state, fingerprint=self.fingerprint,
                                       metadata=metadata, keep=self._cfg.state.keep)
        return path, path.stat().st_size


class Snapshots:
    """Snapshots while the service runs: a capture under the engine lock, then a write."""

    def __init__(self, store: StateStore, pipeline: Pipeline, publisher: Publisher,
                 counters: Counters, sources: Mapping[str, Source]) -> None:
        self._store = store
        self._pipeline = pipeline
        self._publisher = publisher
        self._counters = counters
        self._sources = sources
        self._write_lock = asyncio.Lock()  # one snapshot write at a time
        self._generation = -1  # Counters.generation at the last snapshot

    def due(self) -> bool:
        """The engine changed since the last snapshot."""
        return self._counters.generation != self._generation

    async def take(self, reason: str = "timer") -> bool:
        """Snapshot between batches: the engine lock makes offsets and counts agree.

        Only the capture (a copy of the state) holds the lock and pauses ingestion; the
        file is written by another thread while batches flow again.
        """
        c = self._counters
        async with self._write_lock:
            async with self._pipeline.lock:
                t0 = time.perf_counter()
                positions = {sid: src.committed_positions()
                             for sid, src in self._sources.items()}
                try:
                    state, metadata = await self._pipeline.in_worker(
                        self._capture_job, positions, self._publisher.published)
                except Exception as exc:
                    c.snapshot_errors += 1
                    c.snapshot_failure = f"{snapshot.error_kind(exc)}: {exc}"
                    log.error("snapshot failed (%s): %s", reason, exc, exc_info=True)
                    return False
                pause = time.perf_counter() - t0
                generation = c.generation
            try:
                path, size = await asyncio.to_thread(self._store.write, state, metadata)
            except Exception as exc:
                c.snapshot_errors += 1
                c.snapshot_failure = f"{snapshot.error_kind(exc)}: {exc}"
                log.error("snapshot failed (%s): %s", reason, exc,
                          exc_info=not isinstance(exc, OSError))
                return False
            finally:
                del state
                release_freed_memory()
            total = time.perf_counter() - t0
        self._generation = generation
        for sid, src in self._sources.items():
            acknowledge = getattr(src, "acknowledge", None)
            if acknowledge is not None:  # the snapshot holding these positions is on disk
                acknowledge(positions.get(sid, []))
        c.snapshots += 1
        c.snapshot_failure = None
        c.snapshot_seconds = pause
        c.snapshot_write_seconds = total
        c.snapshot_bytes = size
        c.last_snapshot = time.time()
        c.last_snapshot_path = str(path)
        log.info("snapshot written (%s): %s, %s in %.3f s; ingestion paused %.3f s; "
                 "%d lines, %d units", reason, path, format_bytes(size), total, pause,
                 metadata["lines_ingested"], metadata["units_ingested"])
        return True

    def _capture_job(self, positions: Positions,
                     published: Published) -> tuple[dict[str, Any], dict[str, Any]]:
        """(engine thread, between batches) A private copy of the whole state, and its
        metadata.

        The engine state is arrays and scalars only (candidate texts and examples packed
        in byte arrays), so the copy costs a memcpy of about the memory budget; writing
        (serialising, hashing, fsyncing) costs seconds. Copying lets ingestion go on while
        another thread writes the file, at the price of holding the state twice for the
        duration of the write. The published list is immutable and is turned into rows
        by the writer thread (:meth:`StateStore.write`), not here under the lock."""
        eng = self._pipeline.engine
        # the copy creates containers, none of them garbage: no collector passes
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            engine_state = _private_copy(eng.state_dict())
        finally:
            if gc_was_on:
                gc.enable()
        state = {
            "format": STATE_FORMAT,
            "engine": engine_state,
            "sources": positions,
            "published": published,
        }
        metadata = {
            "format": STATE_FORMAT,
            "lines_ingested": int(eng.lines_ingested),
            "chars_ingested": int(eng.chars_ingested),
            "units_ingested": int(eng.units_ingested),
            "stream_time": self._pipeline.stream_time(eng.chars_ingested),
            "published_words": len(published.words),
            "sources": positions_summary(positions),
        }
        return state, metadata


# --------------------------------------------------------------------------- helpers


def positions_summary(positions: Positions) -> Positions:
    """The positions for a snapshot's header (metadata): as they are, except that a list
    in a position (the ids a Redis source counted, up to an interval's worth of entries)
    is replaced by its length under ``<key>_ids``; the state holds the list itself."""
    return {sid: [{(f"{k}_ids" if isinstance(v, list) else k):
                   (len(v) if isinstance(v, list) else v) for k, v in p.items()}
                  if isinstance(p, dict) else p for p in ps]
            for sid, ps in positions.items()}


def _private_copy(value: Any) -> Any:
    """Deep copy of a state tree: arrays copied, containers rebuilt, immutables shared."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _private_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_private_copy(v) for v in value]
    return value



_WORD_FIELDS = tuple(f.name for f in dataclasses.fields(Word))


def _word_rows(words: Iterable[Word]) -> list[list[Any]]:
    get = operator.attrgetter(*_WORD_FIELDS)  # much faster than dataclasses.astuple
    return [list(get(w)) for w in words]


def published_state(pub: Published) -> dict[str, Any]:
    """The published list in the snapshot: restart shows it at once, first_seen intact."""
    return {"fields": list(_WORD_FIELDS), "words": _word_rows(pub.words),
            "rescored_at": pub.rescored_at, "stream_time": pub.stream_time}


def published_from_state(data: Any) -> Published:
    """The list :func:`published_state` stored; an empty one if it cannot be read."""
    if not isinstance(data, dict):
        return Published()
    fields = data.get("fields") or []
    words = []
    try:
        for row in data.get("words") or []:
            d = dict(zip(fields, row, strict=True))
            words.append(Word(**{k: v for k, v in d.items() if k in _WORD_FIELDS}))
    except (TypeError, ValueError):
        log.warning("published list in the snapshot is not readable; waiting for a rescore")
        return Published()
    return Published(words=tuple(words), rescored_at=data.get("rescored_at"),
                     stream_time=data.get("stream_time"))
