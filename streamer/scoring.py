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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamer.lexicon import Lexicon
from streamer.neighbours import BUCKETS
from streamer.units import DIGITS_TAG, dense_index, encode_words

if TYPE_CHECKING:
    from streamer.engine import Engine


@dataclass(frozen=True)
class PartFeatures:
    """Per candidate: how loose its first and last part are; phrase flags."""

    first: np.ndarray
    last: np.ndarray
    phrase: np.ndarray


def is_phrase(parts: tuple[str, ...], min_part: int = 2) -> bool:
    """True when every part is a lexicon word of >= ``min_part`` characters, >= 2 parts."""
    return len(parts) >= 2 and all(len(p) >= min_part for p in parts)


def standalone_rate(alone: np.ndarray, occurrences: np.ndarray) -> np.ndarray:
    """a(u) = alone(u) / occurrences(u), 0 for units never seen."""
    return np.where(occurrences > 0, alone / np.maximum(occurrences, 1), 0.0)


def edge_looseness(part: str, rate: float, lexicon: Lexicon, number: bool) -> float:
    """How likely the edge part ``part`` is a word of its own joined to the rest."""
    if number:
        return 1.0
    if not lexicon.is_function(part):
        return rate
    if len(part) > 1:
        return 1.0
    return max(rate, lexicon.alone_rate(part))


def part_features(engine: Engine, words: list[str]) -> PartFeatures:
    """Looseness of the first and last part of each word, phrase flags."""
    if not words:
        empty = np.empty(0)
        return PartFeatures(empty, empty, np.empty(0, bool))
    enc, offsets = encode_words(words, engine.config.units)
    idx = dense_index(enc.ids)
    rate = standalone_rate(engine.alone[idx], engine.unigrams[idx])
    digits = (enc.ids & DIGITS_TAG) != 0
    a_first, a_last = rate[offsets[:-1]], rate[offsets[1:] - 1]
    d_first, d_last = digits[offsets[:-1]], digits[offsets[1:] - 1]
    lex = engine.known
    if len(lex) == 0:
        return PartFeatures(np.where(d_first, 1.0, a_first), np.where(d_last, 1.0, a_last),
                            np.zeros(len(words), bool))
    first = np.empty(len(words))
    last = np.empty(len(words))
    phrase = np.zeros(len(words), bool)
    for i, w in enumerate(words):
        parts = lex.segment(w)
        first[i] = edge_looseness(parts[0], a_first[i], lex, d_first[i])
        last[i] = edge_looseness(parts[-1], a_last[i], lex, d_last[i])
        phrase[i] = is_phrase(parts)
    return PartFeatures(first, last, phrase)


def score(count: np.ndarray, left: np.ndarray, right: np.ndarray,
          parts: PartFeatures | None = None, pmi: np.ndarray | None = None,
          total: float = 0.0) -> np.ndarray:
    """The ranking score above (higher is better)."""
    evidence = np.log1p(count)
    freedom = np.minimum(left, right) / math.log(BUCKETS)
    out = evidence * freedom
    if COHESION and pmi is not None and total > 1:
        level = max(math.log(math.sqrt(total) / 15.0), 1.0)
        out = out * np.clip(pmi / level, 0.0, 1.0)
    if parts is None:
        return out
    binding = (1.0 - parts.first) * (1.0 - parts.last)
    return out * binding * ~parts.phrase


COHESION = True
