"""Ranking puts words first: each class of non-word the ranking demotes, from a small
text this module writes, through `python -m streamer discover` as a subprocess with a
small known lexicon in jieba's format (``word freq tag``).

The text is random sentences of common words (tests/helpers.py VOCAB, all in the
lexicon) carrying, in turns, a made-up new word (蓝鲸币) and one string of each class:

    function-word join    森林里   known 森林 + the localiser 里 (tag f)
    number + measure word 1997年   a number + 年 (tag m)
    fragment              记者李   known 记者 + a surname that mostly stands alone
                                   (李 is followed by ever different given names)
    anonymised name       张某     某 is a pronoun (tag r) that the lexicon mostly uses
                                   alone
    traditional spelling  服務     of the known 服务
    verb phrase           开着灯   the verb 开, the aspect marker 着 (tag uz), the noun 灯
    serial verbs          请注意   the verb 请, which the lexicon mostly uses alone, before
                                   the verb 注意

Each must rank below 蓝鲸币 or not be listed at all, while 蓝鲸币 is listed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import VOCAB, sentence

ROOT = Path(__file__).resolve().parents[2]
NEW_WORD = "蓝鲸币"
#: given names after the surname 李, so many that no one name reaches min_count
GIVEN = "华强伟芳军磊静涛勇杰娜敏丽刚平辉鹏霞燕琳玲婷洁雪梅兰菊松柏峰"

#: the lexicon the tests write: the background words, the known parts of the demoted
#: strings with their tags, and the simplified spelling of 服務
TAGGED = {
    "森林": (3000, "n"), "里": (60000, "f"), "年": (200000, "m"), "记者": (20000, "n"),
    "李": (9000, "nr"), "张": (20000, "q"), "紧张": (15000, "a"), "主张": (10000, "v"),
    "某": (8000, "r"), "某某": (400, "r"),
    "服务": (30000, "vn"), "开": (20000, "v"), "着": (90000, "uz"), "灯": (2000, "n"),
    "请": (9000, "v"), "请求": (3000, "v"), "注意": (5000, "v"),
}


def corpus_lines(seed: int = 7, lines: int = 900) -> list[str]:
    """Background sentences; every third line carries the new word or a demoted
    string, in turns, so each occurs ~40 times."""
    rng = random.Random(seed)
    carried = [NEW_WORD, "森林里", "1997年", None, "张某", "服務", NEW_WORD, "开着灯", "请注意"]
    out = []
    for i in range(lines):
        if i % 3:
            out.append(sentence(rng) + sentence(rng))
            continue
        what = carried[(i // 3) % len(carried)]
        if what is None:  # the fragment: 记者李 + a given name; 李 + a given name elsewhere
            what = "记者李" + rng.choice(GIVEN)
            out.append(sentence(rng, what) + sentence(rng, "李" + rng.choice(GIVEN)))
        else:
            out.append(sentence(rng, what) + sentence(rng))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranking") / "text.txt"
    path.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    return path


def write_lexicon(path: Path, tagged: bool) -> Path:
    """The known lexicon, in jieba's format when ``tagged``, else one word a line."""
    rows = {w: (1000, "n") for w in VOCAB} | TAGGED
    if tagged:
        text = "".join(f"{w} {f} {t}\n" for w, (f, t) in rows.items())
    else:
        text = "".join(f"{w}\n" for w in rows)
    path.write_text(text, encoding="utf-8")
    return path


