"""`streamer run`: the long-running service, wired from its parts.

    sources (async tasks) --Batch--> pipeline: bounded queue --> consumer
        --> engine, in ONE engine thread --> source.commit(batch.position)
    or, as a merged view (view.shards): shard_view: shards' snapshots --> merged engine
    publisher: rescore timer --> Published --> latest.jsonl, exports (timer)
    state: restore at start; snapshot timer (capture under the engine lock, write aside)
    telemetry: counters, /stats, /metrics, /healthz, loop lag       HTTP: server.make_app

The :class:`Daemon` starts up everything that can fail because of the configuration or the
state on disk before the event loop starts, then runs the parts until SIGTERM/SIGINT and
shuts them down in order; SIGHUP reloads the known lexicons. It is the
:class:`~streamer.service.server.ServiceView` the HTTP server reads, by delegation.

Invariants the parts keep together:

* Exactly once across restarts: one asyncio lock, ``Pipeline.lock``, is held from "submit
  the engine job" until "the job is done and its effects are recorded". The consumer holds
  it across ``engine.ingest`` *and* ``source.commit``; a snapshot holds it while it reads
  the committed positions and copies the engine state (state.py). So a snapshot never
  contains a batch whose offset was not committed, nor an offset whose batch was not
  counted.
* Readers (HTTP, exports) never wait for the engine: they read the current
  :class:`~streamer.core.results.Published`, an immutable object swapped in one assignment
  after each rescore, and counters updated after each batch.
* Nothing buffers without bound: the queue has ``sources.queue_batches`` slots, sources and
  HTTP ingest await it (backpressure), and the word history covers only published words
  with a fixed number of points each.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob as globmod
import hashlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer import __version__
from streamer.core.engine import Engine
from streamer.core.lexicon import Lexicon, LexiconError, load_known
from streamer.core.results import Published
from streamer.input import FileSource, RedisStreamSource, Source, StdinSource
from streamer.service.config import Config
from streamer.service.pipeline import BATCH_LINES, Pipeline
from streamer.service.publisher import Publisher
from streamer.service.shard_view import ShardConfigError, ShardView
from streamer.service.state import Snapshots, StateError, StateStore
from streamer.service.telemetry import Counters, LoopLag, Telemetry
from streamer.storage.lexicon_cache import default_cache

if TYPE_CHECKING:  # aiohttp is imported only when the service starts (cli imports us)
    from streamer.service.server import Metric, WordDetail

log = logging.getLogger(__name__)

#: Shutdown budget: queued batches are still ingested (stdin cannot be re-read) until this
#: many seconds after the signal; what is left then is dropped (files re-read it on restart).
DRAIN_SECONDS = 3.0


#: Exit status of a run that stopped with batches it could not ingest (resource errors):
#: their files resume from the last snapshot's offsets at the next start.
EXIT_UNREAD = 3
#: Seconds the shutdown gives a Redis source to send its owed acks after the final snapshot
#: (those not sent stay in the snapshot and are sent at the next start).
ACK_DRAIN_SECONDS = 5.0


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


def glob_directory(pattern: str) -> Path:
    """The fixed directory part of a glob (``inbox/*.txt`` -> ``inbox``)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if globmod.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def default_consumer(state_dir: str | Path) -> str:
    """The consumer name of a service that sets none: host name + 8 hex digits of the
    sha1 of the absolute state directory. Stable across restarts of the same service (it
    must find its own pending entries), distinct for two services on one host."""
    digest = hashlib.sha1(os.path.abspath(state_dir).encode("utf-8")).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Daemon:
    """The service: owns the parts, starts and stops them; the HTTP server's ServiceView."""

    def __init__(self, cfg: Config, *, reset_state: bool = False,
                 state_from: str | None = None) -> None:
        self.cfg = cfg
        self.export_dir = Path(cfg.export.dir)
        self.engine_config = cfg.engine.engine_config()
        self.counters = Counters()
        self.stopping = asyncio.Event()
        #: source id -> source; filled by run(), read by the pipeline, snapshots, telemetry
        self.sources: dict[str, Source] = {}
        self.pipeline = Pipeline(cfg, self.counters, self.stopping, self.sources)
        self.publisher = Publisher(cfg, self.counters, self.pipeline, self.stopping)
        self.store = StateStore(cfg, self.engine_config, reset_state=reset_state,
                                state_from=state_from)
        self.snapshots = Snapshots(self.store, self.pipeline, self.publisher, self.counters,
                                   self.sources)
        self.lag = LoopLag()
        self.telemetry = Telemetry(cfg, self.counters, self.lag, self.pipeline, self.sources,
                                   self.stopping)
        #: a merged view of shard services (view.shards) reads no sources: it merges
        self.shard_view = ShardView(cfg.view.shards, cfg.view.interval, self.engine_config,
                                    self.pipeline, self.publisher, self.counters,
                                    self.stopping) if cfg.view.shards else None
        self.restored = False
        #: positions the sources resume from; None on a first start (empty, or seeded by
        #: --state-from from a batch run or a merge): sources.from_beginning applies
        self._restored_positions: dict[str, list[dict[str, Any]]] | None = None
        self._source_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stop_reason = ""
        self.http_port: int | None = None

    # ------------------------------------------------------------------ start-up (sync)

    def start_up(self) -> None:
        """Everything that can fail because of the configuration or the state on disk,
        before the event loop starts: lexicons, directories, snapshot, engine."""
        cfg = self.cfg
        known = self._load_known(startup=True)
        for key, d in (("state.dir", self.store.dir), ("export.dir", self.export_dir)):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"{cfg.where(key)}: cannot create {d}: "
                                   f"{exc.strerror or exc}") from None
        if self.shard_view is not None:
            try:
                self.shard_view.check()
            except ShardConfigError as exc:
                raise StartupError(f"{cfg.where('view.shards')}: {exc}") from None
        if cfg.redis.url and self.shard_view is None:  # a view reads no sources
            from streamer.input.redis_stream import RedisUnavailable, import_client

            try:
                import_client()
            except RedisUnavailable as exc:
                raise StartupError(f"{cfg.where('redis.url')}: {exc}") from None
        for pattern in cfg.sources.globs if self.shard_view is None else ():
            d = glob_directory(pattern)
            if not d.exists():
                try:
                    d.mkdir(parents=True, exist_ok=True)
                    log.info("created %s/ (watched by sources.globs %r)", d, pattern)
                except OSError as exc:
                    log.warning("cannot create %s for %r: %s", d, pattern, exc)
        try:
            restored = self.store.load(known)
        except StateError as exc:
            raise StartupError(str(exc)) from None
        if restored is None:
            engine = Engine(self.engine_config, known)
            log.info("starting with an empty state (fingerprint %s)", self.store.fingerprint)
        else:
            engine = restored.engine
            self.publisher.published = restored.published
            self._restored_positions = restored.positions
            self.restored = True
        self.pipeline.attach(engine)
        self.counters.known_words = len(known) if known is not None else 0

    def _load_known(self, *, startup: bool) -> Lexicon | None:
        paths = self.cfg.engine.known
        if not paths:
            return None
        started = time.perf_counter()
        try:
            lex = load_known(paths, cache=default_cache())
        except LexiconError as exc:
            if startup:
                raise StartupError(f"{self.cfg.where('engine.known')}: {exc}") from None
            raise
        except (OSError, UnicodeDecodeError) as exc:
            name = getattr(exc, "filename", None) or ""
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            msg = f"cannot read lexicon {name}: {why}".replace(" : ", ": ")
            if startup:
                raise StartupError(f"{self.cfg.where('engine.known')}: {msg}") from None
            raise
        files = [v if v == src else f"{v} ({src})"
                 for v, src in zip(paths, lex.sources, strict=True)]
        log.info("known lexicons: %d words from %s in %.2f s", len(lex), ", ".join(files),
                 time.perf_counter() - started)
        return lex

    def close(self) -> None:
        self.pipeline.close()

    # ------------------------------------------------------------------ main coroutine

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        # the engine, prepare and writer threads run Python too; a 1 ms switch
        # interval (default 5 ms) keeps the event loop's waits for the GIL short
        sys.setswitchinterval(0.001)
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.request_stop, name)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

        runner = None
        if cfg.http.enabled:
            runner = await self._start_http()

        if self.shard_view is None:
            self._make_sources()
            log.info("streamer %s running: sources %s%s%s; state %s; exports %s; rescore every "
                     "%gs", __version__, ", ".join(cfg.sources.globs) or "(no files)",
                     " + stdin" if cfg.sources.stdin else "",
                     f" + redis stream {cfg.redis.stream!r}" if cfg.redis.url else "",
                     self.store.dir, self.export_dir, cfg.intervals.rescore)
        else:
            log.info("streamer %s running as the merged view of %d shard(s): %s, merged every "
                     "%gs (no sources are read); state %s; exports %s", __version__,
                     len(cfg.view.shards), ", ".join(cfg.view.shards), cfg.view.interval,
                     self.store.dir, self.export_dir)
        self.pipeline.start()
        for sid, src in self.sources.items():
            self._source_tasks[sid] = loop.create_task(self._run_source(sid, src), name=sid)
        if self.restored:  # publish at once instead of after the first interval
            await self.publisher.rescore(reason="restored state")
        timers = [
            loop.create_task(self.publisher.rescore_timer(), name="rescore-timer"),
            loop.create_task(self._every(cfg.intervals.snapshot, self.snapshots.take,
                                         self.snapshots.due), name="snapshot-timer"),
            loop.create_task(self._every(cfg.intervals.export, self.publisher.export,
                                         self.publisher.export_due), name="export-timer"),
            loop.create_task(self.lag.monitor(), name="lag-monitor"),
        ]
        if self.shard_view is not None:
            timers.append(loop.create_task(self.shard_view.run(), name="shard-merge"))
        await self.stopping.wait()
        status = await self._shutdown(timers)
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        log.info("stopped (%s)", self._stop_reason or "done")
        return status

    async def _start_http(self) -> Any:
        from streamer.service.server import bound_port, host_allowlist, make_app, start_server

        h = self.cfg.http
        try:
            app = make_app(self, ingest_token=h.ingest_token or None, max_body=h.max_body,
                           ingest_enabled=h.ingest_enabled, header_timeout=h.header_timeout,
                           allowed_hosts=host_allowlist(h.host, h.allowed_hosts))
            runner = await start_server(app, h.host, h.port, header_timeout=h.header_timeout,
                                        idle_timeout=h.idle_timeout,
                                        max_connections=h.max_connections,
                                        reserved_fds=h.reserved_fds)
        except ValueError as exc:
            raise StartupError(f"{self.cfg.origin}: http: {exc}") from None
        except OSError as exc:
            raise StartupError(f"cannot listen on {h.listen}: {exc.strerror or exc}") from None
        self.http_port = bound_port(runner)
        log.info("HTTP API on http://%s:%d/", h.host if ":" not in h.host else f"[{h.host}]",
                 self.http_port)
        return runner

    def _make_sources(self) -> None:
        s = self.cfg.sources
        queue = self.pipeline.queue
        positions = self._restored_positions
        if s.globs:
            fs = FileSource(list(s.globs), queue, from_beginning=s.from_beginning,
                            scan_interval=s.scan_interval, max_line_bytes=s.max_line_bytes,
                            batch_lines=BATCH_LINES, batch_bytes=s.batch_bytes,
                            poll_interval=s.poll_interval, rotate_wait=s.rotate_wait,
                            source_id="files", max_open_files=s.max_open_files or None)
            if positions is not None:  # else a first start: sources.from_beginning applies
                fs.restore(positions.get("files", []))
            self.sources["files"] = fs
        if s.stdin:
            si = StdinSource(queue, max_line_bytes=s.max_line_bytes,
                             batch_lines=BATCH_LINES, batch_bytes=s.batch_bytes,
                             poll_interval=s.poll_interval, source_id="stdin")
            if positions is not None:
                si.restore(positions.get("stdin", []))
            self.sources["stdin"] = si

        r = self.cfg.redis
        if r.url:
            rs = RedisStreamSource(queue, url=r.url, stream=r.stream, group=r.group,
                                   consumer=r.consumer or default_consumer(self.store.dir),
                                   field=r.field, start=r.start, batch_entries=r.batch_entries,
                                   block=r.block, claim_idle=r.claim_idle,
                                   claim_interval=r.claim_interval, retry_max=r.retry_max,
                                   max_unacked=r.max_unacked,
                                   ack_overdue=max(300.0, 3 * self.cfg.intervals.snapshot),
                                   max_line_bytes=s.max_line_bytes, batch_bytes=s.batch_bytes,
                                   source_id="redis")
            if positions is not None:
                rs.restore(positions.get("redis", []))
            self.sources["redis"] = rs

    async def _run_source(self, sid: str, src: Source) -> None:
        """Run one source until stop() or end of input.

        Sources handle bad files themselves (logged, skipped, retried); an exception out
        of run() is a bug: it is logged, the source is marked failed (health turns 503)
        and the other sources and the engine carry on."""
        try:
            await src.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters.failed_sources[sid] = f"{type(exc).__name__}: {exc}"
            log.exception("source %s failed and stopped", sid)
            return
        if isinstance(src, StdinSource) and not self.stopping.is_set():
            log.info("stdin finished; other sources keep running")

    async def _every(self, interval: float, job: Callable[[], Awaitable[Any]],
                     due: Callable[[], bool]) -> None:
        """Run ``job`` every ``interval`` seconds when ``due()`` says there is something
        new for it, until the service stops."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)
            if self.stopping.is_set():
                return
            if due():
                await job()

    # ------------------------------------------------------------------ signals

    def request_stop(self, why: str = "stop requested") -> None:
        """Signal handler: begin a clean shutdown (a second signal is ignored)."""
        if self.stopping.is_set():
            log.info("%s received while stopping; still finishing", why)
            return
        self._stop_reason = why
        log.info("%s: stopping sources, finishing the batch in flight", why)
        for src in self.sources.values():
            src.stop()
        self.stopping.set()

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_known())
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def reload_known(self) -> None:
        """SIGHUP: re-read the known lexicons; a failure keeps the old ones."""
        try:
            known = await asyncio.to_thread(self._load_known, startup=False)
        except (OSError, UnicodeDecodeError, LexiconError) as exc:
            log.error("SIGHUP: cannot reload known lexicons, keeping the old ones: %s", exc)
            return
        await self.pipeline.set_known(known)
        log.info("SIGHUP: reloaded known lexicons (%d words from %d file(s))",
                 self.counters.known_words, len(self.cfg.engine.known))
        self.publisher.request_rescore()

    # ------------------------------------------------------------------ shutdown

    async def _shutdown(self, timers: list[asyncio.Task[Any]]) -> int:
        """Finish in-flight work, then final rescore, snapshot and export."""
        deadline = time.monotonic() + DRAIN_SECONDS
        dropped = await self.pipeline.finish(list(self._source_tasks.values()), deadline)
        for t in self._source_tasks.values():
            t.cancel()
        for t in timers:
            t.cancel()
        await asyncio.gather(*self._source_tasks.values(), *timers, return_exceptions=True)
        self.pipeline.discard_queued()
        if dropped:
            log.info("dropped %d queued batch(es) unread; files resume from the snapshot",
                     dropped)
        await self.publisher.rescore(reason="shutdown")
        ok = await self.snapshots.take(reason="shutdown")
        for src in self.sources.values():
            if isinstance(src, RedisStreamSource):  # the snapshot is on disk: XACK
                await src.drain(ACK_DRAIN_SECONDS)
        await self.publisher.export(reason="shutdown")
        if not ok:
            return 1
        unread = self.counters.batches_unread
        if unread:
            log.error("%d batch(es) could not be ingested (resource errors); their files"
                      " resume from the snapshot's offsets at the next start (exit status %d)",
                      unread, EXIT_UNREAD)
            return EXIT_UNREAD
        return 0

    # ================================================================== ServiceView

    def published(self) -> Published:
        return self.publisher.published

    def stats(self) -> dict[str, Any]:
        return self.telemetry.stats()

    def word_detail(self, word: str) -> WordDetail | None:
        return self.publisher.word_detail(word)

    def metrics(self) -> Iterable[Metric]:
        return self.telemetry.metrics(self.publisher.published)

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.telemetry.health()

    async def ingest(self, lines: list[str]) -> int:
        return await self.pipeline.ingest(lines)
