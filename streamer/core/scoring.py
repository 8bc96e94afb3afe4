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


# ---------------------------------------------------------------------- trending

#: occurrences added to every expected count of the trend test: a prior that a word
#: could have turned up this often by chance, so a handful of occurrences is weak evidence
TREND_PRIOR = 5.0


def rise_deviance(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """One-sided Poisson likelihood-ratio (G) statistic of a count against its expectation.

        g(o, e) = 2 [o ln(o / e) - (o - e)]   if o > e,   else 0

    Twice the log-likelihood ratio (nats) of "o comes from a Poisson of mean o" against
    "of mean e": 0 when the count is at or below what was expected (a fall is not a rise),
    growing like o ln(o / e) with the count. ``expected`` must be positive.
    """
    o = np.asarray(observed, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = 2.0 * (o * np.log(o / e) - (o - e))
    return np.where(o > e, g, 0.0)


def trend(recent: np.ndarray, slow: np.ndarray, since_fast: np.ndarray,
          since_slow: np.ndarray, all_slow: float,
          prior: float = TREND_PRIOR) -> np.ndarray:
    """Evidence that a word is rising now, in standard deviations (root of a deviance).

    Inputs, per word: F = ``recent`` (occurrences decayed with the half-life h) and
    S = ``slow`` (decayed with 16 h, the long run); X_f and X_s = ``since_fast`` and
    ``since_slow``, the text ingested since the word was first seen (from the start of
    the batch it was first seen in), weighted by the same two decays (units of text);
    N_s = ``all_slow``, all the text weighted by the slow decay. Two nested one-sided
    Poisson tests against what the word's long-run rate predicts, each expectation
    raised by the prior a = ``prior`` occurrences (rise_deviance is g):

        new    G_new  = g(S, S * X_s / N_s + a)    its occurrences since first seen against
                        its long-run share of the text over the same span (a word absent
                        before and steady since is new to the stream: X_s << N_s)
        now    G_rise = g(F, S * X_f / X_s + a)    its recent occurrences against its rate
                        since first seen (an old word that speeds up)
        trend  z = sqrt(G_new + G_rise)

    A word steady since the stream began has X_s = N_s and F = S X_f / X_s: both tests
    are 0. The ranking value (``emergence``) is z times the word's ``score``.

    Example: a word first seen when 80% of the slow-weighted text had gone by
    (X_s / N_s = 0.2), S = 20, F = 19, X_f / X_s = 0.95: G_new = g(20, 4 + 5) =
    2 (20 ln(20 / 9) - 11) = 9.940, G_rise = g(19, 19 + 5) = 0, z = 3.153. A function-word
    join seen since the start (X_s = N_s) with S = 600, F = 560 while X_f / X_s = 0.8:
    G_new = g(600, 605) = 0, G_rise = g(560, 480 + 5) = 2 (560 ln(560 / 485) - 75) =
    11.042, z = 3.323. With scores 2.0 (the word) and 0.5 (the join): emergence 6.31
    against 1.66. With 8 occurrences, all in the last 1% of the text: G_new = g(8, 0.08 + 5)
    = 1.426, z = 1.19: a handful cannot lead.
    """
    f = np.asarray(recent, dtype=np.float64)
    s = np.asarray(slow, dtype=np.float64)
    xf = np.asarray(since_fast, dtype=np.float64)
    xs = np.asarray(since_slow, dtype=np.float64)
    # no text on record since the word was first seen (an empty log): no evidence
    seen = xs > 0
    safe = np.where(seen, xs, 1.0)
    share_new = np.where(seen, np.minimum(xs / all_slow if all_slow > 0 else 1.0, 1.0), 1.0)
    fast_share = np.where(seen, xf / safe, 1.0)
    g_new = rise_deviance(s, s * share_new + prior)
    g_rise = rise_deviance(f, s * fast_share + prior)
    return np.sqrt(g_new + g_rise)
