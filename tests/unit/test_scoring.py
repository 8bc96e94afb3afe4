"""Rules of the ranking (streamer.core.scoring) on small inputs: part_features without a
lexicon equals the lexicon rules run on a lexicon that knows none of the words (the fast
path is the same function, not an approximation); a classifier binds to what follows it;
equally scored words are kept and listed by count."""

from __future__ import annotations

import random

import numpy as np

from streamer.core import scoring
from streamer.core.lexicon import Lexicon
from streamer.core.units import DENSE_SIZE


def test_no_lexicon_gives_what_the_rules_give_for_unknown_words() -> None:
    rng = random.Random(5)
    pieces = ["1997", "10", "xp", "iphone", "3g", "年", "个", "独", "显", "网", "卡", "中"]
    words = ["".join(rng.choice(pieces) for _ in range(rng.randint(2, 4))) for _ in range(400)]
    words = [w for w in dict.fromkeys(words) if not w.isascii()]
    alone = np.array([rng.random() for _ in range(DENSE_SIZE)]) * 5
    unigrams = alone + 5
    fast = scoring.part_features(words, alone, unigrams, Lexicon(), "mixed")
    rules = scoring.part_features(words, alone, unigrams, Lexicon(["某某某某"]), "mixed")
    assert np.allclose(fast.first, rules.first) and np.allclose(fast.last, rules.last)
    assert fast.phrase.tolist() == rules.phrase.tolist()
    assert fast.first.max() == 1.0  # numbers at the head are there and demoted


def test_a_classifier_binds_to_what_follows_it() -> None:
    """A one-character classifier (tag q) beside a known word: at the head it is a
    measure word before a noun (个|小时: L = 1 whatever the text says); at the end, after
    a word, it is the head of a noun (驱动|盘, 短篇|集: judged by the rates, as any other
    one-character function word)."""
    lex = Lexicon(freq={"驱动": 900, "盘": 500, "个": 80000, "小时": 5000, "短篇": 300,
                        "集": 2000, "光盘": 400},
                  tags={"驱动": "v", "盘": "q", "个": "q", "小时": "n", "短篇": "n",
                        "集": "q", "光盘": "n"})
    assert scoring.edge_rule("个", "小时", lex, head=True)[0] == 1.0
    hard, b, attached = scoring.edge_rule("盘", "驱动", lex)
    assert hard == 0.0 and not attached
    assert b == lex.alone_rate("盘") > 0  # 盘 alone against its uses in 光盘
    assert scoring.edge_rule("集", "短篇", lex)[0] == 0.0
    alone = np.zeros(DENSE_SIZE)
    unigrams = np.full(DENSE_SIZE, 10.0)
    parts = scoring.part_features(["驱动盘", "个小时"], alone, unigrams, lex, "mixed")
    assert parts.last[0] < 1.0 and parts.first[1] == 1.0


def test_the_list_keeps_the_more_frequent_of_equally_scored_words() -> None:
    """A number with a measure word scores 0 (1997|年: the number at the edge, L = 1).
    When max_words leaves room for only some such strings, the more frequent are kept and
    listed first, not whichever a partition of the scores happens to keep."""
    from helpers import VOCAB, sentence

    from streamer.core.engine import Engine, EngineConfig

    years = {"1997年": 60, "2008年": 40, "1999年": 20}
    rng = random.Random(11)
    lines = [sentence(rng, y) for y, n in years.items() for _ in range(n)]
    lines += [sentence(rng) for _ in range(600)]
    rng.shuffle(lines)

    def listed(max_words: int | None) -> list:
        eng = Engine(EngineConfig(min_count=5, memory=8 * 2**20, exact=True,
                                  max_words=max_words), Lexicon(VOCAB))
        eng.ingest(lines, 0.0)
        return list(eng.rescore(0.0).words)

    every = listed(None)
    zero = [w.word for w in every if w.word in years]
    assert zero == list(years), [(w.word, w.score, w.count) for w in every]
    assert all(w.score == 0 for w in every if w.word in years)
    scored = sum(w.score > 0 for w in every)
    kept = [w.word for w in listed(scored + 2) if w.score == 0]
    assert kept == ["1997年", "2008年"], kept


def test_a_one_character_verb_beside_a_verb_counts_its_standalone_rate() -> None:
    """请|注意 and 添加|到 are verb phrases: the one-character verb is a word of its own in
    the lexicon (b high); 预|编译 is a prefixed verb: 预 is almost never used alone."""
    lex = Lexicon(freq={"请": 9000, "请求": 3000, "注意": 5000, "添加": 800, "到": 50000,
                        "得到": 20000, "预": 10, "预计": 4000, "预备": 1000, "编译": 300},
                  tags={"请": "v", "请求": "v", "注意": "v", "添加": "v", "到": "v",
                        "得到": "v", "预": "v", "预计": "v", "预备": "v", "编译": "v"})
    _, b_please, attached = scoring.edge_rule("请", "注意", lex, head=True)
    assert attached and b_please == lex.alone_rate("请") == 0.75
    _, b_to, _ = scoring.edge_rule("到", "添加", lex)
    assert b_to == lex.alone_rate("到") > 0.7
    _, b_pre, _ = scoring.edge_rule("预", "编译", lex, head=True)
    assert b_pre < 0.01
    # beside a noun the verb keeps the text's rate alone (订|房 is a word)
    lex2 = Lexicon(freq={"订": 900, "房间": 5000}, tags={"订": "v", "房间": "n"})
    assert scoring.edge_rule("订", "房间", lex2, head=True)[1] == lex2.final_rate("订")
