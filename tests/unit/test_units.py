"""Text to units (streamer/units.py): NFKC folding, unit and clause cutting, offsets, ids.

The folding must equal ``unicodedata.normalize("NFKC", text)`` followed by ASCII lower-casing
(the module's promise), whichever internal path (per-code-point table, expansion table, or the
real function) a chunk takes. Units and clause starts are checked against a small pure-Python
oracle of the definitions: a unit is a Han character (U+4E00-9FFF, U+3400-4DBF,
U+20000-3FFFF, U+3007) or, in mixed mode, a maximal run of [a-z0-9]; everything else breaks
the clause.
"""

from __future__ import annotations

import string
import unicodedata

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamer.core.units import (
    ASCII_BUCKETS,
    ASCII_TAG,
    DENSE_SIZE,
    DIGITS_TAG,
    HAN_LIMIT,
    dense_index,
    encode,
    encode_words,
    normalise,
)

ALNUM = frozenset(string.ascii_lowercase + string.digits)


def reference_fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return "".join(c.lower() if c < "\x80" else c for c in text)


def is_han(ch: str) -> bool:
    if len(ch) != 1:
        return False
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x3FFFF
            or cp == 0x3007)


def oracle_units(text: str, mode: str) -> list[tuple[int, int, bool]]:
    """(start, end, starts a clause) of every unit of already-folded ``text``."""
    out = []
    i, after_break = 0, True
    while i < len(text):
        ch = text[i]
        if is_han(ch):
            out.append((i, i + 1, after_break))
            after_break = False
            i += 1
        elif mode == "mixed" and ch in ALNUM:
            j = i
            while j < len(text) and text[j] in ALNUM:
                j += 1
            out.append((i, j, after_break))
            after_break = False
            i = j
        else:
            after_break = True
            i += 1
    return out


def units_of(text: str, mode: str = "mixed") -> list[str]:
    enc = encode(text, mode)
    return [enc.span_text(i, i + 1) for i in range(len(enc))]


# --------------------------------------------------------------------------- folding


@pytest.mark.parametrize(("raw", "folded"), [
    ("１９９８年", "1998年"),                       # full-width digits
    ("ＡＢＣｄｅ", "abcde"),                        # full-width letters, then lower-cased
    ("iPhone手机", "iphone手机"),                   # ASCII lower-cased
    ("ÉCOLE", "École"),                            # only ASCII is lower-cased
    ("\uF900\uF9D1", "\u8C48\u516D"),              # CJK compatibility ideographs (BMP)
    ("\U0002F800\U0002F804", "\u4E3D\u4F60"),      # compatibility ideographs supplement
    ("…℃", "...°c"),                               # one character to several
    ("①⑽", "1(10)"),                               # enclosed alphanumerics
    ("ｶﾀｶﾅ", "カタカナ"),                          # half-width katakana
    ("ﬁ㍿", "fi株式会社"),
    ("e\u0301", "\u00e9"),                          # combining mark composes
    ("\u1100\u1161\u11a8", "\uac01"),               # conjoining jamo compose
    ("〇一二", "〇一二"),
    ("\u3000", " "),                                # ideographic space
])
def test_folding_examples(raw: str, folded: str) -> None:
    assert reference_fold(raw) == folded  # the examples themselves are right
    assert normalise(raw) == folded
    assert encode(raw).text == folded


