"""Counters: the exact table and the count-min sketch (streamer/sketch.py).

The sketch is checked against pure-Python models that do not depend on its hash functions:
each key's counters are found by adding the key alone to an empty sketch of the same shape
and seed (it must own exactly ``depth`` counters), then

* the documented update, exact sequential conservative update (each occurrence raises its
  key's counters to min + count, saturating at 2**32 - 1), is replayed over those counters:
  the sketch's table must equal the model's exactly;
* a plain count-min sketch over the same counters: conservative update may only lower it;
* the true counts: an estimate is never below them, and a key that shares no counter with
  another key is counted exactly.

The error bound ``estimate <= true + e/w * M`` is tested *on aggregate*, deterministically
(fixed seeds): over all distinct n-grams of a Zipf-like text and ten hash seeds, the fraction
of keys whose error exceeds e/w*M must stay below exp(-depth) / 4 -- the classic count-min
guarantee 1 - exp(-depth), which the product requires; the module itself documents only
1 - 1/e because its rows share a cache-line block. In practice the fraction is far lower.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.engine import EngineConfig
from streamer.core.ngrams import mix, ngram_keys
from streamer.core.sketch import (
    BACKLOG,
    PARALLEL_MIN,
    CountMinSketch,
    ExactCounter,
    aggregate,
    blocks_for_bytes,
    counter_from_state,
    ngram_count_keys,
)
from streamer.core.units import HAN_LIMIT, encode

U64 = 2**64
U32_MAX = 2**32 - 1

# --------------------------------------------------------------------------- models


def cells_of(sk: CountMinSketch, key: int) -> list[int]:
    """Flat indices of the counters ``key`` owns: add it alone to an empty twin sketch."""
    twin = CountMinSketch.from_state({**sk.state(), "table": np.zeros_like(sk.table),
                                      "total": 0})
    twin.add(np.array([key], dtype=np.uint64))
    cells = np.flatnonzero(twin.table.reshape(-1)).tolist()
    assert len(cells) == sk.depth  # d distinct counters per key
    return cells


class ConservativeModel:
    """Sequential conservative update over each key's counters, plus a plain count-min."""

    def __init__(self, sk: CountMinSketch) -> None:
        self.sk = sk
        self.table: Counter[int] = Counter()
        self.plain: Counter[int] = Counter()
        self._cells: dict[int, list[int]] = {}

    def cells(self, key: int) -> list[int]:
        if key not in self._cells:
            self._cells[key] = cells_of(self.sk, key)
        return self._cells[key]

    def add(self, keys: list[int], counts: list[int] | None = None) -> None:
        for i, k in enumerate(keys):
            c = 1 if counts is None else counts[i]
            cells = self.cells(k)
            new = min(min(self.table[j] for j in cells) + c, U32_MAX)
            for j in cells:
                self.table[j] = max(self.table[j], new)
                self.plain[j] += c

    def query(self, key: int) -> int:
        return min(self.table[j] for j in self.cells(key))

    def query_plain(self, key: int) -> int:
        return min(self.plain[j] for j in self.cells(key))

    def dense(self) -> list[int]:
        flat = [0] * self.sk.table.size
        for j, v in self.table.items():
            flat[j] = v
        return flat


def keys_array(keys: list[int]) -> np.ndarray:
    return np.array(keys, dtype=np.uint64)


# a small pool of 64-bit keys so that keys repeat, plus a few structured ones
key_pools = st.lists(st.one_of(st.integers(0, U64 - 1), st.sampled_from([0, 1, 2, U64 - 1])),
                     min_size=1, max_size=40, unique=True)


@st.composite
def batches(draw):
    pool = draw(key_pools)
    n_batches = draw(st.integers(1, 5))
    out = []
    for _ in range(n_batches):
        keys = draw(st.lists(st.sampled_from(pool), max_size=60))
        counts = draw(st.none() | st.lists(st.integers(1, 50), min_size=len(keys),
                                           max_size=len(keys)))
        out.append((keys, counts))
    return pool, out


