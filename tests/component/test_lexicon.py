"""Known lexicons: files, the name "jieba", and how a lexicon file is read."""

from __future__ import annotations

import importlib.util
import math
import re
import unicodedata
from pathlib import Path

import pytest

from streamer.core.lexicon import (
    DEFAULT_KNOWN,
    MAX_PART,
    NAMED_LEXICONS,
    Lexicon,
    LexiconError,
    load_known,
    resolve_known,
)
from streamer.core.units import normalise


def per_line(text: str) -> list[str]:
    """The reading rule stated plainly: the first whitespace-separated field of each
    line, unless it starts with '#', normalised like the input text."""
    out = []
    for line in text.splitlines():
        parts = line.split(maxsplit=1)
        if parts and not parts[0].startswith("#"):
            out.append(normalise(parts[0]))
    return out


def test_jieba_names_the_dict_of_the_installed_package() -> None:
    path = resolve_known("jieba")
    spec = importlib.util.find_spec("jieba")
    assert spec is not None and spec.submodule_search_locations
    assert path == Path(spec.submodule_search_locations[0]) / "dict.txt"
    assert DEFAULT_KNOWN == ("jieba",) and set(NAMED_LEXICONS) == {"jieba"}
    lex = load_known(["jieba"])
    # jieba 0.42.1's dict.txt: 349,046 lines; a few differ only in ASCII case
    assert len(lex) > 349_000
    assert {"酒店", "服务", "房间", "喜欢", "u盘"} <= lex.words
    assert "蓝鲸币" not in lex
    assert lex.sources == (str(path),)


def test_a_path_is_a_path_and_names_come_first(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jieba").write_text("只有我\n", encoding="utf-8")
    (tmp_path / "mine.txt").write_text("区块链 3 n\n", encoding="utf-8")
    # "jieba" is the name even with a file of that name here; ./jieba is the file
    assert resolve_known("jieba") != Path("jieba")
    assert load_known(["./jieba"]).words == {"只有我"}
    assert load_known(["mine.txt", "./jieba"]).words == {"区块链", "只有我"}
    assert resolve_known(tmp_path / "mine.txt") == tmp_path / "mine.txt"


@pytest.mark.parametrize("value", ["jeiba", "Jieba", "jieba.txt", "dir/missing.txt"])
def test_unknown_name_or_missing_file_is_one_clear_line(value: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LexiconError) as err:
        resolve_known(value)
    msg = str(err.value)
    assert msg == f"{value}: no such file, and not a lexicon name (names: jieba)"
    assert isinstance(err.value, ValueError)


def test_a_directory_or_bad_bytes_are_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        load_known([tmp_path / "d"])
    (tmp_path / "good.txt").write_text("好词\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(LexiconError) as err:
        load_known([tmp_path / "good.txt", tmp_path / "bad.txt"])
    assert str(err.value) == f"{tmp_path / 'bad.txt'}: not UTF-8 (byte 3: invalid start byte)"


TRICKY = (
    "区块链 300 n\n"
    + "# a comment line\n"
    + "#不是词 5\n"
    + "\n   \n"
    + "  缩进词\t12 v\n"
    + "Ｂ站\n"                # full width: NFKC -> B站, then ASCII lower -> b站
    + "iPhone手机 7\n"
    + "ﬁ字\n"                # compatibility ligature: NFKC -> fi字
    + "\u3000全角空格前\n"      # ideographic space is whitespace
    + "Ωmega\n"              # non-ASCII upper case stays (only ASCII is folded)
    + "last-without-newline"
)


def words_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "lexicon.txt"
    path.write_text(text, encoding="utf-8")
    return sorted(Lexicon.load([path]).words)


def test_lexicon_files_follow_the_per_line_rule(tmp_path: Path) -> None:
    assert words_of(tmp_path, TRICKY) == sorted(set(per_line(TRICKY)))
    assert words_of(tmp_path, TRICKY) == sorted(["区块链", "缩进词", "b站", "iphone手机", "fi字",
                                                 "全角空格前", "Ωmega", "last-without-newline"])
    plain = "酒店 10 n\nABC 3 eng\n"
    assert unicodedata.is_normalized("NFKC", plain)
    assert words_of(tmp_path, plain) == sorted(per_line(plain)) == ["abc", "酒店"]
    assert words_of(tmp_path, "") == [] and words_of(tmp_path, "# only a comment\n\n") == []


def test_jieba_dict_reads_as_the_per_line_rule() -> None:
    path = resolve_known("jieba")
    text = path.read_text(encoding="utf-8-sig")
    assert sorted(Lexicon.load([path]).words) == sorted(set(per_line(text)))


def test_lexicon_load_strips_a_bom(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeff词一\n词二 1 n\n".encode())
    assert Lexicon.load([tmp_path / "bom.txt"]).words == {"词一", "词二"}


def segment_model(lex: Lexicon, word: str) -> tuple[str, ...]:
    """Lexicon.segment as the Python loop it was before it moved to C (_units.segment):
    units are ASCII letter/digit runs or single characters; best(i) = max over j of
    best(j) + ln P(word[j:i]), nearer split points first on ties, parts of at most
    MAX_PART characters (a single unit always), an unknown single unit at -ln(total)."""
    units = re.findall(r"[a-z0-9]+|.", word, re.S)
    n = len(units)
    best = [0.0] + [-math.inf] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        text, top, arg = "", -math.inf, 0
        for j in range(i - 1, -1, -1):
            text = units[j] + text
            if len(text) > MAX_PART and j < i - 1:
                break
            lp = lex.log_prob(text)
            if lp is None:
                if j < i - 1:
                    continue
                lp = -lex.log_total
            if best[j] + lp > top:
                top, arg = best[j] + lp, j
        best[i], back[i] = top, arg
    parts: list[str] = []
    i = n
    while i > 0:
        parts.append("".join(units[back[i]:i]))
        i = back[i]
    return tuple(reversed(parts))


SEGMENT_TEXT = normalise(
    "这本书是1997年出版的。记者李明在锦江之星酒店采访了中华人民共和国外交部部长，"
    "他用iPhone手机和Windows XP系统装了office2010，wifi信号很差！"
    "宾馆反馈说房间的隔音效果一般般，早餐还不错。𠀀𠀁是扩展区的字，abcdefghijk是长串，"
    "第2天到2000年，杜拉拉升职记好看。\n下一行\t制表符")


def test_segment_is_the_dynamic_programme_over_units() -> None:
    """The C segmentation gives the parts of the Python model on every substring of a
    text of Han, ASCII runs longer than MAX_PART, digits, punctuation, line breaks and
    characters beyond the BMP: with jieba's lexicon and with a small one of ties."""
    jieba = load_known(["jieba"])
    small = Lexicon(["锦江", "之星", "锦江之星", "ab", "abc", "c"],
                    freq={"锦江": 4.0, "之星": 4.0, "锦江之星": 16.0, "ab": 2.0, "c": 2.0})
    words = {SEGMENT_TEXT[a:b] for a in range(len(SEGMENT_TEXT))
             for b in range(a, min(a + 12, len(SEGMENT_TEXT)) + 1)}
    words |= {"", "abcdefghijklmnop", "锦江之星", "ab c", "1997年"}
    for lex in (jieba, small, Lexicon()):
        for w in sorted(words):
            assert lex.segment(w) == segment_model(lex, w), (w, lex.sources)
    assert jieba.segment("这本书") == ("这", "本书")
    assert jieba.segment("锦江之星") == ("锦江", "之", "星")
