"""What the service reports about itself: counters, /stats, /metrics, /healthz, loop lag, RSS.

Every figure lives in one :class:`Counters`, written on the event-loop thread by the room
that does the work (pipeline, publisher, state) and read here; a value is replaced whole,
so a reader never waits for the engine thread.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from streamer import __version__
from streamer.core.results import Published
from streamer.input import FileSource, RedisStreamSource, Source
from streamer.service.config import Config
from streamer.storage import snapshot

if TYPE_CHECKING:  # aiohttp is imported only when the service starts (cli imports us)
    from streamer.service.server import Metric

#: Samples of event-loop lag kept for the p99 in /metrics (one every LAG_PERIOD seconds).
LAG_SAMPLES = 600
LAG_PERIOD = 0.1
#: Seconds one engine job may run before /healthz reports the engine stuck (or six
#: rescore intervals, if longer): a batch, a rescore or a snapshot copy takes seconds.
STUCK_SECONDS = 120.0


@dataclass(slots=True)
class Counters:
    """The service's figures; event-loop thread only, each value replaced whole."""

    started: float = field(default_factory=time.time)
    # what the engine has counted (its own totals, copied after each batch)
    lines_ingested: int = 0
    chars_ingested: int = 0
    units_ingested: int = 0
    batches: int = 0
    http_lines: int = 0
    ingest_errors: int = 0
    resource_errors: int = 0  # batch attempts that failed with an OSError (retried)
    batches_unread: int = 0  # batches given up at shutdown (never counted, not committed)
    #: bumps on every engine mutation (ingest, rescore, set_known): an unchanged value
    #: tells the timers there is nothing new to rescore or snapshot
    generation: int = 0
    rescores: int = 0
    rescore_seconds: float = 0.0
    last_rescore: float | None = None
    engine_stats: dict[str, Any] = field(default_factory=dict)
    snapshots: int = 0
    snapshot_seconds: float = 0.0  # ingestion pause of the last snapshot
    snapshot_write_seconds: float = 0.0  # capture + write of the last snapshot
    snapshot_bytes: int = 0
    last_snapshot: float | None = None
    last_snapshot_path: str | None = None
    snapshot_errors: int = 0
    #: "<kind>: <message>" of the last snapshot attempt when it failed, else None
    snapshot_failure: str | None = None
    exports: int = 0
    last_export: float | None = None
    export_errors: int = 0
    #: what the last export (or latest.jsonl) write failed on, else None
    export_failure: str | None = None
    known_words: int = 0
    #: source id -> why it stopped (a bug: sources handle bad files themselves)
    failed_sources: dict[str, str] = field(default_factory=dict)
    # a merged view of shards (service.shard_view); empty/0 in a service with sources
    #: one row per shard: dir, snapshot, created, age_s, lines_ingested, problem, errors
    view_shards: list[dict[str, Any]] = field(default_factory=list)
    view_merges: int = 0
    view_merge_seconds: float = 0.0  # load + merge of the last merge
    view_last_merge: float | None = None
    #: why the last merge was abandoned (the previous merged state stays), else None
    view_problem: str | None = None


class EngineActivity(Protocol):
    """What telemetry reads from the engine side (:class:`~streamer.service.pipeline.Pipeline`)."""

    def queue_depth(self) -> int:
        """Batches waiting for the engine."""
        ...

    def consumer_state(self) -> Literal["starting", "running", "stopped"]:
        """Whether the coroutine that feeds the engine runs."""
        ...

    def stuck_seconds(self) -> float:
        """How long the engine thread has been busy with one job (0 when idle)."""
        ...

    def stream_time(self, chars: int | None = None) -> float:
        """The stream clock now, epoch seconds."""
        ...