# --------------------------------------------------------------------------- aggregate


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, U64 - 1) | st.sampled_from([5, 7]), max_size=80),
       data=st.data())
def test_aggregate_sums_counts_per_distinct_key(keys: list[int], data) -> None:
    counts = data.draw(st.none() | st.lists(st.integers(0, 1000), min_size=len(keys),
                                            max_size=len(keys)))
    uniq, c = aggregate(keys_array(keys), None if counts is None else np.array(counts))
    want: Counter[int] = Counter()
    for i, k in enumerate(keys):
        want[k] += 1 if counts is None else counts[i]
    assert uniq.tolist() == sorted(want)
    assert c.tolist() == [want[k] for k in sorted(want)]
    assert c.dtype == np.int64


# --------------------------------------------------------------------------- exact counter


@settings(max_examples=100, deadline=None)
@given(data=batches(), probe=st.lists(st.integers(0, U64 - 1), max_size=10))
def test_exact_counter_counts_exactly(data, probe: list[int]) -> None:
    pool, bs = data
    ex = ExactCounter()
    true: Counter[int] = Counter()
    for i, (keys, counts) in enumerate(bs):
        ex.add(keys_array(keys), None if counts is None else np.array(counts))
        for j, k in enumerate(keys):
            true[k] += 1 if counts is None else counts[j]
        if i % 2:  # queries between adds (flushes the pending batches)
            q = pool + probe
            assert ex.query(keys_array(q)).tolist() == [true[k] for k in q]
    q = pool + probe
    assert ex.query(keys_array(q)).tolist() == [true[k] for k in q]
    assert ex.total == sum(true.values())
    assert ex.error_bound() == 0.0
    back = counter_from_state(ex.state())
    assert isinstance(back, ExactCounter)
    assert back.query(keys_array(q)).tolist() == [true[k] for k in q]
    assert back.total == ex.total


def test_exact_counter_empty_and_merge() -> None:
    a, b = ExactCounter(), ExactCounter()
    assert a.query(keys_array([1, 2])).tolist() == [0, 0]
    a.add(keys_array([1, 2, 2]))
    b.add(keys_array([2, 3]), np.array([5, 7]))
    a.merge(b)
    assert a.query(keys_array([1, 2, 3, 4])).tolist() == [1, 7, 7, 0]
    assert a.total == 15


def test_exact_counter_scale_keeps_integers_and_drops_zeros() -> None:
    ex = ExactCounter()
    ex.add(keys_array([1, 2, 3]), np.array([10, 1, 1000]))
    ex.scale(1.0, np.random.default_rng(0))
    assert ex.query(keys_array([1, 2, 3])).tolist() == [10, 1, 1000]
    ex.scale(0.5, np.random.default_rng(0))
    got = ex.query(keys_array([1, 3])).tolist()
    assert got[0] == 5 and got[1] == 500
    ex.scale(1e-9, np.random.default_rng(0))
    assert len(ex.keys) <= 3 and (ex.counts > 0).all()


# --------------------------------------------------------------------------- count-min


@settings(max_examples=100, deadline=None)
@given(data=batches(), nbytes=st.sampled_from([64, 128, 256, 1024]),
       depth=st.sampled_from([1, 2, 4, 8, 16]), seed=st.integers(0, 3))
def test_sketch_is_the_documented_conservative_update(data, nbytes: int, depth: int,
                                                      seed: int) -> None:
    """Tiny tables (1 to 16 blocks) so that keys collide: the table equals the model's,
    estimates are >= the true counts and <= a plain count-min sketch's."""
    pool, bs = data
    sk = CountMinSketch(blocks_for_bytes(nbytes), depth, seed)
    assert sk.nbytes <= nbytes
    model = ConservativeModel(sk)
    true: Counter[int] = Counter()
    for keys, counts in bs:
        sk.add(keys_array(keys), None if counts is None else np.array(counts))
        model.add(keys, counts)
        for j, k in enumerate(keys):
            true[k] += 1 if counts is None else counts[j]
    assert sk.table.reshape(-1).tolist() == model.dense()
    assert sk.total == sum(true.values())
    est = sk.query(keys_array(pool)).tolist()
    owners: Counter[int] = Counter(j for k in true for j in model.cells(k))
    for k, e in zip(pool, est, strict=True):
        assert e == model.query(k)
        assert true[k] <= e <= model.query_plain(k)
        mine = 1 if k in true else 0
        if all(owners[j] == mine for j in model.cells(k)):
            assert e == true[k]  # no counter shared with another key: no error
    assert sk.error_bound() == pytest.approx(math.e / sk.width * sk.total)


