"""The split tests of the ranking (scoring.split_factor, scoring.is_verb_object) on a
small text this module writes, run through the real engine (both passes, as discover
runs them) with a small known lexicon in jieba's format (``word freq tag``).

    open boundary  记者毛磊   the known 记者 is followed by ever different names (and by
                             the background's words): 毛磊 is one of its many
                             continuations, not a preferred one
    kept           手机壳     the known 手机 followed by 壳 far more often than by a
                             typical continuation: a new compound of a known head
    free object    装系统     the verb 装 with 系统, a noun used after many other words
    set phrase     没办法     the verb 没 with 办法, which is used almost only after it
    aspect marker  读过       the verb 读 with the aspect marker 过 (tag ug): inflection
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from helpers import VOCAB, sentence

from streamer.core import scoring
from streamer.core.engine import Engine, EngineConfig
from streamer.core.lexicon import Lexicon
from streamer.core.results import Word

MB = 2**20
NEW_WORD = "蓝鲸币"
#: characters of the other made-up given names: none is in VOCAB, the lexicon or 毛磊
NAME_CHARS = "罗辉贺昭殷澜骆岚甘棠乔荪阮蕤钟嵘韦彤"

#: 过去 and 不过 make the lexicon's standalone rate of 过 0.5 (not 1, which would already
#: make 过 a loose edge): the aspect-marker rule is what zeroes 读过
LEXICON = {"记者": (20000, "n"), "装": (9000, "v"), "系统": (8000, "n"), "没": (30000, "v"),
           "办法": (6000, "n"), "订": (3000, "v"), "房": (9000, "n"), "无烟": (50, "v"),
           "了": (300000, "ul"), "读": (5000, "v"), "过": (90000, "ug"),
           "过去": (50000, "t"), "不过": (40000, "c")}


def names(rng: random.Random, n: int) -> list[str]:
    pool = {rng.choice(NAME_CHARS) + rng.choice(NAME_CHARS) for _ in range(10 * n)}
    return sorted(pool)[:n]


def corpus(seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    others = names(rng, 40)
    lines = []
    for i in range(1500):
        carried = [NEW_WORD, "手机壳", "装系统", "没办法", "读过"][i % 5] if i % 3 == 0 else None
        if i % 125 == 7:  # 12 times: a rare byline, as each reporter's is
            carried = "记者毛磊"
        lines.append(sentence(rng, carried) + sentence(rng))
        if i % 4 == 1:  # 记者 before other names and before the background's words
            lines.append(sentence(rng, "记者" + rng.choice(others)) + sentence(rng, "记者"))
        if i % 5 == 0:  # 系统 after other words
            lines.append(sentence(rng, "系统") + sentence(rng, "系统"))
    return lines


def discover(lines: list[str], lexicon: Lexicon) -> Engine:
    # a small text: lower pmi thresholds than the defaults (2, 4, 6), which are for
    # corpora of millions of characters, so that 4-character strings are cut out
    eng = Engine(EngineConfig(exact=True, memory=8 * MB, min_count=8, min_pmi=(2.0, 3.0, 4.0)),
                 known=lexicon)
    eng.count_batch(eng.encode_batch(lines))
    eng.record_cut(eng.cut_batch(eng.encode_batch(lines, count=False)), 0.0)
    eng.rescore(0.0)
    return eng


def by_word(eng: Engine) -> dict[str, Word]:
    return {w.word: w for w in eng.published.words}


def write_lexicon(path: Path) -> Lexicon:
    rows = {w: (1000, "n") for w in VOCAB} | LEXICON
    path.write_text("".join(f"{w} {f} {t}\n" for w, (f, t) in rows.items()), encoding="utf-8")
    return Lexicon.load([path])


def test_split_rules_on_a_small_text(tmp_path: Path) -> None:
    eng = discover(corpus(), write_lexicon(tmp_path / "dict.txt"))
    words = by_word(eng)
    new = words[NEW_WORD].score
    assert new > 0 and words["手机壳"].score > 0.5 * new
    # 记者毛磊 (12 times) follows 记者 (762) no more often than a typical continuation
    # of 记者 (1 / e^H_r, H_r ~ 3.2): the split factor takes most of its score; 手机壳 (124
    # of 397 uses of 手机) is a preferred continuation and keeps all of it
    ws = ["记者毛磊", "手机壳", "装系统", "没办法"]
    parts = scoring.part_features(ws, eng.alone, eng.unigrams, eng.known, "mixed")
    factor = eng._split(ws, np.array([words[w].count for w in ws]), parts,
                        eng.candidates.total)
    assert factor is not None
    assert factor[0] < 0.5 and factor[1] == 1.0
    assert words["记者毛磊"].score < 0.2 * words["手机壳"].score
    # a verb with a free object (124 of ~800 uses of 系统): no word; with an object bound
    # to it (办法 is used only after 没): kept
    assert factor[2] == 0.0 and words["装系统"].score == 0.0
    assert factor[3] == 1.0 and words["没办法"].score > 0.0
    # a verb with its aspect marker: no word, whatever the text's rates
    assert words["读过"].count >= 8 and words["读过"].score == 0.0


def test_split_factor_worked_example() -> None:
    """The docstring's example: 记者毛磊 (c = 9, c_h = 2,158, H_r = 3.27) against 行李员
    (32, 345, 3.18), and verb-object shares 9% (装系统) and 39% (没办法)."""
    nan = float("nan")
    f = scoring.split_factor([9, 32, 223, 126], [2158, 345, nan, nan], [3.27, 3.18, nan, nan],
                             [nan, nan, 2382, 323])
    assert abs(f[0] - 9 / 2158 * 2.718281828 ** 3.27) < 1e-6 and f[0] < 0.15
    assert f[1] == 1.0 and f[2] == 0.0 and f[3] == 1.0


def test_which_part_sequences_are_verb_object_phrases(tmp_path: Path) -> None:
    lex = write_lexicon(tmp_path / "dict.txt")
    assert scoring.is_verb_object(("装", "系统"), lex)          # [1+2]
    assert scoring.is_verb_object(("装", "xp"), lex)            # a Latin name: 2 syllables
    assert scoring.is_verb_object(("装", "了", "xp"), lex)      # with an aspect particle
    assert not scoring.is_verb_object(("订", "房"), lex)        # [1+1]: VO words are 1+1
    assert not scoring.is_verb_object(("无烟", "房"), lex)      # [2+1]: a noun compound
    assert not scoring.is_verb_object(("系统", "装"), lex)      # no verb first
    untagged = Lexicon(["装", "系统"])
    assert not scoring.is_verb_object(("装", "系统"), untagged)  # no tags, no rule
