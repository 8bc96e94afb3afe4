"""Cohesion and cutting (预分词), vectorised over a whole chunk of clauses.

For an n-gram w (n >= 2) with count c(w), over N units counted in all:

    pmi(w) = min_{0<k<n}  ln( N * c(w) / (c(w[:k]) * c(w[k:])) )          [nats]

w is *cohesive* when c(w) >= min_count and pmi(w) >= min_pmi[n]. The boundary
between two adjacent units is kept only if no cohesive n-gram covers both units;
pieces are the maximal runs between kept boundaries, so chains of overlapping
cohesive n-grams join into pieces longer than the order.

Example (from the tests): with 共和国 cohesive and 共和 not, 中华人民共和国 stays
whole while 我一共和三个人去玩 is cut between 共 and 和 (no cohesive n-gram there
covers both).

Every n-gram's count at every position is looked up once (Engine._position_counts,
or in C by CountMinSketch.cohesive), and each order's split maximum of products is
taken over shifted views of those arrays, so the cost is O(units * order**2) array
operations, with no per-character Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_U32 = 2**32 - 1


def min_pmi_for(order: int, min_pmi: Sequence[float]) -> list[float]:
    """Threshold per order 2..order; missing orders continue the pattern (+2 each)."""
    th = list(min_pmi)
    while len(th) < order - 1:
        th.append(th[-1] + 2.0)
    return th[: order - 1]


def log_counts(counts: list[np.ndarray]) -> list[np.ndarray]:
    """ln of each order's position counts (float32; -inf for 0), computed once per chunk."""
    with np.errstate(divide="ignore"):
        return [np.log(c.astype(np.float32)) for c in counts]


def pmi_at(logs: list[np.ndarray], n: int, log_total: float) -> np.ndarray:
    """pmi of the n-gram at every position (length len(logs[n-1])), nats.

    ``logs`` comes from log_counts. Zero counts give -inf (never cohesive).
    """
    with np.errstate(invalid="ignore"):
        m = len(logs[n - 1])
        best = np.full(m, np.inf, dtype=np.float32)
        for k in range(1, n):
            v = logs[n - 1] - logs[k - 1][:m]
            v -= logs[n - k - 1][k:k + m]
            np.minimum(best, v, out=best)
        best += np.float32(log_total)
        best[np.isnan(best)] = -np.inf
    return best


def cohesive_masks(keys: list[tuple[np.ndarray, np.ndarray]], counts: list[np.ndarray],
                   total: int, min_count: int, thresholds: Sequence[float],
                   bound: float = 0.0) -> list[np.ndarray]:
    """cohesive[n-2][i]: the n-gram at i (n = 2..N) is cohesive.

    The pmi test without logarithms: pmi(w) >= t  <=>

        N * c(w) >= e**t * max_k c(w[:k]) * c(w[k:])

    with the products in uint64 and the comparison in float64, which is what the C
    kernel (CountMinSketch.cohesive) computes too, bit for bit.

    With ``bound`` > 0 a split k that fails the pmi test still holds when its rarer
    side is bound to the other, c(w) >= bound * min(c(w[:k]), c(w[k:])) (the ceiling
    rule; the engine's back-check uses it with a lexicon, Engine._back_check_chunk).
    Why: pmi_k(w) = ln(N / max(c(w[:k]), c(w[k:]))) + ln(c(w) / min(...)), so no count
    can lift pmi_k above the ceiling ln(N / c(common side)). A 4-gram that starts or
    ends with a character more frequent than e**-6 = 0.25% of the text can never
    reach min_pmi[4] = 6 nats: after People's Daily and half of the hotel reviews,
    大|堂经理 is at 5.1 nats with 堂经理 inside 大堂经理 in all of its 82 uses, the
    most cohesive that split can be. Since c(a), c(b) >= c(w), every split's pmi is also
    at most ln(N / c(w)): a 4-gram used more than N * e**-6 times (0.25% of the units)
    can never reach 6 nats, however tightly bound.
    """
    out = []
    for n in range(2, len(keys) + 1):
        _, valid = keys[n - 1]
        m = len(valid)
        if m == 0:
            out.append(np.zeros(0, bool))
            continue
        c = np.minimum(counts[n - 1], _U32)
        # counts as the C kernel holds them: uint32, saturated
        u = [np.minimum(x, _U32).astype(np.uint64) for x in counts[:n - 1]]
        lhs = float(total) * c.astype(np.float64)
        e = math.exp(thresholds[n - 2])
        ok = valid & (c >= min_count)
        for k in range(1, n):
            # every split against the threshold is the largest product against it: the
            # float conversion and the product are monotone
            a, b = u[k - 1][:m], u[n - k - 1][k:k + m]
            holds = lhs >= e * (a * b).astype(np.float64)
            if bound > 0:
                holds |= c >= bound * np.minimum(a, b).astype(np.float64)
            ok &= holds
        out.append(ok)
    return out


@dataclass(slots=True)
class Pieces:
    """Pieces of a chunk: units starts[k]..ends[k]-1, with their neighbours.

    left/right: unit id of the neighbour, or -1 at a clause edge.
    """

    starts: np.ndarray
    ends: np.ndarray
    left: np.ndarray
    right: np.ndarray


def cut(ids: np.ndarray, first: np.ndarray, cohesive: list[np.ndarray]) -> Pieces:
    """Cut units into pieces: keep a boundary unless a cohesive n-gram covers it."""
    n_units = len(ids)
    if n_units == 0:
        empty = np.empty(0, np.int64)
        return Pieces(empty, empty, empty, empty)
    joined = np.zeros(n_units - 1, dtype=bool)
    for n_minus_2, coh in enumerate(cohesive):
        n = n_minus_2 + 2
        m = len(coh)
        if m == 0:
            continue
        for t in range(n - 1):
            joined[t:t + m] |= coh
    starts_mask = first.copy()
    if n_units > 1:
        starts_mask[1:] |= ~joined
    starts = np.flatnonzero(starts_mask)
    ends = np.append(starts[1:], n_units)
    left = np.full(len(starts), -1, dtype=np.int64)
    right = np.full(len(starts), -1, dtype=np.int64)
    has_left = ~first[starts]
    left[has_left] = ids[starts[has_left] - 1]
    inner = ends < n_units
    has_right = np.zeros(len(starts), dtype=bool)
    has_right[inner] = ~first[ends[inner]]
    right[has_right] = ids[ends[has_right]]
    return Pieces(starts, ends, left, right)
