"""The candidate table: every multi-unit piece the cutter produced, bounded.

Sketches cannot list their keys, so pieces are tracked here with their text.
A piece is admitted the first time it is seen; when the table is full the
entries with the lowest recent count are evicted in a block (1/16 of the
capacity at a time, so eviction is amortised O(1) per admission). A word that
matters is frequent and is not evicted; an evicted piece that returns starts
counting again from its return.

Lookups go through a sorted key array (``np.searchsorted`` on the batch's
distinct piece keys, O(m log K)); slots are stable indices into the per-slot
arrays and into the neighbour table.

Per slot: key, text, total (all-time count), recent (count decayed with the
half-life), slow (count decayed with 16 half-lives, the baseline for emergence),
first_seen and last_seen (stream seconds), and up to ``EXAMPLES`` example
contexts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXAMPLES = 3


class CandidateTable:
    """Bounded table of tracked pieces (see module docstring)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.total = np.zeros(capacity, dtype=np.int64)
        self.recent = np.zeros(capacity, dtype=np.float64)
        self.slow = np.zeros(capacity, dtype=np.float64)
        self.first_seen = np.zeros(capacity, dtype=np.float64)
        self.last_seen = np.zeros(capacity, dtype=np.float64)
        self.used = np.zeros(capacity, dtype=bool)
        self.has_example = np.zeros(capacity, dtype=bool)
        self.text: list[str] = [""] * capacity
        self.examples: list[list[str] | None] = [None] * capacity
        self._sorted_keys = np.empty(0, np.uint64)
        self._sorted_slots = np.empty(0, np.int64)
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack: pop the end
        self._n_free = capacity
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sorted_keys)

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.total, self.recent, self.slow, self.first_seen,
                  self.last_seen, self.used)
        # Python strings: ~ 80 bytes of object overhead plus 4 bytes a character
        return int(sum(a.nbytes for a in arrays)) + 16 * self.capacity + 100 * len(self)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where not tracked."""
        sk = self._sorted_keys
        if len(sk) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sk, keys), len(sk) - 1)
        return np.where(sk[pos] == keys, self._sorted_slots[pos], -1)

    def admit(self, keys: np.ndarray, texts: list[str], now: float,
              protect: np.ndarray | None = None) -> np.ndarray:
        """Add new distinct keys (not yet tracked); returns their slots.

        When the table is full, evicts the lowest-recent entries not in ``protect``.
        If more keys arrive than the table can ever hold, the excess is dropped
        (slot -1).
        """
        m = len(keys)
        if m > self._n_free:
            self._evict(m - self._n_free, protect)
        take = min(m, self._n_free)
        slots = np.full(m, -1, dtype=np.int64)
        if take:
            slots[:take] = self._free[self._n_free - take:self._n_free][::-1]
            self._n_free -= take
            s = slots[:take]
            self.keys[s] = keys[:take]
            self.total[s] = 0
            self.recent[s] = 0.0
            self.slow[s] = 0.0
            self.first_seen[s] = now
            self.last_seen[s] = now
            self.used[s] = True
            self.has_example[s] = False
            for slot, t in zip(s.tolist(), texts[:take], strict=True):
                self.text[slot] = t
                self.examples[slot] = None
            self._index_insert(keys[:take], s)
        return slots

    def _index_insert(self, keys: np.ndarray, slots: np.ndarray) -> None:
        order = np.argsort(keys)
        keys, slots = keys[order], slots[order]
        pos = np.searchsorted(self._sorted_keys, keys)
        self._sorted_keys = np.insert(self._sorted_keys, pos, keys)
        self._sorted_slots = np.insert(self._sorted_slots, pos, slots)

    def _evict(self, need: int, protect: np.ndarray | None) -> None:
        mask = self.used.copy()
        if protect is not None and len(protect):
            mask[protect] = False  # O(capacity); setdiff1d would sort
        used = np.flatnonzero(mask)
        if len(used) == 0:
            return
        k = min(len(used), max(need, self.capacity // 16))
        victims = used[np.argpartition(self.recent[used], k - 1)[:k]] if k < len(used) \
            else used
        self.remove(victims)
        self.evicted += len(victims)

    def remove(self, slots: np.ndarray) -> None:
        """Forget these slots (their neighbour rows must be cleared by the owner)."""
        if len(slots) == 0:
            return
        gone = np.isin(self._sorted_slots, slots)
        self._sorted_keys = self._sorted_keys[~gone]
        self._sorted_slots = self._sorted_slots[~gone]
        self.used[slots] = False
        self.has_example[slots] = False
        for s in slots.tolist():
            self.text[s] = ""
            self.examples[s] = None
        self._free[self._n_free:self._n_free + len(slots)] = slots
        self._n_free += len(slots)
        self._on_remove(slots)

    def _on_remove(self, slots: np.ndarray) -> None:
        """Hook for owners of per-slot data (set by the engine)."""

    def add_example(self, slot: int, context: str, keep: int = EXAMPLES) -> None:
        """Remember a context for the slot, keeping the newest ``keep``."""
        ex = self.examples[slot]
        if ex is None:
            ex = self.examples[slot] = []
        if context and context not in ex:
            ex.append(context)
            del ex[:-keep]
            self.has_example[slot] = True

    def decay(self, fast: float, slow: float) -> None:
        """Multiply recent counts by ``fast`` and baseline counts by ``slow``."""
        self.recent *= fast
        self.slow *= slow

    def state(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity, "keys": self.keys, "total": self.total,
            "recent": self.recent, "slow": self.slow, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "used": self.used, "text": self.text,
            "examples": self.examples, "evicted": self.evicted,
            # the free-slot stack in its order, so a restored table reuses slots
            # exactly as the live one would (eviction ties, and so which pieces
            # stay tracked, depend on it)
            "free": self._free[:self._n_free].copy(),
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CandidateTable:
        t = cls(int(st["capacity"]))
        for name in ("keys", "total", "recent", "slow", "first_seen", "last_seen", "used"):
            arr = getattr(t, name)
            arr[:] = np.asarray(st[name], dtype=arr.dtype)
        t.text = list(st["text"])
        t.examples = [list(e) if e else None for e in st["examples"]]
        t.has_example = np.array([bool(e) for e in t.examples], dtype=bool)
        t.evicted = int(st.get("evicted", 0))
        slots = np.flatnonzero(t.used)
        free = np.asarray(st["free"], dtype=np.int64) if "free" in st else \
            np.flatnonzero(~t.used)[::-1]
        t._free[:len(free)] = free
        t._n_free = len(free)
        t._sorted_keys = np.empty(0, np.uint64)
        t._sorted_slots = np.empty(0, np.int64)
        t._index_insert(t.keys[slots], slots)
        return t
