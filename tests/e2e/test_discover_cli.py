"""`streamer discover` end to end, as a subprocess (``sys.executable -m streamer discover``).

Output formats, --new-only with --known, standard input, --top, --exact, --units, and every
bad input: each must exit with status 2 and one clear line on stderr naming the problem,
with nothing written to the -o file. Bad bytes (undecodable, NUL), empty input and one
enormous line are processed, and reported in the summary line on stderr.

The corpus plants words (区块链, 俄罗斯, 元宇宙, B站, U盘, iPhone手机) among random characters;
with the default thresholds they are what the command finds.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import random
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli.discover import discover
from streamer.core.engine import EngineConfig
from streamer.core.lexicon import DEFAULT_KNOWN, Lexicon, load_known, resolve_known
from streamer.storage.lexicon_cache import LexiconFileCache

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ["word", "count", "score", "pmi", "left_entropy", "right_entropy", "known"]
PLANTED_MIXED = {"区块链", "俄罗斯", "元宇宙", "b站", "u盘", "iphone手机", "新冠疫情"}
# Without a lexicon the back-check is the reference's, which cannot find 新冠疫情 here:
# it is 301 of 46,039 units, and a split's pmi never exceeds ln(N / c(w)) = 5.03 < 6
# nats (segmentation.cohesive_masks, the ceiling rule)
PLANTED_REFERENCE = PLANTED_MIXED - {"新冠疫情"}


def run(args: list[str], cwd: Path, stdin: bytes | None = None,
        timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "streamer", "discover", *args], cwd=cwd,
                          env=env, capture_output=True, timeout=timeout,
                          input=stdin if stdin is not None else b"",)


def out(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8")


def err_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.decode("utf-8", "replace").strip().splitlines()


def corpus_lines(seed: int = 1, n_lines: int = 3000) -> list[str]:
    rnd = random.Random(seed)
    filler = ("的一是了我不在人们有来他这上着个地到大里说去子得也和那要下看天时过出小么起你都把好"
              "还多没为又可家学只以主会样年想生同老中从自面前头道它后然走很像见两用她国动进成回什"
              "边作对开而己些现山民候经发工向事命给长水几义三声于高正妈")
    planted = ["区块链", "新冠疫情", "B站", "U盘", "iPhone手机", "俄罗斯", "元宇宙"]
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rnd.randint(3, 9)):
            if rnd.random() < 0.12:
                parts.append(rnd.choice(planted))
            else:
                parts.append("".join(rnd.choice(filler) for _ in range(rnd.randint(1, 4))))
            if rnd.random() < 0.25:
                parts.append(rnd.choice(["，", "。", "！", " ", "、"]))
        lines.append("".join(parts))
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    return path


@functools.cache
def default_lexicon() -> Lexicon:
    """The lexicon `discover` uses when no --known is given: jieba's dict.txt."""
    return load_known(DEFAULT_KNOWN)


def in_process(files: list[Path], known: Lexicon | None = None,
               **kw) -> list[tuple[str, int]]:
    """(word, count) best first, from the same engine run in this process, with the
    default lexicon unless *known* is given (``Lexicon()``: none)."""
    engine, _ = discover([str(f) for f in files], EngineConfig(**kw),
                         default_lexicon() if known is None else known)
    return [(w.word, w.total_count) for w in engine.published.words]


@pytest.fixture(scope="module")
def expected(corpus: Path) -> list[tuple[str, int]]:
    """The default configuration (a 256MB sketch); on this small corpus it equals exact
    counting (test_exact_equals_default_sketch)."""
    return in_process([corpus])


def tsv_rows(text: str) -> list[tuple[str, int]]:
    rows = []
    for line in text.splitlines():
        word, count = line.split("\t")
        rows.append((word, int(count)))
    return rows


# --------------------------------------------------------------------------- formats


def test_tsv_default_format(corpus: Path, expected: list[tuple[str, int]]) -> None:
    proc = run([str(corpus)], corpus.parent)
    text = out(proc)
    assert text.endswith("\n") and "\r" not in text
    rows = tsv_rows(text)  # no header: every line is word<TAB>integer
    assert rows == expected
    assert {w for w, _ in rows} == PLANTED_MIXED
    assert all(c >= 8 for _, c in rows)  # default min_count
    summary = err_lines(proc)
    assert len(summary) == 1
    assert summary[0].startswith("streamer discover: 3000 lines")
    assert f"{len(rows)} words" in summary[0]


