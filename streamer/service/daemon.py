"""`streamer run`: the long-running service (DESIGN.md section 4).

    sources (async tasks) --Batch--> bounded asyncio.Queue --> consumer coroutine
        --> engine, in ONE worker thread (ThreadPoolExecutor(max_workers=1))
        --> source.commit(batch.position)
    timers: rescore (publish) . snapshot . export         HTTP (server.make_app(self))

Why it is built this way:

* The engine is synchronous numpy code; running it in a single worker thread keeps the
  event loop (sources, HTTP, timers, signals) responsive, and a single thread means the
  engine is never touched by two threads at once without any locking inside it.
* Exactly-once counting across restarts needs the counts and the source offsets in a
  snapshot to agree. Every operation that touches the engine is serialised by one asyncio
  lock held from "submit the job" until "the job is done and its effects are recorded":
  the consumer holds it across ``engine.ingest`` *and* ``source.commit``, and the snapshot
  timer holds it while it reads ``committed_positions()`` and copies ``state_dict()`` in
  the worker. So a snapshot never contains a batch whose offset was not committed, nor an
  offset whose batch was not counted. The copy is then written (serialised, hashed,
  fsynced) by another thread while ingestion goes on: the pause is a copy in memory, not
  a disk write (docs/recovery.md has the measured pause).
* Readers (HTTP, exports) never wait for the engine: they read the current
  :class:`~streamer.core.results.Published`, an immutable object swapped in one assignment
  after each rescore, and counters the daemon updates after each batch.
* Nothing buffers without bound: the queue has ``sources.queue_batches`` slots, sources
  block on it (backpressure), HTTP ingest awaits the same queue, and the word history kept
  for the API covers only published words with a fixed number of points each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import dataclasses
import gc
import glob as globmod
import logging
import math
import operator
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from streamer import __version__
from streamer.core.engine import Engine, Prepared
from streamer.core.lexicon import Lexicon
from streamer.core.results import Published, Word
from streamer.input import Batch, FileSource, StdinSource
from streamer.service.config import Config
from streamer.storage import exports, snapshot

if TYPE_CHECKING:  # aiohttp is imported only when the service starts (cli imports us)
    from streamer.service.server import Metric, WordDetail

log = logging.getLogger("streamer.service.daemon")

T = TypeVar("T")

#: Layout tag of the daemon's snapshot state (the dict handed to write_snapshot).
STATE_FORMAT = "streamer-daemon/1"
#: Most lines a source puts in one batch (batch_bytes usually ends a batch first); big
#: batches amortise the engine's per-call numpy overhead.
BATCH_LINES = 50_000
#: History points kept per published word for /words/{word} and the dashboard sparklines,
#: for the best HISTORY_WORDS words (bounded: ~ 100 bytes a point).
HISTORY_POINTS = 96
HISTORY_WORDS = 1000
#: Examples fetched from the engine after each rescore, for the best N words only.
EXAMPLE_WORDS = 200
#: Shutdown budget: queued batches are still ingested (stdin cannot be re-read) until this
#: many seconds after the signal; what is left then is dropped (files re-read it on restart).
DRAIN_SECONDS = 3.0
#: An idle daemon (nothing ingested since the last rescore) still rescores this often, so
#: the half-life decay shows in the published list.
IDLE_RESCORE_SECONDS = 60.0
#: Samples of event-loop lag kept for the p99 in /metrics (one every LAG_PERIOD seconds).
LAG_SAMPLES = 600
LAG_PERIOD = 0.1
#: A batch that fails with an OSError (EMFILE, ENOMEM...: the process, not the batch) is
#: retried after RETRY_FIRST seconds, doubling up to RETRY_MAX; such failures are logged
#: once per RESOURCE_LOG_SECONDS with their count.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
RESOURCE_LOG_SECONDS = 60.0
#: Exit status of a run that stopped with batches it could not ingest (resource errors):
#: their files resume from the last snapshot's offsets at the next start.
EXIT_UNREAD = 3


class StartupError(Exception):
    """The service cannot start: one line on stderr, exit status 2 (nothing was changed)."""


def setup_logging(level: str) -> None:
    """One line per event on stderr, with a UTC timestamp (logs outlive time zones)."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%Y-%m-%dT%H:%M:%SZ")
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# =========================================================================== helpers


def glob_directory(pattern: str) -> Path:
    """The fixed directory part of a glob (``inbox/*.txt`` -> ``inbox``)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if globmod.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _private_copy(value: Any) -> Any:
    """Deep copy of a state tree: arrays copied, containers rebuilt, immutables shared."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _private_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        kinds = {type(v) for v in value}
        if kinds <= _IMMUTABLE:
            return list(value)
        if kinds <= {list, type(None)}:  # e.g. per-slot example lists: one level, fast path
            if {type(x) for v in value if v for x in v} <= _IMMUTABLE:
                return [v[:] if v is not None else None for v in value]  # 7x faster
            return [_private_copy(v) if v else ([] if v is not None else None) for v in value]
        return [_private_copy(v) for v in value]
    return value


_IMMUTABLE = {str, int, float, bool, bytes, type(None)}


def _word_rows(words: Iterable[Word]) -> list[list[Any]]:
    get = operator.attrgetter(*_WORD_FIELDS)  # 6x faster than dataclasses.astuple
    return [list(get(w)) for w in words]


_WORD_FIELDS = tuple(f.name for f in dataclasses.fields(Word))


def _published_state(pub: Published) -> dict[str, Any]:
    """The published list in the snapshot: restart shows it at once, first_seen intact."""
    return {"fields": list(_WORD_FIELDS), "words": _word_rows(pub.words),
            "rescored_at": pub.rescored_at, "stream_time": pub.stream_time}


def _published_from_state(data: Any) -> Published:
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


# =========================================================================== the service


