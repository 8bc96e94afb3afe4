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

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from streamer.ngrams import power_table

HAN_LIMIT = 0x40000
ASCII_TAG = np.int64(1 << 62)
DIGITS_TAG = np.int64(1 << 61)  # set on ASCII runs made only of digits (numbers)
_SLOW = np.uint32(0xFFFFFFFF)  # table marker: this code point needs the real NFKC
_EXPAND = np.uint32(0xFFFFFFFE)  # table marker: NFKC gives several characters (… -> ...)

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


_EXPANSIONS: dict[str, str] = {}


TABLE_LIMIT = 0x20000  # the table covers planes 0 and 1; planes 2-3 are Han


@lru_cache(maxsize=1)
def _composing() -> frozenset[str]:
    """Characters that can merge with a neighbour under NFKC: combining marks, Hangul
    jamo and syllables, and the second element of every canonical pair (U+0B3E...)."""
    out = set()
    for cp in range(TABLE_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if unicodedata.combining(ch) or 0x1100 <= cp <= 0x11FF or 0xAC00 <= cp <= 0xD7A3:
            out.add(ch)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                out.add(chr(int(parts[1], 16)))
    return frozenset(out)


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(nfkc_map, cls): nfkc_map[cp] for cp < TABLE_LIMIT is the folded code point,
    or a marker.

    _EXPAND marks a character whose NFKC form is several characters that do not
    interact with neighbours (… -> ..., ℃ -> °c): those are substituted with a
    regular expression. _SLOW marks characters that may compose with a neighbour,
    or whose NFKC form may (ﾞ -> U+3099, ㄱ -> U+1100): a chunk holding one goes
    through unicodedata.normalize whole, which is then exact.
    """
    composing = _composing()
    nfkc = np.arange(TABLE_LIMIT, dtype=np.uint32)
    for cp in range(0x80, TABLE_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        norm = unicodedata.normalize("NFKC", ch)
        if ch in composing or any(c in composing for c in norm):
            nfkc[cp] = _SLOW
        elif len(norm) != 1:
            nfkc[cp] = _EXPAND
            _EXPANSIONS[ch] = norm.translate(_LOWER)
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
    return nfkc, cls


def normalise(text: str) -> str:
    """NFKC plus ASCII lower-casing, the folding applied to every input line."""
    return unicodedata.normalize("NFKC", text).translate(_LOWER)



@dataclass(slots=True)
class Encoded:
    """A chunk of text as units.

    text     the normalised text the offsets refer to
    ids      int64[n] unit ids
    starts   int64[n] character offset of each unit in ``text``
    ends     int64[n] character offset one past each unit
    first    bool[n]  unit i begins a clause (a break lies between unit i-1 and i)
    source   the text as given, when normalising kept every offset (so example
             contexts show the writer's punctuation and case); else None
    """

    text: str
    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    first: np.ndarray
    source: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def span_text(self, i: int, j: int) -> str:
        """The text of units i..j-1 (j exclusive)."""
        return self.text[int(self.starts[i]):int(self.ends[j - 1])]

    def context(self, i: int, j: int, width: int = 12) -> str:
        """Up to ``width`` characters each side of units i..j-1, on one line, as
        written (before normalisation) where the offsets allow."""
        a = max(0, int(self.starts[i]) - width)
        b = int(self.ends[j - 1]) + width
        s = (self.text if self.source is None else self.source)[a:b]
        lo = s.rfind("\n", 0, int(self.starts[i]) - a)
        hi = s.find("\n", int(self.ends[j - 1]) - a)
        return s[lo + 1:hi if hi >= 0 else len(s)].strip()


_Q = 0x100000001B3  # FNV prime: odd, so invertible mod 2**64 (hash of ASCII runs)


def _code_points(text: str) -> tuple[str, np.ndarray, bool]:
    """Normalised text, its code points (uint32), and whether every character kept
    its offset (only the one-to-one table was applied)."""
    nfkc, _ = _tables()
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    in_table = cps < TABLE_LIMIT
    mapped = cps.copy()
    mapped[in_table] = nfkc[cps[in_table]]
    # planes 2-3 are identity but for the compatibility ideographs; planes >= 4 hold no
    # character that NFKC changes (tags and variation selectors are stable)
    slow = (mapped == _SLOW).any() or ((cps >= 0x2F800) & (cps < 0x2FA20)).any()
    if slow:
        text = normalise(text)
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return text, cps, False
    expand = np.flatnonzero(mapped == _EXPAND)
    if len(expand):
        # splice the expansions in between slices (a regular expression over the
        # whole chunk costs ten times more)
        parts = []
        prev = 0
        for i in expand.tolist():
            parts.append(text[prev:i])
            parts.append(_EXPANSIONS[text[i]])
            prev = i + 1
        parts.append(text[prev:])
        text, cps, _ = _code_points("".join(parts))
        return text, cps, False
    if (mapped != cps).any():
        text = mapped.tobytes().decode("utf-32-le", "surrogatepass")
    return text, mapped, True


def encode(text: str, mode: str = "mixed") -> Encoded:
    """Normalise ``text`` and cut it into units and clauses.

    Lines are separated by any break character, so a chunk of many lines can be
    encoded in one call. Cost: a handful of numpy passes over the code points.
    """
    given = text
    text, cps, kept = _code_points(text)
    _, cls_table = _tables()
    cls = np.where(cps < HAN_LIMIT, cls_table[np.minimum(cps, HAN_LIMIT - 1)], BREAK)
    if mode == "han":
        cls = np.where(cls == ALNUM, BREAK, cls)
    elif mode != "mixed":
        raise ValueError(f"units must be 'han' or 'mixed', not {mode!r}")
    n = len(cls)
    prev = np.empty(n, dtype=np.uint8)
    if n:
        prev[0] = BREAK
        prev[1:] = cls[:-1]
    is_han = cls == HAN
    alnum = cls == ALNUM
    run_start = alnum & (prev != ALNUM)
    start_mask = is_han | run_start
    starts = np.flatnonzero(start_mask)
    ids = cps[starts].astype(np.int64)
    ends = starts + 1
    first = prev[starts] == BREAK
    if run_start.any():
        nxt = np.empty(n, dtype=np.uint8)
        nxt[:-1] = cls[1:]
        nxt[-1] = BREAK
        run_end = np.flatnonzero(alnum & (nxt != ALNUM)) + 1
        rs = np.flatnonzero(run_start)
        # polynomial hash of each run via prefix sums: sum(c_j Q^j) over the run, / Q^start
        qp, qi = power_table(_Q, n + 1)
        with np.errstate(over="ignore"):
            acc = np.zeros(n + 1, dtype=np.uint64)
            np.cumsum(np.where(alnum, cps.astype(np.uint64), 0) * qp[:n], out=acc[1:])
            h = (acc[run_end] - acc[rs]) * qi[rs]
        # the low bits hold the first character: keep them (mask, not shift)
        run_ids = (h & np.uint64(2**61 - 1)).astype(np.int64) | ASCII_TAG
        digit = (cps >= 0x30) & (cps <= 0x39)
        digits_before = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(digit, out=digits_before[1:])
        all_digits = (digits_before[run_end] - digits_before[rs]) == (run_end - rs)
        run_ids[all_digits] |= DIGITS_TAG
        is_run = ~is_han[starts]
        ids[is_run] = run_ids
        ends[is_run] = run_end
    source = given if kept and given is not text else None
    return Encoded(text, ids, starts.astype(np.int64), ends.astype(np.int64), first, source)


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
