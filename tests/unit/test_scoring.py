"""scoring.part_features without a lexicon equals the lexicon rules run on a lexicon that
knows none of the words (the fast path is the same function, not an approximation)."""

from __future__ import annotations

import random

import numpy as np

from streamer.core import scoring
from streamer.core.lexicon import Lexicon
from streamer.core.units import DENSE_SIZE


def test_no_lexicon_gives_what_the_rules_give_for_unknown_words() -> None:
    rng = random.Random(5)
    pieces = ["1997", "10", "xp", "iphone", "3g", "年", "个", "独", "显", "网", "卡", "中"]
    words = ["".join(rng.choice(pieces) for _ in range(rng.randint(2, 4))) for _ in range(400)]
    words = [w for w in dict.fromkeys(words) if not w.isascii()]
    alone = np.array([rng.random() for _ in range(DENSE_SIZE)]) * 5
    unigrams = alone + 5
    fast = scoring.part_features(words, alone, unigrams, Lexicon(), "mixed")
    rules = scoring.part_features(words, alone, unigrams, Lexicon(["某某某某"]), "mixed")
    assert np.allclose(fast.first, rules.first) and np.allclose(fast.last, rules.last)
    assert fast.phrase.tolist() == rules.phrase.tolist()
    assert fast.first.max() == 1.0  # numbers at the head are there and demoted