class Daemon:
    """The service. Implements :class:`streamer.service.server.ServiceView` for the HTTP API."""

    def __init__(self, cfg: Config, *, reset_state: bool = False,
                 state_from: str | None = None) -> None:
        self.cfg = cfg
        self.reset_state = reset_state
        self.state_from = state_from
        self.state_dir = Path(cfg.state.dir)
        self.export_dir = Path(cfg.export.dir)
        self.engine_config = cfg.engine.engine_config()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        # encodes the next batch while the engine thread ingests this one
        # (Engine.prepare reads no state); the machine has two cores
        self.prep_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self.engine: Engine | None = None
        self.fingerprint = ""
        self.restored = False
        self._restored_positions: dict[str, list[dict[str, Any]]] = {}
        # the state is a previous run's (it stored source positions), not a first start
        # (empty, or seeded by --state-from from a batch run or a merge)
        self._resumed = False
        self._published = Published()
        self._history: dict[str, collections.deque[tuple[float, float]]] = {}
        self._examples: dict[str, list[str]] = {}
        self.sources: dict[str, FileSource | StdinSource] = {}
        self.queue: asyncio.Queue[Batch] | None = None
        self.stopping: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._snapshot_lock: asyncio.Lock | None = None
        self._export_lock: asyncio.Lock | None = None
        self._rescore_now: asyncio.Event | None = None
        self._stop_reason = ""
        # counters (event loop thread; ints and floats swapped whole)
        self.started = time.time()
        self.lines_ingested = 0
        self.chars_ingested = 0
        self.units_ingested = 0
        self.batches = 0
        self.http_lines = 0
        self.ingest_errors = 0
        self.generation = 0  # bumps on every engine mutation (ingest, rescore, set_known)
        self.rescores = 0
        self.rescore_seconds = 0.0
        self.last_rescore: float | None = None
        self._rescored_generation = -1
        self.snapshots = 0
        self.snapshot_seconds = 0.0  # ingestion pause of the last snapshot
        self.snapshot_write_seconds = 0.0  # capture + write of the last snapshot
        self.snapshot_bytes = 0
        self.last_snapshot: float | None = None
        self.last_snapshot_path: str | None = None
        self.snapshot_errors = 0
        self.exports = 0
        self.last_export: float | None = None
        self.export_errors = 0
        self._exported: Published | None = None
        self.engine_stats: dict[str, Any] = {}
        self._lag: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self._consumer: asyncio.Task[None] | None = None
        self._source_tasks: dict[str, asyncio.Task[None]] = {}
        self.http_port: int | None = None
        self._known_words = 0
        self._background: set[asyncio.Task[None]] = set()
        self._failed_sources: dict[str, str] = {}
        self.resource_errors = 0  # batch attempts that failed with an OSError
        self.batches_unread = 0  # batches given up at shutdown (never counted, not committed)
        self._unread_handles: set[tuple[str, int]] = set()  # (source, file handle)
        self._resource_logged = -RESOURCE_LOG_SECONDS
        self._resource_unlogged = 0

    # ------------------------------------------------------------------ startup (sync)

    def prepare(self) -> None:
        """Everything that can fail because of the configuration or the state on disk,
        before the event loop starts: lexicons, directories, snapshot, engine."""
        cfg = self.cfg
        known = self._load_known(startup=True)
        for key, d in (("state.dir", self.state_dir), ("export.dir", self.export_dir)):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"{cfg.where(key)}: cannot create {d}: "
                                   f"{exc.strerror or exc}") from None
        for pattern in cfg.sources.globs:
            d = glob_directory(pattern)
            if not d.exists():
                try:
                    d.mkdir(parents=True, exist_ok=True)
                    log.info("created %s/ (watched by sources.globs %r)", d, pattern)
                except OSError as exc:
                    log.warning("cannot create %s for %r: %s", d, pattern, exc)
        self.fingerprint = self.engine_config.fingerprint()
        result = self._load_state()
        if result is None:
            self.engine = Engine(self.engine_config, known)
            log.info("starting with an empty state (fingerprint %s)", self.fingerprint)
        else:
            self._restore(result, known)
            if self.state_from:  # only now that the seed is known to be good
                self._set_aside_state("--state-from with --reset-state")
                log.info("seeded the state from %s", self.state_from)
        self._known_words = len(known) if known is not None else 0

    def _load_known(self, *, startup: bool) -> Lexicon | None:
        paths = self.cfg.engine.known
        if not paths:
            return None
        try:
            lex = Lexicon.load(paths)
        except (OSError, UnicodeDecodeError) as exc:
            name = getattr(exc, "filename", None) or ""
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            msg = f"cannot read lexicon {name}: {why}".replace(" : ", ": ")
            if startup:
                raise StartupError(f"{self.cfg.where('engine.known')}: {msg}") from None
            raise
        log.info("known lexicons: %d words from %s", len(lex), ", ".join(paths))
        return lex

    def _set_aside_state(self, why: str) -> None:
        """Move every snapshot out of the way (never delete state) and say where."""
        existing = snapshot.list_snapshots(self.state_dir)
        if not existing:
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.state_dir / f"reset-{stamp}"
        n = 2
        while target.exists():
            target = self.state_dir / f"reset-{stamp}-{n}"
            n += 1
        target.mkdir(parents=True)
        for p in existing:
            os.replace(p, target / p.name)
        log.warning("%s: moved %d snapshot(s) to %s", why, len(existing), target)

    def _load_state(self) -> snapshot.LoadResult | None:
        fp = self.fingerprint
        try:
            if self.state_from:
                existing = snapshot.list_snapshots(self.state_dir)
                if existing and not self.reset_state:
                    # A service unit that keeps --state-from in its command line must not
                    # throw its live state away on every restart.
                    raise StartupError(
                        f"--state-from {self.state_from}: {self.state_dir} already holds "
                        f"{len(existing)} snapshot(s); --state-from only seeds an empty state "
                        "directory (add --reset-state to move them aside)")
                try:
                    result = snapshot.load_file(self.state_from, fingerprint=fp)
                except snapshot.FingerprintMismatch as exc:
                    raise StartupError(
                        f"--state-from {self.state_from}: made with a different engine "
                        f"configuration (fingerprint {exc.found}, this configuration has "
                        f"{exc.expected}); use the same order, units, memory, depth, seed, "
                        "exact and capacity as the run that wrote it") from None
                except snapshot.SnapshotError as exc:
                    raise StartupError(f"--state-from {exc}") from None
                except OSError as exc:
                    raise StartupError(f"--state-from {self.state_from}: "
                                       f"{exc.strerror or exc}") from None
                return result
            if self.reset_state:
                self._set_aside_state("--reset-state")
                log.warning("--reset-state: starting with an empty state")
                return None
            try:
                return snapshot.load_latest(self.state_dir, fingerprint=fp)
            except snapshot.FingerprintMismatch as exc:
                raise StartupError(
                    f"{exc.path}: this state was written with a different engine "
                    f"configuration (fingerprint {exc.found}, now {exc.expected}): one of "
                    "engine.order, units, memory, depth, seed, exact, capacity changed. "
                    "Restore them, or start with --reset-state to move the old snapshots "
                    "aside and start empty") from None
        except OSError as exc:
            raise StartupError(f"{self.cfg.where('state.dir')}: cannot read snapshots in "
                               f"{self.state_dir}: {exc.strerror or exc}") from None

    def _restore(self, result: snapshot.LoadResult, known: Lexicon | None) -> None:
        state = result.state
        seed = not isinstance(state.get("engine"), dict)
        # a bare engine state is a seed, e.g. from `streamer discover --save-state`
        engine_state = state if seed else state["engine"]
        try:
            self.engine = Engine.from_state(engine_state, known, config=self.engine_config)
        except (KeyError, TypeError, ValueError) as exc:
            raise StartupError(
                f"{result.path}: the snapshot verifies but its engine state cannot be "
                f"restored ({type(exc).__name__}: {exc}); start with --reset-state to move "
                "it aside and start empty") from None
        if seed and getattr(self.engine, "last_decay", None) is not None:
            # A batch run has no stream time (its clock starts at 0 and never decays): its
            # counts are taken as of the service's first rescore, not decayed over the
            # decades between 0 and now.
            self.engine.last_decay = None
        sources = state.get("sources")
        if isinstance(sources, dict):
            self._resumed = True
            self._restored_positions = {str(k): list(v) for k, v in sources.items()
                                        if isinstance(v, list)}
        self._published = _published_from_state(state.get("published"))
        self._set_counters()
        self.restored = True
        log.info("restored %s: %d lines, %d units ingested so far, %d published words, "
                 "positions of %d file(s)", result.path.name, self.lines_ingested,
                 self.units_ingested, len(self._published.words),
                 sum(len(v) for v in self._restored_positions.values()))

    def _set_counters(self) -> None:
        eng = self.engine
        assert eng is not None
        self.lines_ingested = int(eng.lines_ingested)
        self.chars_ingested = int(eng.chars_ingested)
        self.units_ingested = int(eng.units_ingested)

    def close(self) -> None:
        self.prep_executor.shutdown(wait=True, cancel_futures=True)
        self.executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ time

    def stream_time(self, chars: int | None = None) -> float:
        """Wall clock, or in replay mode start + characters ingested / chars_per_second."""
        t = self.cfg.time
        if t.mode == "replay":
            n = self.chars_ingested if chars is None else chars
            return t.start + n / t.chars_per_second
        return time.time()

    # ------------------------------------------------------------------ worker thread

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        self._job_started = time.monotonic()
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        finally:
            self._job_started = None

    _job_started: float | None = None

    def _stuck_seconds(self) -> float:
        """How long the engine thread has been busy with one job (0 when idle)."""
        started = self._job_started
        return 0.0 if started is None else time.monotonic() - started

    def _ingest_job(self, prepared: Prepared) -> tuple[int, int, int]:
        """(worker) Count one prepared batch at its stream time; return the counters."""
        eng = self.engine
        assert eng is not None
        eng.ingest_prepared(prepared, self.stream_time(eng.chars_ingested + prepared.n_chars))
        now = time.monotonic()
        if now - self._trimmed >= TRIM_SECONDS:
            self._trimmed = now
            with contextlib.suppress(OSError):  # counted already: never fail the batch
                _release_freed_memory()
        return eng.lines_ingested, eng.chars_ingested, eng.units_ingested

    _trimmed = 0.0

    def _prepare(self, batch: Batch) -> asyncio.Future[Prepared]:
        """Start encoding a batch in the prepare thread."""
        eng = self.engine
        assert eng is not None
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.prep_executor, eng.prepare, batch.lines)

    def _rescore_job(self) -> tuple[Published, dict[str, list[str]], dict[str, Any]]:
        """(worker) Rescore; also gather examples of the best words and engine stats."""
        eng = self.engine
        assert eng is not None
        pub = eng.rescore(self.stream_time(eng.chars_ingested))
        examples = {}
        for w in _best_and_best_new(pub, EXAMPLE_WORDS):
            try:
                examples[w.word] = eng.examples(w.word)
            except Exception:  # examples are decoration; never fail a rescore for them
                break
        _release_freed_memory()  # the rescore's temporaries (a few ms)
        return pub, examples, dict(pub.stats) if pub.stats else eng.stats()

    def _capture_job(self, positions: dict[str, list[dict[str, Any]]],
                     published: Published) -> tuple[dict[str, Any], dict[str, Any]]:
        """(worker, between batches) A private copy of the whole state, and its metadata.

        Copying costs the arrays' memcpy: the engine state is arrays and scalars only
        (candidate texts and examples packed from fixed-width byte arrays, ~25 ms), ~230
        MB for the default 256 MB budget: 0.3-0.5 s of ingestion pause in the 1 GiB
        benchmark on a busy 2-core machine (scripts/bench_stream.py, docs/recovery.md).
        Serialising, hashing and fsyncing costs seconds. Copying lets
        ingestion go on while another thread writes the file, at the price of holding the
        state twice for the duration of the write. The published list is immutable: it is
        turned into rows by the writer thread, not here under the engine lock (10,000
        words: ~25 ms, 150 ms with dataclasses.astuple)."""
        eng = self.engine
        assert eng is not None
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
            "stream_time": self.stream_time(eng.chars_ingested),
            "published_words": len(published.words),
            "sources": positions,
        }
        return state, metadata

    def _write_job(self, state: dict[str, Any], metadata: dict[str, Any]) -> tuple[Path, int]:
        """(snapshot thread) Write a captured state atomically; returns (path, bytes)."""
        if isinstance(state.get("published"), Published):
            state = {**state, "published": _published_state(state["published"])}
        path = snapshot.write_snapshot(self.state_dir, state, fingerprint=self.fingerprint,
                                       metadata=metadata, keep=self.cfg.state.keep)
        return path, path.stat().st_size

    # ------------------------------------------------------------------ main coroutine

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue(maxsize=cfg.sources.queue_batches)
        self.stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._snapshot_lock = asyncio.Lock()
        self._export_lock = asyncio.Lock()
        self._rescore_now = asyncio.Event()
        # the engine, prepare and writer threads run Python too; a 1 ms switch
        # interval (default 5 ms) keeps the event loop's waits for the GIL short
        sys.setswitchinterval(0.001)
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.request_stop, name)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

        runner = None
        if cfg.http.enabled:
            runner = await self._start_http()
            if runner is None:
                return 1

        self._make_sources()
        log.info("streamer %s running: sources %s%s; state %s; exports %s; rescore every %gs",
                 __version__, ", ".join(cfg.sources.globs) or "(no files)",
                 " + stdin" if cfg.sources.stdin else "", self.state_dir, self.export_dir,
                 cfg.intervals.rescore)
        self._consumer = loop.create_task(self._consume(), name="consumer")
        for sid, src in self.sources.items():
            self._source_tasks[sid] = loop.create_task(self._run_source(sid, src), name=sid)
        if self.restored:  # publish at once instead of after the first interval
            await self.rescore(reason="restored state")
        timers = [
            loop.create_task(self._rescore_timer(), name="rescore-timer"),
            loop.create_task(self._snapshot_timer(), name="snapshot-timer"),
            loop.create_task(self._export_timer(), name="export-timer"),
            loop.create_task(self._lag_monitor(), name="lag-monitor"),
        ]
        await self.stopping.wait()
        status = await self._shutdown(timers)
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        log.info("stopped (%s)", self._stop_reason or "done")
        return status

    async def _start_http(self) -> Any:
        from streamer.service.server import bound_port, make_app, start_server

        h = self.cfg.http
        try:
            app = make_app(self, ingest_token=h.ingest_token or None, max_body=h.max_body,
                           ingest_enabled=h.ingest_enabled)
        except ValueError as exc:
            raise StartupError(f"{self.cfg.origin}: http: {exc}") from None
        try:
            runner = await start_server(app, h.host, h.port)
        except OSError as exc:
            log.error("cannot listen on %s: %s", h.listen, exc.strerror or exc)
            print(f"streamer run: error: cannot listen on {h.listen}: {exc.strerror or exc}",
                  file=sys.stderr)
            return None
        self.http_port = bound_port(runner)
        log.info("HTTP API on http://%s:%d/", h.host if ":" not in h.host else f"[{h.host}]",
                 self.http_port)
        return runner

    def _make_sources(self) -> None:
        s = self.cfg.sources
        assert self.queue is not None
        if s.globs:
            fs = FileSource(list(s.globs), self.queue, from_beginning=s.from_beginning,
                            scan_interval=s.scan_interval, max_line_bytes=s.max_line_bytes,
                            batch_lines=BATCH_LINES, batch_bytes=s.batch_bytes,
                            poll_interval=s.poll_interval, rotate_wait=s.rotate_wait,
                            source_id="files", max_open_files=s.max_open_files or None)
            if self._resumed:  # else a first start: sources.from_beginning applies
                fs.restore(self._restored_positions.get("files", []))
            self.sources["files"] = fs
        if s.stdin:
            si = StdinSource(self.queue, max_line_bytes=s.max_line_bytes,
                             batch_lines=BATCH_LINES, batch_bytes=s.batch_bytes,
                             poll_interval=s.poll_interval, source_id="stdin")
            if self._resumed:
                si.restore(self._restored_positions.get("stdin", []))
            self.sources["stdin"] = si

    async def _run_source(self, sid: str, src: FileSource | StdinSource) -> None:
        """Run one source until stop() or end of input.

        Sources handle bad files themselves (logged, skipped, retried); an exception out
        of run() is a bug: it is logged, the source is marked failed (health turns 503)
        and the other sources and the engine carry on."""
        try:
            await src.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed_sources[sid] = f"{type(exc).__name__}: {exc}"
            log.exception("source %s failed and stopped", sid)
            return
        if isinstance(src, StdinSource) and not (self.stopping and self.stopping.is_set()):
            log.info("stdin finished; other sources keep running")

    def request_stop(self, why: str = "stop requested") -> None:
        """Signal handler: begin a clean shutdown (a second signal is ignored)."""
        assert self.stopping is not None
        if self.stopping.is_set():
            log.info("%s received while stopping; still finishing", why)
            return
        self._stop_reason = why
        log.info("%s: stopping sources, finishing the batch in flight", why)
        for src in self.sources.values():
            src.stop()
        self.stopping.set()

    # ------------------------------------------------------------------ consumer

    async def _consume(self) -> None:
        """The only coroutine that feeds the engine: one batch at a time, commit after.

        While the engine ingests a batch, the next one (if already queued) is encoded
        in the prepare thread, so the two cores share the work.
        """
        assert self.queue is not None and self.stopping is not None
        queue, stopping = self.queue, self.stopping
        pending: tuple[Batch, asyncio.Future[Prepared]] | None = None
        try:
            while True:
                if stopping.is_set():
                    return
                if pending is not None and queue.empty():
                    await self._process(*pending)
                    pending = None
                    continue
                batch = await self._next_batch(queue, stopping)
                if batch is None:
                    return
                upcoming = (batch, self._prepare(batch))
                if pending is not None:
                    await self._process(*pending)
                pending = upcoming
        finally:
            if pending is not None:  # finish the batch in flight (it is prepared)
                await self._process(*pending)

    async def _next_batch(self, queue: asyncio.Queue[Batch],
                          stopping: asyncio.Event) -> Batch | None:
        """The next queued batch, or None once stopping is set."""
        while True:
            try:
                return queue.get_nowait()
            except asyncio.QueueEmpty:
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stopping.wait())
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

    async def _process(self, batch: Batch,
                       prepared: asyncio.Future[Prepared] | None = None) -> None:
        """Ingest a batch, then commit its position.

        An OSError while preparing it (encoding, which reads no engine state) is the
        process's trouble (out of descriptors or memory), not the batch's: the batch is
        not committed and is retried after a backoff, holding the
        queue (sources wait); once stopping, it is given up after one more attempt and
        counted in ``batches_unread``, and so is every later batch of its file, so that the
        file resumes from its last committed offset at the next start."""
        assert self._lock is not None and self.stopping is not None
        handle = (batch.source_id, getattr(batch.position, "handle", None))
        if handle[1] is not None and handle in self._unread_handles:
            self.batches_unread += 1
            return
        delay = RETRY_FIRST
        while True:
            try:
                await self._ingest_once(batch, prepared)
                return
            except OSError as exc:
                prepared = None
                self.resource_errors += 1
                self._log_resource_error(batch, exc)
                if self.stopping.is_set():
                    if handle[1] is not None:
                        self._unread_handles.add(handle)
                    self.batches_unread += 1
                    log.error("stopping: could not ingest a batch of %d lines from %s (%s);"
                              " it is not committed", len(batch.lines), batch.source_id, exc)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
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

    async def _ingest_once(self, batch: Batch,
                           prepared: asyncio.Future[Prepared] | None) -> None:
        """Ingest and commit one batch; an OSError while preparing it propagates."""
        assert self._lock is not None
        async with self._lock:
            stage = "prepare"
            try:
                p = await (prepared if prepared is not None else self._prepare(batch))
                stage = "ingest"
                lines, chars, units = await self._in_worker(self._ingest_job, p)
            except Exception as exc:
                if isinstance(exc, OSError) and stage == "prepare":
                    raise  # nothing was counted (prepare reads no state): retried
                # The batch is committed anyway: re-reading a batch that crashes the engine
                # after every restart would stop the service for good, and one that failed
                # half-counted would be counted twice.
                self.ingest_errors += 1
                log.exception("engine failed on a batch of %d lines from %s (%s); skipped",
                              len(batch.lines), batch.source_id,
                              getattr(batch.position, "path", batch.position))
                eng = self.engine
                assert eng is not None
                lines, chars, units = eng.lines_ingested, eng.chars_ingested, eng.units_ingested
            src = self.sources.get(batch.source_id)
            if src is not None and batch.position is not None:
                src.commit(batch.position)  # type: ignore[arg-type]
            self.lines_ingested, self.chars_ingested, self.units_ingested = lines, chars, units
            self.batches += 1
            self.generation += 1

    async def ingest(self, lines: list[str]) -> int:
        """POST /ingest: queue lines behind the file sources (awaits space: backpressure).

        Such lines are counted exactly once while the service runs, but they are not
        replayable: a crash before the next snapshot loses them (as for stdin)."""
        from streamer.service.server import IngestUnavailable

        if self.stopping is None or self.stopping.is_set() or self.queue is None:
            raise IngestUnavailable("the service is shutting down")
        step = BATCH_LINES
        accepted = 0
        for i in range(0, len(lines), step):
            chunk = [ln[: self.cfg.sources.max_line_bytes] for ln in lines[i:i + step]]
            put = asyncio.ensure_future(self.queue.put(Batch("http", chunk, None)))  # type: ignore[arg-type]
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not put.done():  # shutting down: do not hold the request (or the exit) open
                put.cancel()
                raise IngestUnavailable(f"the service is shutting down; {accepted} of "
                                        f"{len(lines)} lines were accepted")
            accepted += len(chunk)
            self.http_lines += len(chunk)
        return accepted

    # ------------------------------------------------------------------ rescore

    async def rescore(self, reason: str = "timer") -> None:
        """Rebuild the cohesive set and publish; replace latest.jsonl."""
        assert self._lock is not None
        async with self._lock:
            t0 = time.perf_counter()
            try:
                pub, examples, stats = await self._in_worker(self._rescore_job)
            except Exception:
                log.exception("rescore failed; keeping the previous list")
                return
            elapsed = time.perf_counter() - t0
            self.generation += 1  # rescore decays counts: the state changed
            self._rescored_generation = self.generation
        self._published = pub  # the one assignment readers see
        self._examples = examples
        self.engine_stats = stats
        self._update_history(pub)
        self.rescores += 1
        self.rescore_seconds = elapsed
        self.last_rescore = time.time()
        log.info("rescore (%s): %d words, %d new, in %.3f s (engine %.3f s); %d lines, "
                 "%d units ingested", reason, len(pub.words), sum(1 for w in pub.words if w.new),
                 elapsed, pub.rescore_seconds, self.lines_ingested, self.units_ingested)
        await self._write_latest(pub)

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

    async def _write_latest(self, pub: Published) -> None:
        assert self._export_lock is not None
        e = self.cfg.export

        def job() -> None:
            words = exports.select_words(pub, e.selection, e.top_k)
            data = exports.render_text(words, "jsonl").encode("utf-8")
            self.export_dir.mkdir(parents=True, exist_ok=True)
            exports.atomic_write_bytes(self.export_dir / "latest.jsonl", data)

        async with self._export_lock:
            try:
                await asyncio.to_thread(job)
            except Exception as exc:
                self.export_errors += 1
                log.error("cannot write %s: %s", self.export_dir / "latest.jsonl", exc)

    async def _rescore_timer(self) -> None:
        assert self.stopping is not None and self._rescore_now is not None
        interval = self.cfg.intervals.rescore
        last = time.monotonic()
        due = last + interval  # scheduled from the start, so rescores do not drift
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescore_now.wait(),
                                       max(due - time.monotonic(), 0.0))
            now = time.monotonic()
            due = max(due + interval, now)
            if self.stopping.is_set():
                return
            forced = self._rescore_now.is_set()
            self._rescore_now.clear()
            idle = self.generation == self._rescored_generation
            if idle and not forced and time.monotonic() - last < IDLE_RESCORE_SECONDS:
                continue
            await self.rescore("known lexicons reloaded" if forced else "timer")
            last = time.monotonic()

    # ------------------------------------------------------------------ snapshot

    def _positions(self) -> dict[str, list[dict[str, Any]]]:
        return {sid: src.committed_positions() for sid, src in self.sources.items()}

    async def take_snapshot(self, reason: str = "timer") -> bool:
        """Snapshot between batches: the lock guarantees offsets and counts agree.

        Only the capture (a copy of the state) holds the lock and pauses ingestion; the
        file is written by another thread while batches flow again. One write at a time.
        """
        assert self._lock is not None and self._snapshot_lock is not None
        async with self._snapshot_lock:
            async with self._lock:
                t0 = time.perf_counter()
                positions = self._positions()
                try:
                    state, metadata = await self._in_worker(self._capture_job, positions,
                                                            self._published)
                except Exception as exc:
                    self.snapshot_errors += 1
                    log.error("snapshot failed (%s): %s", reason, exc, exc_info=True)
                    return False
                pause = time.perf_counter() - t0
                generation = self.generation
            try:
                path, size = await asyncio.to_thread(self._write_job, state, metadata)
            except Exception as exc:
                self.snapshot_errors += 1
                log.error("snapshot failed (%s): %s", reason, exc,
                          exc_info=not isinstance(exc, OSError))
                return False
            finally:
                del state
                _release_freed_memory()
            total = time.perf_counter() - t0
        self._snapshot_generation = generation
        self.snapshots += 1
        self.snapshot_seconds = pause
        self.snapshot_write_seconds = total
        self.snapshot_bytes = size
        self.last_snapshot = time.time()
        self.last_snapshot_path = str(path)
        log.info("snapshot written (%s): %s, %s in %.3f s; ingestion paused %.3f s; "
                 "%d lines, %d units", reason, path, _fmt_bytes(size), total, pause,
                 metadata["lines_ingested"], metadata["units_ingested"])
        return True

    _snapshot_generation = -1

    async def _snapshot_timer(self) -> None:
        await self._every(self.cfg.intervals.snapshot, self.take_snapshot,
                          lambda: self.generation != self._snapshot_generation)

    async def _every(self, interval: float, job: Callable[[], Awaitable[Any]],
                     due: Callable[[], bool]) -> None:
        """Run ``job`` every ``interval`` seconds when ``due()`` says there is something
        new for it, until the service stops."""
        assert self.stopping is not None
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)
            if self.stopping.is_set():
                return
            if due():
                await job()

    # ------------------------------------------------------------------ export

    async def export(self, reason: str = "timer") -> None:
        """Timestamped exports in the configured formats (+ latest.<ext>)."""
        assert self._export_lock is not None
        e = self.cfg.export
        pub = self._published
        if not e.formats:
            return
        async with self._export_lock:
            try:
                written = await asyncio.to_thread(
                    exports.write_export, self.export_dir, pub, formats=list(e.formats),
                    selection=e.selection, top_k=e.top_k,
                    retention_files=e.retention_files or None,
                    retention_days=e.retention_days or None)
            except Exception as exc:
                self.export_errors += 1
                log.error("export failed (%s): %s", reason, exc)
                return
        self._exported = pub
        self.exports += 1
        self.last_export = time.time()
        log.info("export written (%s): %s (%d words)", reason,
                 ", ".join(p.name for p in written), len(pub.words))

    async def _export_timer(self) -> None:
        await self._every(self.cfg.intervals.export, self.export,
                          lambda: self._published is not self._exported
                          and bool(self._published.rescored_at))

    # ------------------------------------------------------------------ SIGHUP

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_known())
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def reload_known(self) -> None:
        """SIGHUP: re-read the known lexicons; a failure keeps the old ones."""
        try:
            known = await asyncio.to_thread(self._load_known, startup=False)
        except (OSError, UnicodeDecodeError) as exc:
            log.error("SIGHUP: cannot reload known lexicons, keeping the old ones: %s", exc)
            return
        assert self.engine is not None
        await self._in_worker(self.engine.set_known, known)
        self._known_words = len(known) if known is not None else 0
        self.generation += 1
        log.info("SIGHUP: reloaded known lexicons (%d words from %d file(s))",
                 self._known_words, len(self.cfg.engine.known))
        assert self._rescore_now is not None
        self._rescore_now.set()

    # ------------------------------------------------------------------ loop lag

    async def _lag_monitor(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PERIOD)
            self._lag.append(max(0.0, loop.time() - t0 - LAG_PERIOD))

    def loop_lag(self) -> tuple[float, float]:
        """(p99, max) of recent event-loop lag samples, seconds."""
        if not self._lag:
            return 0.0, 0.0
        s = sorted(self._lag)
        return s[min(len(s) - 1, int(math.ceil(0.99 * len(s))) - 1)], s[-1]

    # ------------------------------------------------------------------ shutdown

    async def _shutdown(self, timers: list[asyncio.Task[Any]]) -> int:
        """Finish in-flight work, then final rescore, snapshot and export."""
        assert self.queue is not None
        deadline = time.monotonic() + DRAIN_SECONDS
        # the consumer returns after the batch in flight (it checks `stopping` between them)
        if self._consumer is not None:
            try:
                await self._consumer
            except Exception:
                log.exception("the consumer failed")
        # drain what sources still hand in (their last batch) while the budget lasts
        while time.monotonic() < deadline:
            pending = [t for t in self._source_tasks.values() if not t.done()]
            try:
                batch = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if not pending:
                    break
                await asyncio.wait(pending, timeout=0.05)
                continue
            await self._process(batch)
        dropped = self.queue.qsize()
        for t in self._source_tasks.values():
            t.cancel()
        for t in timers:
            t.cancel()
        await asyncio.gather(*self._source_tasks.values(), *timers, return_exceptions=True)
        while not self.queue.empty():
            self.queue.get_nowait()
        if dropped:
            log.info("dropped %d queued batch(es) unread; files resume from the snapshot",
                     dropped)
        await self.rescore(reason="shutdown")
        ok = await self.take_snapshot(reason="shutdown")
        await self.export(reason="shutdown")
        if not ok:
            return 1
        if self.batches_unread:
            log.error("%d batch(es) could not be ingested (resource errors); their files"
                      " resume from the snapshot's offsets at the next start (exit status %d)",
                      self.batches_unread, EXIT_UNREAD)
            return EXIT_UNREAD
        return 0

    # ================================================================== ServiceView

    def published(self) -> Published:
        return self._published

    def stats(self) -> dict[str, Any]:
        q = self.queue
        p99, lag_max = self.loop_lag()
        eng_stats = dict(self.engine_stats)
        mem = eng_stats.get("memory_bytes") or {}
        sources = []
        for src in self.sources.values():
            for row in src.status():
                row = dict(row)
                row.setdefault("id", f"{row.get('source')}:{row.get('path')}")
                row.setdefault("status", row.get("state"))
                sources.append(row)
        return {
            "version": __version__,
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 3),
            "time_mode": self.cfg.time.mode,
            "stream_time": self.stream_time(),
            "lines_ingested": self.lines_ingested,
            "chars_ingested": self.chars_ingested,
            "units_ingested": self.units_ingested,
            # bytes of the lines the engine consumed, cumulative (never goes down)
            "bytes_ingested": sum(_bytes_committed(src) for src in self.sources.values()),
            "bytes_dropped": sum(getattr(src, "dropped_bytes", 0)
                                 for src in self.sources.values()),
            "resource_errors": self.resource_errors,
            "batches_unread": self.batches_unread,
            # watched directories that cannot be listed: path -> why
            "source_problems": {path: why for src in self.sources.values()
                                for path, why in getattr(src, "problems", dict)().items()},
            "http_lines": self.http_lines,
            "batches": self.batches,
            "ingest_errors": self.ingest_errors,
            "queue_depth": q.qsize() if q is not None else 0,
            "queue_capacity": self.cfg.sources.queue_batches,
            "tracked_candidates": eng_stats.get("candidates"),
            "sources": sources,
            "rescores": self.rescores,
            "rescore_seconds": self.rescore_seconds,
            "last_rescore": self.last_rescore,
            "snapshots": self.snapshots,
            "snapshot_seconds": self.snapshot_seconds,
            "snapshot_write_seconds": self.snapshot_write_seconds,
            "snapshot_bytes": self.snapshot_bytes,
            "last_snapshot": self.last_snapshot,
            "last_snapshot_path": self.last_snapshot_path,
            "exports": self.exports,
            "last_export": self.last_export,
            "loop_lag_p99_s": p99,
            "loop_lag_max_s": lag_max,
            "known_words": self._known_words,
            "memory": {"rss_bytes": _rss_bytes(), "budget_bytes": self.cfg.engine.memory,
                       **{f"{k}_bytes": v for k, v in mem.items()}},
            "engine": eng_stats,
        }

    def word_detail(self, word: str) -> WordDetail | None:
        hist = self._history.get(word)
        examples = self._examples.get(word)
        if hist is None and examples is None:
            return None
        return {"history": list(hist or ()), "examples": list(examples or ())}

    def metrics(self) -> Iterable[Metric]:
        from streamer.service.server import Metric

        pub = self._published
        q = self.queue
        p99, lag_max = self.loop_lag()
        m = [
            Metric("streamer_lines_ingested_total", "counter", "Lines counted by the engine.",
                   self.lines_ingested),
            Metric("streamer_chars_ingested_total", "counter",
                   "Characters counted by the engine.", self.chars_ingested),
            Metric("streamer_units_ingested_total", "counter",
                   "Units (Han characters, ASCII runs) counted by the engine.",
                   self.units_ingested),
            Metric("streamer_batches_total", "counter", "Batches handed to the engine.",
                   self.batches),
            Metric("streamer_ingest_errors_total", "counter", "Batches the engine failed on.",
                   self.ingest_errors),
            Metric("streamer_source_dropped_bytes_total", "counter",
                   "Unread bytes lost to truncated (copytruncate) files.",
                   sum(getattr(src, "dropped_bytes", 0) for src in self.sources.values())),
            Metric("streamer_resource_errors_total", "counter",
                   "Batch attempts that failed with an OSError (retried, not committed).",
                   self.resource_errors),
            Metric("streamer_queue_depth", "gauge", "Batches waiting for the engine.",
                   q.qsize() if q is not None else 0),
            Metric("streamer_queue_capacity", "gauge", "Capacity of the batch queue.",
                   self.cfg.sources.queue_batches),
            Metric("streamer_rescores_total", "counter", "Rescores done.", self.rescores),
            Metric("streamer_rescore_seconds", "gauge", "Duration of the last rescore.",
                   self.rescore_seconds),
            Metric("streamer_snapshots_total", "counter", "Snapshots written.",
                   self.snapshots),
            Metric("streamer_snapshot_errors_total", "counter", "Snapshots that failed.",
                   self.snapshot_errors),
            Metric("streamer_snapshot_seconds", "gauge",
                   "Ingestion pause of the last snapshot.", self.snapshot_seconds),
            Metric("streamer_snapshot_write_seconds", "gauge",
                   "Capture and write time of the last snapshot.", self.snapshot_write_seconds),
            Metric("streamer_snapshot_bytes", "gauge", "Size of the last snapshot.",
                   self.snapshot_bytes),
            Metric("streamer_exports_total", "counter", "Timestamped exports written.",
                   self.exports),
            Metric("streamer_export_errors_total", "counter", "Exports that failed.",
                   self.export_errors),
            *(Metric("streamer_errors_total", "counter",
                     "Errors by kind: engine batches, snapshots, exports, failed sources.",
                     value, {"kind": kind})
              for kind, value in (("ingest", self.ingest_errors),
                                  ("snapshot", self.snapshot_errors),
                                  ("export", self.export_errors),
                                  ("source", len(self._failed_sources)))),
            Metric("streamer_published_words", "gauge", "Words in the published list.",
                   len(pub.words)),
            Metric("streamer_published_new_words", "gauge", "Published words flagged new.",
                   sum(1 for w in pub.words if w.new)),
            Metric("streamer_loop_lag_seconds", "gauge",
                   "Event-loop lag over the last minute, p99.", p99, {"quantile": "0.99"}),
            Metric("streamer_loop_lag_seconds", "gauge",
                   "Event-loop lag over the last minute, max.", lag_max, {"quantile": "1"}),
            Metric("streamer_uptime_seconds", "gauge", "Seconds since start.",
                   time.time() - self.started),
            Metric("streamer_resident_memory_bytes", "gauge", "Resident set size.",
                   _rss_bytes() or 0),
        ]
        for name, value in (("candidates", "streamer_candidates"),
                            ("candidate_capacity", "streamer_candidate_capacity"),
                            ("candidates_evicted", "streamer_candidates_evicted_total")):
            v = self.engine_stats.get(name)
            if isinstance(v, int | float):
                kind = "counter" if value.endswith("_total") else "gauge"
                m.append(Metric(value, kind, f"Engine statistic {name}.", v))
        for part, v in (self.engine_stats.get("memory_bytes") or {}).items():
            if isinstance(v, int | float):
                m.append(Metric("streamer_engine_memory_bytes", "gauge",
                                "Engine counting state by part.", v, {"part": str(part)}))
        states: collections.Counter[str] = collections.Counter()
        for src in self.sources.values():
            for row in src.status():
                states[str(row.get("state"))] += 1
        for state, n in sorted(states.items()):
            m.append(Metric("streamer_source_files", "gauge", "Files by state.", n,
                            {"state": state}))
        return m

    def health(self) -> tuple[bool, dict[str, Any]]:
        consumer_ok = self._consumer is not None and not self._consumer.done()
        stopping = self.stopping is not None and self.stopping.is_set()
        # a single engine job (a batch, a rescore, a snapshot copy) takes seconds at
        # most; one running for minutes means the engine is stuck
        stuck_after = max(STUCK_SECONDS, 6 * self.cfg.intervals.rescore)
        busy = self._stuck_seconds()
        starting = [sid for sid, src in self.sources.items()
                    if not getattr(src, "started", True)]
        unlisted = {path: why for src in self.sources.values()
                    for path, why in getattr(src, "unreadable_roots", dict)().items()}
        ok = consumer_ok and not stopping and not self._failed_sources and \
            busy < stuck_after and not starting and not unlisted
        details: dict[str, Any] = {
            "lines_ingested": self.lines_ingested,
            "queue_depth": self.queue.qsize() if self.queue is not None else 0,
            "uptime_s": round(time.time() - self.started, 3),
        }
        if self._consumer is None or starting:
            details["reason"] = "starting" + (f": scanning {', '.join(starting)}"
                                              if starting else "")
        elif stopping:
            details["reason"] = "shutting down"
        elif not consumer_ok:
            details["reason"] = "the engine consumer is not running"
        elif busy >= stuck_after:
            details["reason"] = f"engine stuck: one job has run for {busy:.0f} s"
        elif self._failed_sources:
            details["reason"] = "source failed: " + "; ".join(
                f"{k}: {v}" for k, v in self._failed_sources.items())
        elif unlisted:
            details["reason"] = "cannot scan " + "; ".join(
                f"{path}: {why}" for path, why in sorted(unlisted.items()))
        return ok, details


