"""The trend test behind sort=emergence (scoring.trend): its values, the exposure log it
reads, and the real engine on a synthetic stream with a known burst (replay times).
tests/e2e/test_trending.py checks the real service's /words?sort=emergence."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from helpers import BURST, HANDFUL, MADE_UP, STEADY, STEADY_FREQUENT, VOCAB, sentence, stream

from streamer.core import scoring
from streamer.core.decay import ExposureLog
from streamer.core.engine import Engine, EngineConfig
from streamer.core.lexicon import Lexicon
from streamer.core.scoring import TREND_PRIOR, rise_deviance, trend

# --------------------------------------------------------------------------- the formula


def test_rise_deviance_values() -> None:
    g = rise_deviance(np.array([20.0, 9.0, 5.0, 0.0]), np.array([9.0, 9.0, 9.0, 2.0]))
    assert g[0] == pytest.approx(2 * (20 * math.log(20 / 9) - 11))
    assert g[1] == 0.0 and g[2] == 0.0 and g[3] == 0.0  # at or below expectation: no rise


def test_trend_reproduces_the_worked_example() -> None:
    # the docstring's example (and the README's): a new word, a join, a handful
    word = trend(np.array([19.0]), np.array([20.0]), np.array([0.95]), np.array([1.0]), 5.0)
    join = trend(np.array([560.0]), np.array([600.0]), np.array([0.8]), np.array([1.0]), 1.0)
    handful = trend(np.array([8.0]), np.array([8.0]), np.array([1.0]), np.array([1.0]), 100.0)
    assert word[0] ** 2 == pytest.approx(9.940, abs=1e-3)
    assert word[0] == pytest.approx(3.153, abs=1e-3)
    assert join[0] ** 2 == pytest.approx(11.042, abs=1e-3)
    assert join[0] == pytest.approx(3.323, abs=1e-3)
    # emergence = min(z, 3) * quality
    assert scoring.emergence(word, np.array([0.6]))[0] == pytest.approx(1.8)
    assert scoring.emergence(join, np.array([0.15]))[0] == pytest.approx(0.45)
    assert handful[0] ** 2 == pytest.approx(1.426, abs=1e-3)
    assert TREND_PRIOR == 5.0


def test_trend_is_zero_for_a_steady_or_falling_word_and_without_history() -> None:
    s = np.array([500.0, 500.0, 500.0])
    # steady since the start: recent count exactly what the rate since then predicts
    steady = trend(np.array([400.0]), s[:1], np.array([0.8]), np.array([1.0]), 1.0)
    falling = trend(np.array([100.0]), s[:1], np.array([0.8]), np.array([1.0]), 1.0)
    no_log = trend(np.array([400.0]), s[:1], np.array([0.0]), np.array([0.0]), 0.0)
    assert steady[0] == 0.0 and falling[0] == 0.0 and no_log[0] == 0.0


# --------------------------------------------------------------------------- exposure log


def test_exposure_log_spans_include_the_batch_a_word_was_first_seen_in() -> None:
    log = ExposureLog()
    for t in (10.0, 20.0, 30.0, 40.0):
        log.add(t, 100)
    log.add(40.0, 50)  # same batch time: added to it
    since, total = log.since(np.array([10.0, 30.0, 40.0, 99.0]), 40.0, math.inf)
    assert total == 450.0
    assert since.tolist() == [450.0, 250.0, 150.0, 0.0]
    since, total = log.since(np.array([40.0]), 40.0 + 3600.0, 3600.0)
    older = sum(100 * 2 ** (-(3640.0 - t) / 3600.0) for t in (10.0, 20.0, 30.0))
    assert since[0] == pytest.approx(75.0) and total == pytest.approx(75.0 + older)


def test_exposure_log_coarsens_old_history_and_keeps_the_total() -> None:
    log = ExposureLog(capacity=8)
    for t in range(1, 21):
        log.add(float(t), 10)
    assert len(log.times) <= 8
    assert log.units.sum() == 200.0
    assert log.times[-1] == 20.0 and log.units[-1] == 10.0  # recent batches stay whole
    since, _ = log.since(np.array([3.0]), 20.0, math.inf)
    assert since[0] >= 180.0  # a coarse old span starts earlier, never later


def test_exposure_log_state_and_merge() -> None:
    a, b = ExposureLog(), ExposureLog()
    a.add(1.0, 10)
    a.add(3.0, 10)
    b.add(2.0, 5)
    b.add(3.0, 5)
    a.merge(b)
    assert a.times.tolist() == [1.0, 2.0, 3.0] and a.units.tolist() == [10.0, 5.0, 15.0]
    c = ExposureLog.from_state(a.state())
    assert c.times.tolist() == a.times.tolist() and c.units.tolist() == a.units.tolist()
    assert len(ExposureLog.from_state(None).times) == 0


# --------------------------------------------------------------------------- the engine


def replay(lines: list[str], half_life: float, batch: int = 200) -> Engine:
    """The daemon's path: ingest batches at replay stream times (1000 chars/s), rescore."""
    eng = Engine(EngineConfig(min_count=5, memory=8 * 2**20, half_life=half_life),
                 Lexicon(VOCAB))
    t, chars = 1_700_000_000.0, 0
    for i in range(0, len(lines), batch):
        chunk = lines[i:i + batch]
        chars += sum(map(len, chunk))
        eng.ingest(chunk, t + chars / 1000.0)
    eng.rescore(t + chars / 1000.0)
    return eng


