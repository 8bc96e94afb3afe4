"""Engine.merge as the merged view uses it: N shards' states against one engine's.

What is equal with exact counters and no decay (docs/architecture.md, "What the merged
list is"): every table filled by the count phase (n-gram counts, unigrams, totals), hence
every pmi. What is not: candidate admission, the times a word was cut out whole after it,
neighbour tables and single-unit cuts, which depend on the counts each engine had when it
cut each batch.
"""

from __future__ import annotations

import random

import numpy as np
from helpers import INJECTED, background

from streamer.core.engine import Engine
from streamer.core.engine_config import EngineConfig

CFG = EngineConfig(exact=True, memory=8 * 2**20, min_count=5)


def fed(lines: list[str], config: EngineConfig = CFG, batch: int = 300,
        now: float = 0.0) -> Engine:
    eng = Engine(config)
    for i in range(0, len(lines), batch):
        eng.ingest(lines[i:i + batch], now)
    return eng


def merged(parts: list[Engine]) -> Engine:
    base = parts[0]
    for other in parts[1:]:
        base.merge(other)
    return base


def test_three_exact_shards_count_what_one_engine_counts() -> None:
    lines = background(random.Random(3), 4500, INJECTED)
    one = fed(lines)
    view = merged([fed(lines[k::3]) for k in range(3)])
    for name in ("lines_ingested", "chars_ingested", "units_ingested", "total_units"):
        assert getattr(view, name) == getattr(one, name), name
    a, b = one.counter.state(), view.counter.state()
    assert np.array_equal(a["keys"], b["keys"]) and np.array_equal(a["counts"], b["counts"])
    assert np.array_equal(one.unigrams, view.unigrams)

    p1, pm = one.rescore(0.0), view.rescore(0.0)
    w1, wm = {w.word: w for w in p1.words}, {w.word: w for w in pm.words}
    both = set(w1) & set(wm)
    assert both
    # pmi comes from the counter alone: equal for every word both list
    assert all(w1[w].pmi == wm[w].pmi for w in both)
    for word in INJECTED:
        # a word's count is its occurrences from the n-gram counter when it was admitted,
        # plus the times it was cut out whole since: never more than its occurrences, and
        # fewer by the occurrences a process cut otherwise after admitting it (that
        # depends on the counts each process had when it cut, so it is not shard-exact)
        n = sum(line.count(word) for line in lines)
        assert w1[word].count <= n and wm[word].count <= n
        assert w1[word].count > 0.95 * n and wm[word].count > 0.95 * n


def test_merge_decays_both_shards_to_the_later_rescore() -> None:
    """Shards rescore at different times; their recent counts add only once both are
    decayed to the same time (forward decay keeps them relative to the last decay)."""
    hl = 100.0
    cfg = EngineConfig(exact=True, memory=8 * 2**20, min_count=5, half_life=hl)
    lines = background(random.Random(4), 1200, INJECTED)
    word = INJECTED[0]
    a, b = fed(lines, cfg), fed(lines, cfg)
    a.rescore(100.0)
    b.rescore(0.0)  # b's counts are still as of t=0
    expected = 2 * {w.word: w for w in fed(lines, cfg).rescore(250.0).words}[word].count
    for first, second in ((a, b), (b, a)):
        x, y = Engine.from_state(first.state_dict()), Engine.from_state(second.state_dict())
        x.merge(y)
        got = {w.word: w for w in x.rescore(250.0).words}[word].count
        assert abs(got - expected) < 1e-6 * expected, (got, expected)


def test_a_piece_one_shard_never_cut_out_counts_that_shards_occurrences() -> None:
    """Shard B sees the word 3 times, below min_count: its n-grams never become cohesive
    there, so B never cuts it out. Its occurrences are still occurrences of the word:
    the merged count takes them from B's n-gram counter, as an engine seeds a piece it
    admits late (Engine._seed_counts)."""
    rng = random.Random(5)
    word = INJECTED[0]
    lines_a = background(rng, 600, [word], every=50)   # 12 occurrences
    lines_b = background(rng, 600, [word], every=200)  # 3 occurrences
    n_a = sum(x.count(word) for x in lines_a)
    n_b = sum(x.count(word) for x in lines_b)
    assert n_b < CFG.min_count <= n_a
    a, b = fed(lines_a), fed(lines_b)
    assert b.candidates.lookup(b._word_key(word))[0] < 0  # B never tracked it
    view = merged([a, b])
    listed = {w.word: w for w in view.rescore(0.0).words}
    assert listed[word].count == listed[word].total_count == n_a + n_b