def test_jsonl_format(corpus: Path, expected: list[tuple[str, int]]) -> None:
    text = out(run([str(corpus), "--format", "jsonl"], corpus.parent))
    records = [json.loads(line) for line in text.splitlines()]
    assert [list(r) for r in records] == [FIELDS] * len(records)
    assert [(r["word"], r["count"]) for r in records] == expected
    # the default lexicon is jieba's: it has U盘 and 俄罗斯, not the other planted words
    assert {r["word"] for r in records if r["known"]} == {"u盘", "俄罗斯"}
    for r in records:
        assert isinstance(r["count"], int) and r["known"] is (r["word"] in default_lexicon())
        assert min(r["left_entropy"], r["right_entropy"]) >= 1.0  # default min_entropy
        assert r["pmi"] >= 2.0
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)


def test_csv_format(corpus: Path, expected: list[tuple[str, int]]) -> None:
    text = out(run([str(corpus), "--format", "csv"], corpus.parent))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == FIELDS
    assert [(r[0], int(r[1])) for r in rows[1:]] == expected
    assert {r[0] for r in rows[1:] if r[6] == "true"} == {"u盘", "俄罗斯"}
    assert {r[6] for r in rows[1:]} == {"false", "true"}
    for r in rows[1:]:
        float(r[2]), float(r[3]), float(r[4]), float(r[5])


def test_jieba_format_loads_into_jieba(corpus: Path, expected: list[tuple[str, int]],
                                       tmp_path: Path) -> None:
    text = out(run([str(corpus), "--format", "jieba"], corpus.parent))
    lines = text.splitlines()
    assert [tuple(line.split(" ")) for line in lines] == [(w, str(c)) for w, c in expected]
    jieba = pytest.importorskip("jieba")
    dict_path = tmp_path / "user.txt"
    dict_path.write_text(text, encoding="utf-8")
    tok = jieba.Tokenizer()
    tok.load_userdict(str(dict_path))
    assert "元宇宙" in tok.lcut("我们在元宇宙里开会")


