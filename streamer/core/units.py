"""Text to units and clauses, vectorised.

A *unit* is one Han character, or (in ``mixed`` mode) one run of ASCII letters and
digits, case-folded, so that B站, U盘, iPhone手机 and all-ASCII slang can be found.
Everything else (punctuation, spaces, symbols, other scripts) is a clause break.

Text is first normalised with NFKC so that full-width digits and letters fold to
ASCII (１９９８年 -> 1998年). Python's ``unicodedata.normalize`` costs ~130 ns a
character, more than the whole rest of the pipeline, so we apply NFKC through a
per-code-point table for the Basic Multilingual Plane and fall back to the real
function only for a chunk that holds a character whose normalisation is not a
single code point or that may compose with its neighbour (combining marks, jamo,
compatibility ideographs of the supplement block). The result is identical to
``unicodedata.normalize("NFKC", text)`` followed by ASCII lower-casing.

Unit ids (int64): a Han character's code point (< 0x40000), or for an ASCII run
``ASCII_TAG | h`` where h is a 61-bit polynomial hash of the run's bytes, with
``DIGITS_TAG`` also set when the run is a number.
"""

from __future__ import annotations

import codecs
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from streamer.core import _units  # C kernels: _units.c beside this file

HAN_LIMIT = 0x40000
ASCII_TAG = np.int64(1 << 62)
DIGITS_TAG = np.int64(1 << 61)  # set on ASCII runs made only of digits (numbers)
_SLOW = np.uint32(0xFFFFFFFF)  # table marker: this code point needs the real NFKC
# table values from _EXPAND on: NFKC gives several characters (… -> ...); the value
# minus _EXPAND numbers the expansion in _Tables.exp_off / exp_data
_EXPAND = np.uint32(0xF0000000)

# The codec is looked up (its module imported) now, not at the first batch: a service
# that runs out of file descriptors could not import it then.
codecs.lookup("utf-32-le")

# classes
BREAK, HAN, ALNUM = 0, 1, 2
_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _is_han(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp < HAN_LIMIT
        or cp == 0x3007  # 〇, written in dates such as 一九九〇年
    )


TABLE_LIMIT = 0x20000  # the table covers planes 0 and 1; planes 2-3 are Han


