"""Example contexts of the candidate table's slots, in a bounded pool.

The pool has ``entries`` entries (the engine gives it capacity // ``POOL_SHARE``), each
``EXAMPLES`` contexts of at most ``EXAMPLE_BYTES`` (128) bytes of UTF-8, oldest first
(longer contexts are cut at a character boundary; measured contexts are 74 bytes at the
median and 133 at most, 0.0008% longer than 128). A slot takes an entry with its first
example (``entry``: slot -> entry, -1 none) and gives it back when evicted. When the
pool is full, the 1/16 of its entries whose owners have the lowest recent count are
reclaimed (amortised O(1) per entry taken, as the table's eviction), sparing the slots
the caller protects (the listed words) while others remain. ``sampled`` remembers that a
slot was given a first example, so a slot whose entry was reclaimed does not ask again
until it is listed (the engine adds one context per batch for listed words).

Memory per slot, all allocated and touched at construction: 1 byte (``sampled``) and
4 (``entry``), and its share of the pool: an entry is 3 x 128 bytes of contexts, 3
lengths, an owner and a place in the free stack (395 bytes), 49 a slot at 1 entry per
8 slots. A table made for discover has a pool of no entries.

Complexity: ``add`` for n slots is O(n * EXAMPLES * EXAMPLE_BYTES) numpy work, plus an
O(capacity) reclaim once every pool/16 entries taken; ``newest`` decodes n contexts in
one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.core.rows import decode_rows, fill_rows, fit_utf8, pack_rows, resident, unpack_rows

EXAMPLES = 3
#: UTF-8 bytes of one example context (42 Han characters)
EXAMPLE_BYTES = 128
#: example pool entries = capacity // POOL_SHARE
POOL_SHARE = 8


class ExamplePool:
    """Up to ``EXAMPLES`` contexts for each of ``capacity`` slots, in ``entries``
    shared entries (see module docstring)."""

    def __init__(self, capacity: int, entries: int) -> None:
        self.capacity = capacity
        self.sampled = resident(capacity, bool)
        self.entry = np.full(capacity, -1, np.int32)
        self.example_bytes = resident((entries, EXAMPLES, EXAMPLE_BYTES), np.uint8)
        self.example_len = resident((entries, EXAMPLES), np.uint8)
        self.owner = np.full(entries, -1, np.int32)
        self._free = np.arange(entries - 1, -1, -1, dtype=np.int32)  # a stack: pop the end
        self._n_free = entries

    @property
    def entries(self) -> int:
        return len(self.owner)

    @property
    def nbytes(self) -> int:
        arrays = (self.sampled, self.entry, self.example_bytes, self.example_len,
                  self.owner, self._free)
        return int(sum(a.nbytes for a in arrays))

    def has(self, slots: np.ndarray) -> np.ndarray:
        """Whether each slot holds example contexts now."""
        return self.entry[slots] >= 0

    def of(self, slot: int) -> list[str]:
        """The slot's example contexts, oldest first."""
        e = int(self.entry[slot])
        if e < 0:
            return []
        lens = self.example_len[e]
        k = int((lens > 0).sum())
        return decode_rows(self.example_bytes[e, :k], lens[:k])

    def newest(self, slots: np.ndarray) -> list[str]:
        """The newest example context of each slot ("" where none)."""
        slots = np.asarray(slots, dtype=np.int64)
        entries = self.entry[slots].astype(np.int64)
        has = entries >= 0
        rows = np.zeros((len(slots), EXAMPLE_BYTES), np.uint8)
        lens = np.zeros(len(slots), np.int64)
        if has.any():
            e = entries[has]
            last = np.maximum((self.example_len[e] > 0).sum(axis=1) - 1, 0)
            rows[has] = self.example_bytes[e, last]
            lens[has] = self.example_len[e, last]
        return decode_rows(rows, lens)

    def add(self, slots: np.ndarray, contexts: list[str], keep: int,
            protect: np.ndarray | None, recent: np.ndarray) -> None:
        """Remember a context for each of many distinct slots, keeping the newest
        ``keep``. A context already held by its slot is not added again. A full pool
        reclaims the entries of the owners lowest in ``recent`` (per slot), sparing
        ``protect`` (the listed words) while it can."""
        slots = np.asarray(slots, dtype=np.int64)
        keep = min(keep, EXAMPLES)
        data = [fit_utf8(c.replace("\0", " "), EXAMPLE_BYTES) for c in contexts]
        given = np.array([len(d) > 0 for d in data], dtype=bool)
        if keep < 1 or not given.any():
            return
        slots = slots[given]
        data = [d for d, g in zip(data, given.tolist(), strict=True) if g]
        self.sampled[slots] = True
        if self.entries == 0:
            return
        entries = self.entry[slots].astype(np.int64)
        lacking = np.flatnonzero(entries < 0)
        if len(lacking):
            entries[lacking] = self._take(slots[lacking], slots, protect, recent)
        have = entries >= 0
        slots, entries = slots[have], entries[have]
        data = [d for d, h in zip(data, have.tolist(), strict=True) if h]
        if len(slots) == 0:
            return
        lens = np.fromiter(map(len, data), np.int64, len(data))
        new = np.zeros((len(data), EXAMPLE_BYTES), np.uint8)
        fill_rows(new, np.arange(len(data)), data, lens)
        # already held: same length and same (zero-padded) bytes
        held = self.example_bytes[entries]
        same = (self.example_len[entries] == lens[:, None]) & \
            (held == new[:, None, :]).all(axis=2)
        fresh = ~same.any(axis=1)
        entries, new, lens = entries[fresh], new[fresh], lens[fresh]
        count = (self.example_len[entries] > 0).sum(axis=1)
        drop = np.maximum(count + 1 - keep, 0)  # oldest contexts that make way
        for d in np.unique(drop[drop > 0]).tolist():
            rows = entries[drop == d]
            k = keep - 1
            self.example_bytes[rows, :k] = self.example_bytes[rows, d:d + k]
            self.example_len[rows, :k] = self.example_len[rows, d:d + k]
            self.example_bytes[rows, k:] = 0
            self.example_len[rows, k:] = 0
            count[drop == d] = k
        self.example_bytes[entries, count] = new
        self.example_len[entries, count] = lens

    def _take(self, slots: np.ndarray, asking: np.ndarray, protect: np.ndarray | None,
              recent: np.ndarray) -> np.ndarray:
        """Pool entries for these slots (-1 where the pool cannot give one)."""
        m = len(slots)
        if m > self._n_free:
            self._reclaim(m - self._n_free, asking, protect, recent)
        take = min(m, self._n_free)
        out = np.full(m, -1, np.int64)
        if take:
            e = self._free[self._n_free - take:self._n_free][::-1].astype(np.int64)
            self._n_free -= take
            out[:take] = e
            self.owner[e] = slots[:take]
            self.entry[slots[:take]] = e
        return out

    def _reclaim(self, need: int, asking: np.ndarray, protect: np.ndarray | None,
                 recent: np.ndarray) -> None:
        """Free at least ``need`` pool entries (a block of 1/16 of the pool at a time):
        those of the lowest-recent owners, owners in ``protect`` last, ``asking`` never."""
        held = np.flatnonzero(self.owner >= 0)
        owners = self.owner[held].astype(np.int64)
        spare = np.zeros(self.capacity, dtype=bool)
        spare[asking] = True
        ok = ~spare[owners]
        held, owners = held[ok], owners[ok]
        if len(held) == 0:
            return
        k = min(len(held), max(need, self.entries // 16))
        rank = recent[owners].copy()
        if protect is not None and len(protect):
            listed = np.zeros(self.capacity, dtype=bool)
            listed[protect] = True
            rank[listed[owners]] = np.inf  # reclaimed only once no other owner is left
        victims = owners[np.argpartition(rank, k - 1)[:k]] if k < len(owners) else owners
        self.release(victims)

    def release(self, slots: np.ndarray) -> None:
        """Give the slots' pool entries back (the slots keep ``sampled``)."""
        if self.entries == 0:
            return
        e = self.entry[slots]
        e = e[e >= 0].astype(np.int64)
        if len(e) == 0:
            return
        self.entry[self.owner[e]] = -1
        self.owner[e] = -1
        self.example_bytes[e] = 0
        self.example_len[e] = 0
        self._free[self._n_free:self._n_free + len(e)] = e
        self._n_free += len(e)

    def state(self) -> dict[str, Any]:
        """The table state's ``examples`` entry: contexts packed without their padding,
        the free stack in its order."""
        return {"sampled": self.sampled, "entry": self.entry, "owner": self.owner,
                "lengths": self.example_len,
                "bytes": pack_rows(self.example_bytes, self.example_len),
                "free": self._free[:self._n_free].copy()}

    def load(self, st: dict[str, Any]) -> None:
        """Fill a new pool (of ``len(st["owner"])`` entries) from a table state's
        ``examples`` entry."""
        for name, key in (("sampled", "sampled"), ("entry", "entry"),
                          ("owner", "owner"), ("example_len", "lengths")):
            arr = getattr(self, name)
            arr[...] = np.asarray(st[key], dtype=arr.dtype).reshape(arr.shape)
        unpack_rows(st["bytes"], self.example_len, self.example_bytes)
        free = np.asarray(st["free"], dtype=np.int32)
        self._free[:len(free)] = free
        self._n_free = len(free)