@pytest.mark.parametrize("half_life", [3600.0, 20.0])
def test_engine_ranks_the_burst_first_by_emergence(half_life: float) -> None:
    # 3600 s: the stream (about 100 s of replay time) is shorter than a half-life, the
    # "new to the stream" test decides; 20 s: several half-lives, recent and long-run
    # windows differ too
    eng = replay(stream(), half_life)
    words = {w.word: w for w in eng.published.words}
    assert set(MADE_UP) <= set(words), sorted(words)
    by_emergence = sorted(eng.published.words, key=lambda w: -w.emergence)
    assert by_emergence[0].word == BURST, [(w.word, w.emergence) for w in by_emergence[:5]]
    burst = words[BURST].emergence
    for w in (STEADY_FREQUENT, STEADY, HANDFUL):
        assert words[w].emergence < burst / 2, (w, words[w].emergence, burst)
    # the steady frequent word outnumbers the burst but is not rising
    assert words[STEADY_FREQUENT].total_count > 3 * words[BURST].total_count


def test_emergence_survives_a_snapshot_round_trip() -> None:
    eng = replay(stream(), 3600.0)
    again = Engine.from_state(eng.state_dict(), Lexicon(VOCAB))
    pub = again.rescore(eng.published.stream_time)
    assert [(w.word, w.emergence) for w in pub.words] == \
        [(w.word, w.emergence) for w in eng.published.words]


def test_a_state_saved_without_the_exposure_log_still_rescores() -> None:
    eng = replay(stream(), 3600.0)
    state = eng.state_dict()
    del state["exposure"]
    pub = Engine.from_state(state, Lexicon(VOCAB)).rescore(eng.published.stream_time)
    assert pub.words and all(w.emergence == 0.0 for w in pub.words)  # no evidence yet


def test_batch_run_has_no_emergence() -> None:
    eng = Engine(EngineConfig(min_count=5, memory=8 * 2**20), Lexicon(VOCAB))
    for line in stream(1000):
        eng.ingest([line], 0.0)
    assert all(w.emergence == 0.0 for w in eng.rescore(0.0).words)


# --------------------------------------------------------------------------- the service




def test_emergence_caps_the_evidence_at_three_standard_deviations() -> None:
    """The README's example (z = 3.153 and 3.323, qualities 0.6 and 0.15) and the reason
    for the cap: a frequent join of a new genre (z = 15) no longer leads a surely rising
    word of a tenth of its count (z = 6) of better quality; a handful (z = 1.19) keeps its
    weak evidence."""
    e = scoring.emergence(np.array([3.153, 3.323, 15.0, 6.0, 1.19]),
                          np.array([0.6, 0.15, 0.14, 0.30, 0.6]))
    assert np.allclose(e, [1.8, 0.45, 0.42, 0.90, 0.714])
    assert e[3] > e[2]


def test_emergence_does_not_count_the_count_twice() -> None:
    """Two surely rising words of the same quality rank equal whatever their counts (the
    count is in z, which is capped); their scores differ by ln(1 + c) only."""
    left = right = np.array([3.0, 3.0])
    count = np.array([565.0, 18.0])
    q = scoring.quality(count, left, right)
    assert q[0] == q[1] == pytest.approx(3.0 / math.log(32))
    assert np.allclose(scoring.score(count, q), np.log1p(count) * q)
    e = scoring.emergence(np.array([27.8, 3.3]), q)
    assert e[0] == e[1]


# --------------------------------------------------------------------------- parts' rise


