"""Published results: immutable word records and the ranked list readers share.

The engine builds a new :class:`Published` after every rescore and the daemon
swaps it in with one assignment; readers (HTTP handlers, exporters, the
dashboard) hold a reference and never lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Field order used by every tabular output (CSV header, JSON key order).
WORD_FIELDS: tuple[str, ...] = (
    "word",
    "count",
    "total_count",
    "score",
    "emergence",
    "pmi",
    "left_entropy",
    "right_entropy",
    "known",
    "new",
    "first_seen",
    "last_seen",
    "example",
)


@dataclass(frozen=True, slots=True)
class Word:
    """One discovered word.

    count          recent (time-decayed) occurrences as a piece; equals total_count
                   in a batch run.
    total_count    all-time occurrences as a piece.
    score          ranking score (see streamer.core.scoring); higher is better.
    emergence      trending value: evidence that the word is rising now, z in standard
                   deviations (scoring.trend: new to the stream, or recent count above
                   what its long-run rate predicts) up to 3, times the word's
                   quality, its score without the evidence factor ln(1 + count), in
                   [0, 1] (scoring.emergence), so at most 3; 0 = not rising, and 0 in
                   a batch run. The value sort=emergence ranks by.
    pmi            cohesion: minimum-split pointwise mutual information, nats.
    left_entropy   entropy of the unit left of the word, nats.
    right_entropy  entropy of the unit right of the word, nats.
    known          in one of the known lexicons.
    new            not known and not a discovered word before first_seen.
    first_seen     stream time (seconds since the epoch) the word was first tracked.
    last_seen      stream time of the last occurrence.
    example        a short context the word occurred in.
    """

    word: str
    count: float
    total_count: int
    score: float
    emergence: float = 0.0
    pmi: float = 0.0
    left_entropy: float = 0.0
    right_entropy: float = 0.0
    known: bool = False
    new: bool = True
    first_seen: float | None = None
    last_seen: float | None = None
    example: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in WORD_FIELDS order; times as ISO 8601 UTC strings."""
        # getattr, not dataclasses.asdict: asdict deep-copies and costs 10x more, which
        # shows in exports of tens of thousands of words
        d = {k: getattr(self, k) for k in WORD_FIELDS}
        d["first_seen"] = iso_time(self.first_seen)
        d["last_seen"] = iso_time(self.last_seen)
        c = float(self.count)
        d["count"] = int(c) if c.is_integer() else round(c, 3)
        for key in ("score", "emergence", "pmi", "left_entropy", "right_entropy"):
            d[key] = round(float(d[key]), 4)
        return d


def iso_time(t: float | None) -> str | None:
    """Seconds since the epoch -> '2026-11-25T19:43:06Z' (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Published:
    """An immutable ranked word list, best first, as of one rescore."""

    words: tuple[Word, ...] = ()
    rescored_at: float | None = None  # wall-clock seconds since the epoch
    stream_time: float | None = None  # stream time of the rescore
    rescore_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


    def select(self, *, new: bool | None = None, min_count: float = 0.0,
               limit: int | None = None) -> list[Word]:
        """Words filtered by newness and recent count, best first."""
        out = [w for w in self.words
               if (new is None or w.new == new) and not w.count < min_count]
        return out if limit is None else out[:limit]
