"""What readers see: the published list, rebuilt by a rescore, and the files made from it.

A rescore runs in the engine thread under the engine lock and builds a new
:class:`~streamer.core.results.Published`; it is swapped in with one assignment, so HTTP
readers and exports never wait for the engine. After each rescore the publisher keeps a
short history and a few examples of the best words (for /words/{word} and the dashboard)
and replaces latest.jsonl; timestamped exports are written on their own timer.

Bounded: the history covers only the best HISTORY_WORDS published words (and the best new
ones), HISTORY_POINTS points each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.core.memory import release_freed_memory
from streamer.core.results import Published, Word
from streamer.service.config import Config
from streamer.service.pipeline import Pipeline
from streamer.service.telemetry import Counters
from streamer.storage import exports

if TYPE_CHECKING:  # aiohttp is imported only when the service starts (cli imports us)
    from streamer.service.server import WordDetail

log = logging.getLogger(__name__)

#: History points kept per published word for /words/{word} and the dashboard sparklines,
#: for the best HISTORY_WORDS words (bounded: ~ 100 bytes a point).
HISTORY_POINTS = 96
HISTORY_WORDS = 1000
#: Examples fetched from the engine after each rescore, for the best N words only.
EXAMPLE_WORDS = 200
#: An idle daemon (nothing ingested since the last rescore) still rescores this often, so
#: the half-life decay shows in the published list.
IDLE_RESCORE_SECONDS = 60.0


class Publisher:
    """Rescores (on a timer, on demand), the published list, its history, its files."""

    def __init__(self, cfg: Config, counters: Counters, pipeline: Pipeline,
                 stopping: asyncio.Event) -> None:
        self._cfg = cfg
        self._counters = counters
        self._pipeline = pipeline
        self._stopping = stopping
        self._export_dir = Path(cfg.export.dir)
        #: the current list; replaced whole (one assignment) by each rescore
        self.published = Published()
        self._exported: Published | None = None  # the list the last export wrote
        self._history: dict[str, collections.deque[tuple[float, float]]] = {}
        self._examples: dict[str, list[str]] = {}
        self._rescore_now = asyncio.Event()
        self._rescored_generation = -1
        self._export_lock = asyncio.Lock()  # one writer of the export directory at a time

    # ------------------------------------------------------------------ rescore

    async def rescore(self, reason: str = "timer") -> None:
        """Rebuild the cohesive set and publish; replace latest.jsonl."""
        c = self._counters
        async with self._pipeline.lock:
            t0 = time.perf_counter()
            try:
                pub, examples, stats = await self._pipeline.in_worker(self._rescore_job)
            except Exception:
                log.exception("rescore failed; keeping the previous list")
                return
            elapsed = time.perf_counter() - t0
            c.generation += 1  # rescore decays counts: the state changed
            self._rescored_generation = c.generation
        self.published = pub  # the one assignment readers see
        self._examples = examples
        c.engine_stats = stats
        self._update_history(pub)
        c.rescores += 1
        c.rescore_seconds = elapsed
        c.last_rescore = time.time()
        log.info("rescore (%s): %d words, %d new, in %.3f s (engine %.3f s); %d lines, "
                 "%d units ingested", reason, len(pub.words), sum(1 for w in pub.words if w.new),
                 elapsed, pub.rescore_seconds, c.lines_ingested, c.units_ingested)
        await self._write_latest(pub)

    def request_rescore(self) -> None:
        """Rescore at once (the timer's next turn), e.g. after the lexicons changed."""
        self._rescore_now.set()

    async def rescore_timer(self) -> None:
        """Rescore every ``intervals.rescore`` seconds; when nothing changed, only every
        IDLE_RESCORE_SECONDS (decay still moves the list)."""
        interval = self._cfg.intervals.rescore
        last = time.monotonic()
        due = last + interval  # scheduled from the start, so rescores do not drift
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescore_now.wait(),
                                       max(due - time.monotonic(), 0.0))
            now = time.monotonic()
            due = max(due + interval, now)
            if self._stopping.is_set():
                return
            forced = self._rescore_now.is_set()
            self._rescore_now.clear()
            idle = self._counters.generation == self._rescored_generation
            if idle and not forced and time.monotonic() - last < IDLE_RESCORE_SECONDS:
                continue
            await self.rescore("known lexicons reloaded" if forced else "timer")
            last = time.monotonic()

    def _rescore_job(self) -> tuple[Published, dict[str, list[str]], dict[str, Any]]:
        """(engine thread) Rescore; also gather examples of the best words and engine stats."""
        eng = self._pipeline.engine
        pub = eng.rescore(self._pipeline.stream_time(eng.chars_ingested))
        examples = {}
        for w in _best_and_best_new(pub, EXAMPLE_WORDS):
            try:
                examples[w.word] = eng.examples(w.word)
            except Exception:  # examples are decoration; never fail a rescore for them
                break
        release_freed_memory()  # the rescore's temporaries (a few ms)
        return pub, examples, dict(pub.stats) if pub.stats else eng.stats()

    # ------------------------------------------------------------------ history

    def _update_history(self, pub: Published) -> None:
        t = pub.stream_time if pub.stream_time is not None else time.time()
        old = self._history
        new: dict[str, collections.deque[tuple[float, float]]] = {}
        for w in _best_and_best_new(pub, HISTORY_WORDS):
            d = old.get(w.word)
            if d is None:
                d = collections.deque(maxlen=HISTORY_POINTS)
            d.append((t, float(w.count)))
            new[w.word] = d
        self._history = new

    def word_detail(self, word: str) -> WordDetail | None:
        """History and examples of *word*, or None when it is not tracked."""
        hist = self._history.get(word)
        examples = self._examples.get(word)
        if hist is None and examples is None:
            return None
        return {"history": list(hist or ()), "examples": list(examples or ())}

    # ------------------------------------------------------------------ files

    async def _write_latest(self, pub: Published) -> None:
        e = self._cfg.export
        export_dir = self._export_dir

        def job() -> None:
            words = exports.select_words(pub, e.selection, e.top_k)
            data = exports.render_text(words, "jsonl").encode("utf-8")
            export_dir.mkdir(parents=True, exist_ok=True)
            exports.atomic_write_bytes(export_dir / "latest.jsonl", data)

        async with self._export_lock:
            try:
                await asyncio.to_thread(job)
            except Exception as exc:
                self._counters.export_errors += 1
                self._counters.export_failure = f"{export_dir / 'latest.jsonl'}: {exc}"
                log.error("cannot write %s: %s", export_dir / "latest.jsonl", exc)
                return
            self._counters.export_failure = None

    def export_due(self) -> bool:
        """A rescore has published a list the exports do not hold yet."""
        return self.published is not self._exported and bool(self.published.rescored_at)

    async def export(self, reason: str = "timer") -> None:
        """Timestamped exports in the configured formats (+ latest.<ext>), then the
        retention rules (export.retention_files, export.retention_days)."""
        e = self._cfg.export
        pub = self.published
        if not e.formats:
            return
        c = self._counters
        async with self._export_lock:
            try:
                written = await asyncio.to_thread(
                    exports.write_export, self._export_dir, pub, formats=list(e.formats),
                    selection=e.selection, top_k=e.top_k,
                    retention_files=e.retention_files or None,
                    retention_days=e.retention_days or None)
            except Exception as exc:
                c.export_errors += 1
                c.export_failure = f"{self._export_dir}: {exc}"
                log.error("export failed (%s): %s", reason, exc)
                return
        c.export_failure = None
        self._exported = pub
        c.exports += 1
        c.last_export = time.time()
        log.info("export written (%s): %s (%d words)", reason,
                 ", ".join(p.name for p in written), len(pub.words))


def _best_and_best_new(pub: Published, k: int) -> list[Word]:
    """The best k words and the best k new ones (the dashboard shows either list)."""
    best = list(pub.words[:k])
    seen = {w.word for w in best}
    best += [w for w in pub.select(new=True, limit=k) if w.word not in seen]
    return best