def _bytes_committed(src: FileSource | StdinSource) -> int:
    """Bytes of the lines a source had consumed, cumulative."""
    if isinstance(src, FileSource):
        return src.bytes_committed
    return sum(int(row.get("committed_offset") or 0) for row in src.status())


def _best_and_best_new(pub: Published, k: int) -> list[Word]:
    """The best k words and the best k new ones (the dashboard shows either list)."""
    best = list(pub.words[:k])
    seen = {w.word for w in best}
    best += [w for w in pub.select(new=True, limit=k) if w.word not in seen]
    return best


#: the freed memory of batches is handed back to the OS at most this often (a trim costs
#: ~4 ms; without it RSS wanders by ~10% with the batches' temporaries)
TRIM_SECONDS = 2.0

#: seconds one engine job may run before /healthz reports the engine stuck (or six
#: rescore intervals, if longer)
STUCK_SECONDS = 120.0


def tune_malloc() -> None:
    """Fixed glibc malloc thresholds for a process that must keep a flat RSS.

    By default glibc raises its mmap threshold to the size of the largest mapped block
    freed so far (up to 32 MB) and its trim threshold to twice that. After the first
    freed array of a few MB, every later array up to that size comes from the heaps
    (fast: no page faults) but a heap then keeps up to 64 MB free at its top, per
    thread arena: RSS crept up by ~10% over a 1 GiB stream. Fixed values keep the fast
    path (arrays below 32 MB from the heaps) and return a heap's free top above 4 MB.
    (A low mmap threshold instead - every array over 1 MB freshly mapped - costs ~30%
    of the ingest rate in page faults.)"""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * 2**20)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3


def _release_freed_memory() -> None:
    """Hand memory freed after a snapshot copy or a rescore back to the OS. glibc keeps
    freed heap pages otherwise: once a large array has been freed it serves arrays up
    to 32 MB from the heap instead of fresh mappings, and RSS would step up at every
    snapshot and at rescores that scored more candidates than before."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _rss_bytes() -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
