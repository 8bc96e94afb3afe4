"""The trend test behind sort=emergence (scoring.trend): its values, the exposure log it
reads, and the real engine on a synthetic stream with a known burst (replay times).
tests/e2e/test_trending.py checks the real service's /words?sort=emergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import BURST, HANDFUL, MADE_UP, STEADY, STEADY_FREQUENT, VOCAB, stream

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
    # emergence = min(z, 3) * score
    assert scoring.emergence(word, np.array([2.0]))[0] == pytest.approx(6.0)
    assert scoring.emergence(join, np.array([0.5]))[0] == pytest.approx(1.5)
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
    """The README's example (z = 3.153 and 3.323, scores 2.0 and 0.5) and the reason for
    the cap: a frequent join of a new genre (z = 15, score 0.40) no longer leads a surely
    rising word of a tenth of its count (z = 6, score 1.43); a handful (z = 1.19) keeps
    its weak evidence."""
    e = scoring.emergence(np.array([3.153, 3.323, 15.0, 6.0, 1.19]),
                          np.array([2.0, 0.5, 0.40, 1.43, 2.0]))
    assert np.allclose(e, [6.0, 1.5, 1.2, 4.29, 2.38])
    assert e[3] > e[2]
