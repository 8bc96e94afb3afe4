"""The way to the engine: the bounded queue, the consumer and the engine's threads.

    sources, POST /ingest --Batch--> bounded asyncio.Queue --> consumer coroutine
        --> Engine.encode_batch in the encode thread (encodes the next batch)
        --> Engine.ingest_batch in the engine thread --> source.commit(batch.position)

* The engine is synchronous numpy code. All of its work runs in ONE engine thread
  (:meth:`Pipeline.in_worker`), so the event loop stays responsive and the engine is never
  touched by two threads at once, with no locking inside it. ``Engine.encode_batch`` reads no
  engine state, so a second thread encodes the next batch meanwhile (two cores).
* Exactly once: :attr:`Pipeline.lock` is held from handing a batch to the engine until
  its source position is committed (:meth:`Pipeline.process`). Whoever reads the engine's
  state together with the committed positions (the snapshot capture in state.py) takes the
  same lock, so a snapshot never holds a batch whose offset was not committed, nor an
  offset whose batch was not counted.
* Nothing buffers without bound: the queue has ``sources.queue_batches`` slots; sources
  and HTTP ingest await a free slot (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from streamer.core.engine import EncodedBatch, Engine
from streamer.core.lexicon import Lexicon
from streamer.core.memory import release_freed_memory
from streamer.input import Batch, Source
from streamer.service.config import Config
from streamer.service.telemetry import Counters

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most lines a source puts in one batch (batch_bytes usually ends a batch first); big
#: batches amortise the engine's per-call numpy overhead.
BATCH_LINES = 50_000
#: The freed memory of batches is handed back to the OS at most this often (a trim costs
#: ~4 ms; without it RSS wanders by ~10% with the batches' temporaries).
TRIM_SECONDS = 2.0
#: A batch that fails with an OSError (EMFILE, ENOMEM...: the process, not the batch) is
#: retried after RETRY_FIRST seconds, doubling up to RETRY_MAX; such failures are logged
#: once per RESOURCE_LOG_SECONDS with their count.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
RESOURCE_LOG_SECONDS = 60.0


class Pipeline:
    """The queue, the consumer, the engine lock and the engine's two threads.

    Counters are updated here after every batch; the engine itself is only touched in its
    thread (:meth:`in_worker`).
    """

    def __init__(self, cfg: Config, counters: Counters, stopping: asyncio.Event,
                 sources: Mapping[str, Source]) -> None:
        self._cfg = cfg
        self._counters = counters
        self._stopping = stopping
        self._sources = sources
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=cfg.sources.queue_batches)
        #: held across ingest + commit, and across committed positions + state copy
        self.lock = asyncio.Lock()
        self._engine: Engine | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._prep_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self._consumer: asyncio.Task[None] | None = None
        self._job_started: float | None = None  # monotonic start of the running engine job
        self._trimmed = 0.0  # monotonic time of the last malloc trim (engine thread)
        self._unread_handles: set[tuple[str, int]] = set()  # files given up at shutdown
        self._resource_logged = -RESOURCE_LOG_SECONDS
        self._resource_unlogged = 0

    # ------------------------------------------------------------------ the engine

    @property
    def engine(self) -> Engine:
        """The engine; read or change its state only inside :meth:`in_worker` jobs."""
        if self._engine is None:
            raise RuntimeError("no engine yet: Daemon.start_up() makes it")
        return self._engine

    def attach(self, engine: Engine) -> None:
        """Feed *engine* from now on; the counters start from its totals."""
        self._engine = engine
        self._copy_totals(engine.lines_ingested, engine.chars_ingested, engine.units_ingested)

    def _copy_totals(self, lines: int, chars: int, units: int) -> None:
        c = self._counters
        c.lines_ingested, c.chars_ingested, c.units_ingested = int(lines), int(chars), int(units)

    def stream_time(self, chars: int | None = None) -> float:
        """Wall clock, or in replay mode start + characters ingested / chars_per_second."""
        t = self._cfg.time
        if t.mode == "replay":
            n = self._counters.chars_ingested if chars is None else chars
            return t.start + n / t.chars_per_second
        return time.time()

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the engine thread (one job at a time, in order)."""
        loop = asyncio.get_running_loop()
        self._job_started = time.monotonic()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self._job_started = None

    def stuck_seconds(self) -> float:
        """How long the engine thread has been busy with one job (0 when idle)."""
        started = self._job_started
        return 0.0 if started is None else time.monotonic() - started

    def queue_depth(self) -> int:
        return self.queue.qsize()

    def consumer_state(self) -> Literal["starting", "running", "stopped"]:
        if self._consumer is None:
            return "starting"
        return "stopped" if self._consumer.done() else "running"

    async def set_known(self, known: Lexicon | None) -> None:
        """Replace the engine's known lexicons (in the engine thread, between batches)."""
        await self.in_worker(self.engine.set_known, known)
        self._counters.known_words = len(known) if known is not None else 0
        self._counters.generation += 1

    def close(self) -> None:
        """Stop both threads (queued jobs are cancelled, a running one finishes)."""
        self._prep_executor.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ the consumer

    def start(self) -> None:
        """Start the consumer (on the running event loop)."""
        self._consumer = asyncio.get_running_loop().create_task(self._consume(),
                                                                name="consumer")

    async def finish(self, producers: Collection[asyncio.Task[None]], deadline: float) -> int:
        """After stop: let the consumer end its batch in flight, then ingest what the
        *producers* still hand in until the monotonic *deadline*. Returns the number of
        batches left in the queue (dropped: files re-read them after a restart)."""
        if self._consumer is not None:
            try:
                await self._consumer
            except Exception:
                log.exception("the consumer failed")
        while time.monotonic() < deadline:
            pending = [t for t in producers if not t.done()]
            try:
                batch = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if not pending:
                    break
                await asyncio.wait(pending, timeout=0.05)
                continue
            await self.process(batch)
        return self.queue.qsize()

    def discard_queued(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    async def _consume(self) -> None:
        """The only coroutine that feeds the engine: one batch at a time, commit after.

        While the engine ingests a batch, the next one (if already queued) is encoded
        in the encode thread, so the two cores share the work.
        """
        queue, stopping = self.queue, self._stopping
        pending: tuple[Batch, asyncio.Future[EncodedBatch]] | None = None
        try:
            while True:
                if stopping.is_set():
                    return
                if pending is not None and queue.empty():
                    await self.process(*pending)
                    pending = None
                    continue
                batch = await self._next_batch()
                if batch is None:
                    return
                upcoming = (batch, self._encode_ahead(batch))
                if pending is not None:
                    await self.process(*pending)
                pending = upcoming
        finally:
            if pending is not None:  # finish the batch in flight (it is prepared)
                await self.process(*pending)

    async def _next_batch(self) -> Batch | None:
        """The next queued batch, or None once stopping is set."""
        queue = self.queue
        while True:
            try:
                return queue.get_nowait()
            except asyncio.QueueEmpty:
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({getter, stopper},
                                             return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    if getter.cancelled():
                        return None
                return getter.result()

    def _encode_ahead(self, batch: Batch) -> asyncio.Future[EncodedBatch]:
        """Start encoding a batch in the encode thread."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._prep_executor, self.engine.encode_batch, batch.lines)

    async def process(self, batch: Batch,
                      prepared: asyncio.Future[EncodedBatch] | None = None) -> None:
        """Count one batch and commit its position, under the engine lock.

        An OSError while encoding it (which reads no engine state) is the process's trouble
        (out of descriptors or memory), not the batch's: the batch is not committed and is
        retried after a backoff, holding the queue (sources wait); once stopping, it is
        given up after one more attempt and counted in ``batches_unread``, and so is every
        later batch of its file, so that the file resumes from its last committed offset at
        the next start."""
        c = self._counters
        handle = (batch.source_id, getattr(batch.position, "handle", None))
        if handle[1] is not None and handle in self._unread_handles:
            c.batches_unread += 1
            return
        delay = RETRY_FIRST
        while True:
            try:
                await self._process_once(batch, prepared)
                return
            except OSError as exc:
                prepared = None
                c.resource_errors += 1
                self._log_resource_error(batch, exc)
                if self._stopping.is_set():
                    if handle[1] is not None:
                        self._unread_handles.add(handle)
                    c.batches_unread += 1
                    log.error("stopping: could not ingest a batch of %d lines from %s (%s);"
                              " it is not committed", len(batch.lines), batch.source_id, exc)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, RETRY_MAX)

    def _log_resource_error(self, batch: Batch, exc: OSError) -> None:
        self._resource_unlogged += 1
        now = time.monotonic()
        if now - self._resource_logged >= RESOURCE_LOG_SECONDS:
            log.error("cannot ingest a batch from %s: %s (%d failed attempt(s) since the last"
                      " such message); not committed, retrying", batch.source_id,
                      exc.strerror or exc, self._resource_unlogged)
            self._resource_logged = now
            self._resource_unlogged = 0

    async def _process_once(self, batch: Batch,
                            prepared: asyncio.Future[EncodedBatch] | None) -> None:
        """Ingest and commit one batch; an OSError while encoding it propagates."""
        async with self.lock:
            stage = "encode"
            try:
                p = await (prepared if prepared is not None else self._encode_ahead(batch))
                stage = "ingest"
                totals = await self.in_worker(self._ingest_job, p)
            except Exception as exc:
                if isinstance(exc, OSError) and stage == "encode":
                    raise  # nothing was counted (encoding reads no state): retried
                # The batch is committed anyway: re-reading a batch that crashes the engine
                # after every restart would stop the service for good, and one that failed
                # half-counted would be counted twice.
                self._counters.ingest_errors += 1
                log.exception("engine failed on a batch of %d lines from %s (%s); skipped",
                              len(batch.lines), batch.source_id,
                              getattr(batch.position, "path", batch.position))
                eng = self.engine
                totals = eng.lines_ingested, eng.chars_ingested, eng.units_ingested
            src = self._sources.get(batch.source_id)
            if src is not None and batch.position is not None:
                src.commit(batch.position)  # type: ignore[arg-type]
            self._copy_totals(*totals)
            self._counters.batches += 1
            self._counters.generation += 1

    def _ingest_job(self, prepared: EncodedBatch) -> tuple[int, int, int]:
        """(engine thread) Count one prepared batch at its stream time; return the totals."""
        eng = self.engine
        eng.ingest_batch(prepared, self.stream_time(eng.chars_ingested + prepared.n_chars))
        now = time.monotonic()
        if now - self._trimmed >= TRIM_SECONDS:
            self._trimmed = now
            with contextlib.suppress(OSError):  # counted already: never fail the batch
                release_freed_memory()
        return eng.lines_ingested, eng.chars_ingested, eng.units_ingested

    async def ingest(self, lines: list[str]) -> int:
        """POST /ingest: queue lines behind the file sources (awaits space: backpressure).

        Such lines are counted exactly once while the service runs, but they are not
        replayable: a crash before the next snapshot loses them (as for stdin)."""
        from streamer.service.server import IngestUnavailable

        if self._stopping.is_set():
            raise IngestUnavailable("the service is shutting down")
        step = BATCH_LINES
        max_line = self._cfg.sources.max_line_bytes
        accepted = 0
        for i in range(0, len(lines), step):
            chunk = [ln[:max_line] for ln in lines[i:i + step]]
            put = asyncio.ensure_future(self.queue.put(Batch("http", chunk, None)))  # type: ignore[arg-type]
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not put.done():  # shutting down: do not hold the request (or the exit) open
                put.cancel()
                raise IngestUnavailable(f"the service is shutting down; {accepted} of "
                                        f"{len(lines)} lines were accepted")
            accepted += len(chunk)
            self._counters.http_lines += len(chunk)
        return accepted
