"""Export files: formats parse back, retention, atomic replacement, SIGKILL safety."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamer.cli import top
from streamer.core.results import WORD_FIELDS, Published, Word
from streamer.storage import exports
from streamer.storage.exports import (
    DISCOVER_FIELDS,
    FORMATS,
    json_safe,
    remove_stale_temp_files,
    render,
    render_text,
    select_words,
    write_export,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_600_000.0  # 2026-11-25T09:46:40Z
DAY = 86400.0


def sample_words() -> tuple[Word, ...]:
    return (
        Word("新冠肺炎", 412.25, 980, 9.81234, 3.4, pmi=7.5, left_entropy=3.1, right_entropy=2.9,
             first_seen=T0 - 3600, last_seen=T0, example="新冠肺炎疫情防控"),
        Word("内卷", 211.0, 540, 8.2, 2.1, known=False, new=True, first_seen=T0 - 60,
             example='引号"和,逗号\t制表符\n换行\r回车\u2028分隔'),
        Word("B站", 77.0, 700, 5.9, 1.0, known=True, new=False, first_seen=None,
             example=""),
        Word("yyds", 66.5, 90, 5.2, float("nan"), pmi=float("inf"), new=True),
        Word("有 空格", 5.0, 5, 1.0, new=True),  # cannot be a jieba entry
        Word("稀有", 0.4, 0, 0.5, new=False),  # jieba freq must still be >= 1
    )


def published(words: tuple[Word, ...] | None = None) -> Published:
    return Published(words=sample_words() if words is None else words, rescored_at=T0)


def expected_dict(w: Word) -> dict:
    return json_safe(w.to_dict())


# --------------------------------------------------------------------------- formats


def test_jsonl_parses_back(tmp_path: Path) -> None:
    [path] = write_export(tmp_path, published(), formats=("jsonl",), now=T0)
    assert path.name == "words-20261125T094640Z.jsonl"
    text = path.read_text(encoding="utf-8")
    assert "新冠肺炎" in text  # not \u-escaped

    def reject(name: str) -> None:
        raise ValueError(name)

    rows = [json.loads(line, parse_constant=reject) for line in text.splitlines()]
    assert rows == [expected_dict(w) for w in sample_words()]
    assert list(rows[0]) == list(WORD_FIELDS)
    assert rows[3]["emergence"] is None and rows[3]["pmi"] is None


def test_csv_parses_back(tmp_path: Path) -> None:
    [path] = write_export(tmp_path, published(), formats=("csv",), now=T0)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(WORD_FIELDS)
    assert [r["word"] for r in rows] == [w.word for w in sample_words()]
    assert rows[1]["example"] == sample_words()[1].example  # quoting round-trips exactly
    assert rows[0]["count"] == "412.25" and rows[0]["total_count"] == "980"
    assert rows[2]["count"] == "77" and rows[2]["known"] == "true" and rows[2]["new"] == "false"
    assert rows[2]["first_seen"] == "" and rows[0]["first_seen"] == "2026-11-25T08:46:40Z"
    assert rows[3]["emergence"] == ""  # NaN: empty, like a missing value
    assert float(rows[0]["score"]) == pytest.approx(9.8123)


def test_tsv_one_line_per_word(tmp_path: Path) -> None:
    [path] = write_export(tmp_path, published(), formats=("tsv",), now=T0)
    data = path.read_bytes().decode("utf-8")
    lines = data.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 1 + len(sample_words())
    assert lines[0].split("\t") == list(WORD_FIELDS)
    assert data.splitlines() == lines[:-1]  # no other line-break characters anywhere
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(r) == len(WORD_FIELDS) for r in rows)
    example = rows[1][WORD_FIELDS.index("example")]
    assert example == '引号"和,逗号 制表符 换行 回车 分隔'


def test_jieba_userdict_loads(tmp_path: Path) -> None:
    jieba = pytest.importorskip("jieba")
    [path] = write_export(tmp_path, published(), formats=("jieba",), now=T0)
    assert path.name == "words-20261125T094640Z.jieba.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["新冠肺炎 980", "内卷 540", "B站 700", "yyds 90", "稀有 1"]
    tokenizer = jieba.Tokenizer()
    tokenizer.load_userdict(str(path))
    for line in lines:
        word, freq = line.split(" ")
        assert tokenizer.FREQ[word] == int(freq)
    assert "新冠肺炎" in tokenizer.lcut("新冠肺炎疫情")


def test_all_formats_and_latest(tmp_path: Path) -> None:
    written = write_export(tmp_path, published(), formats=FORMATS, now=T0)
    assert [p.name for p in written] == [
        "words-20261125T094640Z.jsonl", "words-20261125T094640Z.csv",
        "words-20261125T094640Z.tsv", "words-20261125T094640Z.jieba.txt"]
    for p in written:
        ext = p.name.split(".", 1)[1]
        assert (tmp_path / f"latest.{ext}").read_bytes() == p.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in written] + ["latest.jsonl", "latest.csv", "latest.tsv",
                                     "latest.jieba.txt"])  # no temp files left


def test_discover_renderings() -> None:
    words = sample_words()[:3]
    out = io.StringIO()
    assert render(words, "tsv", ("word", "count"), out, header=False) == 3
    assert out.getvalue() == "新冠肺炎\t412.25\n内卷\t211\nB站\t77\n"
    rows = [json.loads(x) for x in render_text(words, "jsonl", DISCOVER_FIELDS).splitlines()]
    assert [list(r) for r in rows] == [list(DISCOVER_FIELDS)] * 3
    assert rows[2] == {"word": "B站", "count": 77.0, "score": 5.9, "pmi": 0.0,
                       "left_entropy": 0.0, "right_entropy": 0.0, "known": True}
    reader = csv.reader(io.StringIO(render_text(words, "csv", DISCOVER_FIELDS)))
    assert next(reader) == list(DISCOVER_FIELDS)
    assert len(list(reader)) == 3
    assert render_text(words, "csv", ("word",), header=False) == "新冠肺炎\n内卷\nB站\n"
    with pytest.raises(ValueError, match="unknown field"):
        render_text(words, "csv", ("word", "bogus"))
    with pytest.raises(ValueError, match="unknown format"):
        render_text(words, "xml")


def test_selection(tmp_path: Path) -> None:
    pub = published()
    assert [w.word for w in select_words(pub, "new")] == ["新冠肺炎", "内卷", "yyds", "有 空格"]
    assert [w.word for w in select_words(pub, "top", 2)] == ["新冠肺炎", "内卷"]
    assert len(select_words(pub, "top")) == len(pub.words)  # default top_k 100
    assert [w.word for w in select_words(pub, "new", 1)] == ["新冠肺炎"]
    [path] = write_export(tmp_path, pub, selection="new", top_k=3, now=T0)
    assert [json.loads(x)["word"] for x in path.read_text().splitlines()] == [
        "新冠肺炎", "内卷", "yyds"]
    with pytest.raises(ValueError):
        write_export(tmp_path, pub, selection="best")
    with pytest.raises(ValueError):
        write_export(tmp_path, pub, formats=("xlsx",))


def test_empty_published_list(tmp_path: Path) -> None:
    write_export(tmp_path, Published(), formats=FORMATS, now=T0)
    assert (tmp_path / "latest.jsonl").read_text() == ""
    assert (tmp_path / "latest.csv").read_text() == ",".join(WORD_FIELDS) + "\n"


# --------------------------------------------------------------------------- retention


def names(directory: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if p.name.startswith("words-") and p.name.endswith(suffix))


def test_retention_by_count(tmp_path: Path) -> None:
    unrelated = ["notes.txt", "words-latest.jsonl", "words-20200101T000000Z.jsonl.bak",
                 "words-2020.jsonl"]
    for name in unrelated:
        (tmp_path / name).write_text("keep me")
    for i in range(6):
        write_export(tmp_path, published(), formats=("jsonl", "csv"), now=T0 + 60 * i,
                     retention_files=3 if i < 5 else 2)
    assert names(tmp_path, ".jsonl") == [
        "words-2020.jsonl", "words-20261125T095040Z.jsonl", "words-20261125T095140Z.jsonl",
        "words-latest.jsonl"]
    assert names(tmp_path, ".csv") == [
        "words-20261125T095040Z.csv", "words-20261125T095140Z.csv"]
    for name in unrelated:
        assert (tmp_path / name).read_text() == "keep me"
    assert (tmp_path / "latest.jsonl").exists() and (tmp_path / "latest.csv").exists()


def test_retention_by_age(tmp_path: Path) -> None:
    for age in (10, 5, 2.9, 1):
        write_export(tmp_path, published(), formats=("jsonl", "tsv"), now=T0 - age * DAY)
    (tmp_path / "words-20200101T000000Z.csv").write_text("other format: untouched")
    write_export(tmp_path, published(), formats=("jsonl",), now=T0, retention_days=3)
    assert names(tmp_path, ".jsonl") == [
        "words-20261122T121040Z.jsonl", "words-20261124T094640Z.jsonl",
        "words-20261125T094640Z.jsonl"]
    assert len(names(tmp_path, ".tsv")) == 4  # retention applies to the formats written
    assert (tmp_path / "words-20200101T000000Z.csv").exists()
    # the export just written survives even the strictest settings
    [path] = write_export(tmp_path, published(), now=T0 + 1, retention_days=0,
                          retention_files=1)
    assert names(tmp_path, ".jsonl") == [path.name]


def test_retention_keeps_new_file_when_clock_goes_back(tmp_path: Path) -> None:
    write_export(tmp_path, published(), now=T0)
    [path] = write_export(tmp_path, published(), now=T0 - DAY, retention_files=1)
    assert path.exists()


def test_bad_retention_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_export(tmp_path, published(), retention_files=0)
    with pytest.raises(ValueError):
        write_export(tmp_path, published(), retention_days=-1)
    assert list(tmp_path.iterdir()) == []  # validated before anything is written


# --------------------------------------------------------------------------- atomicity


def test_latest_is_replaced_not_rewritten(tmp_path: Path) -> None:
    write_export(tmp_path, published(), formats=("jsonl",), now=T0)
    latest = tmp_path / "latest.jsonl"
    before = latest.read_bytes()
    inode = latest.stat().st_ino
    with open(latest, "rb") as reader:  # a downstream job in the middle of reading
        head = reader.read(10)
        smaller = published(sample_words()[:1])
        write_export(tmp_path, smaller, formats=("jsonl",), now=T0 + 1)
        assert head + reader.read() == before  # it still sees the old, complete file
    assert latest.stat().st_ino != inode
    assert latest.read_text(encoding="utf-8").splitlines() == [
        json.dumps(expected_dict(sample_words()[0]), ensure_ascii=False)]


def test_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".streamer-{dead_pid}-abcdef.tmp"
    mine = tmp_path / f".streamer-{os.getpid()}-abcdef.tmp"
    other = tmp_path / ".streamer-notes.tmp"
    for p in (stale, mine, other):
        p.write_text("partial")
    write_export(tmp_path, published(), now=T0)
    assert not stale.exists() and mine.exists() and other.exists()
    assert remove_stale_temp_files(tmp_path) == []


KILL_SCRIPT = r"""
import sys
from streamer.storage.exports import write_export
from streamer.core.results import Published, Word
n = int(sys.argv[2])
words = tuple(Word(f"词{i:06d}", 100000.0 - i, 100000 - i, 1.0 / (i + 1), 1.5,
                   example="上下文" * 40 + f"#{i}") for i in range(n))