class LoopLag:
    """Event-loop lag: how late a LAG_PERIOD sleep wakes, the last LAG_SAMPLES kept."""

    def __init__(self) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)

    async def monitor(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PERIOD)
            self._samples.append(max(0.0, loop.time() - t0 - LAG_PERIOD))

    def p99_and_max(self) -> tuple[float, float]:
        """(p99, max) of the recent samples, seconds; O(n log n) in LAG_SAMPLES."""
        if not self._samples:
            return 0.0, 0.0
        s = sorted(self._samples)
        return s[min(len(s) - 1, int(math.ceil(0.99 * len(s))) - 1)], s[-1]


class Telemetry:
    """/stats, /metrics and /healthz from the counters and the live status of the parts."""

    def __init__(self, cfg: Config, counters: Counters, lag: LoopLag, engine: EngineActivity,
                 sources: Mapping[str, Source],
                 stopping: asyncio.Event) -> None:
        self._cfg = cfg
        self._counters = counters
        self._lag = lag
        self._engine = engine
        self._sources = sources
        self._stopping = stopping

    def stats(self) -> dict[str, Any]:
        """GET /stats (the keys ServiceView.stats documents, and more)."""
        c = self._counters
        p99, lag_max = self._lag.p99_and_max()
        eng_stats = dict(c.engine_stats)
        mem = eng_stats.get("memory_bytes") or {}
        sources = []
        for src in self._sources.values():
            for row in src.status():
                row = dict(row)
                row.setdefault("id", f"{row.get('source')}:{row.get('path')}")
                row.setdefault("status", row.get("state"))
                sources.append(row)
        return {
            "version": __version__,
            "started": c.started,
            "uptime_s": round(time.time() - c.started, 3),
            "time_mode": self._cfg.time.mode,
            "stream_time": self._engine.stream_time(),
            "lines_ingested": c.lines_ingested,
            "chars_ingested": c.chars_ingested,
            "units_ingested": c.units_ingested,
            # bytes of the lines the engine consumed, cumulative (never goes down)
            "bytes_ingested": sum(_bytes_committed(src) for src in self._sources.values()),
            "bytes_dropped": sum(getattr(src, "dropped_bytes", 0)
                                 for src in self._sources.values()),
            "resource_errors": c.resource_errors,
            "batches_unread": c.batches_unread,
            # watched directories that cannot be listed: path -> why
            "source_problems": {path: why for src in self._sources.values()
                                for path, why in getattr(src, "problems", dict)().items()},
            "http_lines": c.http_lines,
            "batches": c.batches,
            "ingest_errors": c.ingest_errors,
            "queue_depth": self._engine.queue_depth(),
            "queue_capacity": self._cfg.sources.queue_batches,
            "tracked_candidates": eng_stats.get("candidates"),
            "sources": sources,
            "rescores": c.rescores,
            "rescore_seconds": c.rescore_seconds,
            "last_rescore": c.last_rescore,
            "snapshots": c.snapshots,
            "snapshot_seconds": c.snapshot_seconds,
            "snapshot_write_seconds": c.snapshot_write_seconds,
            "snapshot_bytes": c.snapshot_bytes,
            "last_snapshot": c.last_snapshot,
            "last_snapshot_path": c.last_snapshot_path,
            "exports": c.exports,
            "last_export": c.last_export,
            "loop_lag_p99_s": p99,
            "loop_lag_max_s": lag_max,
            "known_words": c.known_words,
            **({"view": {"shards": self._shard_rows(), "merges": c.view_merges,
                         "merge_seconds": c.view_merge_seconds,
                         "last_merge": c.view_last_merge, "problem": c.view_problem}}
               if c.view_shards else {}),
            "memory": {"rss_bytes": rss_bytes(), "budget_bytes": self._cfg.engine.memory,
                       **{f"{k}_bytes": v for k, v in mem.items()}},
            "engine": eng_stats,
        }

    def metrics(self, published: Published) -> Iterable[Metric]:
        """GET /metrics samples."""
        from streamer.service.server import Metric

        c = self._counters
        p99, lag_max = self._lag.p99_and_max()
        m = [
            Metric("streamer_lines_ingested_total", "counter", "Lines counted by the engine.",
                   c.lines_ingested),
            Metric("streamer_chars_ingested_total", "counter",
                   "Characters counted by the engine.", c.chars_ingested),
            Metric("streamer_units_ingested_total", "counter",
                   "Units (Han characters, ASCII runs) counted by the engine.",
                   c.units_ingested),
            Metric("streamer_batches_total", "counter", "Batches handed to the engine.",
                   c.batches),
            Metric("streamer_ingest_errors_total", "counter", "Batches the engine failed on.",
                   c.ingest_errors),
            Metric("streamer_source_dropped_bytes_total", "counter",
                   "Unread bytes lost to truncated (copytruncate) files.",
                   sum(getattr(src, "dropped_bytes", 0) for src in self._sources.values())),
            Metric("streamer_resource_errors_total", "counter",
                   "Batch attempts that failed with an OSError (retried, not committed).",
                   c.resource_errors),
            Metric("streamer_queue_depth", "gauge", "Batches waiting for the engine.",
                   self._engine.queue_depth()),
            Metric("streamer_queue_capacity", "gauge", "Capacity of the batch queue.",
                   self._cfg.sources.queue_batches),
            Metric("streamer_rescores_total", "counter", "Rescores done.", c.rescores),
            Metric("streamer_rescore_seconds", "gauge", "Duration of the last rescore.",
                   c.rescore_seconds),
            Metric("streamer_snapshots_total", "counter", "Snapshots written.", c.snapshots),
            Metric("streamer_snapshot_failing_intervals", "gauge",
                   "Snapshot intervals since the last successful snapshot while the last "
                   "attempt failed (0 when it succeeded).", self.snapshot_failing_intervals()),
            Metric("streamer_snapshot_last_success_timestamp_seconds", "gauge",
                   "Unix time of the last successful snapshot (0: none yet).",
                   c.last_snapshot or 0),
            Metric("streamer_snapshot_errors_total", "counter", "Snapshots that failed.",
                   c.snapshot_errors),
            Metric("streamer_snapshot_seconds", "gauge",
                   "Ingestion pause of the last snapshot.", c.snapshot_seconds),
            Metric("streamer_snapshot_write_seconds", "gauge",
                   "Capture and write time of the last snapshot.", c.snapshot_write_seconds),
            Metric("streamer_snapshot_bytes", "gauge", "Size of the last snapshot.",
                   c.snapshot_bytes),
            Metric("streamer_exports_total", "counter", "Timestamped exports written.",
                   c.exports),
            Metric("streamer_export_errors_total", "counter", "Exports that failed.",
                   c.export_errors),
            *(Metric("streamer_errors_total", "counter",
                     "Errors by kind: engine batches, snapshots, exports, failed sources.",
                     value, {"kind": kind})
              for kind, value in (("ingest", c.ingest_errors),
                                  ("snapshot", c.snapshot_errors),
                                  ("export", c.export_errors),
                                  ("source", len(c.failed_sources)))),
            Metric("streamer_published_words", "gauge", "Words in the published list.",
                   len(published.words)),
            Metric("streamer_published_new_words", "gauge", "Published words flagged new.",
                   sum(1 for w in published.words if w.new)),
            Metric("streamer_loop_lag_seconds", "gauge",
                   "Event-loop lag over the last minute, p99.", p99, {"quantile": "0.99"}),
            Metric("streamer_loop_lag_seconds", "gauge",
                   "Event-loop lag over the last minute, max.", lag_max, {"quantile": "1"}),
            Metric("streamer_uptime_seconds", "gauge", "Seconds since start.",
                   time.time() - c.started),
            Metric("streamer_resident_memory_bytes", "gauge", "Resident set size.",
                   rss_bytes() or 0),
        ]
        for name, value in (("candidates", "streamer_candidates"),
                            ("candidate_capacity", "streamer_candidate_capacity"),
                            ("candidates_evicted", "streamer_candidates_evicted_total")):
            v = c.engine_stats.get(name)
            if isinstance(v, int | float):
                kind = "counter" if value.endswith("_total") else "gauge"
                m.append(Metric(value, kind, f"Engine statistic {name}.", v))
        for part, v in (c.engine_stats.get("memory_bytes") or {}).items():
            if isinstance(v, int | float):
                m.append(Metric("streamer_engine_memory_bytes", "gauge",
                                "Engine counting state by part.", v, {"part": str(part)}))
        if c.view_shards:
            m += self._view_metrics()
        for src in self._sources.values():
            if isinstance(src, RedisStreamSource):
                m.extend(_redis_metrics(src))
        states: collections.Counter[str] = collections.Counter()
        for src in self._sources.values():
            if isinstance(src, RedisStreamSource):
                continue  # not files
            for row in src.status():
                states[str(row.get("state"))] += 1
        for state, n in sorted(states.items()):
            m.append(Metric("streamer_source_files", "gauge", "Files by state.", n,
                            {"state": state}))
        return m

    def health(self) -> tuple[bool, dict[str, Any]]:
        """GET /healthz: (healthy, details with the reason when not)."""
        c = self._counters
        consumer = self._engine.consumer_state()
        stopping = self._stopping.is_set()
        stuck_after = max(STUCK_SECONDS, 6 * self._cfg.intervals.rescore)
        busy = self._engine.stuck_seconds()
        starting = [sid for sid, src in self._sources.items()
                    if not getattr(src, "started", True)]
        unlisted = {path: why for src in self._sources.values()
                    for path, why in getattr(src, "unreadable_roots", dict)().items()}
        shard_problems = [f"{r['dir']}: {r['problem']}" for r in c.view_shards
                          if r.get("problem")]
        troubles = [p for src in self._sources.values()
                    if (p := getattr(src, "problem", lambda: None)()) is not None]
        ok = (consumer == "running" and not stopping and not c.failed_sources
              and busy < stuck_after and c.snapshot_failure is None and not starting
              and not unlisted and c.export_failure is None and not shard_problems
              and c.view_problem is None and not troubles)
        details: dict[str, Any] = {
            "lines_ingested": c.lines_ingested,
            "queue_depth": self._engine.queue_depth(),
            "uptime_s": round(time.time() - c.started, 3),
        }
        if consumer == "starting" or starting:
            details["reason"] = "starting" + (f": scanning {', '.join(starting)}"
                                              if starting else "")
        elif stopping:
            details["reason"] = "shutting down"
        elif consumer != "running":
            details["reason"] = "the engine consumer is not running"
        elif busy >= stuck_after:
            details["reason"] = f"engine stuck: one job has run for {busy:.0f} s"
        elif c.failed_sources:
            # the service still serves and the other sources still count: degraded
            details["status"] = "degraded"
            details["reason"] = "source failed: " + "; ".join(
                f"{k}: {v}" for k, v in c.failed_sources.items())
        elif troubles:
            # a source cannot read (Redis down) or cannot acknowledge: still serving
            details["status"] = "degraded"
            details["reason"] = "; ".join(troubles)
        elif unlisted:
            details["status"] = "degraded"
            details["reason"] = "cannot scan " + "; ".join(
                f"{path}: {why}" for path, why in sorted(unlisted.items()))
        elif c.snapshot_failure is not None:
            # ingestion and the API still work; a restart would lose what the missing
            # snapshots hold and re-read it from the sources
            details["status"] = "degraded"
            details["reason"] = (f"snapshots failing: {self.snapshot_failing_intervals()} "
                                 f"intervals without a snapshot (last error: "
                                 f"{c.snapshot_failure})")
        elif c.export_failure is not None:
            details["status"] = "degraded"
            details["reason"] = f"exports failing: {c.export_failure}"
        elif c.view_problem is not None or shard_problems:
            # the view serves the merged state it has; what it holds of these shards is
            # older than their newest snapshots (or absent)
            details["status"] = "degraded"
            details["reason"] = "shards: " + "; ".join(
                ([c.view_problem + " (previous merged state kept)"] if c.view_problem
                 else []) + shard_problems)
        return ok, details

    def _shard_rows(self) -> list[dict[str, Any]]:
        """The view's shard rows with their snapshot age as of now."""
        now = time.time()
        return [{**r, "age_s": None if r.get("created") is None
                 else round(now - r["created"], 3)} for r in self._counters.view_shards]

    def _view_metrics(self) -> list[Metric]:
        """/metrics of a merged view: shards, merges, and per shard its snapshot's age,
        lines and problems."""
        from streamer.service.server import Metric

        c = self._counters
        rows = self._shard_rows()
        m = [
            Metric("streamer_view_shards", "gauge", "Shards the merged view reads.",
                   len(rows)),
            Metric("streamer_view_merges_total", "counter", "Merges of shard snapshots.",
                   c.view_merges),
            Metric("streamer_view_merge_seconds", "gauge",
                   "Load and merge time of the last merge.", c.view_merge_seconds),
            Metric("streamer_view_last_merge_timestamp_seconds", "gauge",
                   "Unix time of the last merge (0: none yet).", c.view_last_merge or 0),
        ]
        for r in rows:
            label = {"shard": str(r["dir"])}
            m += [
                Metric("streamer_view_shard_snapshot_age_seconds", "gauge",
                       "Age of the shard snapshot the merged state holds (-1: none).",
                       -1 if r["age_s"] is None else r["age_s"], label),
                Metric("streamer_view_shard_lines_ingested", "gauge",
                       "Lines the shard snapshot the merged state holds had counted.",
                       r["lines_ingested"], label),
                Metric("streamer_view_shard_problem", "gauge",
                       "1 while the shard's newest snapshot is not what the view holds.",
                       1 if r["problem"] else 0, label),
                Metric("streamer_view_shard_errors_total", "counter",
                       "Problems seen reading the shard (each new one counted once).",
                       r["errors"], label),
            ]
        return m

    def snapshot_failing_intervals(self) -> int:
        """Whole snapshot intervals without a snapshot while snapshots fail (at least 1
        once one has failed), else 0."""
        c = self._counters
        if c.snapshot_failure is None:
            return 0
        return max(1, snapshot.intervals_without_snapshot(
            c.last_snapshot, c.started, time.time(), self._cfg.intervals.snapshot))