def bmp_range(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(chr)


# characters of the classes the fast paths must handle; the classes that currently fail
# (see the xfail tests below) are left out here and covered there
CHARS = st.one_of(
    st.sampled_from(list(string.printable)),
    bmp_range(0x00A0, 0x024F),        # Latin-1 and Latin Extended (precomposed, NBSP, ...)
    bmp_range(0x0300, 0x036F),        # combining diacritical marks
    bmp_range(0x1100, 0x11FF),        # conjoining Hangul jamo
    bmp_range(0xAC00, 0xD7A3),        # Hangul syllables
    bmp_range(0x2000, 0x206F),        # general punctuation (… ‥ and spaces)
    bmp_range(0x2100, 0x218F),        # letterlike symbols, number forms (℃ ⅷ)
    bmp_range(0x2460, 0x24FF),        # enclosed alphanumerics
    bmp_range(0x3000, 0x30FF),        # CJK punctuation, kana (with combining voiced marks)
    bmp_range(0x3200, 0x33FF),        # enclosed CJK, CJK compatibility (㍿)
    bmp_range(0x3400, 0x4DBF),        # extension A
    bmp_range(0x4E00, 0x9FFF),        # unified ideographs
    bmp_range(0xF900, 0xFAFF),        # compatibility ideographs
    bmp_range(0xFB00, 0xFB4F),        # presentation forms (ﬁ, Hebrew with points)
    bmp_range(0xFE30, 0xFE6F),        # CJK compatibility forms, small forms
    bmp_range(0xFF00, 0xFF9D),        # full-width and half-width forms (before ﾞ ﾟ)
    st.integers(0x20000, 0x2A6DF).map(chr),   # extension B (astral Han)
    st.integers(0x2F800, 0x2FA1F).map(chr),   # compatibility ideographs supplement
    st.integers(0x1F300, 0x1F64F).map(chr),   # emoji (astral, no decomposition)
)


def expands(ch: str) -> bool:
    """NFKC turns ``ch`` into several characters, none of them combining (… -> ...)."""
    norm = unicodedata.normalize("NFKC", ch)
    return len(norm) > 1 and not any(unicodedata.combining(c) for c in norm)


def combines(ch: str) -> bool:
    """``ch`` is, or folds to something holding, a combining mark."""
    return any(unicodedata.combining(c) for c in unicodedata.normalize("NFKC", ch))


def check_fold(text: str) -> None:
    want = reference_fold(text)
    assert normalise(text) == want
    assert encode(text).text == want
    assert encode(text, "han").text == want


# An expansion followed by a combining mark is a known divergence (test_fast_folding_known_
# divergences, "Ⅱ̀"): each of the two tests below leaves out one side of that pair.
@settings(max_examples=250, deadline=None)
@given(text=st.lists(CHARS.filter(lambda c: not expands(c)), max_size=40).map("".join))
@example(text="中\u0301国")
@example(text="\U00020000Ａ\u0301")
@example(text="\u3099か\u3099ｶ")
@example(text="\u1100\u1161가\u11a8")
def test_fast_folding_equals_nfkc_with_combining_marks(text: str) -> None:
    check_fold(text)


@settings(max_examples=250, deadline=None)
@given(text=st.lists(CHARS.filter(lambda c: not combines(c)), max_size=40).map("".join))
@example(text="…℃①⑽㍿ﬁ")
@example(text="\U00020000…\U0002F800")
@example(text="가…\u1100\u1161")
def test_fast_folding_equals_nfkc_with_expansions(text: str) -> None:
    check_fold(text)


# Characters the per-code-point table maps to the wrong result because the real NFKC of
# the chunk is not the concatenation of per-character results, or because the astral path
# leaves characters other than the compatibility ideographs supplement untouched.
NFKC_BUGS = [
    pytest.param("\U0001D401\U0001D422", "bi", id="math-bold-letters"),      # 𝐁𝐢
    pytest.param("\U0001D7CF\U0001D7D0", "12", id="math-bold-digits"),       # 𝟏𝟐
    pytest.param("\U0001FBF1\U0001FBF2", "12", id="segmented-digits"),       # 🯱🯲
    pytest.param("\U0001F130", "a", id="squared-latin-letter"),              # 🄰
    pytest.param("\u304b\uff9e", "\u304c", id="halfwidth-voiced-mark"),      # か + ﾞ -> が
    pytest.param("\u3131\u314f", "\uac00", id="compatibility-jamo"),         # ㄱㅏ -> 가
    pytest.param("\u0b47\u0b3e", "\u0b4b", id="oriya-vowel-sign-pair"),      # େ + ା -> ୋ
    # an expansion is lower-cased before it composes with the next mark: Ⅱ̀ -> IÌ -> iÌ
    pytest.param("\u2161\u0300", "i\u00cc", id="expansion-then-combining-mark"),
]


@pytest.mark.parametrize(("raw", "folded"), NFKC_BUGS)
def test_fast_folding_known_divergences(raw: str, folded: str) -> None:
    assert reference_fold(raw) == folded
    assert encode(raw).text == folded


def test_math_alphanumerics_become_ascii_units() -> None:
    assert units_of("\U0001D401站") == ["b", "站"]
    assert units_of("\U0001D422\U0001D40F\U0001D421\U0001D428\U0001D427\U0001D41E") == \
        ["iphone"]


# --------------------------------------------------------------------------- units


def test_mixed_and_han_units() -> None:
    text = "我用iPhone15看B站，U盘2024年\n〇"
    mixed = encode(text, "mixed")
    assert units_of(text, "mixed") == ["我", "用", "iphone15", "看", "b", "站", "u", "盘",
                                       "2024", "年", "〇"]
    assert mixed.first.tolist() == [True, False, False, False, False, False, True, False,
                                    False, False, True]
    assert units_of(text, "han") == ["我", "用", "看", "站", "盘", "年", "〇"]
    assert encode(text, "han").first.tolist() == [True, False, True, True, True, True, True]
    with pytest.raises(ValueError):
        encode(text, "latin")


def test_unit_ids() -> None:
    enc = encode("中\U00020000\u3400〇 IPHONE iphone ipad 2024 a1 ２０２４")
    ids = enc.ids.tolist()
    assert ids[:4] == [ord("中"), 0x20000, 0x3400, 0x3007]  # Han: the code point
    assert all(i < HAN_LIMIT for i in ids[:4])
    iphone, iphone2, ipad, year, a1, year2 = ids[4:]
    assert all(i & int(ASCII_TAG) for i in ids[4:])
    assert iphone == iphone2 != ipad  # case-folded runs are the same unit
    assert year == year2  # full-width digits fold to the same number
    assert year & int(DIGITS_TAG) and not a1 & int(DIGITS_TAG) and not iphone & int(DIGITS_TAG)
    assert len(set(ids)) == len(ids) - 2


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1,
                              max_size=12), min_size=1, max_size=30))
