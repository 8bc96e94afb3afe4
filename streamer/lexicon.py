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

import math
import re
from collections.abc import Iterable, KeysView, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from streamer.units import normalise

#: first letters of the part-of-speech tags of function classes in the ICTCLAS/PKU
#: tag set that jieba's dict.txt uses: c conjunction, d adverb, e interjection,
#: f localiser, k suffix (们), m numeral, p preposition, q classifier (measure word),
#: r pronoun, u particle (ud ug uj ul uv uz), y modal particle. Sub-tags share the
#: first letter (dg, mq, rr, rz).
FUNCTION_TAGS = frozenset("cdefkmpqruy")
#: the classes a number's measure word comes from: classifiers, numerals (年 月 日
#: 万元 are tagged m in jieba) and time words (t: 月份 is n, 年代 is n, but 上午 t)
MEASURE_TAGS = frozenset("mqt")
#: a unit of a candidate: an ASCII letter/digit run (as streamer.units cuts them) or
#: one character
_UNIT = re.compile(r"[a-z0-9]+|.", re.S)
#: most characters a lexicon part may span in segment(): longer entries are rare and
#: the segmentation is O(len(word) * MAX_PART)
MAX_PART = 8
#: cached segmentations; a long-running stream sees new strings forever
CACHE_LIMIT = 1 << 20


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


