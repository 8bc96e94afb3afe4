"""Ranking: which discovered words a person should see first.

Every implementation of this method that ranks by frequency or cohesion alone
puts function-word joins (也是, 看了, 让我, 很好) first: they are frequent, their
outer neighbours are varied, and pmi >= 2 is easy for two frequent characters.
What gives them away is *inside* the string: one of its end units is a unit that
usually stands alone as a word by itself (了, 我, 也, 很, 是). We measure that
from the data, with no stop list: the cutter counts, for every unit u, how often
u is cut out as a one-unit piece,

    a(u) = alone(u) / occurrences(u)          (the unit's standalone rate)

and a candidate whose first or last unit has a high standalone rate is most
likely that unit attached to a neighbouring word. The score of a candidate w
with recent count c, neighbour entropies H_l and H_r (nats, B buckets) is

    score(w) = ln(1 + c) * min(H_l, H_r) / ln B * (1 - a(first)) * (1 - a(last)) * (1 - K(w))

    evidence   ln(1 + c): more occurrences, more certainty, with diminishing returns
    freedom    min(H_l, H_r) / ln B in [0, 1]: both outer boundaries are free
    binding    (1 - a(first)) (1 - a(last)): both end units are bound to the word
    phrase     K(w) = 1 when w is a concatenation of two or more known words of two
               or more characters each (宾馆+反馈, 隔音+效果): a phrase made of words
               the user already has is not a new word. 0 without a known lexicon.

Example (product reviews): 看了 has a(看) = 0.50, a(了) = 0.73, binding 0.14;
独显 has a(独) = 0.15, a(显) = 0.05, binding 0.81, so 独显 ranks above 看了 although
看了 is eight times as frequent.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from streamer.core.neighbours import BUCKETS
from streamer.core.units import dense_index, encode_words


@dataclass(frozen=True)
class PartFeatures:
    """Standalone rates of each candidate's first and last unit; phrase flags."""

    first: np.ndarray
    last: np.ndarray
    phrase: np.ndarray


def is_phrase(word: str, known: Container[str], min_part: int = 2) -> bool:
    """True when ``word`` splits into >= 2 known words of >= ``min_part`` characters.

    Dynamic programming over split points: O(len(word)**2) set lookups.
    """
    n = len(word)
    parts: list[int | None] = [None] * (n + 1)  # most known words covering word[:i]
    parts[0] = 0
    for i in range(min_part, n + 1):
        for j in range(0, i - min_part + 1):
            pj = parts[j]
            if pj is not None and word[j:i] in known:
                if parts[i] is None or pj + 1 > parts[i]:  # type: ignore[operator]
                    parts[i] = pj + 1
    return (parts[n] or 0) >= 2


def standalone_rate(alone: np.ndarray, occurrences: np.ndarray) -> np.ndarray:
    """a(u) = alone(u) / occurrences(u), 0 for units never seen."""
    return np.where(occurrences > 0, alone / np.maximum(occurrences, 1), 0.0)


def part_features(words: list[str], alone: np.ndarray, unigrams: np.ndarray,
                  known: Container[str], units: str) -> PartFeatures:
    """Standalone rates of the end units of each word (vectorised), and phrase flags.

    ``alone`` and ``unigrams`` are the cutter's per-unit counts (dense unit index);
    ``units`` is the engine's unit mode ("han" or "mixed").
    """
    if not words:
        empty = np.empty(0)
        return PartFeatures(empty, empty, np.empty(0, bool))
    enc, offsets = encode_words(words, units)
    idx = dense_index(enc.ids)
    rate = standalone_rate(alone[idx], unigrams[idx])
    phrase = np.array([len(known) > 0 and is_phrase(w, known) for w in words], dtype=bool)
    return PartFeatures(first=rate[offsets[:-1]], last=rate[offsets[1:] - 1], phrase=phrase)


def score(count: np.ndarray, left: np.ndarray, right: np.ndarray,
          parts: PartFeatures | None = None) -> np.ndarray:
    """The ranking score above (higher is better)."""
    evidence = np.log1p(count)
    freedom = np.minimum(left, right) / math.log(BUCKETS)
    if parts is None:
        return evidence * freedom
    binding = (1.0 - parts.first) * (1.0 - parts.last)
    return evidence * freedom * binding * ~parts.phrase
