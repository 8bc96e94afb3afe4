"""The cache of parsed lexicons (storage.lexicon_cache) against real files.

A lexicon read through the cache must be the Lexicon that parsing the file gives: the same
words in the same order, frequencies, tags, per-character rates and sources. The cache is
written by the first load, used by the next, and ignored (then rewritten) when it is
damaged, when the lexicon file changed, or when it was made by another parser. A cache
that cannot be written changes nothing but the time a load takes.
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from streamer.core.lexicon import Lexicon, load_known, resolve_known
from streamer.storage.lexicon_cache import LexiconFileCache, cache_dir, default_cache

TAGGED = "区块链 300 n\n酒店 80 n\n的 5000 uj\n很 900 d\nＢ站 7\n# 注释\n缩进词\t12 v\n纯词\n"


def same(a: Lexicon, b: Lexicon) -> None:
    """Everything a Lexicon answers from, compared exactly (floats included)."""
    assert list(a._index.items()) == list(b._index.items())
    assert a._tag_names == b._tag_names
    assert a.has_freq == b.has_freq and a.has_tags == b.has_tags
    assert a.log_total == b.log_total
    assert a.sources == b.sources
    for char in {c for w in a.words for c in w}:
        assert a.alone_rate(char) == b.alone_rate(char)
        assert a.final_rate(char) == b.final_rate(char)


@pytest.fixture
def lexicon_file(tmp_path: Path) -> Path:
    path = tmp_path / "known.txt"
    path.write_text(TAGGED, encoding="utf-8")
    return path


def test_first_load_writes_the_cache_and_the_second_uses_it(tmp_path: Path,
                                                              lexicon_file: Path) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    target = cache.file_for([lexicon_file])
    assert not target.exists()
    first = load_known([lexicon_file], cache=cache)
    assert target.is_file()
    written = target.stat().st_ino, target.read_bytes()
    hit = cache.get([lexicon_file])
    assert hit is not None
    second = load_known([lexicon_file], cache=LexiconFileCache(tmp_path / "cache"))
    # a hit is read, not written again (a write replaces the file: a new inode)
    assert (target.stat().st_ino, target.read_bytes()) == written
    parsed = Lexicon.load([lexicon_file])
    for lex in (first, hit, second):
        same(lex, parsed)
    assert second.tag("的") == "uj" and second.freq("区块链") == 300 and "b站" in second
    assert second.is_function("很") and second.freq("纯词") == 1


def test_jieba_through_the_cache_is_the_parsed_jieba(tmp_path: Path) -> None:
    cache = LexiconFileCache(tmp_path)
    load_known(["jieba"], cache=cache)
    cached = load_known(["jieba"], cache=cache)
    assert cache.get([resolve_known("jieba")]) is not None
    same(cached, Lexicon.load([resolve_known("jieba")]))
    assert len(cached) > 349_000
    # equal entries share one int object, as in a parsed lexicon (memory)
    assert len({id(e) for e in cached._index.values()}) == len(set(cached._index.values()))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "flipped byte",
                                    "not a zip of arrays"])
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path: Path, lexicon_file: Path,
                                                  damage: str) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    load_known([lexicon_file], cache=cache)
    target = cache.file_for([lexicon_file])
    data = target.read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        target.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "flipped byte":  # inside the words: caught by the zip's CRC
        pos = data.index("区块链".encode())
        target.write_bytes(data[:pos] + bytes([data[pos] ^ 1]) + data[pos + 1:])
    else:
        buf = io.BytesIO()
        np.savez(buf, header=np.zeros(3, np.uint8))
        target.write_bytes(buf.getvalue())
    assert cache.get([lexicon_file]) is None
    lex = load_known([lexicon_file], cache=cache)
    same(lex, Lexicon.load([lexicon_file]))
    hit = cache.get([lexicon_file])  # rewritten, whole again
    assert hit is not None
    same(hit, lex)


def test_a_changed_lexicon_file_invalidates_the_cache(tmp_path: Path,
                                                      lexicon_file: Path) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    load_known([lexicon_file], cache=cache)
    before = lexicon_file.stat()
    # same size, same modification time: only the content tells
    changed = TAGGED.replace("酒店 80", "宾馆 81")
    assert len(changed.encode()) == len(TAGGED.encode())
    lexicon_file.write_text(changed, encoding="utf-8")
    os.utime(lexicon_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cache.get([lexicon_file]) is None
    lex = load_known([lexicon_file], cache=cache)
    assert "宾馆" in lex and "酒店" not in lex and lex.freq("宾馆") == 81
    hit = cache.get([lexicon_file])
    assert hit is not None and "宾馆" in hit


def test_each_list_of_files_has_its_own_cache(tmp_path: Path, lexicon_file: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("酒店 20 v\n新词 3 n\n", encoding="utf-8")
    cache = LexiconFileCache(tmp_path / "cache")
    for paths in ([lexicon_file], [other], [lexicon_file, other], [other, lexicon_file]):
        load_known(paths, cache=cache)
    assert len(list((tmp_path / "cache").glob("lexicon-*.npz"))) == 4
    for paths in ([lexicon_file, other], [other, lexicon_file]):
        hit = cache.get(paths)
        assert hit is not None
        same(hit, Lexicon.load(paths))  # frequencies summed, the first file's tag wins


def test_a_cache_of_another_parser_is_not_used(tmp_path: Path, lexicon_file: Path) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    load_known([lexicon_file], cache=cache)
    target = cache.file_for([lexicon_file])
    with np.load(target) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["parser"] = "0" * 16
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(target, "wb") as fh:
        np.savez(fh, **arrays)
    assert cache.get([lexicon_file]) is None


def test_an_unwritable_cache_directory_is_skipped(tmp_path: Path, lexicon_file: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    cache = LexiconFileCache(blocker / "cache")  # cannot be created, even by root
    lex = load_known([lexicon_file], cache=cache)
    same(lex, Lexicon.load([lexicon_file]))
    assert cache.get([lexicon_file]) is None
    if os.geteuid() != 0:  # root writes anywhere: a read-only directory stops only others
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        same(load_known([lexicon_file], cache=LexiconFileCache(ro)), lex)
        assert list(ro.iterdir()) == []


def test_errors_are_the_same_with_a_cache(tmp_path: Path) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        load_known([tmp_path / "d"], cache=cache)
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_known([tmp_path / "bad.txt"], cache=cache)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.npz"))


def test_empty_and_untagged_lexicons(tmp_path: Path) -> None:
    cache = LexiconFileCache(tmp_path / "cache")
    for name, text in (("empty.txt", "# nothing\n\n"), ("plain.txt", "酒店\n服务\n"),
                       ("big.txt", f"大词 {2 ** 40} n\n小词 1 n\n")):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        load_known([path], cache=cache)
        hit = cache.get([path])
        assert hit is not None, name
        same(hit, Lexicon.load([path]))
    # a frequency past what a float holds exactly is clipped to 2**53, and cached
    path = tmp_path / "huge.txt"
    path.write_text(f"巨词 {2 ** 60} n\n词 {2 ** 53} n\n", encoding="utf-8")
    assert load_known([path], cache=cache).freq("巨词") == 2 ** 53
    hit = cache.get([path])
    assert hit is not None and hit.freq("巨词") == 2 ** 53
    same(hit, Lexicon.load([path]))


def test_where_the_cache_lives() -> None:
    assert cache_dir({"STREAMER_CACHE_DIR": "/x/c", "XDG_CACHE_HOME": "/y"}) == Path("/x/c")
    assert cache_dir({"XDG_CACHE_HOME": "/y"}) == Path("/y/streamer")
    # a relative XDG_CACHE_HOME is invalid by the specification: ignored
    assert cache_dir({"XDG_CACHE_HOME": "rel"}) == Path(os.path.expanduser("~/.cache/streamer"))
    assert cache_dir({}) == Path(os.path.expanduser("~/.cache/streamer"))
    for off in ("1", "yes"):
        assert cache_dir({"STREAMER_NO_CACHE": off, "STREAMER_CACHE_DIR": "/x/c"}) is None
    assert cache_dir({"STREAMER_NO_CACHE": "0", "STREAMER_CACHE_DIR": "/x/c"}) == Path("/x/c")


def test_default_cache_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMER_CACHE_DIR", str(tmp_path))
    cache = default_cache()
    assert cache is not None and cache.directory == tmp_path
    monkeypatch.setenv("STREAMER_NO_CACHE", "1")
    assert default_cache() is None


def test_a_pipe_is_read_not_cached(tmp_path: Path) -> None:
    """``--known <(...)``: hashing the pipe would consume it; a pipe is never cached."""
    fifo = tmp_path / "words.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=("管道词 5 n\n",),
                              kwargs={"encoding": "utf-8"})
    writer.start()
    cache = LexiconFileCache(tmp_path / "cache")
    try:
        lex = load_known([fifo], cache=cache)
    finally:
        writer.join(timeout=10)
    assert set(lex.words) == {"管道词"} and lex.freq("管道词") == 5
    assert not (tmp_path / "cache").exists()


def test_the_cache_keeps_at_most_max_files(tmp_path: Path) -> None:
    """Lexicons loaded once from passing paths do not pile up: the least recently used
    cache files beyond max_files are deleted after a write; a hit counts as a use."""
    cache = LexiconFileCache(tmp_path / "cache", max_files=3)
    files = []
    for k in range(5):
        path = tmp_path / f"lex{k}.txt"
        path.write_text(f"词{k} {k + 1} n\n", encoding="utf-8")
        files.append(path)
    for k in range(3):
        load_known([files[k]], cache=cache)
        os.utime(cache.file_for([files[k]]), ns=(k * 10**9, k * 10**9))  # distinct ages
    assert cache.get([files[0]]) is not None  # lex0 is now the most recently used
    load_known([files[3]], cache=cache)       # a fourth: lex1, the least recent, goes
    kept = {p.name for p in (tmp_path / "cache").glob("lexicon-*.npz")}
    assert kept == {cache.file_for([files[k]]).name for k in (0, 2, 3)}
    with pytest.raises(ValueError):
        LexiconFileCache(tmp_path, max_files=0)
