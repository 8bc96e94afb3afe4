"""Counters for 64-bit keys: a count-min sketch and an exact table, one interface.

CountMinSketch (blocked, conservative update)
    A table of ``blocks`` cache-line blocks of 16 uint32 counters. A key x picks
    one block b(x) by multiply-shift hashing, and in it one counter in each of d
    disjoint groups of G = 16 // d counters ("rows"). An estimate is the minimum
    of its d counters; it is never below the true count. Each row is a count-min
    row of width w = blocks * G, so with M the total count added

        E[overcount in one row] <= M / w
        estimate(x) <= true(x) + e * M / w     with probability >= 1 - 1/e

    (Markov on one row; the d rows share the block, so the classic 1 - exp(-d)
    for independent rows is not claimed, though measured errors are close to it:
    see the tests). Conservative update raises a key's counters only as far as
    needed (to min + c), which makes the typical error far smaller than the bound.
    Why blocks: an update or a lookup touches one 64-byte cache line instead of d
    random lines, and memory latency is what a sketch of hundreds of MB costs.
    The kernels are a small C extension (streamer/_sketch.c: exact sequential
    conservative update, one pass, no sort) that releases the GIL, so lookups run
    in parallel threads. A large update is either split over two threads that own
    disjoint halves of the blocks (the caller waits), or, with ``background``, queued
    to one sketch thread that runs the updates in call order while the caller goes on
    (discover's first pass; every read waits for the queue). Either way the table is
    exactly that of sequential updates.
    Costs: add and query O(n d) for n keys, ~one cache miss per key.

ExactCounter
    sorted unique keys with int64 counts; grows without bound (for tests, small
    inputs and ``--exact``). add O((n + K) log), query O(n log K).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np

from streamer.core import _sketch  # C kernels: _sketch.c beside this file
from streamer.core.ngrams import L, P
from streamer.core.units import HAN_LIMIT

BLOCK = 16  # counters per block: 64 bytes, one cache line
PARALLEL_MIN = 1 << 15  # keys in one add() before it is split over two threads
BACKLOG = 2  # background updates queued at most (each holds its batch's keys)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sketch")


_U32_MAX = np.iinfo(np.uint32).max


def aggregate(keys: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Distinct keys (sorted) and their summed counts. O(n log n)."""
    if len(keys) == 0:
        return np.sort(keys), np.empty(0, np.int64)
    order = None if counts is None else np.argsort(keys)
    s = np.sort(keys) if order is None else keys[order]
    edge = np.empty(len(s), dtype=bool)
    edge[0] = True
    np.not_equal(s[1:], s[:-1], out=edge[1:])
    starts = np.flatnonzero(edge)
    if order is None:
        return s[starts], np.diff(np.append(starts, len(s))).astype(np.int64)
    return s[starts], np.add.reduceat(counts[order].astype(np.int64), starts)