def _decompositions() -> tuple[frozenset[str], list[str]]:
    """(composing, decomposable) over planes 0-1, in one pass over the code points.

    composing: characters that can merge with a neighbour under NFKC: combining
    marks, Hangul jamo and syllables, and the second element of every canonical
    pair (U+0B3E...). decomposable: characters with a decomposition mapping.
    """
    composing = set()
    decomposable = []
    for cp in range(TABLE_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if unicodedata.combining(ch) or 0x1100 <= cp <= 0x11FF or 0xAC00 <= cp <= 0xD7A3:
            composing.add(ch)
        d = unicodedata.decomposition(ch)
        if d:
            decomposable.append(ch)
            if not d.startswith("<"):
                parts = d.split()
                if len(parts) == 2:
                    composing.add(chr(int(parts[1], 16)))
    return frozenset(composing), decomposable


_TABLES_LOCK = threading.Lock()  # blocks are encoded in several threads; build once


@dataclass(frozen=True)
class _Tables:
    """nfkc[cp] for cp < TABLE_LIMIT: the folded code point, or a marker; cls[cp] for
    cp < HAN_LIMIT: BREAK, HAN or ALNUM; expansion e is the code points
    exp_data[exp_off[e]:exp_off[e + 1]]."""

    nfkc: np.ndarray
    cls: np.ndarray
    exp_off: np.ndarray
    exp_data: np.ndarray


def _tables() -> _Tables:
    """The folding and class tables, built on first use (~50 ms); see _build_tables."""
    with _TABLES_LOCK:
        return _build_tables()


@lru_cache(maxsize=1)
def _build_tables() -> _Tables:
    """Folding and class tables (see _Tables).

    Values from _EXPAND on mark a character whose NFKC form is several characters
    that do not interact with neighbours (… -> ..., ℃ -> °c): those are spliced in
    (streamer/_units.c: expand). _SLOW marks characters that may compose with a
    neighbour, or whose NFKC form may (ﾞ -> U+3099, ㄱ -> U+1100): a chunk holding
    one goes through unicodedata.normalize whole, which is then exact.
    """
    composing, decomposable = _decompositions()
    nfkc = np.arange(TABLE_LIMIT, dtype=np.uint32)
    exp_off = [0]
    exp_data: list[int] = []
    # a character without a decomposition mapping is its own NFKC form (NFD leaves
    # it alone, and composition of one starter is itself) unless it can compose, so
    # only ~6k of the 128k code points need the (slow) real function
    for ch in sorted(composing.union(decomposable)):
        cp = ord(ch)
        if cp < 0x80 or cp >= TABLE_LIMIT:
            continue
        norm = unicodedata.normalize("NFKC", ch)
        if ch in composing or any(c in composing for c in norm):
            nfkc[cp] = _SLOW
        elif len(norm) != 1:
            nfkc[cp] = _EXPAND + len(exp_off) - 1
            exp_data.extend(ord(c) for c in norm.translate(_LOWER))
            exp_off.append(len(exp_data))
        else:
            low = norm.lower() if ord(norm) < 0x80 else norm
            nfkc[cp] = ord(low)
    for cp in range(ord("A"), ord("Z") + 1):
        nfkc[cp] = cp + 32
    cls = np.zeros(HAN_LIMIT, dtype=np.uint8)
    cls[0x4E00:0xA000] = HAN
    cls[0x3400:0x4DC0] = HAN
    cls[0x20000:HAN_LIMIT] = HAN
    cls[0x3007] = HAN
    for c in b"abcdefghijklmnopqrstuvwxyz0123456789":
        cls[c] = ALNUM
    return _Tables(nfkc, cls, np.array(exp_off, dtype=np.uint32),
                   np.array(exp_data, dtype=np.uint32))


def normalise(text: str) -> str:
    """NFKC plus ASCII lower-casing, the folding applied to every input line."""
    return unicodedata.normalize("NFKC", text).translate(_LOWER)



@dataclass(slots=True)
class Encoded:
    """A chunk of text as units.

    ids      int64[n] unit ids
    starts   int64[n] offset of each unit in the normalised text (characters)
    ends     int64[n] offset one past each unit
    first    bool[n]  unit i begins a clause (a break lies between unit i-1 and i)
    cps      uint32   the normalised text as code points (what the offsets refer to)
    mixed    uint64[n] ngrams.mix of the ids (what n-gram keys are made of)
    source   the text as given, when normalising kept every offset (so example
             contexts show the writer's punctuation and case); else None
    normalised  the normalised text as a str, when it was built (else made on demand
             by ``text``: most chunks never need it whole, only a few spans)
    """

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    first: np.ndarray
    cps: np.ndarray
    mixed: np.ndarray
    source: str | None = None
    normalised: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text(self) -> str:
        """The normalised text the offsets refer to."""
        if self.normalised is None:
            self.normalised = _decode(self.cps)
        return self.normalised

    def span_text(self, i: int, j: int) -> str:
        """The normalised text of units i..j-1 (j exclusive)."""
        a, b = int(self.starts[i]), int(self.ends[j - 1])
        if self.normalised is not None:
            return self.normalised[a:b]
        return _decode(self.cps[a:b])

    def span_texts(self, i: np.ndarray, j: np.ndarray) -> list[str]:
        """span_text for many spans at once (one decode for all of them)."""
        a, b = self.starts[i], self.ends[j - 1]
        if self.normalised is not None:
            return [self.normalised[x:y] for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        lens = b - a
        offs = np.cumsum(lens) - lens
        joined = _decode(self.cps[np.repeat(a - offs, lens) + np.arange(int(lens.sum()))])
        return [joined[x:y] for x, y in zip(offs.tolist(), (offs + lens).tolist(), strict=True)]

    def context(self, i: int, j: int, width: int = 12) -> str:
        """Up to ``width`` characters each side of units i..j-1, on one line, as
        written (before normalisation) where the offsets allow."""
        a = max(0, int(self.starts[i]) - width)
        b = int(self.ends[j - 1]) + width
        s = self.source[a:b] if self.source is not None else \
            self.text[a:b] if self.normalised is not None else _decode(self.cps[a:b])
        lo = s.rfind("\n", 0, int(self.starts[i]) - a)
        hi = s.find("\n", int(self.ends[j - 1]) - a)
        return s[lo + 1:hi if hi >= 0 else len(s)].strip()


def _decode(cps: np.ndarray) -> str:
    return cps.tobytes().decode("utf-32-le", "surrogatepass")


_Q = 0x100000001B3  # FNV prime: odd, so invertible mod 2**64 (hash of ASCII runs)


def _code_points(text: str) -> tuple[str | None, np.ndarray, bool]:
    """(normalised text if it was built, else None; its code points (uint32);
    whether every character kept its offset, i.e. only the one-to-one table applied).
    """
    tables = _tables()
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    mapped = np.empty_like(cps)
    # planes 2-3 are identity but for the compatibility ideographs; planes >= 4 hold no
    # character that NFKC changes (tags and variation selectors are stable)
    slow, expansions, extra, changed = _units.fold(cps, tables.nfkc, mapped, tables.exp_off,
                                                   int(_SLOW), int(_EXPAND))
    if slow:
        text = normalise(text)
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return text, cps, False
    if expansions:
        out = np.empty(len(mapped) + extra, dtype=np.uint32)
        _units.expand(mapped, tables.exp_off, tables.exp_data, int(_EXPAND), out)
        return None, out, False
    return (None if changed else text), mapped, True


def encode(text: str, mode: str = "mixed") -> Encoded:
    """Normalise ``text`` and cut it into units and clauses.

    Lines are separated by any break character, so a chunk of many lines can be
    encoded in one call. Cost: two C passes over the code points (streamer/_units.c:
    the NFKC table, then units and clause starts), O(characters).
    """
    if mode not in ("han", "mixed"):
        raise ValueError(f"units must be 'han' or 'mixed', not {mode!r}")
    normalised, cps, kept = _code_points(text)
    cls_table = _tables().cls
    n = len(cps)
    ids = np.empty(n, dtype=np.int64)
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=bool)
    mixed = np.empty(n, dtype=np.uint64)
    m = _units.units(cps, cls_table, mode == "mixed", _Q, ids, starts, ends, first, mixed)
    # views, not copies: most characters of a chunk are units, so little is pinned
    ids, starts, ends, first, mixed = ids[:m], starts[:m], ends[:m], first[:m], mixed[:m]
    source = text if kept and normalised is not text else None
    return Encoded(ids, starts, ends, first, cps, mixed, source, normalised)


def encode_words(words: list[str], mode: str = "mixed") -> tuple[Encoded, np.ndarray]:
    """Encode many words at once; returns the encoding and each word's first unit.

    Words are joined with a newline, so each becomes its own clause. ``offsets``
    has len(words)+1 entries: word k is units offsets[k]..offsets[k+1].
    """
    enc = encode("\n".join(words), mode)
    offsets = np.flatnonzero(enc.first)
    offsets = np.append(offsets, len(enc))
    return enc, offsets


#: dense per-unit tables have HAN_LIMIT slots for Han characters, then one slot
#: shared by all numbers and ASCII_BUCKETS - 1 hashed slots for other ASCII runs
ASCII_BUCKETS = 1 << 16
DENSE_SIZE = HAN_LIMIT + ASCII_BUCKETS


def dense_index(ids: np.ndarray) -> np.ndarray:
    """Index of each unit in a dense per-unit table of DENSE_SIZE slots.

    Han units are exact; ASCII runs share hashed slots (numbers share one), which
    is fine for the per-unit statistics kept there (standalone rates), not for counts.
    """
    out = ids.copy()
    ascii_ = ids >= HAN_LIMIT
    if ascii_.any():
        a = ids[ascii_]
        digits = (a & DIGITS_TAG) != 0
        out[ascii_] = HAN_LIMIT + np.where(digits, 0, 1 + a % (ASCII_BUCKETS - 1))
    return out
