"""Counts in time: the half-life decay of candidate counts and what min_count applies to.

A word's recent count is its occurrences weighted 2^(-age / half_life), exactly, however
rarely the engine rescores (candidate counts decay only at rescores; occurrences in
between are added with forward weights). In a stream (finite half-life), min_count
applies to that recent count, the count cohesion is judged on too: a word is listed
while it is used min_count times a half-life, and leaves the list when it fades, while
total_count keeps its history.
"""

from __future__ import annotations

import random

import pytest
from helpers import background

from streamer.core.decay import RESOLUTION
from streamer.core.engine import Engine, EngineConfig

MB = 2**20
WORD = "蓝鲸币"


def engine(half_life: float) -> Engine:
    return Engine(EngineConfig(exact=True, memory=4 * MB, min_count=4, half_life=half_life))


def lines_with_word(rng: random.Random, times: int) -> list[str]:
    """Background text with the word in ``times`` lines, among random words."""
    return background(rng, 15 * times, inject=[WORD], every=15)


def record(eng: Engine):
    return next((w for w in eng.published.words if w.word == WORD), None)


def test_recent_count_is_exact_between_rescores() -> None:
    rng = random.Random(1)
    eng = engine(half_life=100.0)
    eng.ingest(lines_with_word(rng, 4), now=0.0)
    eng.rescore(0.0)
    assert record(eng) is not None and record(eng).count == pytest.approx(4.0)
    # two more at t=50, no rescore until t=100: they are 50 s old then, not 100
    eng.ingest(lines_with_word(rng, 2), now=50.0)
    eng.rescore(100.0)
    slot = int(eng.candidates.lookup(eng._word_key(WORD))[0])
    assert eng.candidates.total[slot] == 6
    assert eng.candidates.recent[slot] == pytest.approx(4 * 0.5 + 2 * 0.5 ** 0.5, rel=1e-12)


def test_min_count_applies_to_the_recent_count() -> None:
    rng = random.Random(2)
    eng = engine(half_life=100.0)
    eng.ingest(lines_with_word(rng, 4), now=0.0)
    eng.rescore(0.0)
    assert record(eng) is not None, "4 occurrences now: listed"
    eng.ingest(background(rng, 60), now=1000.0)
    eng.rescore(1000.0)  # ten half-lives later: recent count 4 / 1024
    assert record(eng) is None, "a faded word leaves the list"
    eng.ingest(lines_with_word(rng, 4), now=1000.0)
    eng.rescore(1000.0)
    rec = record(eng)
    assert rec is not None, "back in use: listed again at once"
    assert rec.total_count == 8 and rec.count == pytest.approx(4.0, rel=1e-3)


def test_without_decay_min_count_is_the_total() -> None:
    rng = random.Random(3)
    eng = engine(half_life=float("inf"))
    eng.ingest(lines_with_word(rng, 4), now=0.0)
    eng.ingest(background(rng, 60), now=1e6)
    eng.rescore(1e6)
    rec = record(eng)
    assert rec is not None and rec.count == rec.total_count == 4


def test_counters_hold_exact_decayed_counts_across_epochs() -> None:
    """The n-gram counter, read in occurrences as of now, equals the exactly decayed
    count (to the rounding of each occurrence's weight), over many half-lives."""
    rng = random.Random(4)
    eng = Engine(EngineConfig(memory=16 * MB, min_count=4, half_life=100.0))
    exact = 0.0
    t_prev = 0.0
    for step in range(40):
        t = step * 37.0
        exact *= 0.5 ** ((t - t_prev) / 100.0)
        t_prev = t
        k = 1 + step % 3
        exact += k
        eng.ingest(background(rng, 5 * k, inject=[WORD], every=5), now=t)
        eng.decay_to(t)
        units = int(eng.counter.query(eng._word_key(WORD))[0])
        # each occurrence's weight is rounded to a whole unit, 1/RESOLUTION occurrence
        assert abs(eng.clock.occurrences(units) - exact) <= (exact + 1) / RESOLUTION, step


def test_a_word_is_listed_at_the_first_rescore_after_its_recent_count_reaches_min_count(
) -> None:
    rng = random.Random(5)
    hl, mc = 600.0, 6
    eng = Engine(EngineConfig(memory=16 * MB, min_count=mc, half_life=hl))
    recent, t_prev, crossed = 0.0, 0.0, None
    for batch in range(90):
        t = batch * 60.0
        recent *= 0.5 ** ((t - t_prev) / hl)
        t_prev = t
        with_word = batch >= 30 and batch % 2 == 0  # from t = 1800 s, one every 2 minutes
        recent += with_word
        eng.ingest(background(rng, 20, inject=[WORD] if with_word else (), every=20), now=t)
        if batch % 2:
            continue
        eng.rescore(t)
        listed = record(eng) is not None
        if crossed is None and recent >= mc:
            crossed = batch
        if abs(recent - mc) > 0.05:
            assert listed == (recent >= mc), (batch, recent)
    assert crossed is not None