def _bytes_committed(src: Source) -> int:
    """Bytes of the lines a source had consumed, cumulative."""
    if isinstance(src, FileSource | RedisStreamSource):
        return src.bytes_committed
    return sum(int(row.get("committed_offset") or 0) for row in src.status())


def _redis_metrics(src: RedisStreamSource) -> list[Metric]:
    """The /metrics samples of one Redis stream source (labelled with the stream)."""
    from streamer.service.server import Metric

    labels = {"stream": src.stream}
    rows = (
        ("streamer_redis_entries_read_total", "counter",
         "Stream entries delivered (new, own pending after a restart, claimed).",
         src.entries_read),
        ("streamer_redis_entries_counted_total", "counter",
         "Stream entries whose lines the engine counted.", src.entries_counted),
        ("streamer_redis_entries_acked_total", "counter",
         "Stream entries acknowledged (XACK) after a snapshot held them.", src.entries_acked),
        ("streamer_redis_entries_claimed_total", "counter",
         "Entries taken over from other consumers (XAUTOCLAIM).", src.entries_claimed),
        ("streamer_redis_entries_lost_total", "counter",
         "Entries deleted or trimmed before they were counted.", src.entries_lost),
        ("streamer_redis_entries_without_field_total", "counter",
         "Entries without the configured field (skipped).", src.entries_without_field),
        ("streamer_redis_acks_owed", "gauge",
         "Entries in a snapshot on disk, not yet acknowledged.", src.acks_owed),
        ("streamer_redis_connected", "gauge", "1 while Redis answers, else 0.",
         int(src.connected)),
        ("streamer_redis_reconnects_total", "counter",
         "Reconnections after Redis was unreachable.", src.reconnects),
    )
    return [Metric(name, kind, text, value, labels) for name, kind, text, value in rows]


def rss_bytes() -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