def test_parts_rise_is_the_product_of_the_units_rises_and_at_least_one() -> None:
    # units: word 0 = (a, b), word 1 = (c, d); text: N_f = 100, N_s = 200 (rate ratio of
    # the text itself 1 : a unit with U_f / U_s = 1/2 did not rise)
    fast = np.array([99.0, 49.0, 9.0, 49.0])
    slow = np.array([99.0, 99.0, 99.0, 99.0])
    rise = scoring.parts_rise(fast, slow, np.array([0, 2, 4]), 100.0, 200.0)
    # a: (100 / 100) / (100 / 200) = 2, b: 1 -> 2; c: 0.2, d: 1 -> 0.2, held at 1
    assert rise[0] == pytest.approx(2.0)
    assert rise[1] == 1.0
    assert len(scoring.parts_rise(fast, slow, np.array([0]), 100.0, 200.0)) == 0
    # no text on record: no rise
    assert scoring.parts_rise(fast, slow, np.array([0, 4]), 0.0, 0.0)[0] == 1.0


def test_a_join_that_rose_with_its_parts_is_not_rising() -> None:
    # the README's example: seen since the start (X = N), S = 700, F = 660, X_f / X_s = 0.8;
    # the text turned to its parts' genre: they rose 1.2 and 1.05 times
    f, s, xf, xs = (np.array([v]) for v in (660.0, 700.0, 0.8, 1.0))
    alone = trend(f, s, xf, xs, 1.0)
    with_parts = trend(f, s, xf, xs, 1.0, parts=np.array([1.2 * 1.05]))
    assert alone[0] ** 2 == pytest.approx(15.147, abs=1e-3)  # g(660, 560 + 5)
    assert alone[0] == pytest.approx(3.892, abs=1e-3)
    assert with_parts[0] == 0.0  # 660 < 700 * 0.8 * 1.26 + 5 = 710.6


def genre_stream(rng: np.random.Generator, n: int = 4000) -> list[str]:
    """Background text; the join 甲乙 in a tenth of the lines from the start, 甲 and 乙
    alone as often; in the last quarter all three are five times as frequent, and a new
    word (BURST) appears in every sixth line."""
    r = random.Random(int(rng.integers(1 << 30)))
    lines = []
    for i in range(n):
        late = i >= 3 * n // 4
        inject = []
        if r.random() < (0.5 if late else 0.1):
            inject.append("甲乙")
        for unit in "甲乙":
            if r.random() < (0.5 if late else 0.1):
                inject.append(unit)
        if late and i % 6 == 1:
            inject.append(BURST)
        lines.append("".join(sentence(r, w) for w in inject) + sentence(r))
    return lines


def test_engine_explains_a_genre_join_by_its_parts() -> None:
    eng = replay(genre_stream(np.random.default_rng(5)), 20.0)
    words = {w.word: w for w in eng.published.words}
    assert "甲乙" in words and BURST in words, sorted(words)
    slot = eng.candidates.lookup(eng._word_key("甲乙"))
    now = eng.published.stream_time
    z_parts = eng._trend(slot, ["甲乙"], now)[0]
    # without the units' rise the join is rising (its count rose five times)
    t = eng.candidates
    hl = eng.config.half_life
    first = t.first_seen[slot]
    xf, _ = eng.exposure.since(first, now, hl)
    xs, ns = eng.exposure.since(first, now, 16 * hl)
    z_alone = trend(t.recent[slot], t.slow[slot], xf, xs, ns)[0]
    assert z_alone > 3.0 and z_parts < z_alone / 2, (z_alone, z_parts)
    assert max(eng.published.words, key=lambda w: w.emergence).word == BURST


def test_the_long_run_unit_table_is_state() -> None:
    eng = replay(stream(), 20.0)
    state = eng.state_dict()
    back = Engine.from_state(state, Lexicon(VOCAB))
    assert np.array_equal(back.unigrams_slow, eng.unigrams_slow)
    assert eng.unigrams_slow.sum() > 0
    # a state saved before the table: derived from the recent counts (no rise yet)
    del state["unigrams_slow"]
    old = Engine.from_state(state, Lexicon(VOCAB))
    assert np.allclose(old.unigrams_slow, eng.clock.occurrences(eng.unigrams))
    pub = old.rescore(eng.published.stream_time)
    assert max(pub.words, key=lambda w: w.emergence).word == BURST
    # shards add their tables
    a = Engine.from_state(eng.state_dict(), Lexicon(VOCAB))
    a.merge(Engine.from_state(eng.state_dict(), Lexicon(VOCAB)))
    assert np.allclose(a.unigrams_slow, 2 * eng.unigrams_slow)