class CountMinSketch:
    """Blocked count-min sketch with conservative update (see module docstring)."""

    kind = "sketch"

    def __init__(self, blocks: int, depth: int = 4, seed: int = 0,
                 table: np.ndarray | None = None, touch: bool = True,
                 background: bool = False) -> None:
        if blocks < 1 or blocks & (blocks - 1):
            raise ValueError("sketch blocks must be a power of two >= 1")
        if depth not in (1, 2, 4, 8, 16):
            raise ValueError("sketch depth must be 1, 2, 4, 8 or 16")
        self.blocks = blocks
        self.depth = depth
        self.seed = seed
        self.group = BLOCK // depth
        self.bits = int(math.log2(self.group)) if depth < BLOCK else 0
        self.width = blocks * self.group  # per-row width w
        self._shift = 64 - int(math.log2(blocks))  # 64: one block, every key in block 0
        rng = np.random.default_rng(seed)
        m = rng.integers(0, 2**63, size=2, dtype=np.uint64) << np.uint64(1) | np.uint64(1)
        self._m0, self._m1 = int(m[0]), int(m[1])
        if table is None:
            table = np.zeros((blocks, BLOCK), dtype=np.uint32)
            if touch:  # every page now, so the resident size is paid at start
                table.fill(0)
        self.table = table
        self.total = 0  # M, the sum of all counts added
        # background updates (add): run in order in one other thread while the caller
        # goes on, at most BACKLOG behind; every read waits for them (settle)
        self.background = background
        self._pending: deque[Future[None]] = deque()
        self._settling = threading.Lock()  # readers in several threads may settle at once

    def _params(self) -> tuple[int, int, int, int, int, int]:
        return self.blocks, self._m0, self._m1, self._shift, self.depth, self.bits

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def error_bound(self) -> float:
        """e * M / w: the additive error that holds with probability >= 1 - 1/e."""
        return math.e / self.width * self.total

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None,
            weight: int = 1) -> None:
        """Add each key ``weight`` times (or ``counts[i]`` times). Single writer: not
        thread-safe.

        In background mode the update is queued to the sketch thread and add returns
        (waiting only while BACKLOG updates are queued): the updates still run one after
        another in the order of the calls, so the table ends exactly as after
        sequential adds, and every method that reads or changes the table first waits
        for them (settle). Without it, a large add is split over two threads that own
        disjoint halves of the table, and returns when both are done."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        c = None if counts is None else np.ascontiguousarray(counts, dtype=np.uint64)
        params = self._params()
        if self.background:
            self._pending.append(_pool().submit(_sketch.cu_add, self.table, keys, c, *params,
                                                0, self.blocks, weight))
            self._drain(BACKLOG)
        elif len(keys) < PARALLEL_MIN or self.blocks < 2:
            _sketch.cu_add(self.table, keys, c, *params, 0, self.blocks, weight)
        else:
            # two threads, each owning half of the blocks: a key's counters are all
            # in its block, so the halves never touch and the result is exactly that
            # of one sequential pass (the update is memory-bound: ~1.8x faster)
            half = self.blocks // 2
            other = _pool().submit(_sketch.cu_add, self.table, keys, c, *params, half,
                                   self.blocks, weight)
            _sketch.cu_add(self.table, keys, c, *params, 0, half, weight)
            other.result()
        self.total += len(keys) * weight if c is None else int(c.sum())

    def settle(self) -> None:
        """Wait for the background updates still queued (re-raising their error).
        Thread-safe: the readers of discover's second pass all call it. An update leaves
        the queue only once it is done, so a reader that finds the queue empty may read."""
        self._drain(0)

    def _drain(self, backlog: int) -> None:
        """Wait until at most ``backlog`` background updates are queued (re-raising the
        error of one that failed). An update leaves the queue only once it is done."""
        if len(self._pending) > backlog:
            with self._settling:
                while len(self._pending) > backlog:
                    self._pending[0].result()
                    self._pending.popleft()

    def query(self, keys: np.ndarray) -> np.ndarray:
        """Estimated counts (int64), never below the true counts. Thread-safe for
        concurrent readers while nobody adds."""
        out = np.empty(len(keys), np.uint32)
        if len(keys) == 0:
            return out.astype(np.int64)
        self.settle()
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        _sketch.query(self.table, keys, out, *self._params())
        return out.astype(np.int64)

    def cohesive(self, unit_counts: np.ndarray, mixed: np.ndarray, first: np.ndarray,
                 order: int, min_count: int, total: int,
                 thresholds: list[float]) -> list[np.ndarray]:
        """segmentation.cohesive_masks for a chunk, with its n-gram counts looked up
        here (one C pass per order, no key arrays; see ``cohesive`` in _sketch.c).

        ``unit_counts``: count of the unit at each position; ``mixed``: ngrams.mix of
        the unit ids; ``first``: clause starts. Returns masks for orders 2..order.
        Thread-safe for concurrent readers while nobody adds.
        """
        n = len(mixed)
        out = np.zeros((order - 1, n), dtype=bool)
        if n:
            self.settle()
            _sketch.cohesive(self.table, *self._params(),
                             np.ascontiguousarray(unit_counts, dtype=np.int64),
                             np.ascontiguousarray(mixed, dtype=np.uint64),
                             np.ascontiguousarray(first, dtype=bool), order, min_count,
                             float(total), np.array([math.exp(t) for t in thresholds]),
                             int(P), int(L), out)
        return [out[g - 2, :max(n - g + 1, 0)] for g in range(2, order + 1)]

    def scale(self, factor: float, rng: np.random.Generator) -> None:
        """Multiply every counter by ``factor`` (decay), rounding stochastically.

        Unbiased: E[new] = factor * old. Done in slices to keep temporaries small.
        """
        self.settle()
        flat = self.table.reshape(-1)
        step = 1 << 22
        for a in range(0, len(flat), step):
            part = flat[a:a + step]
            scaled = part * np.float32(factor)
            scaled += rng.random(len(part), dtype=np.float32)
            np.floor(scaled, out=scaled)
            np.minimum(scaled, _U32_MAX, out=scaled)  # saturate, as updates do
            part[:] = scaled.astype(np.uint32)
        self.total = int(self.total * factor)

    def merge(self, other: CountMinSketch) -> None:
        """Add another sketch of the same shape and seed (shards), cell by cell,
        saturating at 2^32 - 1. In place, in slices: a table of hundreds of MB gets
        temporaries of a few MB, not two uint64 copies of itself."""
        if (other.blocks, other.depth, other.seed) != (self.blocks, self.depth, self.seed):
            raise ValueError("sketches differ in size, depth or seed")
        self.settle()
        other.settle()
        if not self.table.flags.writeable:  # e.g. a table read from a snapshot's buffer
            self.table = self.table.copy()
        mine, theirs = self.table.reshape(-1), other.table.reshape(-1)
        step = 1 << 20
        for a in range(0, len(mine), step):
            s = mine[a:a + step].astype(np.uint64)
            s += theirs[a:a + step]
            np.minimum(s, _U32_MAX, out=s)
            mine[a:a + step] = s
        self.total += other.total

    def state(self) -> dict[str, Any]:
        self.settle()
        return {"kind": self.kind, "blocks": self.blocks, "depth": self.depth,
                "seed": self.seed, "total": self.total, "table": self.table}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CountMinSketch:
        blocks = int(st["blocks"])
        sk = cls(blocks, int(st["depth"]), int(st["seed"]),
                 table=np.ascontiguousarray(st["table"], dtype=np.uint32).reshape(blocks, BLOCK))
        sk.total = int(st["total"])
        return sk


def blocks_for_bytes(nbytes: int) -> int:
    """Largest power of two of 64-byte blocks that fits in ``nbytes`` (at least 1)."""
    return 1 << max(0, int(math.log2(max(nbytes // (4 * BLOCK), 1))))


def ngram_count_keys(mixed: np.ndarray, first: np.ndarray, ids: np.ndarray,
                     order: int) -> np.ndarray:
    """The keys the count phase adds, in its order (conservative update is
    order-dependent): the unigrams of non-Han units, then every n-gram inside a
    clause, order by order; the keys of ngrams.ngram_keys, made in one C pass per order
    (``count_keys`` in _sketch.c, once to count them and once to write them into an
    array of exactly that size) instead of a key and a mask array per order."""
    args = (np.ascontiguousarray(mixed, dtype=np.uint64), np.ascontiguousarray(first, dtype=bool),
            np.ascontiguousarray(ids, dtype=np.int64), HAN_LIMIT, order, int(P), int(L))
    out = np.empty(_sketch.count_keys(*args, None), dtype=np.uint64)
    _sketch.count_keys(*args, out)
    return out


class ExactCounter:
    """Exact counts of 64-bit keys (unbounded memory)."""

    kind = "exact"

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)
        self.counts = np.empty(0, np.int64)
        self.total = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        # query() may run in several threads at once (batch cutting): the first one
        # folds the pending additions in, under this lock
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.counts.nbytes)

    def error_bound(self) -> float:
        return 0.0

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None,
            weight: int = 1) -> None:
        if len(keys) == 0:
            return
        uniq, c = aggregate(keys, counts)
        if counts is None and weight != 1:
            c *= weight
        self._pending.append((uniq, c))
        self._pending_n += len(uniq)
        self.total += int(c.sum())
        if self._pending_n > max(1 << 20, len(self.keys)):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        with self._lock:
            if not self._pending:
                return
            ks = np.concatenate([self.keys] + [k for k, _ in self._pending])
            cs = np.concatenate([self.counts] + [c for _, c in self._pending])
            keys, counts = aggregate(ks, cs)
            self.keys, self.counts = keys, counts
            self._pending = []
            self._pending_n = 0

    def query(self, keys: np.ndarray) -> np.ndarray:
        self._flush()
        table_keys, table_counts = self.keys, self.counts
        if len(table_keys) == 0:
            return np.zeros(len(keys), np.int64)
        pos = np.searchsorted(table_keys, keys)
        pos = np.minimum(pos, len(table_keys) - 1)
        hit = table_keys[pos] == keys
        return np.where(hit, table_counts[pos], 0)

    def scale(self, factor: float, rng: np.random.Generator) -> None:
        self._flush()
        scaled = self.counts * factor + rng.random(len(self.counts))
        self.counts = np.floor(scaled).astype(np.int64)
        keep = self.counts > 0
        self.keys, self.counts = self.keys[keep], self.counts[keep]
        self.total = int(self.total * factor)

    def merge(self, other: ExactCounter) -> None:
        other._flush()
        self.add(other.keys, other.counts)

    def state(self) -> dict[str, Any]:
        self._flush()
        return {"kind": self.kind, "total": self.total, "keys": self.keys,
                "counts": self.counts}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> ExactCounter:
        c = cls()
        c.keys = np.asarray(st["keys"], dtype=np.uint64)
        c.counts = np.asarray(st["counts"], dtype=np.int64)
        c.total = int(st["total"])
        return c


NgramCounter = CountMinSketch | ExactCounter


def counter_from_state(st: dict[str, Any]) -> NgramCounter:
    """Rebuild whichever counter a state dict describes."""
    return (CountMinSketch if st["kind"] == "sketch" else ExactCounter).from_state(st)