pub = Published(words=words, rescored_at=0.0)
k = 0
while True:
    write_export(sys.argv[1], pub, formats=("jsonl", "csv"), now=1_795_600_000.0 + k,
                 retention_files=3)
    k += 1
    print("exported", k, flush=True)
"""


def check_complete_jsonl(path: Path, n: int) -> None:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", f"{path.name} ends mid-line"
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == n
    assert rows[-1]["example"].endswith(f"#{n - 1}")


def test_sigkill_mid_export_leaves_complete_files(tmp_path: Path) -> None:
    """Kill the writer while one of its temporary files exists, i.e. mid-write.

    The child exports in a loop; we poll the directory for its temp file and
    SIGKILL it the moment one appears. latest.* and every timestamped file must
    still be complete; the partial temp file is the only casualty.
    """
    n = 8_000  # ~5 MB per jsonl file: the write itself takes a while
    mid_write_kills = 0
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), str(n)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None
        try:
            # wait for one complete export so that latest.* exist
            assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
            prefix = f".streamer-{proc.pid}-"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if any(e.name.startswith(prefix) for e in os.scandir(tmp_path)):
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        assert proc.returncode == -signal.SIGKILL
        if any(p.name.startswith(prefix) for p in tmp_path.iterdir()):
            mid_write_kills += 1
        check_complete_jsonl(tmp_path / "latest.jsonl", n)
        for p in tmp_path.glob("words-*.jsonl"):
            check_complete_jsonl(p, n)
        with open(tmp_path / "latest.csv", encoding="utf-8", newline="") as f:
            assert len(list(csv.DictReader(f))) == n
        if mid_write_kills >= 3:
            break
    assert mid_write_kills >= 1, "never managed to kill the writer mid-write"
    # the next export removes what the killed writers left behind
    write_export(tmp_path, published(), formats=("jsonl",), now=T0 + 10_000)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- streamer top


def run_top(*argv: str) -> tuple[int, str, str]:
    import argparse

    parser = argparse.ArgumentParser(prog="streamer")
    top.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["top", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.func(args, out=out, err=err), out.getvalue(), err.getvalue()


def test_top_reads_export_dir(tmp_path: Path) -> None:
    write_export(tmp_path, published(), now=T0)
    status, out, err = run_top("--export-dir", str(tmp_path), "-n", "3")
    assert status == 0, err
    rows = out.splitlines()[2:]
    assert [r.split()[1] for r in rows[1:]] == ["新冠肺炎", "内卷", "B站"]
    assert rows[1].split()[0] == "1" and rows[1].endswith("new")
    assert not rows[3].endswith("new")
    status, out, _ = run_top("--export-dir", str(tmp_path), "--new")
    assert [r.split()[1] for r in out.splitlines()[3:]] == ["新冠肺炎", "内卷", "yyds", "有"]


def test_top_export_dir_errors(tmp_path: Path) -> None:
    status, out, err = run_top("--export-dir", str(tmp_path / "missing"))
    assert status == 2 and out == "" and err.count("\n") == 1 and "not found" in err
    status, _, err = run_top("--export-dir", str(tmp_path))
    assert status == 2 and "latest.jsonl" in err
    (tmp_path / "latest.jsonl").write_text('{"word": "好"}\n{broken\n')
    status, _, err = run_top("--export-dir", str(tmp_path))
    assert status == 2 and ":2:" in err


def test_display_width() -> None:
    assert top.display_width("新冠") == 4
    assert top.display_width("B站") == 3
    assert top.display_width("ｙｙ") == 4  # fullwidth
    assert top.display_width("e\u0301") == 1  # combining accent
    assert top.clip("一二三四五六", 7) == "一二三…"
    assert top.pad("B站", 5, ">") == "  B站"


def test_export_names_are_utc() -> None:
    assert exports.export_name("jieba", T0) == "words-20261125T094640Z.jieba.txt"
