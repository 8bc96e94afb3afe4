"""`discover` on a Dask cluster: the batch run's two passes, partitioned over workers.

The input is split into one run of byte ranges per worker thread (input.ranges: cut at line
starts, read as the whole-file reader reads them). Then::

    count   each worker counts its run into an n-gram counter + unigram table   (Counts)
    sum     the Counts are added pairwise, in input order (a tree: log2(runs) rounds)
    cut     every worker gets the summed Counts (one transfer per worker) and cuts its
            run with them, recording pieces and neighbours from the stream position
            where its run starts                                                 (states)
    merge   the partial engine states are merged pairwise, in input order (Engine.merge)
    rescore here, once, with the summed counts: the ranked list

What the result is:

* exact counters (``--exact``) add by key, so the summed count phase is bit for bit that
  of one process; the cut pass then sees the same counts, cuts the same pieces, and the
  merged candidate and neighbour tables equal one process's, so the output is the same
  file. Two limits, both of table capacity, not of the partitioning: while no candidate is
  evicted (the table holds every piece seen) and no neighbour bucket passes 65,535.
* count-min sketches add cell by cell. Conservative update is not linear, so the sum is
  not the sketch one process would build, but it keeps the sketch's guarantee: every
  partition's cells are at least its true counts, so the summed estimate of an n-gram is
  at least its true count; and every partition's conservative cells are at most its plain
  count-min cells, which do add, so the summed estimate is at most plain count-min's over
  all the text, true + e * N / w for a key in all but 1/e of cases (N: n-grams counted,
  w: counters a row; CountMinSketch.error_bound). One conservative sketch over all the
  text is usually tighter than that; the summed one overestimates more, so a few
  borderline n-grams more pass the cohesion threshold (docs/benchmarks.md measures the
  effect on the ranked list).

Only the installed package is needed on the workers: the tasks are this module's
functions, and what travels is numpy arrays and plain values. The input paths must be
readable at the same path on every worker (a shared filesystem off this machine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.core.engine import Engine, EngineConfig
from streamer.core.lexicon import Lexicon
from streamer.core.sketch import CountMinSketch, ExactCounter, counter_from_state
from streamer.input.batch_reader import ReadStats, decode_block, decode_text
from streamer.input.ranges import ByteRange, iter_range_blocks, split_ranges

INSTALL_HINT = "pip install 'streamer[dask]'"


class DaskMissing(ImportError):
    """dask[distributed] is not installed (the optional extra)."""


class ClusterError(Exception):
    """The cluster failed during the run (a worker died); the message says how."""


class SchedulerUnreachable(ClusterError):
    """--scheduler: no scheduler answered at the address, or it has no workers."""


@dataclass
class Counts:
    """The count phase of one or more runs, added up.

    counter   NgramCounter.state() of the n-gram counter
    unigrams  exact occurrences per dense unit index (units.dense_index)
    units     units counted by each run, in input order (where each run's cut starts)
    """

    counter: dict[str, Any]
    unigrams: np.ndarray
    total_units: int
    chars: int
    stats: ReadStats
    units: list[int] = field(default_factory=list)


def count_run(config: EngineConfig, run: list[ByteRange]) -> Counts:
    """Count phase of one run (a worker task), as discover's first pass counts it."""
    # only the counters are kept: a candidate table of the smallest size (the cut pass
    # builds the real one)
    engine = Engine(dataclasses.replace(config, capacity=1024))
    stats = ReadStats()
    for r in run:
        for raw in iter_range_blocks(r, stats):
            d = decode_block(*raw)
            d.count_into(stats)
            p = engine.encode_batch([d.text])
            engine.count_batch(p)
    return Counts(engine.counter.state(), engine.unigrams, engine.total_units,
                  engine.chars_ingested, stats, [engine.units_ingested])


def add_counts(a: Counts, b: Counts) -> Counts:
    """a + b, ``a`` being the earlier input (a worker task). Exact counters add by key;
    sketches cell by cell (CountMinSketch.merge)."""
    counter = counter_from_state(a.counter)
    if isinstance(counter, CountMinSketch):
        # the sum is made in place: never in a task's input, which Dask may hand out again
        counter.table = counter.table.copy()
    counter.merge(counter_from_state(b.counter))  # type: ignore[arg-type]
    stats = ReadStats(**{f.name: getattr(a.stats, f.name) + getattr(b.stats, f.name)
                         for f in dataclasses.fields(ReadStats) if f.name != "per_file"})
    return Counts(counter.state(), a.unigrams + b.unigrams, a.total_units + b.total_units,
                  a.chars + b.chars, stats, a.units + b.units)


def _with_counts(engine: Engine, counts: Counts) -> Engine:
    engine.counter = counter_from_state(counts.counter)
    engine.unigrams = counts.unigrams
    engine.unigrams_slow = counts.unigrams.astype(np.float64)  # no decay: the same counts
    engine.total_units = counts.total_units
    engine.units_ingested = sum(counts.units)
    return engine


def cut_run(config: EngineConfig, counts: Counts, run: list[ByteRange], offset: int,
            now: float) -> dict[str, Any]:
    """Cut pass of one run with the summed counts (a worker task); ``offset``: units
    before the run (neighbour buckets of line edges are spread by stream position).
    Returns the partial engine state without counters (they are in ``counts``)."""
    engine = _with_counts(Engine(config), counts)
    engine.units_cut = offset
    stats = ReadStats()
    for r in run:
        for raw in iter_range_blocks(r, stats):
            p = engine.encode_batch([decode_text(*raw)], count=False)
            engine.record_cut(engine.cut_batch(p), now)
    engine.units_cut -= offset
    # the partial states carry only what the cut pass recorded: merging adds counters,
    # and the summed ones are added back once, at the end
    engine.counter = ExactCounter()
    engine.unigrams = np.zeros_like(engine.unigrams)
    engine.unigrams_slow = np.zeros_like(engine.unigrams_slow)
    engine.total_units = engine.units_ingested = 0
    return engine.state_dict()


def merge_states(a: dict[str, Any], b: dict[str, Any], config: EngineConfig) -> dict[str, Any]:
    """Engine.merge of two partial cut states, ``a`` the earlier input (a worker task):
    a piece seen in both keeps ``a``'s text, i.e. that of its first occurrence."""
    engine = Engine.from_state(a, config=config)
    engine.merge(Engine.from_state(b, config=config))
    return engine.state_dict()


def _units_of(counts: Counts) -> list[int]:
    return counts.units


def _tree(client: Any, fn: Callable[..., Any], futures: list[Any], *extra: Any) -> Any:
    """Reduce futures pairwise with fn(left, right, *extra), keeping input order."""
    while len(futures) > 1:
        nxt = [client.submit(fn, futures[i], futures[i + 1], *extra, pure=False)
               for i in range(0, len(futures) - 1, 2)]
        if len(futures) % 2:
            nxt.append(futures[-1])
        futures = nxt
    return futures[0]


def discover_on_cluster(files: list[str], config: EngineConfig,
                        known: Lexicon | Callable[[], Lexicon | None] | None = None,
                        *, workers: int | None = None,
                        scheduler: str | None = None) -> tuple[Engine, ReadStats]:
    """discover() with the counting and cutting done on a Dask cluster: a LocalCluster of
    ``workers`` processes started for the run, or the cluster at ``scheduler``. Returns the
    engine (rescored) and reader stats, as discover() does."""
    if (workers is None) == (scheduler is None):
        raise ValueError("give workers or scheduler")
    try:
        from distributed import KilledWorker
    except ImportError:
        raise DaskMissing(f"Dask is not installed: {INSTALL_HINT}") from None
    started = time.time()  # first_seen/last_seen of a batch run: when it ran
    with tempfile.TemporaryDirectory(prefix="streamer-") as tmp, \
            _client(workers, scheduler) as client:
        paths = _regular_paths(files, tmp)
        threads = sum(w.get("nthreads", 1) for w in
                      client.scheduler_info()["workers"].values())
        runs = split_ranges(paths, max(threads, 1))
        try:
            total = _tree(client, add_counts,
                          [client.submit(count_run, config, run, pure=False) for run in runs])
            units = client.submit(_units_of, total, pure=False).result()
            offsets = np.concatenate([[0], np.cumsum(units)[:-1]]).tolist()
            parts = [client.submit(cut_run, config, total, run, off, started, pure=False)
                     for run, off in zip(runs, offsets, strict=True)]
            merged = _tree(client, merge_states, parts, config)
            counts: Counts = total.result()
            state = merged.result()
        except KilledWorker as exc:
            raise ClusterError(f"a Dask worker died running {exc.task}: out of memory? "
                               "(each worker holds --memory; lower it or use fewer "
                               "workers a machine)") from None
    if callable(known):  # loaded now, after the passes, as discover() does
        known = known()
    engine = _with_counts(Engine.from_state(state, known, config), counts)
    del state  # from_state copied the tables
    engine.chars_ingested = counts.chars
    engine.lines_ingested = counts.stats.lines
    engine.rescore(started)
    return engine, counts.stats


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    import dask.config
    from dask.utils import parse_timedelta
    from distributed import Client, LocalCluster

    if scheduler is not None:
        # Dask's own connect timeout (distributed.comm.timeouts.connect, e.g. the
        # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT variable) bounds the wait for the
        # scheduler and for its first worker
        timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{exc}") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise SchedulerUnreachable(f"the Dask cluster at {scheduler} has no "
                                           "workers") from None
            yield client
        return
    # worker processes on this machine, one thread each: the engine's C kernels and
    # numpy hold the GIL in places, so processes, not threads, use the cores.
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's
    # adaptive mmap threshold: every multi-MB numpy temporary of a block is then mapped
    # and unmapped afresh, which doubled the engine's CPU time (measured on 50 MiB:
    # count 1.5 -> 2.7 s, cut 2.0 -> 4.4 s a run)
    with dask.config.set({f"{PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None,
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def _regular_paths(files: list[str], spool_dir: str) -> list[str]:
    """The inputs as regular files the workers can read by path: standard input, pipes
    and devices are copied to ``spool_dir`` first (read once, as discover() does)."""
    paths = []
    for i, f in enumerate(files):
        if f != "-" and _regular(f):
            paths.append(os.path.abspath(f))
            continue
        spool = os.path.join(spool_dir, f"spool-{i}")
        with open(spool, "wb") as out:
            if f == "-":
                _copy(sys.stdin.buffer, out)
            else:
                with open(f, "rb") as src:
                    _copy(src, out)
        paths.append(spool)
    return paths


def _copy(src: Any, out: Any) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