def test_ascii_run_ids_are_a_function_of_the_run(words: list[str]) -> None:
    """Same run, same id; tags right. (Distinct runs: test_distinct_ascii_runs_get_distinct_ids,
    which fails today, so distinctness is only asserted there.)"""
    enc = encode(" ".join(words))
    assert [enc.span_text(i, i + 1) for i in range(len(enc))] == words
    by_word: dict[str, int] = {}
    for w, i in zip(words, enc.ids.tolist(), strict=True):
        assert by_word.setdefault(w, i) == i
        assert i >= HAN_LIMIT and i & int(ASCII_TAG)
        assert bool(i & int(DIGITS_TAG)) == w.isdigit()


@pytest.mark.parametrize("runs", [("a", "b"), ("b", "c"), ("u", "t"), ("1", "2"),
                                  ("bat", "cat"), ("iphone", "jphone")])
def test_distinct_ascii_runs_get_distinct_ids(runs: tuple[str, str]) -> None:
    a, b = encode(" ".join(runs)).ids.tolist()
    assert a != b


UNIT_TEXT = st.lists(st.one_of(
    st.sampled_from(list("中华人民共和国〇一") + ["\u3400", "\U00020001", "\U0002F800"]),
    st.sampled_from(list("abcXYZ019") + ["Ａ", "１", "ｚ"]),
    st.sampled_from(list(" ，。!\n\t-'") + ["\u3000", "…", "é", "e\u0301", "가", "ㄱ",
                                           "\u00a0", "①", "ﬁ", "\U0001F600"]),
), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=UNIT_TEXT, mode=st.sampled_from(["mixed", "han"]))
def test_units_and_clause_starts_match_the_definition(text: str, mode: str) -> None:
    enc = encode(text, mode)
    folded = reference_fold(text)
    assert enc.text == folded
    want = oracle_units(folded, mode)
    assert len(enc) == len(want)
    assert list(zip(enc.starts.tolist(), enc.ends.tolist(), enc.first.tolist(),
                    strict=True)) == want
    for i, (s, e, _) in enumerate(want):
        unit = folded[s:e]
        assert enc.span_text(i, i + 1) == unit
        if is_han(unit):
            assert enc.ids[i] == ord(unit)
        else:
            assert enc.ids[i] & ASCII_TAG
    assert enc.ids.dtype == np.int64


