"""The trend test behind sort=emergence (scoring.trend): its values, the exposure log it
reads, the real engine on a synthetic stream with a known burst (replay times), and the
real service's /words?sort=emergence on the same kind of stream."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from streamer.decay import ExposureLog
from streamer.engine import Engine, EngineConfig
from streamer.lexicon import Lexicon
from streamer.scoring import TREND_PRIOR, rise_deviance, trend
from tests.helpers import VOCAB, LiveService, sentence, streamer_env

#: made-up words (no character shared with the background vocabulary)
STEADY_FREQUENT = "紫檀鸽"   # in every other line from the start
STEADY = "橙鲤舟"            # in every sixth line from the start
BURST = "黛狐铃"             # absent, then in every sixth line of the last quarter
HANDFUL = "靛蜥笛"           # six times, all in the last lines
MADE_UP = (STEADY_FREQUENT, STEADY, BURST, HANDFUL)
assert not set("".join(MADE_UP)) & set("".join(VOCAB))


def stream(n: int = 4000, seed: int = 7) -> list[str]:
    """n lines of background text carrying the made-up words as their names say."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = []
        if i % 2 == 0:
            words.append(STEADY_FREQUENT)
        if i % 6 == 3:
            words.append(STEADY)
        if i >= 3 * n // 4 and i % 6 == 1:
            words.append(BURST)
        if i >= n - 60 and i % 10 == 5:
            words.append(HANDFUL)
        line = "".join(sentence(rng, w) for w in words) if words else ""
        lines.append(line + sentence(rng))
    return lines


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
    assert word[0] * 2.0 == pytest.approx(6.31, abs=0.01)
    assert join[0] * 0.5 == pytest.approx(1.66, abs=0.01)
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


def test_service_sort_emergence_puts_the_burst_first(tmp_path) -> None:
    lines = stream()
    svc = LiveService(tmp_path, known=VOCAB)
    try:
        svc.start()
        for i in range(0, len(lines), 500):
            svc.feed(lines[i:i + 500])
        svc.rescored()
        ranked = svc.words(sort="emergence", new="true", limit=100)
        listed = [w["word"] for w in ranked]
        assert set(MADE_UP) <= set(listed), listed
        assert listed[0] == BURST, [(w["word"], w["emergence"]) for w in ranked[:5]]
        values = [w["emergence"] for w in ranked]
        assert values == sorted(values, reverse=True)
        by_score = [w["word"] for w in svc.words(new="true", limit=100)]
        assert by_score != listed  # the sort is not the score's order
        r = top("--url", svc.url, "--new", "--sort", "emergence", "-n", "3")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[3].split()[1] == BURST, r.stdout
    finally:
        svc.cleanup()


# --------------------------------------------------------------------------- streamer top


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer", "top", *args], capture_output=True,
                          text=True, env=streamer_env(), timeout=60)


def test_top_sorts_an_export_by_emergence(tmp_path) -> None:
    rows = [{"word": "甲乙", "score": 3.0, "count": 90.0, "emergence": 0.0, "new": True,
             "first_seen": "2024-01-01T00:00:00Z"},
            {"word": "丙丁", "score": 2.0, "count": 20.0, "emergence": 9.5, "new": True,
             "first_seen": "2024-01-01T01:00:00Z"},
            {"word": "戊己", "score": 1.0, "count": 30.0, "emergence": None, "new": True,
             "first_seen": "2024-01-01T00:30:00Z"}]
    (tmp_path / "latest.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    order = {}
    for sort in ("score", "emergence", "count", "first_seen", "word"):
        r = top("--export-dir", str(tmp_path), "--sort", sort)
        assert r.returncode == 0, r.stderr
        order[sort] = [line.split()[1] for line in r.stdout.splitlines()[3:]]
    assert order["score"] == ["甲乙", "丙丁", "戊己"]
    assert order["emergence"] == ["丙丁", "甲乙", "戊己"]  # missing value last
    assert order["count"] == ["甲乙", "戊己", "丙丁"]
    assert order["first_seen"] == ["丙丁", "戊己", "甲乙"]
    assert order["word"] == sorted(order["word"])
    bad = top("--export-dir", str(tmp_path), "--sort", "trendiness")
    assert bad.returncode == 2 and "--sort" in bad.stderr and "emergence" in bad.stderr
