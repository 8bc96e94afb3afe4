"""The clock of the decaying counters: forward decay in integer units.

With a half-life h of stream time, an occurrence at time t should weigh 2^(-(T - t)/h)
when counts are read at time T. Scaling every counter of a sketch of hundreds of MB at
each read is out of the question, and scaling it in small steps with stochastic
rounding (the obvious alternative) adds +-1 occurrence of noise to every small count at
every step, which is exactly the range where new words live (min_count is 8).

Instead the counters are kept in *units*: an occurrence at time t adds

    w(t) = R * 2^((t - e) / h)       units      (R = RESOLUTION, e = the epoch)

so at any time T the count of a key in occurrences-as-of-T is units / w(T), exact but
for the rounding of w to an integer: less than one unit, 1/R occurrence, per
occurrence (the rounding is carried from batch to batch, so it does not drift).
Ratios of counts (pmi) need no conversion at all; a count threshold becomes
min_count * w(T) units. When w would reach 2R the epoch moves on by whole half-lives
and every counter is halved once (stochastic rounding, half a unit of error), so an
occurrence weighs R to 2R units: a uint32 counter holds 2^32 / 2R = 33 M recent
occurrences before it saturates (as an n-gram that frequent has no use for more), and
the sketch is rescaled once a half-life instead of every few minutes.

Without decay (h = inf, batch runs) R = 1 and w = 1: counts are plain occurrences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

RESOLUTION = 64  # units an occurrence weighs at the start of an epoch


@dataclass
class CountClock:
    """Forward-decay weights of the counters (see the module docstring)."""

    half_life: float
    resolution: int = RESOLUTION
    epoch: float | None = None   # stream time where an occurrence weighs `resolution`
    unit: float = 1.0            # units an occurrence weighs now (w(T) at the last advance)
    carry: float = 0.0           # rounding owed by the integer weights handed out so far

    @classmethod
    def for_half_life(cls, half_life: float) -> CountClock:
        if math.isinf(half_life):
            return cls(half_life, resolution=1, unit=1.0)
        return cls(half_life, unit=float(RESOLUTION))

    def advance(self, now: float) -> float | None:
        """Move the clock to stream time ``now`` (never before the epoch).

        Returns the factor by which every counter must be scaled when the epoch
        moves on (0.5 per whole half-life elapsed), else None.
        """
        if math.isinf(self.half_life):
            return None
        if self.epoch is None:
            self.epoch = now
        factor = None
        k = math.floor((now - self.epoch) / self.half_life)
        if k >= 1:
            factor = 0.5 ** k
            self.epoch += k * self.half_life
            self.carry *= factor
        age = max(now - self.epoch, 0.0)
        self.unit = self.resolution * 2.0 ** (age / self.half_life)
        return factor

    def weight(self) -> int:
        """Integer units for one occurrence now; the rounding is carried to the next."""
        w = math.floor(self.unit + self.carry)
        self.carry += self.unit - w
        return w

    def units(self, occurrences: float) -> int:
        """The smallest unit count that is at least ``occurrences`` as of now."""
        return max(math.ceil(occurrences * self.unit - 1e-9), 1)

    def occurrences(self, units: Any) -> Any:
        """Units (a number or an array) as occurrences as of now."""
        return units / self.unit

    def state(self) -> dict[str, Any]:
        return {"half_life": None if math.isinf(self.half_life) else self.half_life,
                "resolution": self.resolution, "epoch": self.epoch, "unit": self.unit,
                "carry": self.carry}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> CountClock:
        hl = math.inf if st["half_life"] is None else float(st["half_life"])
        return cls(hl, int(st["resolution"]), st["epoch"], float(st["unit"]),
                   float(st["carry"]))


class ExposureLog:
    """How much text the stream carried, and when: (stream time, units) per batch.

    The trend test (scoring.trend) needs the text ingested since a word was first seen,
    weighted by each decay. A word first seen at t was seen in the batch that ended at
    t, so the text since then includes that whole batch. At most ``capacity`` entries
    are kept: when full, the older half is coarsened by merging neighbours (units add,
    the later time stays), so recent history keeps batch resolution and old history,
    which the decays weigh little, gets coarser (a word first seen there gets a span
    that starts a little earlier: a slightly smaller trend, never a larger one).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.times = np.empty(0, dtype=np.float64)
        self.units = np.empty(0, dtype=np.float64)

    def add(self, now: float, units: float) -> None:
        if len(self.times) and now <= self.times[-1]:
            self.units[-1] += units  # same batch time (or a clock that went back)
            return
        self.times = np.append(self.times, now)
        self.units = np.append(self.units, float(units))
        if len(self.times) > self.capacity:
            self._coarsen()

    def _coarsen(self) -> None:
        old = (len(self.times) // 2) & ~1  # an even number of the oldest entries
        t, u = self.times, self.units
        self.times = np.concatenate([t[1:old:2], t[old:]])
        self.units = np.concatenate([u[0:old:2] + u[1:old:2], u[old:]])

    def since(self, starts: np.ndarray, now: float, half_life: float) -> tuple[np.ndarray, float]:
        """(text since each time in ``starts``, all text), in units weighted by
        2^(-(now - t) / half_life); the batch that ended at a start is included."""
        w = self.units * np.exp2(-(now - self.times) / half_life)
        suffix = np.append(np.cumsum(w[::-1])[::-1], 0.0)
        idx = np.searchsorted(self.times, np.asarray(starts, dtype=np.float64), side="left")
        return suffix[idx], float(suffix[0])

    def merge(self, other: ExposureLog) -> None:
        times = np.concatenate([self.times, other.times])
        units = np.concatenate([self.units, other.units])
        uniq, inv = np.unique(times, return_inverse=True)
        self.times, self.units = uniq, np.bincount(inv, weights=units, minlength=len(uniq))
        while len(self.times) > self.capacity:
            self._coarsen()

    def state(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "times": self.times, "units": self.units}

    @classmethod
    def from_state(cls, st: dict[str, Any] | None) -> ExposureLog:
        """A log from ``state()``; an empty one for a state saved without it (words
        tracked before the log's first entry count as seen since its start)."""
        if not st:
            return cls()
        log = cls(int(st["capacity"]))
        log.times = np.array(st["times"], dtype=np.float64)
        log.units = np.array(st["units"], dtype=np.float64)
        return log