def test_lines_are_clauses() -> None:
    enc = encode("甲乙\n丙丁\r\n戊\u2028己")
    assert enc.first.tolist() == [True, False, True, False, True, True]


# --------------------------------------------------------------------------- span_text, context


def test_span_text() -> None:
    enc = encode("我爱B站，ＡＢ中文")
    assert enc.span_text(0, 4) == "我爱b站"
    assert enc.span_text(2, 4) == "b站"
    assert enc.span_text(3, 6) == "站,ab中"  # across a clause break: the (folded) text between
    assert enc.span_text(4, 5) == "ab"


def test_context_is_one_line_around_the_span() -> None:
    text = "第一行没有它\n前面的话说到区块链然后后面的很多很多话\n第三行"
    enc = encode(text)
    units = [enc.span_text(i, i + 1) for i in range(len(enc))]
    i = units.index("区")
    ctx = enc.context(i, i + 3, width=4)
    assert ctx == "的话说到区块链然后后面"
    wide = enc.context(i, i + 3, width=100)
    assert wide == "前面的话说到区块链然后后面的很多很多话"
    assert enc.context(0, 2, width=3) == "第一行没有"


@settings(max_examples=200, deadline=None)
@given(text=UNIT_TEXT, data=st.data(), width=st.integers(0, 20))
def test_context_properties(text: str, data, width: int) -> None:
    enc = encode(text)
    if len(enc) == 0:
        return
    i = data.draw(st.integers(0, len(enc) - 1))
    j = data.draw(st.integers(i + 1, len(enc)))
    span = enc.span_text(i, j)
    ctx = enc.context(i, j, width)
    assert len(ctx) <= len(span) + 2 * width
    if "\n" in span:  # pieces never cross lines; nothing more is promised then
        return
    assert "\n" not in ctx
    # the context is shown as written when normalising kept every offset: compare
    # against the text it was cut from
    shown = enc.text if enc.source is None else enc.source
    s, e = int(enc.starts[i]), int(enc.ends[j - 1])
    assert normalise(shown[s:e]) == span
    line_start = shown.rfind("\n", 0, s) + 1
    line_end = shown.find("\n", e)
    line = shown[line_start:line_end if line_end >= 0 else len(shown)]
    assert ctx in line
    # exactly the characters of the line within ``width`` of the span, stripped
    assert ctx == shown[max(line_start, s - width):min(len(line) + line_start,
                                                        e + width)].strip()


# --------------------------------------------------------------------------- helpers


def test_encode_words_offsets() -> None:
    words = ["区块链", "B站", "iPhone手机", "中华人民共和国"]
    enc, offsets = encode_words(words)
    assert offsets.tolist() == [0, 3, 5, 8, 15]
    got = [enc.span_text(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:],
                                                          strict=True)]
    assert got == ["区块链", "b站", "iphone手机", "中华人民共和国"]


def test_dense_index() -> None:
    enc = encode("中〇 abc 123 xyz 7")
    idx = dense_index(enc.ids)
    assert idx[0] == ord("中") and idx[1] == 0x3007
    assert idx[3] == idx[5] == HAN_LIMIT  # all numbers share one slot
    assert HAN_LIMIT < idx[2] < DENSE_SIZE and HAN_LIMIT < idx[4] < DENSE_SIZE
    assert DENSE_SIZE == HAN_LIMIT + ASCII_BUCKETS
    # the input is not modified
    assert enc.ids[2] & ASCII_TAG


def test_empty_and_breaks_only() -> None:
    for text in ("", "，。！\n \t", "\U0001F600"):
        enc = encode(text)
        assert len(enc) == 0
        assert enc.ids.dtype == np.int64 and enc.first.dtype == bool
    assert len(encode("hello world", "han")) == 0