def test_output_file_equals_stdout(corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "words.csv"
    proc = run([str(corpus), "--format", "csv", "-o", str(target)], tmp_path)
    assert out(proc) == ""
    assert target.read_text(encoding="utf-8") == \
        out(run([str(corpus), "--format", "csv"], tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["words.csv"]  # no temp files left


def test_output_file_mode_follows_umask(corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "words.tsv"
    out(run([str(corpus), "-o", str(target)], tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------- options


def test_new_only_with_known_lexicon(corpus: Path, tmp_path: Path,
                                     expected: list[tuple[str, int]]) -> None:
    known = tmp_path / "known.txt"
    # jieba-style extra columns are ignored; entries are normalised like the text (Ｂ站 = b站)
    known.write_text("区块链 300 n\nＢ站\n# a comment\n不相关\n", encoding="utf-8")
    all_ = [json.loads(x) for x in out(run([str(corpus), "--known", str(known),
                                            "--format", "jsonl"], tmp_path)).splitlines()]
    flagged = {r["word"] for r in all_ if r["known"]}
    assert flagged == {"区块链", "b站"}
    new = tsv_rows(out(run([str(corpus), "--known", str(known), "--new-only"],
                           tmp_path)))
    assert [w for w, _ in new] == [r["word"] for r in all_ if not r["known"]]
    assert set(w for w, _ in new) == PLANTED_MIXED - {"区块链", "b站"}
    # --known replaced the default: jieba's U盘 and 俄罗斯 were not known above; both
    # lexicons when both are named
    both = [json.loads(x) for x in out(run([str(corpus), "--known", "jieba", "--known",
                                            str(known), "--format", "jsonl"],
                                           tmp_path)).splitlines()]
    assert {r["word"] for r in both if r["known"]} == {"区块链", "b站", "u盘", "俄罗斯"}


def test_default_lexicon_is_jieba_and_no_known_turns_it_off(
        corpus: Path, tmp_path: Path, expected: list[tuple[str, int]]) -> None:
    default = tsv_rows(out(run([str(corpus), "--new-only"], tmp_path)))
    assert [w for w, _ in default] == [w for w, _ in expected if w not in {"u盘", "俄罗斯"}]
    named = tsv_rows(out(run([str(corpus), "--new-only", "--known", "jieba"], tmp_path)))
    assert named == default
    # --no-known: nothing is known, --new-only drops nothing
    none = tsv_rows(out(run([str(corpus), "--new-only", "--no-known"], tmp_path)))
    assert none == in_process([corpus], known=Lexicon())
    assert {w for w, _ in none} == PLANTED_REFERENCE
    proc = run([str(corpus), "--known", "jieba", "--no-known"], tmp_path)
    assert proc.returncode == 2 and "--no-known" in proc.stderr.decode()


def test_lexicon_cache_is_written_used_rewritten_and_optional(
        corpus: Path, tmp_path: Path) -> None:
    """The default lexicon through the cache of parsed lexicons (storage.lexicon_cache):
    the first run writes it, the next reads it, a damaged one is rewritten, and without a
    usable cache the output is the same."""
    cache = tmp_path / "cache"
    args = [str(corpus), "--format", "jsonl"]
    first = out(run(args, tmp_path, env={"STREAMER_CACHE_DIR": str(cache)}))
    (written,) = cache.glob("lexicon-*.npz")
    stamp = written.stat().st_ino, written.read_bytes()
    assert out(run(args, tmp_path, env={"STREAMER_CACHE_DIR": str(cache)})) == first
    # read, not written again (a write replaces the file: a new inode)
    assert (written.stat().st_ino, written.read_bytes()) == stamp
    written.write_bytes(stamp[1][: len(stamp[1]) // 3])
    assert out(run(args, tmp_path, env={"STREAMER_CACHE_DIR": str(cache)})) == first
    assert written.stat().st_ino != stamp[0]  # rewritten, and whole again:
    assert LexiconFileCache(cache).get([resolve_known("jieba")]) is not None
    off = tmp_path / "off"
    proc = run(args, tmp_path, env={"STREAMER_CACHE_DIR": str(off), "STREAMER_NO_CACHE": "1"})
    assert out(proc) == first and not off.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    proc = run(args, tmp_path, env={"STREAMER_CACHE_DIR": str(blocker / "cache")})
    assert out(proc) == first
    assert len(err_lines(proc)) == 1 and err_lines(proc)[0].startswith("streamer discover:")


def test_stdin(corpus: Path, expected: list[tuple[str, int]]) -> None:
    data = corpus.read_bytes()
    proc = run(["-"], corpus.parent, stdin=data)
    assert tsv_rows(out(proc)) == expected
    assert "3000 lines" in err_lines(proc)[-1]
    # stdin together with a file: both are read (and each twice, stdin through a spool)
    both = tsv_rows(out(run([str(corpus), "-"], corpus.parent, stdin=data)))
    assert both == in_process([corpus, corpus])
    assert {w for w, _ in both} == {w for w, _ in expected}


def test_stdin_twice_is_an_error(corpus: Path) -> None:
    proc = run(["-", "-"], corpus.parent, stdin=b"x")
    assert proc.returncode == 2
    assert "standard input" in err_lines(proc)[-1]


def test_pipe_given_by_name(corpus: Path, expected: list[tuple[str, int]]) -> None:
    proc = run(["/dev/stdin"], corpus.parent, stdin=corpus.read_bytes())
    assert tsv_rows(out(proc)) == expected


def test_two_files_count_like_their_concatenation(corpus: Path, tmp_path: Path) -> None:
    lines = corpus_lines(seed=2, n_lines=1500)
    a, b, ab = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "ab.txt"
    a.write_text("\n".join(lines[:700]) + "\n", encoding="utf-8")
    b.write_text("\n".join(lines[700:]) + "\n", encoding="utf-8")
    ab.write_text("\n".join(lines) + "\n", encoding="utf-8")
    opts = ["--exact", "--min-count", "4", "--min-entropy", "0", "--min-pmi", "1,3,5"]
    two = tsv_rows(out(run([str(a), str(b), *opts], tmp_path)))
    one = tsv_rows(out(run([str(ab), *opts], tmp_path)))
    # same words and counts; the order may differ, since edge neighbours are spread over
    # entropy buckets by their position in the block (see test_engine)
    assert dict(two) == dict(one) and len(two) > 6


def test_top(corpus: Path, expected: list[tuple[str, int]]) -> None:
    for k in (1, 3, 100):
        rows = tsv_rows(out(run([str(corpus), "--top", str(k)], corpus.parent)))
        assert rows == expected[:k]
    proc = run([str(corpus), "--top", "2"], corpus.parent)
    assert "2 words" in err_lines(proc)[-1]


def test_exact_equals_default_sketch(corpus: Path, expected: list[tuple[str, int]]) -> None:
    exact = out(run([str(corpus), "--exact", "--format", "jsonl"], corpus.parent))
    sketch = out(run([str(corpus), "--format", "jsonl"], corpus.parent))  # 256MB default
    assert exact == sketch and exact
    assert in_process([corpus], exact=True) == expected
    small = tsv_rows(out(run([str(corpus), "--memory", "16MB"], corpus.parent)))
    assert small == in_process([corpus], memory=16 * 2**20)


def test_units_han_versus_mixed(corpus: Path) -> None:
    mixed = {w for w, _ in tsv_rows(out(run([str(corpus), "--units", "mixed"],
                                            corpus.parent)))}
    han = {w for w, _ in tsv_rows(out(run([str(corpus), "--units", "han"],
                                          corpus.parent)))}
    assert {"b站", "u盘", "iphone手机"} <= mixed
    assert not {"b站", "u盘", "iphone手机"} & han
    assert all(not any(c.isascii() for c in w) for w in han)
    assert {"区块链", "俄罗斯", "元宇宙"} <= han
    assert "手机" in han  # what is left of iPhone手机 when ASCII is a break


def test_thresholds_change_the_result(corpus: Path) -> None:
    strict = tsv_rows(out(run([str(corpus), "--min-count", "300"], corpus.parent)))
    assert strict and all(c >= 300 for _, c in strict)
    assert {w for w, _ in strict} < PLANTED_MIXED
    none = out(run([str(corpus), "--min-pmi", "20"], corpus.parent))
    assert none == ""
    loose = tsv_rows(out(run([str(corpus), "--min-entropy", "0", "--min-pmi", "1,2,3",
                              "--order", "3"], corpus.parent)))
    assert len(loose) > len(PLANTED_MIXED)


# --------------------------------------------------------------------------- bad input


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert proc.stdout == b""
    last = err_lines(proc)[-1]
    assert "error" in last
    for n in needles:
        assert n.lower() in last.lower(), last


@pytest.fixture
def old_output(tmp_path: Path) -> Path:
    target = tmp_path / "out.tsv"
    target.write_text("old content\n", encoding="utf-8")
    return target


def assert_untouched(tmp_path: Path, old: Path) -> None:
    assert old.read_text(encoding="utf-8") == "old content\n"
    assert not (tmp_path / "new.tsv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def bad_input_run(tmp_path: Path, old: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run twice: -o an existing file (must keep its content), -o a new file (not created)."""
    first = run([*args, "-o", str(old)], tmp_path)
    second = run([*args, "-o", str(tmp_path / "new.tsv")], tmp_path)
    assert (first.returncode, first.stderr) == (second.returncode, second.stderr)
    assert_untouched(tmp_path, old)
    return first


def test_missing_file(tmp_path: Path, old_output: Path, corpus: Path) -> None:
    proc = bad_input_run(tmp_path, old_output, [str(corpus), "nope.txt"])
    assert_usage_error(proc, "nope.txt", "no such file")
    assert len(err_lines(proc)) == 1


def test_directory(tmp_path: Path, old_output: Path) -> None:
    (tmp_path / "adir").mkdir()
    proc = bad_input_run(tmp_path, old_output, ["adir"])
    assert_usage_error(proc, "adir", "directory")
    assert len(err_lines(proc)) == 1


def test_unopenable_file_socket(tmp_path: Path, old_output: Path) -> None:
    """A Unix socket exists and is not a directory, but open() fails (ENXIO), even as root."""
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        proc = bad_input_run(tmp_path, old_output, ["sock"])
    finally:
        sock.close()
    assert_usage_error(proc, "sock", "cannot read")
    assert len(err_lines(proc)) == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_file_mode(tmp_path: Path, old_output: Path) -> None:
    locked = tmp_path / "locked.txt"
    locked.write_text("区块链\n", encoding="utf-8")
    locked.chmod(0)
    proc = bad_input_run(tmp_path, old_output, ["locked.txt"])
    assert_usage_error(proc, "locked.txt", "cannot read")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc")
def test_file_that_fails_on_read(tmp_path: Path, old_output: Path) -> None:
    proc = bad_input_run(tmp_path, old_output, ["/proc/self/mem"])
    assert_usage_error(proc, "/proc/self/mem")


def test_missing_known_file(tmp_path: Path, old_output: Path, corpus: Path) -> None:
    proc = bad_input_run(tmp_path, old_output, [str(corpus), "--known", "nolex.txt"])
    assert_usage_error(proc, "--known", "nolex.txt")


def test_bad_lexicon_files(tmp_path: Path, old_output: Path, corpus: Path) -> None:
    (tmp_path / "lexdir").mkdir()
    proc = bad_input_run(tmp_path, old_output, [str(corpus), "--known", "lexdir"])
    assert_usage_error(proc, "--known", "lexdir")
    # read after counting (the lexicon is not held in memory during the passes): still a
    # usage error, and nothing written
    (tmp_path / "latin1.txt").write_bytes("区块链\n".encode() + b"caf\xe9\n")
    proc = bad_input_run(tmp_path, old_output, [str(corpus), "--known", "latin1.txt"])
    assert_usage_error(proc, "--known", "latin1.txt")


def test_unknown_lexicon_name(tmp_path: Path, old_output: Path, corpus: Path) -> None:
    proc = bad_input_run(tmp_path, old_output, [str(corpus), "--known", "jeiba"])
    assert_usage_error(proc, "--known jeiba", "not a lexicon name (names: jieba)")
    assert len(err_lines(proc)) == 1


def test_output_in_missing_directory(tmp_path: Path, corpus: Path) -> None:
    proc = run([str(corpus), "-o", str(tmp_path / "nodir" / "out.tsv")], tmp_path)
    assert_usage_error(proc, "nodir")
    assert not (tmp_path / "nodir").exists()


def test_output_is_a_directory(tmp_path: Path, corpus: Path) -> None:
    target = tmp_path / "outdir"
    target.mkdir()
    proc = run([str(corpus), "-o", str(target)], tmp_path)
    assert_usage_error(proc, "outdir")
    assert list(target.iterdir()) == []


ARGPARSE_ONE_LINE = ("bug: argparse's own errors (invalid int/choice, missing value) print "
                     "the whole usage block before the error line; cli.py promises one line")
HUGE_MEMORY = ("bug: a --memory budget that cannot be allocated ends in a numpy "
               "ArrayMemoryError traceback (status 1) instead of a usage error")

# id, arguments, what the error line must name, known bug (for either test below)
BAD_OPTIONS = [
    ("memory-abc", ["--memory", "abc"], "--memory", None),
    ("memory-inf", ["--memory", "inf"], "--memory", None),
    ("memory-negative", ["--memory=-5MB"], "--memory", None),
    ("memory-too-small", ["--memory", "1MB"], "memory", None),
    ("memory-huge", ["--memory", "1000TB"], "memory", HUGE_MEMORY),
    ("min-pmi-x", ["--min-pmi", "x"], "--min-pmi", None),
    ("min-pmi-empty", ["--min-pmi", ""], "--min-pmi", None),
    ("top-0", ["--top", "0"], "--top", None),
    ("top-abc", ["--top", "abc"], "--top", ARGPARSE_ONE_LINE),
    ("order-1", ["--order", "1"], "--order", None),
    ("order-x", ["--order", "x"], "--order", ARGPARSE_ONE_LINE),
    ("format-bad", ["--format", "bad"], "--format", ARGPARSE_ONE_LINE),
    ("units-latin", ["--units", "latin"], "--units", ARGPARSE_ONE_LINE),
    ("min-count-0", ["--min-count", "0"], "--min-count", None),
    ("min-entropy-negative", ["--min-entropy=-1"], "--min-entropy", None),
    ("bound-share-above-1", ["--bound-share", "1.5"], "--bound-share", None),
]


def _params(one_line: bool) -> list:
    out = []
    for id_, args, name, _former_bug in BAD_OPTIONS:
        out.append(pytest.param(args, name, id=id_))
    return out


@pytest.mark.parametrize(("args", "name"), _params(one_line=False))
def test_bad_option_value(tmp_path: Path, old_output: Path, corpus: Path, args: list[str],
                          name: str) -> None:
    """Status 2, an error line naming the option, nothing on stdout, -o untouched."""
    proc = bad_input_run(tmp_path, old_output, [str(corpus), *args])
    assert_usage_error(proc, name)


@pytest.mark.parametrize(("args", "name"), _params(one_line=True))
def test_bad_option_value_is_one_line(tmp_path: Path, corpus: Path, args: list[str],
                                      name: str) -> None:
    proc = run([str(corpus), *args], tmp_path)
    assert proc.returncode == 2
    assert len(err_lines(proc)) == 1, proc.stderr.decode()


# --------------------------------------------------------------------------- bad bytes


def test_undecodable_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    lines = [x.encode("utf-8") for x in corpus_lines(seed=3, n_lines=1500)]
    # 3 stray bytes, and a truncated 3-byte sequence (2 bytes) before an ASCII letter
    lines[10] += b"\xff"
    lines[20] = b"\xfe\xfe" + lines[20]
    lines[30] += b"\xe5\x8cx"
    (tmp_path / "bad.txt").write_bytes(b"\n".join(lines) + b"\n")
    proc = run(["bad.txt"], tmp_path)
    words = {w for w, _ in tsv_rows(out(proc))}
    assert {"区块链", "俄罗斯"} <= words
    assert not any("\ufffd" in w for w in words)
    summary = err_lines(proc)
    assert len(summary) == 1
    assert "5 undecodable bytes replaced" in summary[0]


def test_nul_bytes_are_breaks(tmp_path: Path) -> None:
    lines = corpus_lines(seed=4, n_lines=1500)
    text = "\x00".join(lines[:500]) + "\n" + "\n".join(lines[500:]) + "\n"
    (tmp_path / "nul.txt").write_bytes(text.encode("utf-8"))
    proc = run(["nul.txt"], tmp_path)
    words = {w for w, _ in tsv_rows(out(proc))}
    assert {"区块链", "俄罗斯"} <= words
    assert not any("\x00" in w for w in words)
    assert "499 NUL bytes" in err_lines(proc)[-1]


def test_binary_file_does_not_crash(tmp_path: Path) -> None:
    rnd = random.Random(0)
    (tmp_path / "bin.dat").write_bytes(bytes(rnd.randrange(256) for _ in range(200_000)))
    proc = run(["bin.dat"], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "undecodable bytes replaced" in err_lines(proc)[-1]


def test_empty_input(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    proc = run(["empty.txt"], tmp_path)
    assert out(proc) == ""
    assert "0 words" in err_lines(proc)[-1]
    assert out(run(["-"], tmp_path, stdin=b"")) == ""
    target = tmp_path / "out.jsonl"
    out(run(["empty.txt", "--format", "jsonl", "-o", str(target)], tmp_path))
    assert target.read_bytes() == b""
    csv_out = out(run(["empty.txt", "--format", "csv"], tmp_path))
    assert csv_out in ("", ",".join(FIELDS) + "\n")


@pytest.mark.parametrize(("content", "units"), [
    (b"\n\n\n", "mixed"), ("，。！\n".encode(), "mixed"), (b"hello world\n", "han")],
    ids=["blank-lines", "punctuation", "ascii-in-han-mode"])
def test_input_without_units(tmp_path: Path, content: bytes, units: str) -> None:
    (tmp_path / "blank.txt").write_bytes(content)
    proc = run(["blank.txt", "--units", units], tmp_path)
    assert out(proc) == ""


@pytest.mark.slow
def test_single_20mb_line(tmp_path: Path) -> None:
    """20 MB with no newline: the reader cuts it at its block size and all of it is used."""
    lines = corpus_lines(seed=5, n_lines=4000)
    chunk = "。".join(lines).encode("utf-8")
    reps = 20 * 2**20 // len(chunk) + 1
    data = (chunk + "。".encode()) * reps
    assert len(data) >= 20 * 2**20 and b"\n" not in data
    (tmp_path / "long.txt").write_bytes(data)
    proc = run(["long.txt"], tmp_path, timeout=600)
    rows = tsv_rows(out(proc))
    assert {"区块链", "俄罗斯", "元宇宙", "b站", "u盘"} <= {w for w, _ in rows}
    summary = err_lines(proc)[-1]
    assert "over-long lines cut" in summary
    # every block was counted: 区块链 occurs about reps * (its count in one chunk) times
    per_chunk = chunk.decode("utf-8").count("区块链")
    assert dict(rows)["区块链"] >= 0.9 * reps * per_chunk
