"""The discovery engine: synchronous, single writer, no asyncio.

Where a line of text goes::

    lines ──units.encode──> unit ids + clause starts
          ──ngrams.ngram_keys──> keys of n-grams, orders 1..N
          ──count phase──> n-gram counter (count-min sketch or exact) + unigram table
          ──cut phase──> segmentation.cohesive_masks (pmi from current counts)
                         segmentation.cut -> pieces
                         candidates.CandidateTable (multi-unit pieces, counted)
                         neighbours.NeighbourTable (left/right units of each piece)
    rescore ──> back-check, neighbour entropy, known lexicon, scoring.rank
            ──> results.Published (immutable)

A batch run (``discover``) does the count phase over all input, then the cut
phase over all input again, so every piece is cut with the final counts. The
daemon does both phases on each batch (cutting with the counts so far) and
rescores periodically; counts decay with a half-life in stream time.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.core import scoring
from streamer.core.candidates import CandidateTable
from streamer.core.decay import CountClock, ExposureLog
from streamer.core.engine_config import EngineConfig
from streamer.core.engine_state import EngineState
from streamer.core.examples import POOL_SHARE
from streamer.core.lexicon import Lexicon
from streamer.core.listed import ListedRegistry
from streamer.core.neighbours import NeighbourTable
from streamer.core.ngrams import L, mix, ngram_keys, span_keys
from streamer.core.results import Published, Word
from streamer.core.segmentation import cohesive_masks, cut, log_counts, pmi_at
from streamer.core.sketch import (
    CountMinSketch,
    ExactCounter,
    NgramCounter,
    ngram_count_keys,
)
from streamer.core.units import DENSE_SIZE, HAN_LIMIT, Encoded, dense_index, encode, encode_words


@dataclass(slots=True)
class EncodedBatch:
    """A batch encoded and keyed (Engine.encode_batch)."""

    enc: Encoded
    n_lines: int
    n_chars: int
    # the units the batch holds (dense unit indices, increasing) and how often each occurs
    # (encode_batch(count=True)): a few thousand of DENSE_SIZE, so the writer adds only those
    unit_index: np.ndarray | None = None
    unit_counts: np.ndarray | None = None
    count_keys: np.ndarray | None = None   # keys the count phase adds, in its order


@dataclass(slots=True)
class CutBatch:
    """A batch cut into pieces, not yet recorded (Engine.cut_batch).

    alone_index/alone the units cut out alone (dense unit indices, increasing) and how
    often; starts/ends/left/right describe each multi-unit piece occurrence; uniq/counts
    the distinct piece keys; first_occ the first occurrence of each distinct key;
    inverse maps each occurrence to its distinct key.
    """

    enc: Encoded  # the batch's text and units (its n-gram keys are dropped: not needed)
    n_chars: int
    alone_index: np.ndarray
    alone: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    left: np.ndarray
    right: np.ndarray
    uniq: np.ndarray
    counts: np.ndarray
    first_occ: np.ndarray
    inverse: np.ndarray


@dataclass
class _Checked:
    slots: np.ndarray
    pmi: np.ndarray
    words: list[str] = field(default_factory=list)


class Engine(EngineState):
    """Incremental new-word discovery over batches of lines (see module docstring).

    One class because every step (count, cut, record, decay, rescore) reads and writes the
    same tables and the engine has one writer; its whole-state operations (snapshot state,
    restore, merge) are in :class:`streamer.core.engine_state.EngineState`.
    """

    def __init__(self, config: EngineConfig | None = None, known: Lexicon | None = None) -> None:
        self.config = config or EngineConfig()
        cfg = self.config
        blocks, capacity = cfg.layout()
        self.counter: NgramCounter = ExactCounter() if cfg.exact else \
            CountMinSketch(blocks, cfg.depth, cfg.seed, touch=cfg.prefault,
                           background=cfg.background_updates)
        # per-unit tables (units.dense_index): occurrences (exact for Han units, the
        # unigram counts), and how often the unit was cut out as a 1-unit piece
        self.unigrams = np.zeros(DENSE_SIZE, dtype=np.int64)
        self.alone = np.zeros(DENSE_SIZE, dtype=np.int64)
        # the long run of each unit: occurrences decayed with 16 half-lives (forward
        # weighted between decays, as the candidates' slow counts): with the unigram
        # table (the recent window) it gives each unit's rise, which the trend test
        # expects a join to share (scoring.parts_rise)
        self.unigrams_slow = np.zeros(DENSE_SIZE, dtype=np.float64)
        # counts of units and n-grams are in clock units (decay.CountClock): an
        # occurrence adds clock.weight() units, the same for every table in a batch
        self.clock = CountClock.for_half_life(cfg.half_life)
        # text per batch over stream time, for the trend test (decayed runs only)
        self.exposure = ExposureLog()
        self._weight = 1              # units the last counted batch added per occurrence
        self.total_units = 0          # N, in clock units
        self.units_ingested = 0       # all-time, never decayed
        self.units_cut = 0            # units through the cut phase (stream position)
        self.lines_ingested = 0
        self.chars_ingested = 0
        self.candidates = CandidateTable(capacity, example_pool=capacity // POOL_SHARE
                                         if cfg.examples else 0)
        self.neighbours = NeighbourTable(capacity)
        self.candidates._on_remove = self.neighbours.clear  # type: ignore[method-assign]
        self.known = known or Lexicon()
        # key of each word ever listed -> its first_seen when first listed
        self.listed = ListedRegistry(capacity)
        # slots of the words the last rescore listed: their examples are kept first
        self._listed_slots = np.empty(0, np.int64)
        self.last_decay: float | None = None
        self.rng = np.random.default_rng(cfg.seed)
        self.published = Published()

    # ------------------------------------------------------------------ counting

    def _count_keys(self, n: int, keys: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Counts of n-gram keys; unigrams of Han units come from the exact table."""
        if n == 1 and ids is not None:
            out = np.zeros(len(ids), dtype=np.int64)
            han = ids < HAN_LIMIT
            out[han] = self.unigrams[ids[han]]
            if not han.all():
                out[~han] = self.counter.query(keys[~han])
            return out
        return self.counter.query(keys)

    def _position_counts(self, keys: list[tuple[np.ndarray, np.ndarray]],
                         ids: np.ndarray) -> list[np.ndarray]:
        """Count of the n-gram at every position, orders 1..N, looked up only where
        it can matter: an n-gram whose (n-1)-gram prefix or suffix has fewer than
        min_count occurrences has fewer itself, so it cannot be cohesive and is not
        looked up (its count is left 0). About 30% of the lookups, each a cache miss,
        are skipped (half of the order-4 ones); every n-gram that is looked up has all its
        parts looked up, so the pmi of its splits is never taken on a skipped count.
        """
        mc = self.clock.units(self.config.min_count)
        counts = [self._count_keys(1, keys[0][0], ids)]
        for k, valid in keys[1:]:
            prev = counts[-1]
            out = np.zeros(len(k), dtype=np.int64)
            if len(k):
                frequent = prev >= mc
                need = np.flatnonzero(valid & frequent[:-1] & frequent[1:])
                out[need] = self.counter.query(k[need])
            counts.append(out)
        return counts

    def _cohesive(self, enc: Encoded, mixed: np.ndarray,
                  keys: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[np.ndarray]:
        """Cohesive masks of a chunk's n-grams, orders 2..N, from the current counts:
        in one C kernel for the sketch, else from ``keys`` (made if None)."""
        cfg = self.config
        if isinstance(self.counter, CountMinSketch):
            c1 = np.zeros(len(enc.ids), dtype=np.int64)
            han = enc.ids < HAN_LIMIT
            c1[han] = self.unigrams[enc.ids[han]]
            if not han.all():
                c1[~han] = self.counter.query(mixed[~han] + L)
            return self.counter.cohesive(c1, mixed, enc.first, cfg.order,
                                         self.clock.units(cfg.min_count), self.total_units,
                                         cfg.thresholds())
        if keys is None:
            keys = ngram_keys(mixed, enc.first, cfg.order)
        counts = self._position_counts(keys, enc.ids)
        return cohesive_masks(keys, counts, self.total_units, self.clock.units(cfg.min_count),
                              cfg.thresholds())

    def encode_batch(self, lines: Sequence[str], count: bool = True) -> EncodedBatch:
        """Encode a batch. Reads no state: safe in any thread.

        With ``count`` it also makes what the count phase adds (the batch's unit
        histogram and the keys of its n-grams), so that the single writer only adds;
        a batch that is only cut (discover's second pass) skips that. The cut phase
        makes no keys: the sketch's cohesion kernel makes them as it looks them up.
        """
        enc = encode("\n".join(lines), self.config.units)
        # characters of the text, not counting line breaks (a block of many lines,
        # as discover passes, counts the same as the lines one by one)
        n_chars = sum(len(x) - x.count("\n") for x in lines)
        index = units = keys = None
        if count:
            units = np.bincount(dense_index(enc.ids), minlength=DENSE_SIZE)
            index = np.flatnonzero(units)
            units = units[index]
            keys = ngram_count_keys(enc.mixed, enc.first, enc.ids, self.config.order)
        return EncodedBatch(enc, len(lines), n_chars, index, units, keys)

    def count_batch(self, p: EncodedBatch, now: float = 0.0) -> None:
        """Count phase: add the batch's n-grams to the counters at stream time ``now``
        (writes state)."""
        if p.unit_index is None or p.unit_counts is None or p.count_keys is None:
            raise ValueError("batch prepared with count=False")
        self._advance_clock(now)
        w = self._weight = self.clock.weight()
        units = p.unit_index  # distinct: each table entry is added to once
        self.unigrams[units] += p.unit_counts * w if w != 1 else p.unit_counts
        self.unigrams_slow[units] += p.unit_counts * self._forward(now)[1]
        self.counter.add(p.count_keys, weight=w)
        self.total_units += len(p.enc.ids) * w
        self.units_ingested += len(p.enc.ids)
        self.lines_ingested += p.n_lines
        self.chars_ingested += p.n_chars
        if not math.isinf(self.config.half_life):
            self.exposure.add(now, len(p.enc.ids))

    def cut_batch(self, p: EncodedBatch) -> CutBatch:
        """Cut a batch with the current counts. Reads state, writes none: several
        batches may be cut concurrently while no thread counts."""
        enc = p.enc
        masks = self._cohesive(enc, enc.mixed)
        pieces = cut(enc.ids, enc.first, masks)
        lengths = pieces.ends - pieces.starts
        alone = np.bincount(dense_index(enc.ids[pieces.starts[lengths == 1]]),
                            minlength=DENSE_SIZE)
        alone_index = np.flatnonzero(alone)
        multi = np.flatnonzero(lengths >= 2)
        s, e = pieces.starts[multi], pieces.ends[multi]
        pkeys = span_keys(enc.mixed, s, e)
        order = np.argsort(pkeys)  # not stable (3x faster): first_occ is taken below
        sk = pkeys[order]
        edge = np.ones(len(sk), dtype=bool)
        np.not_equal(sk[1:], sk[:-1], out=edge[1:])
        group_start = np.flatnonzero(edge)
        inverse = np.empty(len(sk), dtype=np.int64)
        inverse[order] = np.cumsum(edge) - 1
        first_occ = np.minimum.reduceat(order, group_start) if len(order) else order
        return CutBatch(p.enc, p.n_chars, alone_index, alone[alone_index], s, e,
                        pieces.left[multi], pieces.right[multi],
                        uniq=sk[group_start], counts=np.diff(np.append(group_start, len(sk))),
                        first_occ=first_occ, inverse=inverse)

    def record_cut(self, c: CutBatch, now: float, seed: bool = False) -> None:
        """Record a cut batch: candidate counts, neighbours, examples (writes state).

        With ``seed`` (incremental use), a newly admitted piece of at most ``order``
        units starts from its n-gram count so far instead of 0: before its n-grams
        became cohesive its earlier occurrences could not be cut out as a piece,
        but they were occurrences of the same string. So a word is listed as soon
        as the string has been seen min_count times and has become cohesive,
        instead of min_count occurrences after that.
        """
        cfg = self.config
        self.alone[c.alone_index] += c.alone * self._weight if self._weight != 1 else c.alone
        if len(c.uniq) == 0:
            self.units_cut += len(c.enc)
            return
        enc, s, e, first_occ = c.enc, c.starts, c.ends, c.first_occ
        table = self.candidates
        slots = table.lookup(c.uniq)
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            occ = first_occ[missing]
            texts = enc.span_texts(s[occ], e[occ])
            new = table.admit(c.uniq[missing], texts, now, protect=slots[slots >= 0])
            slots[missing] = new
            if seed:
                self._seed_counts(new, c.uniq[missing], c.counts[missing],
                                  (e - s)[first_occ[missing]], now)
        ok = slots >= 0
        us, uc = slots[ok], c.counts[ok]
        table.total[us] += uc
        fast, slow = self._forward(now)
        table.recent[us] += uc * fast
        table.slow[us] += uc * slow
        table.last_seen[us] = now
        occ_slots = slots[c.inverse]
        tracked = occ_slots >= 0
        # edges are spread over buckets by stream position, not batch position, so a
        # word that starts every line gets the same entropy however lines are batched
        self.neighbours.add(occ_slots[tracked], c.left[tracked], c.right[tracked],
                            s[tracked] + self.units_cut)
        self.units_cut += len(enc)
        # examples: one context per batch for listed words, and a first one for each
        # piece once it reaches min_count (contexts of every piece would cost more
        # than the counting)
        if cfg.examples == 0:
            return
        safe = np.maximum(slots, 0)
        want = ok & (table.total[safe] >= cfg.min_count)
        want &= np.isin(slots, self._listed_slots) | ~table.pool.sampled[safe]
        pick = np.flatnonzero(want)
        if len(pick):
            occ = first_occ[pick].tolist()
            table.add_examples(slots[pick], [enc.context(int(s[o]), int(e[o])) for o in occ],
                               cfg.examples, protect=self._listed_slots)

    def _seed_counts(self, slots: np.ndarray, keys: np.ndarray, batch: np.ndarray,
                     lengths: np.ndarray, now: float) -> None:
        ok = (slots >= 0) & (lengths <= self.config.order)
        if not ok.any():
            return
        # the n-gram's count before this batch, in occurrences as of now
        units = np.maximum(self.counter.query(keys[ok]) - batch[ok] * self._weight, 0)
        prior = self.clock.occurrences(units)
        t = self.candidates
        t.total[slots[ok]] += np.rint(prior).astype(np.int64)
        fast, slow = self._forward(now)
        t.recent[slots[ok]] += prior * fast
        t.slow[slots[ok]] += prior * slow

    def ingest(self, lines: Sequence[str], now: float) -> None:
        """Count and cut one batch (the daemon's step)."""
        self.ingest_batch(self.encode_batch(lines), now)

    def ingest_batch(self, p: EncodedBatch, now: float) -> None:
        """ingest() of a batch already prepared (possibly in another thread)."""
        self.count_batch(p, now)
        self.record_cut(self.cut_batch(p), now, seed=True)

    # ------------------------------------------------------------------ decay

    def _forward(self, now: float) -> tuple[float, float]:
        """Weights of a count added at ``now`` to the recent and baseline counts.

        Candidate counts are decayed only at rescores (decay_to), so an occurrence at
        time t after the last decay at t0 is added as 2^((t - t0) / h) (forward
        decay): the next decay_to(T) multiplies it by 2^(-(T - t0) / h), which leaves
        exactly 2^(-(T - t) / h), its weight had it been decayed continuously.
        """
        hl = self.config.half_life
        if math.isinf(hl):
            return 1.0, 1.0
        if self.last_decay is None or (now - self.last_decay) / hl > 32:
            self.decay_to(now)  # start the clock, or keep the weights far from overflow
        assert self.last_decay is not None
        dt = now - self.last_decay
        return 2.0 ** (dt / hl), 2.0 ** (dt / (16 * hl))

    def decay_to(self, now: float) -> None:
        """Apply the half-life decay up to stream time ``now``: candidate counts are
        multiplied out; the counters only move their clock (see decay.py), which
        halves them once a half-life."""
        self._advance_clock(now)
        hl = self.config.half_life
        if self.last_decay is None or math.isinf(hl):
            self.last_decay = now
            return
        dt = now - self.last_decay
        if dt <= 0:
            return
        self.candidates.decay(0.5 ** (dt / hl), 0.5 ** (dt / (16 * hl)))
        self.unigrams_slow *= 0.5 ** (dt / (16 * hl))
        self.last_decay = now

    def _advance_clock(self, now: float) -> None:
        factor = self.clock.advance(now)
        if factor is not None:
            self._scale_counts(factor)

    # ------------------------------------------------------------------ scoring

    def _back_check(self, slots: np.ndarray, chunk: int = 1 << 14) -> _Checked:
        """_back_check_chunk over ``chunk`` candidates at a time: the temporaries (n-gram
        keys and counts of every candidate's units) stay a few MB however many
        candidates there are."""
        parts = [self._back_check_chunk(slots[a:a + chunk])
                 for a in range(0, max(len(slots), 1), chunk)]
        return _Checked(np.concatenate([p.slots for p in parts]),
                        np.concatenate([p.pmi for p in parts]),
                        [w for p in parts for w in p.words])

    def _back_check_chunk(self, slots: np.ndarray) -> _Checked:
        """Back-check of candidate slots.

        A piece of 3..N units must be cohesive; one longer than N, every N-unit window.
        With a known lexicon, a piece of 3..N units also passes by the ceiling rule
        (segmentation.cohesive_masks with ``bound_share``); longer ones never do.

        Returns the slots that pass the back-check, in their order, with pmi (min split,
        or for pieces longer than the order the minimum over its order-N windows).
        """
        cfg = self.config
        words = self.candidates.texts(slots)
        if not words:
            return _Checked(slots[:0], np.empty(0), [])
        enc, offsets = encode_words(words, cfg.units)
        lengths = np.diff(offsets)
        if len(lengths) != len(words):  # a word that no longer encodes to units
            keep = np.array([len(encode(w, cfg.units)) >= 2 for w in words])
            slots = slots[keep]
            words = [w for w, k in zip(words, keep, strict=True) if k]
            enc, offsets = encode_words(words, cfg.units)
            lengths = np.diff(offsets)
        mixed = enc.mixed
        keys = ngram_keys(mixed, enc.first, cfg.order)
        counts = [self._count_keys(n, k, enc.ids if n == 1 else None)
                  for n, (k, _) in enumerate(keys, start=1)]
        # the cutter's own test, so the back-check agrees with how pieces were cut
        masks = self._cohesive(enc, mixed, keys)
        if cfg.bound_share > 0 and len(self.known):
            # the ceiling rule (segmentation.cohesive_masks): a piece whose weak splits
            # are bound is kept for the scorer, whose phrase tests need the lexicon to
            # tell a compound (大堂|经理) from a phrase of the same shape (发表|讲话).
            # Only up to N units: a longer chain whose windows are all bound is text
            # repeated verbatim (a manual page's 完整文档请见), not evidence of a word
            bound = cohesive_masks(keys, counts, self.total_units,
                                   self.clock.units(cfg.min_count), cfg.thresholds(),
                                   cfg.bound_share)
            short = [m | b for m, b in zip(masks, bound, strict=True)]
        else:
            short = masks
        log_total = float(np.log(max(self.total_units, 1)))
        starts = offsets[:-1]
        logs = log_counts(counts)
        pmi = np.full(len(words), np.inf)
        passed = np.ones(len(words), dtype=bool)
        for n in range(2, cfg.order + 1):
            sel = lengths == n
            if sel.any():
                p = pmi_at(logs, n, log_total)
                pmi[sel] = p[starts[sel]]
                if n >= 3:
                    passed[sel] = short[n - 2][starts[sel]]
        long = np.flatnonzero(lengths > cfg.order)
        if len(long):
            n = cfg.order
            p = pmi_at(logs, n, log_total)
            m = masks[n - 2]
            # windows a..b-1 of each long word: disjoint and increasing, so one
            # reduceat over the interleaved bounds does them all (odd slots are gaps)
            a = starts[long]
            b = a + lengths[long] - n + 1
            bounds = np.empty(2 * len(long), dtype=np.int64)
            bounds[0::2], bounds[1::2] = a, b
            if bounds[-1] >= len(p):
                bounds = bounds[:-1]
            pmi[long] = np.minimum.reduceat(p, bounds)[0::2]
            passed[long] = np.logical_and.reduceat(m, bounds)[0::2]
        slots, pmi = slots[passed], pmi[passed]
        words = [w for w, ok in zip(words, passed.tolist(), strict=True) if ok]
        return _Checked(slots, pmi, words)

    def rescore(self, now: float | None = None) -> Published:
        """Score all candidates and publish an immutable ranked list."""
        t0 = time.perf_counter()
        cfg = self.config
        now = time.time() if now is None else now
        self.decay_to(now)
        table = self.candidates
        counts = table.recent if not math.isinf(cfg.half_life) else table.total
        # min_count applies to the recent count, as cohesion (on decayed counts) does:
        # the list is about now, a word is listed while it is used min_count times a
        # half-life, and a faded word leaves the list (total_count keeps the history)
        slots = np.flatnonzero(table.used & (counts >= cfg.min_count))
        # the neighbour test before the back-check: both judge each candidate alone, and
        # this one reads two table rows where the back-check looks up every n-gram of the
        # word (it leaves about half of the candidates to it). Entropy is evidence: a side
        # seen fewer than twice (a word just admitted in the daemon, whose earlier
        # occurrences were not yet cut out) is not judged; its freedom is 0, so it is
        # listed last until its contexts are seen
        left, right = self.neighbours.entropies(slots)
        seen = np.minimum(self.neighbours.observations(slots, "left"),
                          self.neighbours.observations(slots, "right"))
        sc = self._back_check(slots[(np.minimum(left, right) >= cfg.min_entropy) | (seen < 2)])
        # slots are increasing (flatnonzero) and the back-check keeps their order
        at = np.searchsorted(slots, sc.slots)
        slots, words, pmi, left, right = sc.slots, sc.words, sc.pmi, left[at], right[at]
        known = self.known.known(words)
        recent = counts[slots].astype(np.float64)
        parts = scoring.part_features(words, self.alone, self.unigrams, self.known,
                                      self.config.units)
        quality = scoring.quality(recent, left, right, parts, pmi,
                                  float(self.clock.occurrences(self.total_units)),
                                  self._split(words, recent, parts, counts))
        score = scoring.score(recent, quality)
        emergence = scoring.emergence(self._trend(slots, words, now), quality)
        order = np.arange(len(words))
        if cfg.max_words is not None and len(order) > cfg.max_words:
            # the best max_words; among equal scores (most often 0: a phrase, a join the
            # rules zero) the more frequent, not whichever a partition happens to keep
            order = np.lexsort((-recent, -score))[: cfg.max_words]
        # best first; ties by count, then by the word itself, so the order never depends
        # on slots
        if len(order):
            order = order[np.lexsort((np.array([words[i] for i in order.tolist()]),
                                      -recent[order], -score[order]))]
        listed = slots[order]
        # the strings of every scored candidate are dropped before the published words
        # are made, and the listed ones decoded afresh: the long-lived Word objects then
        # do not pin the allocator's arenas those transient strings filled (resident
        # memory would step up at rescores)
        words.clear()
        names = table.texts(listed)
        # first_seen of a word when it was first listed; a word is new unless it was
        # listed before it was first seen (it was evicted and came back)
        keys = table.keys[listed]
        first = self.listed.get(keys)
        fresh = np.isnan(first)
        first[fresh] = table.first_seen[listed[fresh]]
        self.listed.add(keys[fresh], first[fresh])
        is_new = first >= table.first_seen[listed]
        examples = table.newest_examples(listed)
        # columns as Python lists first: one conversion per column, not per value
        cols = zip(names, recent[order].tolist(), table.total[listed].tolist(),
                   score[order].tolist(), emergence[order].tolist(), pmi[order].tolist(),
                   left[order].tolist(), right[order].tolist(), known[order].tolist(),
                   (is_new & ~known[order]).tolist(), first.tolist(),
                   table.last_seen[listed].tolist(), examples, strict=True)
        # in Word's field order: word, count, total_count, score, emergence, pmi,
        # left_entropy, right_entropy, known, new, first_seen, last_seen, example
        out = list(itertools.starmap(Word, cols))
        self._listed_slots = np.sort(listed)
        pub = Published(words=tuple(out), rescored_at=time.time(), stream_time=now,
                        rescore_seconds=time.perf_counter() - t0, stats=self.stats())
        self.published = pub
        return pub

    def _split(self, words: list[str], recent: np.ndarray, parts: scoring.PartFeatures,
               counts: np.ndarray) -> np.ndarray | None:
        """scoring.split_factor of each word: the counts of its known head and of a verb's
        object (PartFeatures.head_chars, object_chars), and the head's right neighbour
        entropy where the head is itself a candidate of min_count (``counts``: the
        candidate counts min_count applies to). Only the words that have such a part
        are looked up (a few percent of the candidates)."""
        if parts.head_chars is None or parts.object_chars is None:
            return None
        nan = np.full(len(words), np.nan)
        head_count, head_right, object_count = nan.copy(), nan.copy(), nan.copy()
        heads = np.flatnonzero(parts.head_chars)
        if len(heads):
            ends = parts.head_chars[heads].tolist()
            keys, n, got = self._span_counts([words[i][:e] for i, e in
                                              zip(heads.tolist(), ends, strict=True)])
            slots = self.candidates.lookup(keys)
            tracked = (slots >= 0) & got
            tracked[tracked] = counts[slots[tracked]] >= self.config.min_count
            at = heads[tracked]
            head_count[at] = n[tracked]
            head_right[at] = self.neighbours.entropies(slots[tracked])[1]
        objects = np.flatnonzero(parts.object_chars)
        if len(objects):
            starts = parts.object_chars[objects].tolist()
            _, n, got = self._span_counts([words[i][-e:] for i, e in
                                           zip(objects.tolist(), starts, strict=True)])
            object_count[objects[got]] = n[got]
        return scoring.split_factor(recent, head_count, head_right, object_count)

    def _span_counts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys, counts (occurrences, as of the last decay) and a counted-mask of whole
        strings: one unit from the exact table, 2..order units from the counter; longer
        strings are not counted (the mask is False)."""
        enc, offsets = encode_words(texts, self.config.units)
        starts = offsets[:-1]
        lengths = np.diff(offsets)
        keys = span_keys(enc.mixed, starts, offsets[1:])
        out = np.zeros(len(texts), dtype=np.int64)
        one = lengths == 1
        if one.any():
            out[one] = self._count_keys(1, keys[one], enc.ids[starts[one]])
        many = (lengths >= 2) & (lengths <= self.config.order)
        if many.any():
            out[many] = self.counter.query(keys[many])
        got = one | many
        return keys, np.asarray(self.clock.occurrences(out), dtype=np.float64), got

    def _trend(self, slots: np.ndarray, words: list[str], now: float) -> np.ndarray:
        """scoring.trend of each slot's word (standard deviations); 0 without decay.

        The spans since first seen come from the exposure log; the recent and
        baseline counts are as of ``now`` (rescore has decayed them), and so are the
        units' recent (unigram table) and long-run (``unigrams_slow``) counts that give
        the rise its units predict (scoring.parts_rise).
        """
        hl = self.config.half_life
        if math.isinf(hl) or len(slots) == 0:
            return np.zeros(len(slots))
        t = self.candidates
        first = t.first_seen[slots]
        since_fast, _ = self.exposure.since(first, now, hl)
        since_slow, all_slow = self.exposure.since(first, now, 16 * hl)
        all_fast = float(self.exposure.since(np.empty(0), now, hl)[1])
        enc, offsets = encode_words(words, self.config.units)
        idx = dense_index(enc.ids)
        rise = scoring.parts_rise(self.clock.occurrences(self.unigrams[idx].astype(np.float64)),
                                  self.unigrams_slow[idx], offsets, all_fast, all_slow)
        return scoring.trend(t.recent[slots], t.slow[slots], since_fast, since_slow, all_slow,
                             parts=rise)

    # ------------------------------------------------------------------ known, state

    def set_known(self, known: Lexicon | None) -> None:
        self.known = known or Lexicon()

    def stats(self) -> dict[str, Any]:
        blocks, capacity = self.config.layout()
        return {
            "lines_ingested": self.lines_ingested,
            "chars_ingested": self.chars_ingested,
            "units_ingested": self.units_ingested,
            "total_units_decayed": float(self.clock.occurrences(self.total_units)),
            "candidates": len(self.candidates),
            "candidate_capacity": self.candidates.capacity,
            "candidates_evicted": self.candidates.evicted,
            "counter": self.counter.kind,
            "sketch_blocks": blocks if not self.config.exact else None,
            "sketch_width": getattr(self.counter, "width", None),
            "sketch_depth": self.config.depth,
            "sketch_error_bound": float(self.clock.occurrences(self.counter.error_bound())),
            "memory_bytes": {
                "counter": self.counter.nbytes,
                "unigrams": int(self.unigrams.nbytes + self.unigrams_slow.nbytes),
                "candidates": self.candidates.nbytes,
                "neighbours": self.neighbours.nbytes,
                "discovered": self.listed.nbytes,
            },
            "known_words": len(self.known),
            "discovered_words": len(self.listed),
            "long_texts_dropped": self.candidates.text.long_dropped,
        }

    def examples(self, word: str) -> list[str]:
        slot = self.candidates.lookup(self._word_key(word))[0]
        return self.candidates.examples_of(int(slot)) if slot >= 0 else []

    def _word_key(self, word: str) -> np.ndarray:
        enc = encode(word, self.config.units)
        m = mix(enc.ids)
        return span_keys(m, np.array([0]), np.array([len(enc)]))
