"""The candidate table: every multi-unit piece the cutter produced, bounded.

Sketches cannot list their keys, so pieces are tracked here with their text.
A piece is admitted the first time it is seen; when the table is full the
entries with the lowest recent count are evicted in a block (1/16 of the
capacity at a time, so eviction is amortised O(1) per admission). A word that
matters is frequent and is not evicted; an evicted piece that returns starts
counting again from its return.

Lookups go through a sorted key array (``np.searchsorted`` on the batch's
distinct piece keys, O(m log K)); slots are stable indices into the per-slot
arrays, into the texts, the example pool and the neighbour table.

Per slot, here: key, total (all-time count), recent (count decayed with the
half-life), slow (count decayed with 16 half-lives, the long-run baseline of the
trend test), first_seen and last_seen (stream seconds), a used flag, its place in
the sorted key index and in the free-slot stack (65 bytes). Its text is kept by a
:class:`~streamer.core.texts.TextStore` (``text``), its example contexts by an
:class:`~streamer.core.examples.ExamplePool` (``pool``); each states its own cost.

Memory is flat: everything is a numpy array allocated *and touched* at
construction, so the resident size is paid at start and does not grow as the
table fills (docs/decisions.md, "Flat memory"). What a slot costs in all:
``engine_config.SLOT_RESIDENT_BYTES`` (and what it is budgeted at, peaks included:
``engine_config.SLOT_BYTES``). ``state()`` holds arrays and scalars only; texts and
examples are stored packed, without their zero padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.core.examples import EXAMPLES, POOL_SHARE, ExamplePool
from streamer.core.rows import resident
from streamer.core.texts import TextStore


class CandidateTable:
    """Bounded table of tracked pieces (see module docstring)."""

    def __init__(self, capacity: int, example_pool: int | None = None) -> None:
        self.capacity = capacity
        self.keys = resident(capacity, np.uint64)
        self.total = resident(capacity, np.int64)
        self.recent = resident(capacity, np.float64)
        self.slow = resident(capacity, np.float64)
        self.first_seen = resident(capacity, np.float64)
        self.last_seen = resident(capacity, np.float64)
        self.used = resident(capacity, bool)
        self.text = TextStore(capacity)
        self._sorted_keys_buf = resident(capacity, np.uint64)
        self._sorted_slots_buf = resident(capacity, np.int32)
        self._n_sorted = 0
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int32)  # a stack: pop the end
        self._n_free = capacity
        self.evicted = 0
        self.pool = ExamplePool(capacity,
                                capacity // POOL_SHARE if example_pool is None else example_pool)

    def ensure_pool(self, entries: int) -> None:
        """Give a table without an example pool (one made for discover) a pool."""
        if self.pool.entries == 0 and entries > 0:
            self.pool = ExamplePool(self.capacity, entries)

    def __len__(self) -> int:
        return self._n_sorted

    @property
    def _sorted_keys(self) -> np.ndarray:
        return self._sorted_keys_buf[:self._n_sorted]

    @property
    def _sorted_slots(self) -> np.ndarray:
        return self._sorted_slots_buf[:self._n_sorted]

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.total, self.recent, self.slow, self.first_seen,
                  self.last_seen, self.used, self._sorted_keys_buf, self._sorted_slots_buf,
                  self._free)
        return int(sum(a.nbytes for a in arrays)) + self.text.nbytes + self.pool.nbytes

    # ------------------------------------------------------------------ slots

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where not tracked."""
        sk = self._sorted_keys
        if len(sk) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sk, keys), len(sk) - 1)
        return np.where(sk[pos] == keys, self._sorted_slots[pos].astype(np.int64), -1)

    def admit(self, keys: np.ndarray, texts: list[str], now: float,
              protect: np.ndarray | None = None) -> np.ndarray:
        """Add new distinct keys (not yet tracked); returns their slots.

        When the table is full, evicts the lowest-recent entries not in ``protect``.
        If more keys arrive than the table can ever hold, the excess is dropped
        (slot -1), and so is a long text the overflow has no room for.
        """
        m = len(keys)
        slots = np.full(m, -1, dtype=np.int64)
        if m == 0:
            return slots
        if m > self._n_free:
            self._evict(m - self._n_free, protect)
        data = [t.encode("utf-8", "surrogatepass") for t in texts]
        idx = np.flatnonzero(self.text.room_for(data))
        idx = idx[:min(len(idx), self._n_free)]
        take = len(idx)
        if take:
            s = self._free[self._n_free - take:self._n_free][::-1].astype(np.int64)
            self._n_free -= take
            slots[idx] = s
            self.keys[s] = keys[idx]
            self.total[s] = 0
            self.recent[s] = 0.0
            self.slow[s] = 0.0
            self.first_seen[s] = now
            self.last_seen[s] = now
            self.used[s] = True
            self.pool.sampled[s] = False
            self.text.store(s, [data[i] for i in idx.tolist()])
            self._index_insert(keys[idx], s)
        return slots

    def _index_insert(self, keys: np.ndarray, slots: np.ndarray) -> None:
        order = np.argsort(keys)
        keys, slots = keys[order], slots[order]
        pos = np.searchsorted(self._sorted_keys, keys)
        merged_keys = np.insert(self._sorted_keys, pos, keys)
        merged_slots = np.insert(self._sorted_slots, pos, slots.astype(np.int32))
        n = len(merged_keys)
        self._sorted_keys_buf[:n] = merged_keys
        self._sorted_slots_buf[:n] = merged_slots
        self._n_sorted = n

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
        slots = np.asarray(slots, dtype=np.int64)
        keep = ~np.isin(self._sorted_slots, slots)
        n = int(keep.sum())
        self._sorted_keys_buf[:n] = self._sorted_keys[keep]
        self._sorted_slots_buf[:n] = self._sorted_slots[keep]
        self._n_sorted = n
        self.used[slots] = False
        self.pool.sampled[slots] = False
        self.text.forget(slots)
        self.pool.release(slots)
        self._free[self._n_free:self._n_free + len(slots)] = slots
        self._n_free += len(slots)
        self._on_remove(slots)

    def _on_remove(self, slots: np.ndarray) -> None:
        """Hook for owners of per-slot data (set by the engine)."""

    # ------------------------------------------------------------------ texts, examples

    def text_of(self, slot: int) -> str:
        """The text of a tracked slot ("" for a free one)."""
        return self.text.text_of(slot)

    def texts(self, slots: np.ndarray) -> list[str]:
        """The texts of many slots, decoded in one call."""
        return self.text.texts(slots)

    def examples_of(self, slot: int) -> list[str]:
        """The slot's example contexts, oldest first."""
        return self.pool.of(slot)

    def newest_examples(self, slots: np.ndarray) -> list[str]:
        """The newest example context of each slot ("" where none)."""
        return self.pool.newest(slots)

    def add_examples(self, slots: np.ndarray, contexts: list[str], keep: int = EXAMPLES,
                     protect: np.ndarray | None = None) -> None:
        """Remember a context for each of many distinct slots, keeping the newest
        ``keep``; a context already held by its slot is not added again. ``protect``:
        slots whose examples a full pool spares while it can (the listed words); the
        others give way lowest recent count first."""
        self.pool.add(slots, contexts, keep, protect, self.recent)

    # ------------------------------------------------------------------ decay, state

    def decay(self, fast: float, slow: float) -> None:
        """Multiply recent counts by ``fast`` and baseline counts by ``slow``."""
        self.recent *= fast
        self.slow *= slow

    def state(self) -> dict[str, Any]:
        """Arrays and scalars only. Texts and examples are stored packed (the bytes of
        each in a row, without the zero padding: ~5 MB instead of 20 MB of texts at the
        default capacity); from_state unpacks them."""
        text = self.text.state()
        return {
            "capacity": self.capacity, "keys": self.keys, "total": self.total,
            "recent": self.recent, "slow": self.slow, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "used": self.used,
            "text": text["text"], "overflow": text["overflow"],
            "long_dropped": text["long_dropped"], "evicted": self.evicted,
            # the free-slot stack in its order, so a restored table reuses slots
            # exactly as the live one would (eviction ties, and so which pieces
            # stay tracked, depend on it)
            "free": self._free[:self._n_free].copy(),
            # which words hold examples depends on which were listed when: timing
            "examples": self.pool.state(),
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CandidateTable:
        ex = st["examples"]
        t = cls(int(st["capacity"]), example_pool=len(ex["owner"]))
        for name in ("keys", "total", "recent", "slow", "first_seen", "last_seen", "used"):
            arr = getattr(t, name)
            arr[...] = np.asarray(st[name], dtype=arr.dtype).reshape(arr.shape)
        t.text.load(st)
        t.evicted = int(st.get("evicted", 0))
        free = np.asarray(st["free"], dtype=np.int32)
        t._free[:len(free)] = free
        t._n_free = len(free)
        t.pool.load(ex)
        slots = np.flatnonzero(t.used)
        t._n_sorted = 0
        t._index_insert(t.keys[slots], slots)
        return t