def ngram_keys_of_zipf_text(n_chars: int = 40000, seed: int = 0) -> np.ndarray:
    """Keys of all 2..4-grams of a text with a Zipf-like character distribution."""
    rnd = random.Random(seed)
    text = "".join(chr(0x4E00 + int(rnd.paretovariate(1.0) * 3) % 3000) for _ in range(n_chars))
    enc = encode(text, "han")
    keys = ngram_keys(mix(enc.ids), enc.first, 4)
    return np.concatenate([k[v] for k, v in keys[1:]])


@pytest.fixture(scope="module")
def zipf_keys() -> np.ndarray:
    return ngram_keys_of_zipf_text()


@pytest.mark.parametrize("width", [256, 1024])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_narrow_sketch_never_underestimates_and_meets_the_bound_on_aggregate(
        zipf_keys: np.ndarray, width: int, depth: int) -> None:
    """Aggregate over 10 fixed seeds: fraction of keys with error > e/w*M below exp(-d)/4."""
    uniq, true = np.unique(zipf_keys, return_counts=True)
    assert len(uniq) > 40 * width  # heavily overloaded: the bound is what keeps errors small
    over = 0
    for seed in range(10):
        sk = CountMinSketch(blocks_for_bytes(width * 4 * depth), depth, seed)
        assert sk.width == width
        for part in np.array_split(zipf_keys, 7):  # several batches
            sk.add(part)
        assert sk.total == len(zipf_keys)
        est = sk.query(uniq)
        assert (est >= true).all()
        over += int(np.count_nonzero(est - true > sk.error_bound()))
    assert over / (10 * len(uniq)) < math.exp(-depth) / 4


def test_engine_with_a_narrow_sketch_never_underestimates() -> None:
    """The engine feeds the sketch exactly the n-grams the exact counter gets: with a narrow
    table swapped in, every n-gram estimate is >= the exact engine's count, the totals agree,
    and errors beyond e/w*M stay rare."""
    from streamer.core.engine import Engine

    rnd = random.Random(4)
    lines = ["".join(chr(0x4E00 + int(rnd.paretovariate(1.2) * 2) % 500)
                     for _ in range(rnd.randint(1, 30))) for _ in range(2000)]
    exact = Engine(EngineConfig(exact=True, memory=4 * 2**20, order=4))
    narrow = Engine(EngineConfig(memory=4 * 2**20, order=4))
    narrow.counter = CountMinSketch(blocks_for_bytes(512 * 4 * 4), 4, seed=0)
    assert narrow.counter.width == 512
    for part in (lines[:700], lines[700:]):
        exact.count_batch(exact.encode_batch(part))
        narrow.count_batch(narrow.encode_batch(part))
    assert narrow.counter.total == exact.counter.total > 0
    enc = encode("\n".join(lines), "han")
    keys = np.unique(np.concatenate([k[v] for k, v in ngram_keys(mix(enc.ids), enc.first,
                                                                  4)[1:]]))
    est, true = narrow.counter.query(keys), exact.counter.query(keys)
    assert (true > 0).all()
    assert (est >= true).all()
    assert (est > true).any()  # the table is narrow enough to collide
    assert np.mean(est - true > narrow.counter.error_bound()) < math.exp(-4) / 4


