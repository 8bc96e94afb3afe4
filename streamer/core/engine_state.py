"""The engine's state as data: what a snapshot stores, how it is restored, how shards merge.

:class:`EngineState` is the half of :class:`streamer.core.engine.Engine` that sees its tables
as a whole rather than batch by batch. It holds no tables of its own (Engine declares them);
keeping it apart keeps the engine's ingest and rescore steps readable, and puts everything
that must change with the snapshot layout (``STATE_VERSION``) in one file.

The state is a dict of numpy arrays and plain values (msgpack-able by storage.snapshot);
the key names are the snapshot format: renaming one breaks every stored snapshot.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Self

import numpy as np

from streamer.core.candidates import CandidateTable
from streamer.core.decay import CountClock, ExposureLog
from streamer.core.engine_config import STATE_VERSION, EngineConfig
from streamer.core.examples import POOL_SHARE
from streamer.core.lexicon import Lexicon
from streamer.core.listed import ListedRegistry
from streamer.core.neighbours import NeighbourTable
from streamer.core.results import Published
from streamer.core.sketch import NgramCounter, counter_from_state
from streamer.core.units import DENSE_SIZE, encode, encode_words


class EngineState:
    """state_dict / from_state / merge of an engine (mixed into Engine)."""

    config: EngineConfig
    counter: NgramCounter
    unigrams: np.ndarray
    unigrams_slow: np.ndarray
    alone: np.ndarray
    clock: CountClock
    exposure: ExposureLog
    _weight: int
    total_units: int
    units_ingested: int
    units_cut: int
    lines_ingested: int
    chars_ingested: int
    candidates: CandidateTable
    neighbours: NeighbourTable
    known: Lexicon
    listed: ListedRegistry
    _listed_slots: np.ndarray
    last_decay: float | None
    rng: np.random.Generator
    published: Published

    def fingerprint(self) -> str:
        return self.config.fingerprint()

    def _scale_counts(self, factor: float) -> None:
        """Multiply the n-gram counter and the per-unit tables by ``factor``, rounding
        stochastically (unbiased). ~0.1 s per 100 MB of sketch."""
        self.counter.scale(factor, self.rng)
        for name in ("unigrams", "alone"):
            u = getattr(self, name) * factor + self.rng.random(DENSE_SIZE)
            setattr(self, name, np.floor(u).astype(np.int64))
        self.total_units = int(self.total_units * factor)

    def merge(self, other: Self) -> None:
        """Add another shard's state (same fingerprint) into this one.

        Counters add (for count-min sketches the sum of two conservative-update
        tables is an overestimate of the union, equal to one run's table where no
        two keys share a counter); per-unit tables add; candidates are matched by
        key: counts add (both decayed to the later last decay first), and a piece of at
        most ``order`` units that only one side tracks gets the other side's n-gram count
        of it (_one_sided_seeds); first_seen is the earlier, last_seen the later,
        neighbour buckets add. Candidates beyond the
        capacity evict the lowest-count ones. ``other`` is changed (decayed, its clock
        aligned): merge a copy to keep it.
        """
        if other.fingerprint() != self.fingerprint():
            raise ValueError("engines differ in configuration (fingerprint)")
        self._align_decay(other)
        self._align_clocks(other)
        seed_keys, seed_units = self._one_sided_seeds(other)  # before the counters add
        self.counter.merge(other.counter)  # type: ignore[arg-type]
        self.unigrams += other.unigrams
        self.unigrams_slow += other.unigrams_slow  # both as of the same last decay now
        self.alone += other.alone
        for name in ("total_units", "units_ingested", "units_cut", "lines_ingested",
                     "chars_ingested"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        src, dst = other.candidates, self.candidates
        theirs = np.flatnonzero(src.used)
        slots = dst.lookup(src.keys[theirs])
        missing = slots < 0
        if missing.any():
            new_slots = dst.admit(src.keys[theirs[missing]], src.texts(theirs[missing]),
                                  0.0, protect=slots[~missing])
            slots[missing] = new_slots
            ok_new = new_slots >= 0
            dst.first_seen[new_slots[ok_new]] = src.first_seen[theirs[missing][ok_new]]
            dst.last_seen[new_slots[ok_new]] = src.last_seen[theirs[missing][ok_new]]
        ok = slots >= 0
        mine, theirs = slots[ok], theirs[ok]
        dst.total[mine] += src.total[theirs]
        dst.recent[mine] += src.recent[theirs]
        dst.slow[mine] += src.slow[theirs]
        dst.first_seen[mine] = np.minimum(dst.first_seen[mine], src.first_seen[theirs])
        dst.last_seen[mine] = np.maximum(dst.last_seen[mine], src.last_seen[theirs])
        # their examples, oldest first, one round per position (slots are distinct)
        held = np.flatnonzero(src.pool.has(theirs))
        theirs_ex = [src.examples_of(t) for t in theirs[held].tolist()]
        for k in range(max(map(len, theirs_ex), default=0)):
            has = [i for i, ex in enumerate(theirs_ex) if len(ex) > k]
            dst.add_examples(mine[held[has]], [theirs_ex[i][k] for i in has])
        seeded = dst.lookup(seed_keys)
        ok = seeded >= 0
        prior = self.clock.occurrences(seed_units[ok].astype(np.float64))
        dst.total[seeded[ok]] += np.rint(prior).astype(np.int64)
        dst.recent[seeded[ok]] += prior  # both are as of the same last decay: no forward
        dst.slow[seeded[ok]] += prior    # weight (the same approximation as _seed_counts)
        for side in ("left", "right"):
            a = getattr(self.neighbours, side)
            b = getattr(other.neighbours, side)
            total = a[mine].astype(np.int64) + b[theirs]
            peak = total.max(axis=1, keepdims=True)
            shift = np.maximum(np.ceil(np.log2(np.maximum(peak, 1) / 65535.0)), 0)
            a[mine] = (total // (2 ** shift).astype(np.int64)).astype(np.uint16)
        self.listed.merge(other.listed)
        self.exposure.merge(other.exposure)

    def _one_sided_seeds(self, other: EngineState) -> tuple[np.ndarray, np.ndarray]:
        """Keys of the pieces (of at most ``order`` units) that one engine tracks and the
        other does not, with the other's n-gram count of each (in clock units).

        The other engine saw those strings too, but never cut them out as a piece: their
        n-grams were not cohesive with its counts (a shard that sees 1/N of the stream
        reaches min_count N times later). As when an engine admits a piece
        (Engine._seed_counts), those occurrences count from the n-gram counter, so the
        merged count does not depend on which shard happened to admit the piece."""
        a, b = self.candidates, other.candidates
        mine, theirs = np.flatnonzero(a.used), np.flatnonzero(b.used)
        only_mine = mine[b.lookup(a.keys[mine]) < 0]
        only_theirs = theirs[a.lookup(b.keys[theirs]) < 0]
        keys, units = [], []
        for table, slots, counter in ((a, only_mine, other.counter),
                                      (b, only_theirs, self.counter)):
            short = slots[self._unit_lengths(table.texts(slots)) <= self.config.order]
            keys.append(table.keys[short])
            units.append(counter.query(table.keys[short]))
        return np.concatenate(keys), np.concatenate(units).astype(np.int64)

    def _unit_lengths(self, texts: list[str]) -> np.ndarray:
        """Length of each text in units (0 for one that no longer encodes to units)."""
        if not texts:
            return np.empty(0, np.int64)
        _, offsets = encode_words(texts, self.config.units)
        lengths = np.diff(offsets)
        if len(lengths) != len(texts):  # a text that encodes to no unit has no clause
            lengths = np.array([len(encode(t, self.config.units)) for t in texts], np.int64)
        return lengths

    def _align_decay(self, other: EngineState) -> None:
        """Bring both engines' candidate counts to the same time (merge).

        Recent and baseline counts are kept as of each engine's last decay, later
        occurrences forward-weighted (Engine._forward), so two shards that rescored at
        different times hold them on different scales: both are decayed to the later time
        before they add. Without decay this only sets both last_decay to the later one."""
        times = [t for t in (self.last_decay, other.last_decay) if t is not None]
        if times:
            later = max(times)
            self.decay_to(later)  # type: ignore[attr-defined]
            other.decay_to(later)  # type: ignore[attr-defined]

    def _align_clocks(self, other: EngineState) -> None:
        """Bring both engines' counters to the same clock units (merge)."""
        a, b = self.clock, other.clock
        if math.isinf(a.half_life) != math.isinf(b.half_life):
            other._convert_clock(a.half_life)
            b = other.clock
        if a.epoch is None or b.epoch is None or a.epoch == b.epoch:
            if a.epoch is None:
                a.epoch, a.unit, a.carry = b.epoch, b.unit, b.carry
            return
        late, early = (self, other) if a.epoch > b.epoch else (other, self)
        assert late.clock.epoch is not None and early.clock.epoch is not None
        hl = late.clock.half_life
        early._scale_counts(0.5 ** ((late.clock.epoch - early.clock.epoch) / hl))
        early.clock.epoch, early.clock.unit = late.clock.epoch, late.clock.unit
        if early is self:
            self.clock.carry = other.clock.carry

    def _convert_clock(self, half_life: float) -> None:
        """Re-express the counters for a half-life that is finite where the state's was
        infinite or the other way round (a ``discover --save-state`` snapshot seeds a
        daemon): plain occurrences <-> clock units."""
        new = CountClock.for_half_life(half_life)
        if not math.isinf(half_life):
            new.epoch = self.last_decay if self.last_decay is not None else None
        self._scale_counts(new.unit / self.clock.unit)
        self.clock = new
        self._weight = 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (msgpack-able; arrays as arrays)."""
        return {
            "version": STATE_VERSION,
            "config": {**asdict(self.config), "min_pmi": list(self.config.min_pmi),
                       "half_life": None if math.isinf(self.config.half_life)
                       else self.config.half_life},
            "counter": self.counter.state(),
            "unigrams": self.unigrams,
            "unigrams_slow": self.unigrams_slow,
            "alone": self.alone,
            "total_units": self.total_units,
            "units_ingested": self.units_ingested,
            "units_cut": self.units_cut,
            "lines_ingested": self.lines_ingested,
            "chars_ingested": self.chars_ingested,
            "candidates": self.candidates.state(),
            "neighbours": self.neighbours.state(),
            "discovered": self.listed.state(),  # key kept: snapshots of earlier versions load
            "last_decay": self.last_decay,
            "clock": self.clock.state(),
            "exposure": self.exposure.state(),
            "weight": self._weight,
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], known: Lexicon | None = None,
                   config: EngineConfig | None = None) -> Self:
        """Rebuild an engine; ``config`` may change non-shape fields (thresholds)."""
        saved = dict(state["config"])
        saved["min_pmi"] = tuple(saved["min_pmi"])
        saved["half_life"] = math.inf if saved["half_life"] is None else saved["half_life"]
        cfg = config or EngineConfig(**saved)
        eng = cls.__new__(cls)
        eng.config = cfg
        eng.counter = counter_from_state(state["counter"])
        eng.unigrams = np.array(state["unigrams"], dtype=np.int64)
        eng.alone = np.array(state["alone"], dtype=np.int64)
        if "unigrams_slow" in state:
            eng.unigrams_slow = np.array(state["unigrams_slow"], dtype=np.float64)
        else:
            # a state saved before the long-run unit table: its recent counts stand for
            # the long run (every unit's rise is 1 until the two windows part)
            eng.unigrams_slow = np.asarray(
                CountClock.from_state(state["clock"]).occurrences(
                    eng.unigrams.astype(np.float64)), dtype=np.float64)
        eng.total_units = int(state["total_units"])
        eng.units_ingested = int(state["units_ingested"])
        eng.units_cut = int(state.get("units_cut", 0))
        eng.lines_ingested = int(state["lines_ingested"])
        eng.chars_ingested = int(state["chars_ingested"])
        eng.candidates = CandidateTable.from_state(state["candidates"])
        if cfg.examples:  # a state from discover has no example pool
            eng.candidates.ensure_pool(eng.candidates.capacity // POOL_SHARE)
        eng.neighbours = NeighbourTable.from_state(state["neighbours"])
        eng.candidates._on_remove = eng.neighbours.clear  # type: ignore[method-assign]
        eng.known = known or Lexicon()
        eng.listed = ListedRegistry.from_state(state["discovered"])
        eng._listed_slots = np.empty(0, np.int64)  # set again by the next rescore
        eng.last_decay = state["last_decay"]
        eng.rng = np.random.default_rng()
        eng.rng.bit_generator.state = state["rng"]
        eng.clock = CountClock.from_state(state["clock"])
        eng.exposure = ExposureLog.from_state(state.get("exposure"))
        eng._weight = int(state["weight"])
        if math.isinf(eng.clock.half_life) != math.isinf(cfg.half_life):
            eng._convert_clock(cfg.half_life)
        eng.clock.half_life = cfg.half_life  # a changed (finite) half-life applies from now
        eng.published = Published()
        return eng
