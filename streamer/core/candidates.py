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
half-life), slow (count decayed with 16 half-lives, the long-run baseline of the trend test),
first_seen and last_seen (stream seconds), and up to ``EXAMPLES`` example
contexts.

Memory is flat: everything is a numpy array allocated *and touched* at
construction, so the resident size is paid at start and does not grow as the
table fills (Python strings and lists per slot did grow, and freed small objects
stayed in the allocator's arenas). What a slot costs: ``engine_config.SLOT_RESIDENT_BYTES``
(and what it is budgeted at, peaks included: ``engine_config.SLOT_BYTES``).

- Text: the UTF-8 bytes of each piece, inline in ``TEXT_BYTES`` (48) bytes a
  slot, zero-padded, with the length in ``text_len``. A longer text (over 16 Han
  characters, "紧密团结在以江泽民同志为核心的党中央": 0.2% of the tracked pieces
  after 50 MiB of news and reviews, 1.7% when the same text repeats for 300 MiB)
  lives in an overflow dict, slot -> str, whose size is bounded: at most
  ``OVERFLOW_BYTES_PER_SLOT`` bytes a slot in all (1.9 MB at the default
  capacity; 320,000 pieces of the repeated stream needed 1.2 MB), each text costed at its UTF-8
  length plus ``OVERFLOW_OVERHEAD``. A long piece that does not fit is not
  tracked (``long_dropped`` counts them): pieces that long are sentences
  repeated verbatim, not words. ``text_of`` / ``texts`` give back str.
- Examples: a pool of ``capacity // POOL_SHARE`` entries, each ``EXAMPLES``
  contexts of at most ``EXAMPLE_BYTES`` (128) bytes of UTF-8, oldest first
  (longer contexts are cut at a character boundary; measured contexts are 74
  bytes at the median and 133 at most, 0.0008% longer than 128). A slot takes an
  entry with its first example (``example_entry``: slot -> entry, -1 none) and
  gives it back when evicted. When the pool is full, the 1/16 of its entries
  whose owners have the lowest recent count are reclaimed (amortised, as
  eviction), sparing the slots the caller protects (the listed words) while
  others remain. ``sampled`` remembers that a slot was given a first example, so
  a slot whose entry was reclaimed does not ask again until it is listed (the
  engine adds one context per batch for listed words).
- ``state()`` holds arrays and scalars only; texts and examples are stored
  packed, without their zero padding.

``ListedRegistry`` (below) is the engine's registry of once-listed words, in two
preallocated arrays keyed by the same 64-bit keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXAMPLES = 3
#: UTF-8 bytes of a text stored inline (16 Han characters, 48 ASCII letters)
TEXT_BYTES = 48
#: UTF-8 bytes of one example context (42 Han characters)
EXAMPLE_BYTES = 128
#: example pool entries = capacity // POOL_SHARE
POOL_SHARE = 8
#: the overflow dict of long texts holds at most this many bytes a slot in all
OVERFLOW_BYTES_PER_SLOT = 8
#: bytes a long text is costed at beyond its UTF-8 length (str object, dict entry)
OVERFLOW_OVERHEAD = 160
_LONG = 255  # text_len of a slot whose text is in the overflow dict
_NL = 10


def _resident(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed array whose pages are all touched now (np.zeros maps them lazily,
    so the resident size would grow as the table fills)."""
    a = np.empty(shape, dtype=dtype)
    a.fill(0)
    return a


def fit_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes at a character boundary."""
    b = text.encode("utf-8", "surrogatepass")
    if len(b) <= limit:
        return b
    cut = limit
    while cut > 0 and (b[cut] & 0xC0) == 0x80:  # b[cut] continues the previous character
        cut -= 1
    return b[:cut]


def decode_rows(rows: np.ndarray, lens: np.ndarray) -> list[str]:
    """The UTF-8 strings in the first ``lens[i]`` bytes of each row of ``rows``
    (zero-padded), decoded in one call: rows are joined with a newline, which no
    stored text contains."""
    n = len(rows)
    if n == 0:
        return []
    width = rows.shape[1]
    lens = lens.astype(np.int64)
    buf = np.zeros((n, width + 1), np.uint8)
    buf[:, :width] = rows
    buf[np.arange(n), lens] = _NL
    flat = buf[np.arange(width + 1) <= lens[:, None]].tobytes()
    out = flat.decode("utf-8", "surrogatepass").split("\n")
    if len(out) == n + 1:
        return out[:-1]
    return [bytes(r[:k]).decode("utf-8", "surrogatepass")  # a newline inside: row by row
            for r, k in zip(rows, lens.tolist(), strict=True)]


class CandidateTable:
    """Bounded table of tracked pieces (see module docstring)."""

    def __init__(self, capacity: int, example_pool: int | None = None) -> None:
        self.capacity = capacity
        self.keys = _resident(capacity, np.uint64)
        self.total = _resident(capacity, np.int64)
        self.recent = _resident(capacity, np.float64)
        self.slow = _resident(capacity, np.float64)
        self.first_seen = _resident(capacity, np.float64)
        self.last_seen = _resident(capacity, np.float64)
        self.used = _resident(capacity, bool)
        self.text_bytes = _resident((capacity, TEXT_BYTES), np.uint8)
        self.text_len = _resident(capacity, np.uint8)
        self.overflow: dict[int, str] = {}
        self._overflow_cost = 0
        self.long_dropped = 0
        self._sorted_keys_buf = _resident(capacity, np.uint64)
        self._sorted_slots_buf = _resident(capacity, np.int32)
        self._n_sorted = 0
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int32)  # a stack: pop the end
        self._n_free = capacity
        self.evicted = 0
        self._init_pool(capacity // POOL_SHARE if example_pool is None else example_pool)

    def _init_pool(self, entries: int) -> None:
        self.sampled = _resident(self.capacity, bool)
        self.example_entry = np.full(self.capacity, -1, np.int32)
        self.example_bytes = _resident((entries, EXAMPLES, EXAMPLE_BYTES), np.uint8)
        self.example_len = _resident((entries, EXAMPLES), np.uint8)
        self.example_owner = np.full(entries, -1, np.int32)
        self._ex_free = np.arange(entries - 1, -1, -1, dtype=np.int32)
        self._ex_n_free = entries

    @property
    def pool_capacity(self) -> int:
        return len(self.example_owner)

    def ensure_pool(self, entries: int) -> None:
        """Give a table without an example pool (one made for discover) a pool."""
        if self.pool_capacity == 0 and entries > 0:
            self._init_pool(entries)

    def __len__(self) -> int:
        return self._n_sorted

    @property
    def _sorted_keys(self) -> np.ndarray:
        return self._sorted_keys_buf[:self._n_sorted]

    @property
    def _sorted_slots(self) -> np.ndarray:
        return self._sorted_slots_buf[:self._n_sorted]

    @property
    def overflow_limit(self) -> int:
        """Bytes the overflow dict of long texts may hold (see module docstring)."""
        return OVERFLOW_BYTES_PER_SLOT * self.capacity

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.total, self.recent, self.slow, self.first_seen,
                  self.last_seen, self.used, self.text_bytes, self.text_len,
                  self._sorted_keys_buf, self._sorted_slots_buf, self._free, self.sampled,
                  self.example_entry, self.example_bytes, self.example_len,
                  self.example_owner, self._ex_free)
        return int(sum(a.nbytes for a in arrays)) + self._overflow_cost

    # ------------------------------------------------------------------ text

    def text_of(self, slot: int) -> str:
        """The text of a tracked slot ("" for a free one)."""
        n = int(self.text_len[slot])
        if n == _LONG:
            return self.overflow[int(slot)]
        return bytes(self.text_bytes[slot, :n]).decode("utf-8", "surrogatepass")

    def texts(self, slots: np.ndarray) -> list[str]:
        """The texts of many slots, decoded in one call."""
        slots = np.asarray(slots, dtype=np.int64)
        lens = self.text_len[slots]
        long = lens == _LONG
        out = decode_rows(self.text_bytes[slots], np.where(long, 0, lens))
        for i in np.flatnonzero(long).tolist():
            out[i] = self.overflow[int(slots[i])]
        return out

    def _store_texts(self, slots: np.ndarray, data: list[bytes]) -> None:
        """Write UTF-8 texts of freshly taken slots (long ones go to the overflow)."""
        lens = np.fromiter(map(len, data), np.int64, len(data))
        short = lens <= TEXT_BYTES
        self.text_bytes[slots] = 0
        for i in np.flatnonzero(~short).tolist():
            slot = int(slots[i])
            self.overflow[slot] = data[i].decode("utf-8", "surrogatepass")
            self._overflow_cost += len(data[i]) + OVERFLOW_OVERHEAD
        self.text_len[slots] = np.where(short, lens, _LONG)
        ss, sl = slots[short], lens[short]
        if len(ss) == 0:
            return
        flat = np.frombuffer(b"".join(d for d, s in zip(data, short.tolist(), strict=True)
                                      if s), np.uint8)
        rows = np.repeat(ss, sl)
        starts = np.cumsum(sl) - sl
        cols = np.arange(len(flat)) - np.repeat(starts, sl)
        self.text_bytes[rows, cols] = flat

    def _forget_texts(self, slots: np.ndarray) -> None:
        long = slots[self.text_len[slots] == _LONG]
        for s in long.tolist():
            t = self.overflow.pop(s)
            self._overflow_cost -= len(t.encode("utf-8", "surrogatepass")) + OVERFLOW_OVERHEAD
        self.text_bytes[slots] = 0
        self.text_len[slots] = 0

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
        ok = np.ones(m, dtype=bool)
        room = self.overflow_limit - self._overflow_cost
        for i, d in enumerate(data):
            if len(d) > TEXT_BYTES:
                cost = len(d) + OVERFLOW_OVERHEAD
                if cost > room:
                    ok[i] = False
                    self.long_dropped += 1
                else:
                    room -= cost
        idx = np.flatnonzero(ok)
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
            self.sampled[s] = False
            self._store_texts(s, [data[i] for i in idx.tolist()])
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
        self.sampled[slots] = False
        self._forget_texts(slots)
        self._release_examples(slots)
        self._free[self._n_free:self._n_free + len(slots)] = slots
        self._n_free += len(slots)
        self._on_remove(slots)

    def _on_remove(self, slots: np.ndarray) -> None:
        """Hook for owners of per-slot data (set by the engine)."""

    # ------------------------------------------------------------------ examples

    def examples_of(self, slot: int) -> list[str]:
        """The slot's example contexts, oldest first."""
        e = int(self.example_entry[slot])
        if e < 0:
            return []
        lens = self.example_len[e]
        k = int((lens > 0).sum())
        return decode_rows(self.example_bytes[e, :k], lens[:k])

    def newest_examples(self, slots: np.ndarray) -> list[str]:
        """The newest example context of each slot ("" where none)."""
        slots = np.asarray(slots, dtype=np.int64)
        entries = self.example_entry[slots].astype(np.int64)
        has = entries >= 0
        rows = np.zeros((len(slots), EXAMPLE_BYTES), np.uint8)
        lens = np.zeros(len(slots), np.int64)
        if has.any():
            e = entries[has]
            last = np.maximum((self.example_len[e] > 0).sum(axis=1) - 1, 0)
            rows[has] = self.example_bytes[e, last]
            lens[has] = self.example_len[e, last]
        return decode_rows(rows, lens)

    def add_example(self, slot: int, context: str, keep: int = EXAMPLES,
                    protect: np.ndarray | None = None) -> None:
        """Remember a context for the slot, keeping the newest ``keep``."""
        self.add_examples(np.array([slot], np.int64), [context], keep, protect)

    def add_examples(self, slots: np.ndarray, contexts: list[str], keep: int = EXAMPLES,
                     protect: np.ndarray | None = None) -> None:
        """add_example for many distinct slots at once. A context already held by
        its slot is not added again. ``protect``: slots whose examples a full pool
        spares while it can (the listed words)."""
        slots = np.asarray(slots, dtype=np.int64)
        keep = min(keep, EXAMPLES)
        data = [fit_utf8(c.replace("\0", " "), EXAMPLE_BYTES) for c in contexts]
        given = np.array([len(d) > 0 for d in data], dtype=bool)
        if keep < 1 or not given.any():
            return
        slots = slots[given]
        data = [d for d, g in zip(data, given.tolist(), strict=True) if g]
        self.sampled[slots] = True
        if self.pool_capacity == 0:
            return
        entries = self.example_entry[slots].astype(np.int64)
        lacking = np.flatnonzero(entries < 0)
        if len(lacking):
            entries[lacking] = self._take_entries(slots[lacking], slots, protect)
        have = entries >= 0
        slots, entries = slots[have], entries[have]
        data = [d for d, h in zip(data, have.tolist(), strict=True) if h]
        if len(slots) == 0:
            return
        lens = np.fromiter(map(len, data), np.int64, len(data))
        new = np.zeros((len(data), EXAMPLE_BYTES), np.uint8)
        flat = np.frombuffer(b"".join(data), np.uint8)
        new[np.repeat(np.arange(len(data)), lens),
            np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)] = flat
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

    def _take_entries(self, slots: np.ndarray, asking: np.ndarray,
                      protect: np.ndarray | None) -> np.ndarray:
        """Pool entries for these slots (-1 where the pool cannot give one)."""
        m = len(slots)
        if m > self._ex_n_free:
            self._reclaim(m - self._ex_n_free, asking, protect)
        take = min(m, self._ex_n_free)
        out = np.full(m, -1, np.int64)
        if take:
            e = self._ex_free[self._ex_n_free - take:self._ex_n_free][::-1].astype(np.int64)
            self._ex_n_free -= take
            out[:take] = e
            self.example_owner[e] = slots[:take]
            self.example_entry[slots[:take]] = e
        return out

    def _reclaim(self, need: int, asking: np.ndarray, protect: np.ndarray | None) -> None:
        """Free at least ``need`` pool entries (a block of 1/16 of the pool at a time):
        those of the lowest-recent owners, owners in ``protect`` last, ``asking`` never."""
        held = np.flatnonzero(self.example_owner >= 0)
        owners = self.example_owner[held].astype(np.int64)
        spare = np.zeros(self.capacity, dtype=bool)
        spare[asking] = True
        ok = ~spare[owners]
        held, owners = held[ok], owners[ok]
        if len(held) == 0:
            return
        k = min(len(held), max(need, self.pool_capacity // 16))
        rank = self.recent[owners].copy()
        if protect is not None and len(protect):
            listed = np.zeros(self.capacity, dtype=bool)
            listed[protect] = True
            rank[listed[owners]] = np.inf  # reclaimed only once no other owner is left
        victims = owners[np.argpartition(rank, k - 1)[:k]] if k < len(owners) else owners
        self._release_examples(victims)

    def _release_examples(self, slots: np.ndarray) -> None:
        """Give the slots' pool entries back (the slots keep ``sampled``)."""
        if self.pool_capacity == 0:
            return
        e = self.example_entry[slots]
        e = e[e >= 0].astype(np.int64)
        if len(e) == 0:
            return
        self.example_entry[self.example_owner[e]] = -1
        self.example_owner[e] = -1
        self.example_bytes[e] = 0
        self.example_len[e] = 0
        self._ex_free[self._ex_n_free:self._ex_n_free + len(e)] = e
        self._ex_n_free += len(e)

    def has_examples(self, slots: np.ndarray) -> np.ndarray:
        """Whether each slot holds example contexts now."""
        return self.example_entry[slots] >= 0

    # ------------------------------------------------------------------ decay, state

    def decay(self, fast: float, slow: float) -> None:
        """Multiply recent counts by ``fast`` and baseline counts by ``slow``."""
        self.recent *= fast
        self.slow *= slow

    def state(self) -> dict[str, Any]:
        """Arrays and scalars only. Texts and examples are stored packed (the bytes of
        each in a row, without the zero padding: ~5 MB instead of 20 MB of texts at the
        default capacity); from_state unpacks them."""
        long = sorted(self.overflow)
        data = [self.overflow[s].encode("utf-8", "surrogatepass") for s in long]
        return {
            "capacity": self.capacity, "keys": self.keys, "total": self.total,
            "recent": self.recent, "slow": self.slow, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "used": self.used,
            "text": {"lengths": self.text_len,
                     "bytes": _pack_rows(self.text_bytes, self._inline_lengths())},
            "overflow": {"slots": np.array(long, dtype=np.int64),
                         "lengths": np.fromiter(map(len, data), np.int64, len(data)),
                         "bytes": np.frombuffer(b"".join(data), np.uint8).copy()},
            "long_dropped": self.long_dropped, "evicted": self.evicted,
            # the free-slot stack in its order, so a restored table reuses slots
            # exactly as the live one would (eviction ties, and so which pieces
            # stay tracked, depend on it)
            "free": self._free[:self._n_free].copy(),
            # which words hold examples depends on which were listed when: timing
            "examples": {"sampled": self.sampled, "entry": self.example_entry,
                         "owner": self.example_owner, "lengths": self.example_len,
                         "bytes": _pack_rows(self.example_bytes, self.example_len),
                         "free": self._ex_free[:self._ex_n_free].copy()},
        }

    def _inline_lengths(self) -> np.ndarray:
        return np.where(self.text_len == _LONG, 0, self.text_len)

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CandidateTable:
        ex = st["examples"]
        t = cls(int(st["capacity"]), example_pool=len(ex["owner"]))
        for name in ("keys", "total", "recent", "slow", "first_seen", "last_seen", "used"):
            arr = getattr(t, name)
            arr[...] = np.asarray(st[name], dtype=arr.dtype).reshape(arr.shape)
        t.text_len[:] = np.asarray(st["text"]["lengths"], np.uint8)
        _unpack_rows(st["text"]["bytes"], t._inline_lengths(), t.text_bytes)
        over = st["overflow"]
        raw = np.asarray(over["bytes"], np.uint8).tobytes()
        ends = np.cumsum(np.asarray(over["lengths"], np.int64)).tolist()
        for s, a, b in zip(np.asarray(over["slots"]).tolist(), [0, *ends][:len(ends)], ends,
                           strict=True):
            t.overflow[int(s)] = raw[a:b].decode("utf-8", "surrogatepass")
            t._overflow_cost += b - a + OVERFLOW_OVERHEAD
        if set(t.overflow) != set(np.flatnonzero(t.text_len == _LONG).tolist()):
            raise ValueError("candidate overflow texts disagree with their slots")
        t.long_dropped = int(st.get("long_dropped", 0))
        t.evicted = int(st.get("evicted", 0))
        free = np.asarray(st["free"], dtype=np.int32)
        t._free[:len(free)] = free
        t._n_free = len(free)
        for name, key in (("sampled", "sampled"), ("example_entry", "entry"),
                          ("example_owner", "owner"), ("example_len", "lengths")):
            arr = getattr(t, name)
            arr[...] = np.asarray(ex[key], dtype=arr.dtype).reshape(arr.shape)
        _unpack_rows(ex["bytes"], t.example_len, t.example_bytes)
        ex_free = np.asarray(ex["free"], dtype=np.int32)
        t._ex_free[:len(ex_free)] = ex_free
        t._ex_n_free = len(ex_free)
        slots = np.flatnonzero(t.used)
        t._n_sorted = 0
        t._index_insert(t.keys[slots], slots)
        return t


def _pack_rows(rows: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The first lens[...] bytes of each row (last axis), concatenated in order."""
    # rows are zero-padded and UTF-8 has no zero byte but for U+0000, which stored
    # texts and contexts do not contain: the nonzero bytes are the text (2.5x faster
    # than a mask from the lengths, and this runs while ingestion waits for a snapshot)
    flat = rows[rows != 0]
    if len(flat) == int(lens.sum(dtype=np.int64)):
        return flat
    return rows[np.arange(rows.shape[-1]) < lens[..., None]]


def _unpack_rows(flat: np.ndarray, lens: np.ndarray, out: np.ndarray) -> None:
    """Inverse of _pack_rows into ``out`` (zero padding restored)."""
    mask = np.arange(out.shape[-1]) < lens[..., None]
    flat = np.asarray(flat, np.uint8)
    if flat.shape != (int(np.count_nonzero(mask)),):
        raise ValueError("packed bytes disagree with their lengths")
    out[...] = 0
    out[mask] = flat


class ListedRegistry:
    """Words ever listed, by 64-bit key, with the first_seen recorded when each was
    first listed (a word is `new` when not listed before it was first seen).

    Two preallocated arrays, sorted by key, ``capacity`` entries (the engine gives it
    the candidate capacity); when an addition would overflow them, the half with the
    earliest times (first seen longest ago) is forgotten.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 2)
        self._keys = _resident(self.capacity, np.uint64)
        self._times = _resident(self.capacity, np.float64)
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