def test_wide_sketch_is_exact_on_few_keys(zipf_keys: np.ndarray) -> None:
    keys = zipf_keys[:3000]
    uniq, true = np.unique(keys, return_counts=True)
    sk = CountMinSketch(blocks_for_bytes(64 * 2**20), 4, seed=1)
    sk.add(keys)
    assert sk.query(uniq).tolist() == true.tolist()
    absent = np.setdiff1d(zipf_keys[3000:6000], uniq)
    assert not sk.query(absent).any()


def test_background_updates_give_the_table_of_sequential_updates(zipf_keys: np.ndarray) -> None:
    """Updates queued to the background thread run in call order (conservative update is
    order-dependent): the table, the total and every read equal those of a sketch updated
    in the caller's thread (whose large adds are split over two threads), with reads
    between the adds and from several threads at once."""
    keys = np.concatenate([zipf_keys] * (2 * PARALLEL_MIN // len(zipf_keys) + 1))
    assert len(keys) >= PARALLEL_MIN  # large enough to be split in the caller's mode
    plain, queued = (CountMinSketch(blocks_for_bytes(2**20), 4, seed=3, background=b)
                     for b in (False, True))
    parts = np.array_split(keys, 2 * BACKLOG + 3)  # more than the backlog holds
    for i, part in enumerate(parts):
        plain.add(part, weight=i % 3 + 1)
        queued.add(part, weight=i % 3 + 1)
        if i == 1:  # a read in between waits for the updates queued so far
            assert queued.query(zipf_keys).tolist() == plain.query(zipf_keys).tolist()
    assert queued.total == plain.total
    with ThreadPoolExecutor(4) as pool:  # readers settle concurrently
        got = list(pool.map(queued.query, [zipf_keys] * 8))
        assert all(g.tolist() == plain.query(zipf_keys).tolist() for g in got)
        # readers that come while an update runs all wait for it (the update is long:
        # ~2 M keys; the readers ask for keys it adds to)
        big = np.concatenate([keys] * (2_000_000 // len(keys) + 1))
        for _ in range(3):
            plain.add(big)
            queued.add(big)
            want = plain.query(zipf_keys).tolist()
            assert all(g.tolist() == want for g in pool.map(queued.query, [zipf_keys] * 4))
    assert np.array_equal(queued.table, plain.table)
    queued.add(parts[0])
    plain.add(parts[0])
    assert np.array_equal(queued.state()["table"], plain.state()["table"])


def test_sketch_counters_saturate_instead_of_wrapping() -> None:
    sk = CountMinSketch(blocks_for_bytes(256), 2)
    k = keys_array([12345])
    sk.add(k, np.array([U32_MAX - 1]))
    sk.add(k, np.array([10]))
    assert sk.query(k).tolist() == [U32_MAX]
    other = CountMinSketch(blocks_for_bytes(256), 2)
    other.add(k, np.array([U32_MAX]))
    sk.merge(other)
    assert sk.query(k).tolist() == [U32_MAX]


def test_sketch_merge_adds_cell_by_cell_in_place() -> None:
    rng = np.random.default_rng(1)
    a = CountMinSketch(blocks_for_bytes(1 << 24), 4, seed=3)  # 4 slices of the merge
    b = CountMinSketch(blocks_for_bytes(1 << 24), 4, seed=3)
    a.add(keys_array(rng.integers(0, 1 << 40, 5000).tolist()))
    b.add(keys_array(rng.integers(0, 1 << 40, 5000).tolist()))
    b.table.reshape(-1)[-1] = U32_MAX  # saturates in the last slice
    a.table.reshape(-1)[-1] = 7
    want = np.minimum(a.table.astype(np.uint64) + b.table, U32_MAX).astype(np.uint32)
    a.table.setflags(write=False)  # a table read from a buffer is copied, not written
    a.merge(b)
    assert np.array_equal(a.table, want)
    assert a.total == 10000


def test_sketch_merge_state_and_scale() -> None:
    keys_a = keys_array([1, 2, 3, 3, 99])
    keys_b = keys_array([3, 4, 4, 99])
    a = CountMinSketch(blocks_for_bytes(1024), 4, seed=5)
    b = CountMinSketch(blocks_for_bytes(1024), 4, seed=5)
    a.add(keys_a)
    b.add(keys_b)
    a.merge(b)
    true = {1: 1, 2: 1, 3: 3, 4: 2, 99: 2}
    est = a.query(keys_array(list(true))).tolist()
    assert all(e >= t for e, t in zip(est, true.values(), strict=True))
    assert a.total == 9
    with pytest.raises(ValueError):
        a.merge(CountMinSketch(blocks_for_bytes(1024), 4, seed=6))
    with pytest.raises(ValueError):
        a.merge(CountMinSketch(blocks_for_bytes(2048), 4, seed=5))
    with pytest.raises(ValueError):
        a.merge(CountMinSketch(blocks_for_bytes(1024), 2, seed=5))
    back = counter_from_state(a.state())
    assert isinstance(back, CountMinSketch)
    assert (back.width, back.depth, back.seed, back.total) == (a.width, 4, 5, 9)
    assert (back.table == a.table).all()
    assert back.query(keys_array(list(true))).tolist() == est
    # scale(1) keeps every counter (stochastic rounding of an integer is the integer)
    before = back.table.copy()
    back.scale(1.0, np.random.default_rng(0))
    assert (back.table == before).all()
    back.scale(0.5, np.random.default_rng(0))
    assert ((back.table == before // 2) | (back.table == (before + 1) // 2)).all()


def test_empty_sketch_and_empty_batches() -> None:
    sk = CountMinSketch(blocks_for_bytes(256), 2)
    sk.add(np.empty(0, np.uint64))
    assert sk.total == 0
    assert sk.query(np.empty(0, np.uint64)).tolist() == []
    assert sk.query(keys_array([1, 2])).tolist() == [0, 0]


@pytest.mark.parametrize("blocks", [0, 3, 100, 1000])
def test_sketch_size_must_be_a_power_of_two(blocks: int) -> None:
    with pytest.raises(ValueError):
        CountMinSketch(blocks, 4)


@pytest.mark.parametrize("nbytes", [100, 4096, 10**6, 3 * 2**20 + 5, 128 * 2**20])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_blocks_for_bytes_is_the_largest_power_of_two_that_fits(nbytes: int, depth: int) -> None:
    sk = CountMinSketch(blocks_for_bytes(nbytes), depth)
    assert sk.depth == depth
    assert sk.width & (sk.width - 1) == 0
    assert sk.nbytes <= nbytes
    assert 2 * sk.nbytes > nbytes  # doubling would not fit


@pytest.mark.parametrize("memory", [4 * 2**20, 10**7, 256 * 2**20])
@pytest.mark.parametrize("depth", [1, 4])
def test_engine_gives_the_sketch_at_most_half_the_budget(memory: int, depth: int) -> None:
    from streamer.core.engine import Engine

    eng = Engine(EngineConfig(memory=memory, depth=depth, capacity=1024))
    assert isinstance(eng.counter, CountMinSketch)
    assert eng.counter.depth == depth
    assert eng.counter.nbytes <= memory // 2 < 2 * eng.counter.nbytes


@pytest.mark.parametrize("order", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000])
def test_count_keys_are_the_ngram_keys_inside_clauses_order_by_order(order: int, n: int) -> None:
    """ngram_count_keys (one C pass per order) gives the keys of ngrams.ngram_keys in
    the count phase's order: the unigrams of non-Han units, then the valid n-grams of
    each order by position."""
    rng = np.random.default_rng(n * 10 + order)
    ids = np.where(rng.random(n) < 0.2, HAN_LIMIT + rng.integers(0, 1000, n),
                   rng.integers(0x4E00, 0x4E80, n)).astype(np.int64)
    first = rng.random(n) < 0.15
    if n:
        first[0] = True
    mixed = mix(ids)
    keys = ngram_keys(mixed, first, order)
    model = np.concatenate([keys[0][0][ids >= HAN_LIMIT]]
                           + [k[valid] for k, valid in keys[1:]])
    assert ngram_count_keys(mixed, first, ids, order).tolist() == model.tolist()
