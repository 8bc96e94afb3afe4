"""Neighbour tables: who stands left and right of each tracked candidate.

Each candidate slot has B buckets per side (uint16). A neighbour unit u falls in
bucket mix(u) mod B; a clause edge does not constrain the word, so edge
occurrences are spread evenly over the buckets. The entropy of the bucketed
distribution,

    H = - sum_b p_b ln p_b          [nats],  p_b = n_b / sum(n)

is a lower bound of the entropy of the true neighbour distribution (merging
outcomes never raises entropy) and saturates at ln B (3.47 nats for B = 32): it
separates fragments (one side nearly fixed, H near 0) from words (H well above
1) at a fixed cost of 2 * B * 2 bytes a candidate, and tables of shards add.
Entropy is scale-invariant, so a row about to overflow is halved.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from streamer.core.ngrams import mix
from streamer.core.sketch import aggregate

BUCKETS = 32
_MAX = 65535


@lru_cache(maxsize=1)
def _n_ln_n() -> np.ndarray:
    """n ln n for every uint16 count (0 for 0)."""
    n = np.arange(_MAX + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, n * np.log(n), 0.0)


def entropy(rows: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
    """Entropy (nats) of each row of counts; 0 for an empty row.

    With T the row total, H = -sum p ln p = ln T - (sum n ln n) / T, the n ln n of
    uint16 counts taken from a table. Computed ``chunk`` rows at a time so the float
    temporaries stay a few MB whatever the number of candidates.
    """
    table = _n_ln_n()
    out = np.zeros(len(rows))
    for a in range(0, len(rows), chunk):
        r = rows[a:a + chunk]
        tot = r.sum(axis=1, dtype=np.int64).astype(np.float64)
        s = table[r].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.log(tot) - s / tot
        out[a:a + chunk] = np.where(tot > 0, np.maximum(h, 0.0), 0.0)
    return out


class NeighbourTable:
    """Bucketed left/right neighbour counts for ``capacity`` candidate slots."""

    def __init__(self, capacity: int, buckets: int = BUCKETS) -> None:
        self.buckets = buckets
        self.left = np.zeros((capacity, buckets), dtype=np.uint16)
        self.right = np.zeros((capacity, buckets), dtype=np.uint16)
        # touch every page now: np.zeros maps them lazily, and the resident size would
        # grow as candidate slots fill
        self.left.fill(0)
        self.right.fill(0)

    @property
    def nbytes(self) -> int:
        return int(self.left.nbytes + self.right.nbytes)

    def _buckets(self, units: np.ndarray, salt: np.ndarray) -> np.ndarray:
        b = mix(units)
        if self.buckets & (self.buckets - 1) == 0:  # a power of two: & is % without a divide
            b &= np.uint64(self.buckets - 1)
        else:
            b %= np.uint64(self.buckets)
        b = b.view(np.int64)  # below the bucket count: the same values
        edge = units < 0
        b[edge] = salt[edge] % self.buckets
        return b

    def add(self, slots: np.ndarray, left: np.ndarray, right: np.ndarray,
            salt: np.ndarray) -> None:
        """Count one occurrence per entry: slot, left unit, right unit (-1 = edge).

        ``salt`` (e.g. the occurrence's position) spreads edges over buckets.
        """
        for table, units in ((self.left, left), (self.right, right)):
            flat_keys = slots * self.buckets + self._buckets(units, salt)
            uniq, cnt = aggregate(flat_keys.astype(np.uint64))
            uniq = uniq.astype(np.int64)
            flat = table.reshape(-1)
            cur = flat[uniq].astype(np.int64) + cnt
            over = cur > _MAX
            if over.any():
                for row in np.unique(uniq[over] // self.buckets):
                    lo = row * self.buckets
                    sel = (uniq >= lo) & (uniq < lo + self.buckets)
                    vals = flat[lo:lo + self.buckets].astype(np.int64)
                    vals[uniq[sel] - lo] = cur[sel]
                    while vals.max() > _MAX:
                        vals = (vals + 1) // 2
                    flat[lo:lo + self.buckets] = vals
                    cur[sel] = vals[uniq[sel] - lo]
            flat[uniq] = cur.astype(np.uint16)

    def clear(self, slots: np.ndarray) -> None:
        self.left[slots] = 0
        self.right[slots] = 0

    def observations(self, slots: np.ndarray, side: str) -> np.ndarray:
        """Occurrences counted on one side (fewer than seen after a halving)."""
        return getattr(self, side)[slots].sum(axis=1, dtype=np.int64)

    def entropies(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H_left, H_right) in nats for the given slots."""
        return entropy(self.left[slots]), entropy(self.right[slots])

    def state(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "left": self.left, "right": self.right}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> NeighbourTable:
        t = cls(0, int(st["buckets"]))
        t.left = np.array(st["left"], dtype=np.uint16).reshape(-1, t.buckets)
        t.right = np.array(st["right"], dtype=np.uint16).reshape(-1, t.buckets)
        return t
