"""64-bit keys of n-grams and of arbitrary spans of units, vectorised.

The key of a unit sequence u_0..u_{n-1} is a polynomial hash mod 2**64 plus a
length salt:

    key(u) = sum_j  mix(u_j) * P**j  +  n * L        (mod 2**64)

with P and L fixed odd constants and mix() a 64-bit finaliser. Because the hash is
a polynomial, the key of every n-gram at every position follows from the (n-1)-gram
keys with one multiply-add (``ngram_keys``), and the key of any span follows from
prefix sums (``span_keys``): both give the same key for the same units, which is
what lets a piece found by the cutter be looked up among the counted n-grams.
Collisions are those of a 64-bit hash: negligible below billions of keys.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

P = np.uint64(0x9E3779B97F4A7C15)
L = np.uint64(0xC2B2AE3D27D4EB4F)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads unit ids (small code points) over 64 bits."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@lru_cache(maxsize=8)
def _power_table(base: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    inverse = pow(base, -1, 2**64)
    with np.errstate(over="ignore"):
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        q = np.full(size, inverse, dtype=np.uint64)
        q[0] = 1
        return np.cumprod(p, dtype=np.uint64), np.cumprod(q, dtype=np.uint64)


def power_table(base: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """base**i and base**-i mod 2**64 for i < n (base odd; cached by size class, so
    a few tables serve every chunk size)."""
    return _power_table(base, 1 << max(16, int(n - 1).bit_length()))


def powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i mod 2**64 for i < n."""
    return power_table(int(P), n)


def ngram_keys(mixed: np.ndarray, first: np.ndarray, order: int) -> list[tuple[np.ndarray,
                                                                                np.ndarray]]:
    """Keys and validity of every n-gram, n = 1..order.

    ``mixed`` is mix(unit ids); ``first`` marks units that start a clause.
    Returns [(keys_n, valid_n)] where keys_n[i] is the key of units i..i+n-1
    (length len-n+1) and valid_n[i] says that no clause break lies inside.
    Cost: O(len * order).
    """
    out = []
    n_units = len(mixed)
    with np.errstate(over="ignore"):
        h = mixed.copy()
        valid = np.ones(n_units, dtype=bool)
        pj = np.uint64(1)
        for n in range(1, order + 1):
            if n > 1:
                if n > n_units:
                    out.append((np.empty(0, np.uint64), np.empty(0, bool)))
                    continue
                pj = pj * P
                h = h[:-1] + mixed[n - 1:] * pj
                valid = valid[:-1] & ~first[n - 1:]
            out.append((h + np.uint64(n) * L, valid))
    return out


def span_keys(mixed: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Keys of spans units[starts[k]:ends[k]] (same key as ngram_keys gives)."""
    n_units = len(mixed)
    pp, pinv = powers(n_units + 1)
    with np.errstate(over="ignore"):
        acc = np.zeros(n_units + 1, dtype=np.uint64)
        np.cumsum(mixed * pp[:n_units], out=acc[1:])
        h = (acc[ends] - acc[starts]) * pinv[starts]
        return h + (ends - starts).astype(np.uint64) * L