class Lexicon:
    """A set of known words, with their frequencies and tags when the file has them.

    Stored as one dict word -> row and two arrays by row (frequency, tag id): a
    349,046-word jieba dictionary takes ~45 MB and loads in ~1 s.
    """

    def __init__(self, words: Iterable[str] = (), sources: Iterable[str] = (),
                 freq: dict[str, float] | None = None,
                 tags: dict[str, str] | None = None) -> None:
        freq = freq or {}
        tags = tags or {}
        index = dict.fromkeys(words, 0)
        for w in (*freq, *tags):
            index.setdefault(w, 0)
        self._index: dict[str, int] = {w: i for i, w in enumerate(index)}
        self.sources: tuple[str, ...] = tuple(sources)
        n = len(self._index)
        self._freq = np.ones(n)
        self._tag = np.zeros(n, dtype=np.int32)  # 0: no tag
        self._tag_names: list[str] = [""]
        self._has_freq = bool(freq)
        if freq:
            self._freq[[self._index[w] for w in freq]] = list(freq.values())
        if tags:
            ids: dict[str, int] = {}
            for w, t in tags.items():
                tid = ids.get(t)
                if tid is None:
                    tid = ids[t] = len(self._tag_names)
                    self._tag_names.append(t)
                self._tag[self._index[w]] = tid
        self._init_caches()

    def _init_caches(self) -> None:
        #: ln of the total frequency (each word counts its frequency, or 1)
        self.log_total = math.log(max(float(self._freq.sum()), 1.0))
        self._log_freq = np.log(self._freq) - self.log_total
        self._function = np.array([bool(t) and t[0] in FUNCTION_TAGS for t in self._tag_names])
        self._measure = np.array([bool(t) and t[0] in MEASURE_TAGS for t in self._tag_names])
        self._morpheme = np.array([len(t) == 2 and t[1] == "g" and t[0] not in FUNCTION_TAGS
                                   for t in self._tag_names])
        self._folded: dict[str, bool] = {}
        self._parts: dict[str, tuple[str, ...]] = {}
        self._alone: dict[str, float] | None = None

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
        row = self._index.get(word)
        return "" if row is None else self._tag_names[self._tag[row]]

    def freq(self, word: str) -> float:
        """The word's frequency (1 without one), 0 when it is not known."""
        row = self._index.get(word)
        return 0.0 if row is None else float(self._freq[row])

    def known(self, words: Sequence[str]) -> np.ndarray:
        """True where a word, or its simplified folding (OpenCC t2s), is in the lexicon.

        Foldings are cached per word: a daemon's rescores see mostly the same words.
        """
        out = np.zeros(len(words), dtype=bool)
        if not self._index:
            return out
        cache = self._folded
        todo = []
        for i, w in enumerate(words):
            hit = cache.get(w)
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        if todo:
            if len(cache) > CACHE_LIMIT:
                cache.clear()
            pending = [words[i] for i in todo]
            for i, w, f in zip(todo, pending, fold(pending), strict=True):
                hit = w in self._index or f in self._index
                cache[w] = hit
                out[i] = hit
        return out

    def log_prob(self, word: str) -> float | None:
        """ln P(word) under the lexicon's unigram model, None for an unknown word."""
        row = self._index.get(word)
        return None if row is None else float(self._log_freq[row])

    def log_prob_parts(self, parts: Iterable[str]) -> float:
        """Sum of ln P(part), a part the lexicon lacks at the floor of a word seen once."""
        total = 0.0
        for p in parts:
            lp = self.log_prob(p)
            total += -self.log_total if lp is None else lp
        return total

    def segment(self, word: str) -> tuple[str, ...]:
        """The most probable split of ``word`` into lexicon words (cached per word).

        Units (characters, ASCII runs) are atomic. A part is a lexicon word, with
        ln P = ln(freq) - ln(total), or a single unit that is not one, with the
        probability of a word seen once (the floor jieba uses too). Dynamic
        programming over split points, parts of at most MAX_PART characters:

            best(i) = max over j of best(j) + ln P(word[j:i])

        Example (jieba's dict.txt): 这本书 -> 这 | 本书, 1997年 -> 1997 | 年,
        记者李 -> 记者 | 李, 锦江之星 -> 锦江 | 之 | 星.
        """
        hit = self._parts.get(word)
        if hit is not None:
            return hit
        units = _UNIT.findall(word)
        n = len(units)
        unknown = -self.log_total
        best = [0.0] + [-math.inf] * n
        back = [0] * (n + 1)
        for i in range(1, n + 1):
            text = ""
            for j in range(i - 1, -1, -1):
                text = units[j] + text
                if len(text) > MAX_PART and j < i - 1:
                    break
                lp = self.log_prob(text)
                if lp is None:
                    if j < i - 1:
                        continue
                    lp = unknown
                if best[j] + lp > best[i]:
                    best[i], back[i] = best[j] + lp, j
        parts: list[str] = []
        i = n
        while i > 0:
            parts.append("".join(units[back[i]:i]))
            i = back[i]
        out = tuple(reversed(parts))
        if len(self._parts) > CACHE_LIMIT:
            self._parts.clear()
        self._parts[word] = out
        return out

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

    def _alone_rates(self) -> dict[str, float]:
        words = list(self._index)
        if not words:
            return {}
        cps = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        within = np.bincount(cps, weights=np.repeat(self._freq, lengths))
        single = np.flatnonzero(lengths == 1)
        cp = cps[np.cumsum(lengths)[single] - 1]
        rate = self._freq[single] / within[cp]
        return dict(zip(map(chr, cp.tolist()), rate.tolist(), strict=True))

    def is_function(self, word: str) -> bool:
        """The word's tag is a function class (FUNCTION_TAGS); False without a tag."""
        row = self._index.get(word)
        return row is not None and bool(self._function[self._tag[row]])

    def is_measure(self, word: str) -> bool:
        """The word's tag is a numeral, classifier or time word (MEASURE_TAGS)."""
        row = self._index.get(word)
        return row is not None and bool(self._measure[self._tag[row]])

    def is_morpheme(self, word: str) -> bool:
        """The word's tag is a bare morpheme of no word class (zg, ng, vg, ag, tg: a tag
        ending in g whose first letter is not a function class): its tag tells
        nothing about how the character is used."""
        row = self._index.get(word)
        return row is not None and bool(self._morpheme[self._tag[row]])

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> Lexicon:
        """Read every file; raises OSError/UnicodeDecodeError naming the file.

        A second column that is a positive number is the word's frequency (summed over
        files), a third its tag (the first file's tag wins).
        """
        index: dict[str, int] = {}
        freq: list[float] = []
        tag: list[int] = []
        tag_ids: dict[str, int] = {"": 0}
        has_freq = False
        names = []
        for p in paths:
            path = Path(p)
            names.append(str(path))
            with path.open(encoding="utf-8-sig", errors="strict") as fh:
                text = fh.read()
            # one normalisation of the whole file: far cheaper than one a line, and the
            # same result (NFKC composes nothing across a line break)
            for line in normalise(text).split("\n"):
                parts = line.split(None, 3)
                if not parts or parts[0].startswith("#"):
                    continue
                word = parts[0]
                row = index.get(word)
                if row is None:
                    row = index[word] = len(freq)
                    freq.append(0.0)
                    tag.append(0)
                if len(parts) < 2:
                    continue
                try:
                    f = float(parts[1])
                except ValueError:
                    continue
                if f > 0 and math.isfinite(f):
                    freq[row] += f
                    has_freq = True
                if len(parts) >= 3 and not tag[row]:
                    tag[row] = tag_ids.setdefault(parts[2], len(tag_ids))
        lex = cls.__new__(cls)
        lex._index = index
        lex.sources = tuple(names)
        f = np.array(freq)
        lex._freq = np.where(f > 0, f, 1.0)
        lex._has_freq = has_freq
        lex._tag = np.array(tag, dtype=np.int32)
        lex._tag_names = list(tag_ids)
        lex._init_caches()
        return lex
