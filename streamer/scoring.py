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
from streamer.units import dense_index, encode_words

if TYPE_CHECKING:
    from streamer.engine import Engine


@dataclass(frozen=True)
class PartFeatures:
    """Per candidate: how loose its first and last part are; phrase flags."""

    first: np.ndarray
    last: np.ndarray
    phrase: np.ndarray
    #: sum of ln P(part) under the lexicon (None without frequencies), part counts
    log_parts: np.ndarray | None = None
    nparts: np.ndarray | None = None


def is_phrase(parts: tuple[str, ...], lexicon: Lexicon) -> bool:
    """True when ``parts`` are >= 2 known words of >= 2 characters, glued by nothing but
    function words: 宾馆|反馈, 尊敬|的|宾客. A part that is a single unit not tagged a
    function word (锦江|之|星: 星) makes it not a phrase."""
    long = 0
    for p in parts:
        if p not in lexicon:
            return False
        if len(p) >= 2:
            long += 1
        elif not lexicon.is_function(p):
            return False
    return long >= 2


def standalone_rate(alone: np.ndarray, occurrences: np.ndarray) -> np.ndarray:
    """a(u) = alone(u) / occurrences(u), 0 for units never seen."""
    return np.where(occurrences > 0, alone / np.maximum(occurrences, 1), 0.0)


def is_number(part: str) -> bool:
    """A part that is a number: an ASCII run that starts with a digit (1997, 10, 1g)."""
    return part[:1].isdigit() and part.isascii()


def is_quantity(parts: tuple[str, ...], lexicon: Lexicon) -> bool:
    """A number followed by a measure word (numeral, classifier or time word by the
    lexicon's tag) anywhere in the word: 第|2|天, 到|2000|年, 盾兑|1|美元."""
    return any(is_number(a) and lexicon.is_measure(b)
               for a, b in zip(parts, parts[1:], strict=False))


def edge_looseness(part: str, rest: str, rate: float, lexicon: Lexicon) -> float:
    """How likely the edge part ``part`` is a word of its own joined to ``rest``
    (see the module docstring): 1 for a number, for a function word of two or more
    characters and for a function word joined to a known word; max(a, b) for another
    function word or a bare morpheme; a(u) otherwise."""
    if is_number(part):
        return 1.0
    if lexicon.is_function(part):
        if len(part) > 1 or (len(rest) > 1 and rest in lexicon):
            return 1.0
        return max(rate, lexicon.alone_rate(part))
    if len(part) == 1 and lexicon.is_morpheme(part):
        rate = max(rate, lexicon.alone_rate(part))
    if ATTACH and len(part) == 1 and len(rest) > 1 and rest in lexicon:
        return 1.0 - (1.0 - rate) ** 2
    return rate


def part_features(engine: Engine, words: list[str]) -> PartFeatures:
    """Looseness of the first and last part of each word, phrase flags."""
    if not words:
        empty = np.empty(0)
        return PartFeatures(empty, empty, np.empty(0, bool))
    enc, offsets = encode_words(words, engine.config.units)
    idx = dense_index(enc.ids)
    rate = standalone_rate(engine.alone[idx], engine.unigrams[idx])
    a_first, a_last = rate[offsets[:-1]].tolist(), rate[offsets[1:] - 1].tolist()
    lex = engine.known
    first = np.empty(len(words))
    last = np.empty(len(words))
    phrase = np.zeros(len(words), bool)
    log_parts = np.zeros(len(words))
    nparts = np.zeros(len(words))
    for i, w in enumerate(words):
        parts = lex.segment(w)
        log_parts[i] = lex.log_prob_parts(parts)
        nparts[i] = len(parts)
        first[i] = edge_looseness(parts[0], w[len(parts[0]):], a_first[i], lex)
        last[i] = edge_looseness(parts[-1], w[:-len(parts[-1])], a_last[i], lex)
        phrase[i] = is_phrase(parts, lex) or is_quantity(parts, lex)
    if not lex.freq:
        return PartFeatures(first, last, phrase)
    return PartFeatures(first, last, phrase, log_parts, nparts)


def score(count: np.ndarray, left: np.ndarray, right: np.ndarray,
          parts: PartFeatures | None = None, pmi: np.ndarray | None = None,
          total: float = 0.0) -> np.ndarray:
    """The ranking score above (higher is better)."""
    evidence = np.log1p(count)
    freedom = np.minimum(left, right) / math.log(BUCKETS)
    out = evidence * freedom
    if pmi is not None and total > 1:
        level = cohesion_level(total)
        if MODE in ("text", "both") or parts is None or parts.log_parts is None:
            out = out * np.clip(pmi / level, 0.0, 1.0)
        if MODE in ("lex", "both") and parts is not None and parts.log_parts is not None:
            lp = ((np.log(np.maximum(count, 1) / total) - parts.log_parts)
                  / np.maximum(parts.nparts - 1, 1))
            out = out * np.clip(lp / level, 0.0, 1.0)
    if parts is None:
        return out
    binding = (1.0 - parts.first) * (1.0 - parts.last)
    return out * binding * ~parts.phrase


def cohesion_level(total: float) -> float:
    """ln(sqrt(N) / 15) nats for N units of text, at least 1 (see the docstring)."""
    return max(math.log(math.sqrt(total) / 15.0), 1.0)

MODE = "both"
ATTACH = 1
