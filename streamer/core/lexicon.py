"""Known lexicons: the words a user already has (one word per line).

A line is ``word [freq [tag]]``: jieba's dict.txt (``word freq tag``) and plain word
lists load directly; further columns are ignored. Words are normalised the same way
as the input text (NFKC, ASCII lower-case) so that a full-width or upper-case entry
still matches what the engine discovers.

What the ranking takes from a lexicon (streamer.scoring):

* membership, with traditional and variant spellings folded to simplified
  (OpenCC ``t2s``): 服務 is known when 服务 is;
* the frequency column, for a maximum-probability segmentation of a candidate into
  known words (a word without a frequency counts as 1);
* the part-of-speech tag, to tell function words (pronouns, adverbs, particles,
  classifiers, ...) from content words. A lexicon without tags gives no tag
  evidence: every part then counts as a content word.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import sys
import unicodedata
from collections.abc import Iterable, KeysView, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from streamer.core import _units
from streamer.core import units as _units_module
from streamer.core.memory import release_freed_memory
from streamer.core.units import normalise

#: first letters of the part-of-speech tags of function classes in the ICTCLAS/PKU
#: tag set that jieba's dict.txt uses: c conjunction, d adverb, e interjection,
#: f localiser, k suffix (们), m numeral, p preposition, q classifier (measure word),
#: r pronoun, u particle (ud ug uj ul uv uz), y modal particle. Sub-tags share the
#: first letter (dg, mq, rr, rz).
FUNCTION_TAGS = frozenset("cdefkmpqruy")
#: the classes a number's measure word comes from: classifiers, numerals (年 月 日
#: 万元 are tagged m in jieba) and time words (t: 月份 is n, 年代 is n, but 上午 t)
MEASURE_TAGS = frozenset("mqt")
#: what a part-of-speech tag looks like (jieba: n, nr, nrfg, ul, ...); any other third
#: column is not taken for a tag
_TAG = re.compile(r"[a-z]{1,4}")
#: most characters a lexicon part may span in segment(): longer entries are rare and
#: the segmentation is O(len(word) * MAX_PART)
MAX_PART = 8


@lru_cache(maxsize=1)
def _converter() -> object:
    import opencc  # deferred: loading OpenCC's tables costs ~50 ms a process

    return opencc.OpenCC("t2s")


def fold(words: Sequence[str]) -> list[str]:
    """Traditional/variant -> simplified (OpenCC t2s), one converter call for all words."""
    if not words:
        return []
    out = _converter().convert("\n".join(words)).split("\n")  # type: ignore[attr-defined]
    # OpenCC maps character to character here; should a table ever join or split a
    # line, fall back to word by word rather than misalign
    if len(out) != len(words):
        out = [_converter().convert(w) for w in words]  # type: ignore[attr-defined]
    return out


#: a word's entry packs its frequency and tag id: freq << TAG_BITS | tag id
TAG_BITS = 8
MAX_TAGS = 1 << TAG_BITS
#: the largest frequency kept (2**53: above it a float no longer holds every whole number);
#: larger ones are clipped to it, so that an entry always fits in 64 bits
MAX_FREQ = 1 << 53

#: version of LexiconColumns; part of parser_fingerprint, so a stored form of another
#: version is never read back
COLUMNS_VERSION = 1


@dataclass(frozen=True)
class LexiconColumns:
    """A Lexicon as a few flat arrays: what a cache of parsed lexicons stores
    (Lexicon.columns, Lexicon.from_columns; streamer.storage.lexicon_cache).

    words        uint8: the words, UTF-8, in the lexicon's order, joined by "\\n" (no word
                 holds a line break: each comes from one line of a file)
    entries      int64[n]: each word's entry, freq << TAG_BITS | tag id
    tag_names    the tag text of each tag id (id 0: "", no tag)
    has_freq     whether any file gave a frequency
    alone_cps, alone_rates   uint32[k], float64[k]: alone_rate of each character that has
                 one; final_cps, final_rates likewise for final_rate. Empty without
                 frequencies (alone_rate then computes them when first asked).
    """

    words: np.ndarray
    entries: np.ndarray
    tag_names: tuple[str, ...]
    has_freq: bool
    alone_cps: np.ndarray
    alone_rates: np.ndarray
    final_cps: np.ndarray
    final_rates: np.ndarray


@lru_cache(maxsize=1)
def parser_fingerprint() -> str:
    """16 hex digits that change whenever reading the same file could give another
    Lexicon: the LexiconColumns version, the Unicode data NFKC folds with, the Python
    version (str.split and splitlines), and the code of this module and of
    streamer.core.units (normalise). A cache of parsed lexicons keys on it, so an
    upgrade or an edit of the parser makes it parse again. O(size of the two modules).
    """
    h = hashlib.sha256(f"{COLUMNS_VERSION} {unicodedata.unidata_version} "
                       f"{sys.version_info[:2]}".encode())
    for module in (__file__, _units_module.__file__):
        try:
            h.update(Path(module).read_bytes())
        except (OSError, TypeError):  # no source beside the code (frozen, zipped)
            from streamer import __version__

            h.update(f"{module} {__version__}".encode())
    return h.hexdigest()[:16]


class Lexicon:
    """A set of known words, with their frequencies and tags when the file has them.

    One dict word -> entry, the entry an int packing the frequency (a whole number, at
    least 1) and the tag id; equal entries share one int object, so the dict costs
    little more than a set: jieba's 349,041 words take ~50 MB and load in ~1 s.
    """

    def __init__(self, words: Iterable[str] = (), sources: Iterable[str] = (),
                 freq: dict[str, float] | None = None,
                 tags: dict[str, str] | None = None) -> None:
        freq = freq or {}
        tags = tags or {}
        self._tag_names: list[str] = [""]  # id 0: no tag
        ids: dict[str, int] = {"": 0}
        shared: dict[int, int] = {}
        index: dict[str, int] = {}
        for w in (*words, *freq, *tags):
            if w in index:
                continue
            t = tags.get(w, "")
            tid = ids.get(t)
            if tid is None:
                tid = ids[t] = len(self._tag_names) if len(self._tag_names) < MAX_TAGS else 0
                if tid:
                    self._tag_names.append(t)
            entry = _pack(freq.get(w, 1.0), tid)
            index[w] = shared.setdefault(entry, entry)
        self._index = index
        self.sources: tuple[str, ...] = tuple(sources)
        self._has_freq = bool(freq)
        self._init_caches()

    def _init_caches(self, total: int | None = None) -> None:
        """``total``: the sum of the frequencies when the caller has it already."""
        if total is None:
            total = sum(e >> TAG_BITS for e in self._index.values())
        #: ln of the total frequency (each word counts its frequency, or 1)
        self.log_total = math.log(max(float(total), 1.0))
        names = self._tag_names
        self._function = [bool(t) and t[0] in FUNCTION_TAGS for t in names]
        self._measure = [bool(t) and t[0] in MEASURE_TAGS for t in names]
        self._morpheme = [len(t) == 2 and t[1] == "g" and t[0] not in FUNCTION_TAGS
                          for t in names]
        self._folded: dict[str, bool] = {}
        self._alone: dict[str, float] | None = None
        self._final: dict[str, float] = {}

    @property
    def words(self) -> KeysView[str]:
        return self._index.keys()

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def has_freq(self) -> bool:
        return self._has_freq

    @property
    def has_tags(self) -> bool:
        return len(self._tag_names) > 1

    def tag(self, word: str) -> str:
        """The word's part-of-speech tag, "" when it has none or is not known."""
        entry = self._index.get(word)
        return "" if entry is None else self._tag_names[entry & (MAX_TAGS - 1)]

    def freq(self, word: str) -> float:
        """The word's frequency (1 without one), 0 when it is not known."""
        entry = self._index.get(word)
        return 0.0 if entry is None else float(entry >> TAG_BITS)

    def known(self, words: Sequence[str]) -> np.ndarray:
        """True where a word, or its simplified folding (OpenCC t2s), is in the lexicon.

        The answers for the words of the last call are kept: a daemon's rescores see
        mostly the same words, and the cache never holds more than one call's words.
        """
        out = np.zeros(len(words), dtype=bool)
        if not self._index:
            return out
        old = self._folded
        cache: dict[str, bool] = {}
        todo = []
        for i, w in enumerate(words):
            hit = old.get(w)
            if hit is None:
                todo.append(i)
            else:
                out[i] = cache[w] = hit
        if todo:
            pending = [words[i] for i in todo]
            for i, w, f in zip(todo, pending, fold(pending), strict=True):
                out[i] = cache[w] = w in self._index or f in self._index
        self._folded = cache
        return out

    def log_prob(self, word: str) -> float | None:
        """ln P(word) under the lexicon's unigram model, None for an unknown word."""
        entry = self._index.get(word)
        return None if entry is None else math.log(entry >> TAG_BITS) - self.log_total

    def log_prob_parts(self, parts: Iterable[str]) -> float:
        """Sum of ln P(part), a part the lexicon lacks at the floor of a word seen once."""
        total = 0.0
        for p in parts:
            lp = self.log_prob(p)
            total += -self.log_total if lp is None else lp
        return total

    def segment(self, word: str) -> tuple[str, ...]:
        """The most probable split of ``word`` into lexicon words.

        Units (an ASCII letter/digit run [a-z0-9]+, as streamer.units cuts them, or one
        character) are atomic. A part is a lexicon word, with
        ln P = ln(freq) - ln(total), or a single unit that is not one, with the
        probability of a word seen once (the floor jieba uses too). Dynamic
        programming over split points, parts of at most MAX_PART characters:

            best(i) = max over j of best(j) + ln P(word[j:i])

        Example (jieba's dict.txt): 这本书 -> 这 | 本书, 1997年 -> 1997 | 年,
        记者李 -> 记者 | 李, 锦江之星 -> 锦江 | 之 | 星.
        """
        # in C (_units.c: segment), the same arithmetic as log_prob in the same order, so
        # the same floats and parts: this runs for every candidate of every rescore, ~8
        # lookups a word, and was half the cost of scoring the rules in Python
        return _units.segment(word, self._index, self.log_total, MAX_PART, TAG_BITS)

    def alone_rate(self, char: str) -> float:
        """b(c): the share of the lexicon's uses of character c that are c alone,

            b(c) = freq(c) / sum over words w containing c of freq(w) * (times c is in w)

        i.e. how often c is a word by itself in the text the lexicon's frequencies
        were counted on. 了 0.94, 也 0.95, 这 0.45, 间 0.16, 员 0.04 (jieba's
        dict.txt). 0 for a character the lexicon does not list alone.
        """
        if self._alone is None:
            self._alone = self._alone_rates()
        return self._alone.get(char, 0.0)

    def final_rate(self, char: str) -> float:
        """e(c): the share of the lexicon's uses of character c that end a word of two or
        more characters (部 0.55 as in 干部 外交部, 副 0.07, 预 0.04 in jieba's dict.txt)."""
        if self._alone is None:
            self._alone = self._alone_rates()
        return self._final.get(char, 0.0)

    def _alone_rates(self) -> dict[str, float]:
        words = self._index
        if not words:
            return {}
        cps = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        freq = np.fromiter(words.values(), dtype=np.int64, count=len(words)) >> TAG_BITS
        within = np.bincount(cps, weights=np.repeat(freq, lengths))
        ends = np.cumsum(lengths) - 1
        single = np.flatnonzero(lengths == 1)
        cp = cps[ends[single]]
        rate = freq[single] / within[cp]
        multi = np.flatnonzero(lengths > 1)
        final = np.bincount(cps[ends[multi]], weights=freq[multi], minlength=len(within))
        last = np.flatnonzero(final)
        self._final = dict(zip(map(chr, last.tolist()), (final[last] / within[last]).tolist(),
                               strict=True))
        return dict(zip(map(chr, cp.tolist()), rate.tolist(), strict=True))

    def is_function(self, word: str) -> bool:
        """The word's tag is a function class (FUNCTION_TAGS); False without a tag."""
        entry = self._index.get(word)
        return entry is not None and self._function[entry & (MAX_TAGS - 1)]

    def is_measure(self, word: str) -> bool:
        """The word's tag is a numeral, classifier or time word (MEASURE_TAGS)."""
        entry = self._index.get(word)
        return entry is not None and self._measure[entry & (MAX_TAGS - 1)]

    def is_verb(self, word: str) -> bool:
        """The word's tag is v: a verb, not a verbal noun (vn), an intransitive (vi), an
        adverbial use (vd) or a bare morpheme (vg). False without a tag."""
        return self.tag(word) == "v"

    def is_morpheme(self, word: str) -> bool:
        """The word's tag is a bare morpheme of no word class (zg, ng, vg, ag, tg: a tag
        ending in g whose first letter is not a function class): its tag tells
        nothing about how the character is used."""
        entry = self._index.get(word)
        return entry is not None and self._morpheme[entry & (MAX_TAGS - 1)]

    def columns(self) -> LexiconColumns:
        """The lexicon as flat arrays (LexiconColumns), for a cache to store.

        Raises ValueError when it has no such form: a word holding a line break (only a
        Lexicon built from words in code can have one) or an entry past int64 (none
        can: frequencies are clipped to MAX_FREQ). O(words)."""
        words = list(self._index)
        text = "\n".join(words)
        if text.count("\n") != max(len(words) - 1, 0):
            raise ValueError("a word holds a line break")
        try:
            entries = np.fromiter(self._index.values(), dtype=np.int64, count=len(words))
        except OverflowError:
            raise ValueError("a frequency is too large for int64") from None
        alone = final = {}
        if self._has_freq:
            if self._alone is None:
                self._alone = self._alone_rates()
            alone, final = self._alone, self._final

        def rates(table: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
            return (np.fromiter(map(ord, table), dtype=np.uint32, count=len(table)),
                    np.fromiter(table.values(), dtype=np.float64, count=len(table)))

        return LexiconColumns(np.frombuffer(text.encode("utf-8"), dtype=np.uint8), entries,
                              tuple(self._tag_names), self._has_freq, *rates(alone),
                              *rates(final))

    @classmethod
    def from_columns(cls, cols: LexiconColumns, sources: Iterable[str] = ()) -> Lexicon:
        """The Lexicon that ``columns()`` was taken from: the same words in the same
        order, entries, tags and rates. Raises ValueError when the columns do not fit
        together (a damaged store). ~0.1 s for jieba's 349k words (parsing the file:
        ~1.5 s)."""
        n = len(cols.entries)
        words = cols.words.tobytes().decode("utf-8").split("\n") if n else []
        if len(words) != n or cols.entries.ndim != 1 or not cols.tag_names \
                or cols.tag_names[0] != "" or len(cols.tag_names) > MAX_TAGS:
            raise ValueError("lexicon columns do not fit together")
        if n and (int(cols.entries.min()) < 1 << TAG_BITS
                  or int((cols.entries & (MAX_TAGS - 1)).max()) >= len(cols.tag_names)):
            raise ValueError("lexicon entries out of range")
        lex = cls.__new__(cls)
        lex._tag_names = list(cols.tag_names)
        # equal entries share one int object, as load() makes them (~11 MB less for
        # jieba's 349k words, 1,900 distinct entries)
        distinct, which = np.unique(cols.entries, return_inverse=True)
        shared = distinct.tolist()
        lex._index = dict(zip(words, map(shared.__getitem__, which.tolist()), strict=True))
        if len(lex._index) != n:
            raise ValueError("lexicon columns repeat a word")
        lex.sources = tuple(sources)
        lex._has_freq = bool(cols.has_freq)
        freqs = cols.entries >> TAG_BITS
        # the exact integer sum, as _init_caches takes it (int64 is exact below 2**63)
        exact = n == 0 or int(freqs.max()) < (1 << 62) // n
        lex._init_caches(int(freqs.sum()) if exact else None)
        if lex._has_freq:
            lex._alone = dict(zip(map(chr, cols.alone_cps.tolist()),
                                  cols.alone_rates.tolist(), strict=True))
            lex._final = dict(zip(map(chr, cols.final_cps.tolist()),
                                  cols.final_rates.tolist(), strict=True))
        return lex

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> Lexicon:
        """Read every file; raises OSError/UnicodeDecodeError naming the file.

        A second column that is a positive number is the word's frequency (rounded to a
        whole number, at least 1, at most MAX_FREQ; summed over files), a third of one to
        four lower-case letters its tag (the first file's tag wins). Without a frequency a
        word counts as seen once.
        """
        lex = cls.__new__(cls)
        lex._tag_names = [""]
        # tag text -> id; 0 for a third column that is no tag, or past MAX_TAGS tags
        ids: dict[str, int] = {"": 0}
        shared: dict[int, int] = {}
        index: dict[str, int] = {}
        has_freq = False
        names = []
        finite = math.isfinite
        mask = MAX_TAGS - 1
        for p in paths:
            path = Path(p)
            names.append(str(path))
            with path.open(encoding="utf-8-sig", errors="strict") as fh:
                # one normalisation of the whole file: far cheaper than one a line, and
                # the same result (NFKC composes nothing across a line break)
                text = normalise(fh.read())
            # the loop below is the load's cost (349k lines of jieba's dict.txt): the
            # packing is inlined and each distinct tag text is checked once
            for line in text.splitlines():
                parts = line.split(None, 3)
                if not parts or parts[0][0] == "#":
                    continue
                word = parts[0]
                old = index.get(word)
                if old is None:
                    f, tid = 0.0, 0
                else:
                    f, tid = float(old >> TAG_BITS), old & mask
                if len(parts) >= 2:
                    try:
                        given = float(parts[1])
                    except ValueError:
                        given = 0.0
                    if given > 0 and finite(given):
                        f += given
                        has_freq = True
                        if len(parts) >= 3 and not tid:
                            tag = parts[2]
                            tid = ids.get(tag, -1)
                            if tid < 0:
                                tid = (len(lex._tag_names) if _TAG.fullmatch(tag)
                                       and len(lex._tag_names) < MAX_TAGS else 0)
                                ids[tag] = tid
                                if tid:
                                    lex._tag_names.append(tag)
                whole = round(f)
                if whole > MAX_FREQ:
                    whole = MAX_FREQ
                entry = (max(whole, 1) << TAG_BITS) | tid
                index[word] = shared.setdefault(entry, entry)
        lex._index = index
        lex.sources = tuple(names)
        lex._has_freq = has_freq
        lex._init_caches()
        if has_freq:
            # now, while the process is small: computed at the first rescore, its
            # temporaries would add to discover's peak
            lex._alone = lex._alone_rates()
        return lex


def _pack(freq: float, tag_id: int) -> int:
    """A lexicon entry: the frequency as a whole number >= 1, and the tag id."""
    return min(max(round(freq), 1), MAX_FREQ) << TAG_BITS | tag_id


# --------------------------------------------------------------------------- names


#: Lexicons that ``known`` (config) and ``--known`` (command line) accept by name instead
#: of a path: name -> (installed package, file inside it). jieba's dict.txt is the lexicon
#: users of Chinese word segmentation already load: 349k words, each with a frequency and
#: a part-of-speech tag. jieba is a dependency of streamer, so the name always resolves.
NAMED_LEXICONS: dict[str, tuple[str, str]] = {"jieba": ("jieba", "dict.txt")}

#: The known lexicons of the shipped configuration and of `streamer discover`: without
#: one, every common word (酒店, 服务, 喜欢) would be listed as new.
DEFAULT_KNOWN: tuple[str, ...] = ("jieba",)


class LexiconError(ValueError):
    """A known-lexicon value that is neither a lexicon name nor an existing path, or a
    lexicon file that is not UTF-8. The message is one line naming the value or file."""


def resolve_known(value: str | Path) -> Path:
    """The file a known-lexicon value stands for.

    A value equal to a name in NAMED_LEXICONS (``jieba``) is that file inside the installed
    package (found without importing the package); names are checked first, so the result
    does not depend on the working directory (``./jieba`` is a file called jieba). Any other
    value is a path and must exist. Raises LexiconError, whose message is one line that
    names the value and the lexicon names.
    """
    text = str(value)
    if text in NAMED_LEXICONS:
        package, member = NAMED_LEXICONS[text]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise LexiconError(f"{text}: the {package} package is not installed "
                               f"(pip install {package})")
        for location in spec.submodule_search_locations:
            path = Path(location) / member
            if path.is_file():
                return path
        raise LexiconError(f"{text}: the installed {package} package has no {member}")
    path = Path(text)
    if not path.exists():
        raise LexiconError(f"{text}: no such file, and not a lexicon name "
                           f"(names: {', '.join(NAMED_LEXICONS)})")
    return path


class LexiconCache(Protocol):
    """A store of parsed lexicons that load_known consults (streamer.storage.lexicon_cache
    keeps them in files). ``get`` returns the Lexicon of exactly these files as they are
    now, or None; it never raises. ``put`` stores one just parsed from them; it never
    raises either (a cache that cannot be written is skipped)."""

    def get(self, paths: Sequence[Path]) -> Lexicon | None: ...

    def put(self, paths: Sequence[Path], lexicon: Lexicon) -> None: ...


def load_known(values: Iterable[str | Path], cache: LexiconCache | None = None) -> Lexicon:
    """Lexicon.load of the files that names and paths stand for (resolve_known); raises
    LexiconError (also for a file that is not UTF-8), or OSError naming the file.

    With a ``cache``, a lexicon it holds for these files is used instead of parsing them
    (~0.1 s instead of ~1.5 s for jieba's dict.txt), and one parsed here is put into it.

    Memory freed to glibc's heap is handed back to the OS before and after reading, as the
    daemon does after a rescore: Python allocates the words in arenas of its own, so free
    heap pages left by earlier numpy temporaries (~50 MB after discover's passes) would
    stay resident under them, and reading jieba's dict.txt leaves ~15 MB of freed parsing
    buffers beside the ~43 MB the words keep (docs/benchmarks.md)."""
    paths = [resolve_known(v) for v in values]
    release_freed_memory()
    if cache is not None:
        cached = cache.get(paths)
        if cached is not None:
            release_freed_memory()
            return cached
    try:
        lexicon = Lexicon.load(paths)
    except UnicodeDecodeError:
        for path in paths:  # which file: the error itself does not say
            try:
                path.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise LexiconError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})"
                                   ) from None
        raise
    if cache is not None:
        cache.put(paths, lexicon)
    release_freed_memory()
    return lexicon
