"""The engine's registry of once-listed words: each word's first_seen when it was first
listed, so that a word evicted and seen again is not called new.

Memory: 16 bytes an entry (a uint64 key and a float64 time), ``capacity`` entries (the
engine gives it the candidate capacity), allocated and touched at construction.
Lookups are O(m log n) (``np.searchsorted`` on the sorted keys); an addition is
O(n + m log m), and forgetting half when full keeps it amortised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.core.rows import resident


class ListedRegistry:
    """Words ever listed, by 64-bit key, with the first_seen recorded when each was
    first listed (a word is `new` when not listed before it was first seen).

    Two preallocated arrays, sorted by key, ``capacity`` entries (the engine gives it
    the candidate capacity); when an addition would overflow them, the half with the
    earliest times (first seen longest ago) is forgotten.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 2)
        self._keys = resident(self.capacity, np.uint64)
        self._times = resident(self.capacity, np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._times.nbytes)

    @property
    def keys(self) -> np.ndarray:
        return self._keys[:self._n]

    @property
    def times(self) -> np.ndarray:
        return self._times[:self._n]

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Time recorded for each key, NaN where none."""
        out = np.full(len(keys), np.nan)
        if self._n == 0 or len(keys) == 0:
            return out
        pos = np.minimum(np.searchsorted(self.keys, keys), self._n - 1)
        hit = self.keys[pos] == keys
        out[hit] = self.times[pos[hit]]
        return out

    def add(self, keys: np.ndarray, times: np.ndarray) -> None:
        """Record keys (with their times); a key already held keeps the earlier time.
        When the arrays would overflow, the half with the earliest times is forgotten."""
        keys = np.asarray(keys, dtype=np.uint64)
        times = np.asarray(times, dtype=np.float64)
        if len(keys) == 0:
            return
        order = np.lexsort((times, keys))  # by key, earliest time first
        keys, times = keys[order], times[order]
        first = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        keys, times = keys[first], times[first]
        held = ~np.isnan(self.get(keys))
        if held.any():
            pos = np.searchsorted(self.keys, keys[held])
            self._times[pos] = np.minimum(self._times[pos], times[held])
            keys, times = keys[~held], times[~held]
        if len(keys) == 0:
            return
        pos = np.searchsorted(self.keys, keys)
        k = np.insert(self.keys, pos, keys)
        t = np.insert(self.times, pos, times)
        if len(k) > self.capacity:
            newest = np.sort(np.argsort(t, kind="stable")[len(t) - self.capacity // 2:])
            k, t = k[newest], t[newest]
        self._n = len(k)
        self._keys[:self._n] = k
        self._times[:self._n] = t

    def merge(self, other: ListedRegistry) -> None:
        self.add(other.keys, other.times)

    def state(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "keys": self.keys.copy(),
                "times": self.times.copy()}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> ListedRegistry:
        r = cls(int(st["capacity"]))
        keys = np.asarray(st["keys"], np.uint64)
        r._n = len(keys)
        r._keys[:r._n] = keys
        r._times[:r._n] = np.asarray(st["times"], np.float64)
        return r
