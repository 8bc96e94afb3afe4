"""Counters for 64-bit keys: a count-min sketch and an exact table, one interface.

CountMinSketch
    depth d rows of width w (a power of two) uint32 counters. Row r maps a key
    to column ``(key * A_r) >> (64 - log2 w)`` (multiply-shift hashing, A_r odd).
    An estimate is the minimum over the rows; it is never below the true count.
    With conservative update (a key's counters are raised only as far as needed)
    the classic bound still holds and is loose in practice:

        estimate(x) <= true(x) + (e / w) * M     with probability >= 1 - exp(-d)

    where M is the total count added. Updates are applied a batch at a time: the
    batch's keys are aggregated (sort), each distinct key's new value is
    ``min_r T[r, h_r(x)] + c_x`` and every counter takes the max of its value and
    the new values of the keys that map to it. That is conservative update with
    the batch treated as one step: still an overestimate, never an underestimate.
    Costs: add O(n log n) for n keys (the sort), query O(n d).

ExactCounter
    sorted unique keys with int64 counts; grows without bound (for tests, small
    inputs and ``--exact``). add O((n + K) log), query O(n log K).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

_U32_MAX = np.iinfo(np.uint32).max


def aggregate(keys: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Distinct keys (sorted) and their summed counts."""
    if counts is None:
        s = np.sort(keys)
        if len(s) == 0:
            return s, np.empty(0, np.int64)
        edge = np.empty(len(s), dtype=bool)
        edge[0] = True
        np.not_equal(s[1:], s[:-1], out=edge[1:])
        starts = np.flatnonzero(edge)
        c = np.diff(np.append(starts, len(s)))
        return s[starts], c.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    if len(s) == 0:
        return s, np.empty(0, np.int64)
    edge = np.empty(len(s), dtype=bool)
    edge[0] = True
    np.not_equal(s[1:], s[:-1], out=edge[1:])
    starts = np.flatnonzero(edge)
    return s[starts], np.add.reduceat(counts[order].astype(np.int64), starts)


class CountMinSketch:
    """Count-min sketch with batch conservative update (see module docstring)."""

    kind = "sketch"

    def __init__(self, width: int, depth: int = 3, seed: int = 0,
                 table: np.ndarray | None = None) -> None:
        if width < 2 or width & (width - 1):
            raise ValueError("sketch width must be a power of two >= 2")
        self.width = width
        self.depth = depth
        self.seed = seed
        self._shift = np.uint64(64 - int(math.log2(width)))
        rng = np.random.default_rng(seed)
        self._mult = (rng.integers(0, 2**63, size=depth, dtype=np.uint64) << np.uint64(1)) | \
            np.uint64(1)
        self.table = table if table is not None else np.zeros((depth, width), dtype=np.uint32)
        self.total = 0  # M, the sum of all counts added

    @classmethod
    def for_bytes(cls, nbytes: int, depth: int = 3, seed: int = 0) -> CountMinSketch:
        """The widest power-of-two sketch whose table fits in ``nbytes``."""
        width = 1 << max(1, int(math.log2(max(nbytes // (4 * depth), 2))))
        return cls(width, depth, seed)

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def error_bound(self) -> float:
        """e/w * M: the additive error that holds with probability 1 - exp(-depth)."""
        return math.e / self.width * self.total

    def _columns(self, keys: np.ndarray) -> np.ndarray:
        """Column of each key in each row, int64[depth, n] (multiply-shift)."""
        cols = np.empty((self.depth, len(keys)), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for r in range(self.depth):
                np.multiply(keys, self._mult[r], out=cols[r])
                np.right_shift(cols[r], self._shift, out=cols[r])
        return cols.view(np.int64)

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add each key once (or ``counts[i]`` times)."""
        if len(keys) == 0:
            return
        uniq, c = aggregate(keys, counts)
        cols = self._columns(uniq)
        rows = self.table
        est = rows[0].take(cols[0]).astype(np.int64)
        for r in range(1, self.depth):
            np.minimum(est, rows[r].take(cols[r]), out=est)
        new = np.minimum(est + c, _U32_MAX).astype(np.uint32)
        for r in range(self.depth):
            np.maximum.at(rows[r], cols[r], new)
        self.total += int(c.sum())

    def query(self, keys: np.ndarray) -> np.ndarray:
        """Estimated counts (int64), never below the true counts."""
        if len(keys) == 0:
            return np.empty(0, np.int64)
        cols = self._columns(keys)
        rows = self.table
        est = rows[0].take(cols[0])
        for r in range(1, self.depth):
            np.minimum(est, rows[r].take(cols[r]), out=est)
        return est.astype(np.int64)

    def scale(self, factor: float, rng: np.random.Generator) -> None:
        """Multiply every counter by ``factor`` (decay), rounding stochastically.

        Unbiased: E[new] = factor * old. Rows are processed one at a time to keep
        the temporary arrays at one row's size.
        """
        for r in range(self.depth):
            row = self.table[r]
            scaled = row * np.float32(factor)
            scaled += rng.random(len(row), dtype=np.float32)
            np.floor(scaled, out=scaled)
            row[:] = scaled.astype(np.uint32)
        self.total = int(self.total * factor)

    def merge(self, other: CountMinSketch) -> None:
        """Add another sketch of the same shape and seed (shards)."""
        if (other.width, other.depth, other.seed) != (self.width, self.depth, self.seed):
            raise ValueError("sketches differ in width, depth or seed")
        s = self.table.astype(np.uint64) + other.table
        self.table = np.minimum(s, _U32_MAX).astype(np.uint32)
        self.total += other.total

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "width": self.width, "depth": self.depth,
                "seed": self.seed, "total": self.total, "table": self.table}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CountMinSketch:
        sk = cls(int(st["width"]), int(st["depth"]), int(st["seed"]),
                 table=np.asarray(st["table"], dtype=np.uint32).reshape(st["depth"],
                                                                          st["width"]))
        sk.total = int(st["total"])
        return sk


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

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        if len(keys) == 0:
            return
        uniq, c = aggregate(keys, counts)
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


Counter = CountMinSketch | ExactCounter


def counter_from_state(st: dict[str, Any]) -> Counter:
    """Rebuild whichever counter a state dict describes."""
    return (CountMinSketch if st["kind"] == "sketch" else ExactCounter).from_state(st)