def discover(corpus: Path, known: Path | None, *extra: str) -> list[dict]:
    args = [sys.executable, "-m", "streamer", "discover", "--no-progress", "--format", "jsonl",
            *extra, str(corpus)]
    if known is not None:
        args[4:4] = ["--known", str(known)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tagged_new(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    lexicon = write_lexicon(tmp_path_factory.mktemp("lex") / "dict.txt", tagged=True)
    return discover(corpus, lexicon, "--new-only")


def rank(records: list[dict], word: str) -> int | None:
    return next((i for i, r in enumerate(records) if r["word"] == word), None)


def test_the_new_word_leads(tagged_new: list[dict]) -> None:
    assert tagged_new[0]["word"] == NEW_WORD, [r["word"] for r in tagged_new[:10]]


@pytest.mark.parametrize("demoted", [
    pytest.param("森林里", id="function-word-join"),
    pytest.param("1997年", id="number-with-measure-word"),
    pytest.param("记者李", id="fragment"),
    pytest.param("张某", id="anonymised-name"),
    pytest.param("服務", id="traditional-spelling-of-a-known-word"),
    pytest.param("开着灯", id="aspect-marker-inside"),
    pytest.param("请注意", id="serial-verbs"),
])
def test_demoted_below_the_new_word(tagged_new: list[dict], demoted: str) -> None:
    at = rank(tagged_new, demoted)
    shown = [(r["word"], round(r["score"], 3)) for r in tagged_new[:10]]
    assert at is None or at > rank(tagged_new, NEW_WORD), shown
    # demoted, not merely second: far below the word (a tenth of its score at most)
    assert at is None or tagged_new[at]["score"] < tagged_new[0]["score"] / 10, shown


def test_a_traditional_spelling_of_a_known_word_is_known(corpus: Path, tmp_path: Path) -> None:
    lexicon = write_lexicon(tmp_path / "dict.txt", tagged=True)
    everything = {r["word"]: r for r in discover(corpus, lexicon)}
    assert everything["服務"]["known"] is True  # folded to 服务 by OpenCC
    assert everything[NEW_WORD]["known"] is False
    assert "服務" not in {r["word"] for r in discover(corpus, lexicon, "--new-only")}


def test_a_lexicon_without_tags_works_and_its_tag_rules_are_neutral(
        corpus: Path, tmp_path: Path, tagged_new: list[dict]) -> None:
    plain = write_lexicon(tmp_path / "words.txt", tagged=False)
    new = discover(corpus, plain, "--new-only")
    words = [r["word"] for r in new]
    assert words[0] == NEW_WORD, words[:10]
    assert not set(words) & set(VOCAB) and "服務" not in words
    # numbers need no tags; a function word does: without tags 森林里 is judged by the
    # text alone, so it keeps a positive score it loses with the tagged lexicon
    assert rank(new, "1997年") is None or rank(new, "1997年") > 0
    by_word = {r["word"]: r for r in new}
    assert by_word["森林里"]["score"] > 0
    assert {r["word"]: r for r in tagged_new}.get("森林里", {"score": 0.0})["score"] == 0.0


def test_a_word_list_with_odd_columns_loads(corpus: Path, tmp_path: Path) -> None:
    """A frequency that is not a number, a missing tag, or a third column that is no tag
    is no error: the word is known, and only a tag-like column counts as a tag."""
    lexicon = tmp_path / "odd.txt"
    lexicon.write_text("".join(f"{w} many\n" for w in VOCAB) + "服务 12\n# note\n\n"
                       + "森林 30 not-a-tag\n里 60000 DataColumn\n", encoding="utf-8")
    records = discover(corpus, lexicon, "--new-only")
    words = [r["word"] for r in records]
    assert words and not set(words) & set(VOCAB) and "服務" not in words
    # 里 has no tag here (DataColumn is none), so 森林里 is judged by the text alone
    assert next(r["score"] for r in records if r["word"] == "森林里") > 0


@pytest.mark.parametrize("zeroed", ["森林里", "1997年", "开着灯"])
def test_what_the_lexicon_marks_a_phrase_or_join_scores_zero(tagged_new: list[dict],
                                                             zeroed: str) -> None:
    """A localiser joined to a known word, a number with its measure word, and an aspect
    marker inside (开|着|灯): the lexicon's tags alone mark these, whatever the text's
    statistics say, so each is listed (it is cohesive and free) with score 0."""
    at = rank(tagged_new, zeroed)
    assert at is not None, [r["word"] for r in tagged_new]
    assert tagged_new[at]["score"] == 0.0
