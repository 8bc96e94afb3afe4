"""Engine parameters, and the one place their values are checked.

Every front end (the service's TOML and flags, `streamer discover`'s options, the Python API)
builds an :class:`EngineConfig`; a bad value raises :class:`SettingError` naming the field, and
each front end reports it its own way (the service as ``<file>: engine.<field>: <problem>``
with exit status 2, discover as ``--<option>``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from streamer.core.segmentation import min_pmi_for
from streamer.core.sketch import blocks_for_bytes

#: resident bytes of a candidate slot, all in arrays allocated (and touched) at start:
#: 48 for counts and times (6 x 8), 2 flags, 12 for the sorted index (key 8, slot 4),
#: 4 for the free-slot stack, 49 for the text (48 bytes of UTF-8 + length), 8 for the
#: bounded overflow of longer texts, 128 for 2 x 32 uint16 neighbour buckets, 4 for
#: the slot's example entry, 49 for its share of the example pool (one entry of
#: 3 x 128 bytes + lengths + owner + free stack per 8 slots), 16 for the once-listed
#: registry (key and time, one per slot). discover keeps no examples: 267 there.
SLOT_RESIDENT_BYTES = 320
#: bytes a slot is budgeted at (the candidate half of `memory` / SLOT_BYTES = capacity):
#: its resident arrays plus its share of what the daemon holds at peaks, ~245 for the
#: private copy of its state while a snapshot is written (the texts and examples packed)
#: and ~170 for each candidate a rescore scores (text, per-candidate arrays; about half
#: the slots). docs/decisions.md gives the measurements behind the figure.
SLOT_BYTES = 560
#: layout version of the engine state: fixed-width arrays for texts, examples and the
#: once-listed registry
STATE_VERSION = 2

#: the smallest memory budget: below it the sketch is too narrow for any count to mean much
MIN_MEMORY = 4 * 2**20
#: the longest n-gram order: counting cost grows with the order; longer words still emerge
#: from chains of cohesive n-grams
MAX_ORDER = 8
UNITS = ("mixed", "han")
DEPTHS = (1, 2, 4, 8, 16)


class SettingError(ValueError):
    """An impossible engine setting: ``field`` names it, ``problem`` says why (one line)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def default_min_pmi(order: int) -> tuple[float, ...]:
    """The reference thresholds 2, 4, 6 nats for orders 2..4, continued +2 per further order."""
    return tuple(2.0 * (n - 1) for n in range(2, order + 1))


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class EngineConfig:
    """Engine parameters. Fields marked (shape) change the state's layout.

    order        longest n-gram counted, units, 2..8 (shape)
    min_count    minimum count of a cohesive n-gram and of a listed word, >= 1
    min_pmi      pmi thresholds for orders 2..order, nats, non-decreasing; 1 to order-1
                 values, missing orders continue +2 each; None = 2, 4, 6, ...
    bound_share  with a known lexicon, the back-check also keeps a piece whose every
                 split either passes min_pmi or has its rarer side inside the piece in at
                 least this share of its uses (the ceiling rule, in
                 segmentation.cohesive_masks); 0..1, 0 = off (the reference's test alone)
    min_entropy  minimum of left and right neighbour entropy, nats, >= 0
    units        "mixed" (Han characters and ASCII runs) or "han" (shape)
    memory       bytes for the counting state: sketch, candidates, neighbours; at least
                 4 MiB and at most the machine's physical memory (shape)
    exact        exact n-gram counts instead of a sketch (unbounded memory) (shape)
    depth        count-min rows: counters per key in its block, 1, 2, 4, 8 or 16 (shape)
    seed         hash seed, 0..2^63-1 (shape)
    half_life    seconds of stream time for decay, > 0; inf = no decay
    capacity     candidate slots, >= 1; None = derived from memory (shape)
    max_words    most words published by a rescore (daemon), >= 1; None = all
    examples     example contexts kept per listed word (0: none, as in discover)
    prefault     touch the sketch's pages at construction, so a long-running service
                 pays its resident size at start (flat RSS); discover does not (its
                 first pass touches them within seconds, in the update threads)
    background_updates  sketch updates run in one background thread, in order, while
                 the caller goes on (every read of the sketch waits for them; the same
                 table): discover's first pass, whose encoding keeps the other core busy.
                 Off (the daemon), a large update is split over two threads that own
                 disjoint halves of the table, and the caller waits for both
    """

    order: int = 4
    min_count: int = 8
    min_pmi: tuple[float, ...] | None = None
    bound_share: float = 0.9
    min_entropy: float = 0.6
    units: str = "mixed"
    memory: int = 256 * 2**20
    exact: bool = False
    depth: int = 4
    seed: int = 0
    half_life: float = math.inf
    capacity: int | None = None
    max_words: int | None = None
    examples: int = 3
    prefault: bool = True
    background_updates: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> SettingError:
            return SettingError(name, f"{problem}, got {getattr(self, name)!r}")

        def at_least(name: str, lo: int, hi: int | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, "must be an integer")
            if v < lo:
                raise bad(name, f"must be an integer >= {lo}")
            if hi is not None and v > hi:
                raise bad(name, f"must be an integer <= {hi}")

        at_least("order", 2, MAX_ORDER)
        at_least("min_count", 1)
        if self.min_pmi is None:
            object.__setattr__(self, "min_pmi", default_min_pmi(self.order))
        pmi = tuple(float(x) for x in self.min_pmi)
        if not 1 <= len(pmi) <= self.order - 1:
            raise bad("min_pmi", f"needs 1 to {self.order - 1} values (one per order "
                                 f"2..{self.order}, order = {self.order}; missing orders "
                                 "continue +2 per order)")
        if not all(math.isfinite(x) for x in pmi):
            raise bad("min_pmi", "must be finite numbers")
        if any(b < a for a, b in zip(pmi, pmi[1:], strict=False)):
            # a longer n-gram's weakest split is usually more cohesive, never required to be
            # less: a falling threshold is a typo (the order of the values), not a choice
            raise bad("min_pmi", "must increase (or stay equal) with the order")
        object.__setattr__(self, "min_pmi", tuple(min_pmi_for(self.order, pmi)))
        if isinstance(self.bound_share, bool) or not (
                isinstance(self.bound_share, (int, float)) and 0 <= self.bound_share <= 1):
            raise bad("bound_share", "must be a number from 0 to 1 (0: off)")
        if not (self.min_entropy >= 0 and math.isfinite(self.min_entropy)):
            raise bad("min_entropy", "must be a number >= 0")
        if self.units not in UNITS:
            raise bad("units", f"must be one of {', '.join(map(repr, UNITS))}")
        at_least("memory", 0)
        if self.memory < MIN_MEMORY:
            raise bad("memory", f"must be at least 4MB ({MIN_MEMORY} bytes)")
        ram = physical_memory()
        if ram is not None and self.memory > ram:
            raise bad("memory", f"is more than this machine's physical memory ({ram} bytes)")
        if self.depth not in DEPTHS:
            raise bad("depth", "must be 1, 2, 4, 8 or 16 (counters per key, >= 1)")
        at_least("seed", 0, 2**63 - 1)
        if not self.half_life > 0:
            raise bad("half_life", "must be positive")
        for name in ("capacity", "max_words"):
            if getattr(self, name) is not None:
                at_least(name, 1)
        at_least("examples", 0)

    def thresholds(self) -> list[float]:
        """pmi threshold of each order 2..order, nats."""
        assert self.min_pmi is not None
        return min_pmi_for(self.order, self.min_pmi)

    def layout(self) -> tuple[int, int]:
        """(sketch blocks, candidate capacity) from the memory budget.

        Half the budget goes to the sketch (the largest power of two of 64-byte
        blocks that fits), the rest to candidate slots of SLOT_BYTES each.
        """
        blocks = blocks_for_bytes(self.memory // 2)
        rest = self.memory - (0 if self.exact else blocks * 64)
        capacity = self.capacity or max(1024, rest // SLOT_BYTES)
        return blocks, capacity

    def fingerprint(self) -> str:
        """Hex digest of the fields that shape the state (snapshots must match)."""
        blocks, capacity = self.layout()
        shape: dict[str, Any] = {"order": self.order, "units": self.units,
                                 "exact": self.exact, "depth": self.depth, "seed": self.seed,
                                 "blocks": blocks, "capacity": capacity,
                                 "version": STATE_VERSION}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
