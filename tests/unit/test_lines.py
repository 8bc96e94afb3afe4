"""The one line cutter (streamer.input.lines): decoding, splitting into lines and batches,
and the batch reader and the tailing sources cutting an over-long line at the same points.
In memory, no event loop."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.input.batch_reader import BLOCK, ReadStats, decode_block, iter_raw_blocks
from streamer.input.lines import CUT_SEARCH, Lines, LineSplitter, cut_point, decode_line


def stream_pieces(line: bytes, max_line: int, feed: int) -> list[bytes]:
    """How a tailing source hands out ``line`` (no newline), fed ``feed`` bytes at a time."""
    sp = LineSplitter(max_line)
    out = []
    for i in range(0, len(line), feed):
        sp.feed(line[i : i + feed])
        out += [p.raw for p in iter(sp.next, None)]
    if (p := sp.flush()) is not None:
        out.append(p.raw)
    return out


def batch_pieces(line: bytes, block: int) -> tuple[list[bytes], ReadStats]:
    """How `discover` reads ``line`` (no newline) in blocks of ``block`` bytes."""
    stats = ReadStats()
    return [raw for raw, _ in iter_raw_blocks(io.BytesIO(line), stats, block)], stats


def test_both_readers_cut_after_the_same_clause_separator() -> None:
    line = "你好，世界很大".encode()  # 3+3+3 | 3+3+3+3
    expected = ["你好，", "世界很", "大"]
    assert [p.decode() for p in stream_pieces(line, 10, 64)] == expected
    pieces, stats = batch_pieces(line, 10)
    assert [p.decode() for p in pieces] == expected
    assert stats.long_lines_cut == 2


@pytest.mark.parametrize("unit", ["新词发现，测试文本 abc;", "汉字😀词", "句子。", "v1.2 "])
def test_both_readers_cut_a_long_line_alike(unit: str) -> None:
    line = (unit * (3 * BLOCK // len(unit.encode()) + 7)).encode()
    pieces, stats = batch_pieces(line, BLOCK)
    assert pieces == stream_pieces(line, BLOCK, 256 * 1024)
    assert b"".join(pieces) == line and all(len(p) <= BLOCK for p in pieces)
    assert stats.long_lines_cut == len(pieces) - 1 >= 3


def test_cut_searches_only_the_end_of_a_wide_window() -> None:
    """A separator further than CUT_SEARCH from the end is not used: the piece is cut at
    a character boundary near the limit rather than far before it."""
    line = "，".encode() + "汉".encode() * (2 * CUT_SEARCH)
    cut = cut_point(line, 0, CUT_SEARCH + 100)
    assert CUT_SEARCH + 98 <= cut <= CUT_SEARCH + 100
    line[:cut].decode("utf-8")
    assert batch_pieces(line, CUT_SEARCH + 100)[0] == stream_pieces(line, CUT_SEARCH + 100, 4096)


CUT_CHUNKS = [b"a", b" ", b".", "，".encode(), "。".encode(), "汉".encode(), "😀".encode(), b"xy"]


@given(
    parts=st.lists(st.sampled_from(CUT_CHUNKS + [b"\xff"]), max_size=300),
    block=st.integers(4, 40),
    feed=st.integers(1, 50),
)
@settings(max_examples=300, deadline=None)
def test_batch_reader_and_splitter_agree_on_every_cut(
    parts: list[bytes], block: int, feed: int
) -> None:
    line = b"".join(parts)
    pieces, _ = batch_pieces(line, block)
    assert pieces == stream_pieces(line, block, feed)


def test_decode_block_counts_lines_nul_and_replaced_bytes() -> None:
    d = decode_block(b"ok\xff\n\x00a\xfe\xfd", 1)
    assert d.text == "ok\ufffd\n\x00a\ufffd\ufffd"
    assert (d.lines, d.nul, d.replaced) == (2, 1, 3)
    assert decode_block("a\ufffdb".encode(), 0).replaced == 0  # a genuine U+FFFD


# ---------------------------------------------------------------- decoding and splitting


def test_decode_line_counts_replaced_bytes() -> None:
    assert decode_line("新词".encode()) == ("新词", 0)
    assert decode_line(b"ok\xff\xfe!") == ("ok\ufffd\ufffd!", 2)
    # a genuine U+FFFD in the input is not a replaced byte
    assert decode_line("a\ufffdb".encode()) == ("a\ufffdb", 0)
    # a truncated 3-byte sequence is one replacement for two bytes
    assert decode_line(b"\xe6\x96x\xef\xbf\xbd") == ("\ufffdx\ufffd", 2)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_decode_line_count_matches_reference(raw: bytes) -> None:
    # Reference: decode strictly, skipping one error range at a time.
    bad, pos = 0, 0
    while True:
        try:
            raw[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            bad += exc.end - exc.start
            pos += exc.end
    assert decode_line(raw) == (raw.decode("utf-8", "replace"), bad)


CHUNKS = [b"a", b" ", b"\n", b"\r", "，".encode(), "汉".encode(), "😀".encode(), b"xy"]


@given(
    parts=st.lists(st.sampled_from(CHUNKS + [b"\xff"]), max_size=200),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=50),
    max_line=st.integers(4, 24),
)
@settings(max_examples=300, deadline=None)
def test_splitter_accounts_for_every_byte(parts: list[bytes], cuts: list[int], max_line: int):
    data = b"".join(parts)
    sp = LineSplitter(max_line)
    pieces = []
    pos, i = 0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        i += 1
        sp.feed(data[pos : pos + n])
        pos += n
        while (p := sp.next()) is not None:
            pieces.append(p)
    if (p := sp.flush()) is not None:
        pieces.append(p)
    at = 0
    for p in pieces:
        consumed = data[at : at + p.consumed]
        at += p.consumed
        assert len(p.raw) <= max_line
        if p.cut:
            assert consumed == p.raw
        else:
            assert consumed.rstrip(b"\n").removesuffix(b"\r") == p.raw
    assert at == len(data)
    if b"\xff" not in data:  # valid UTF-8 is never cut inside a character
        for p in pieces:
            p.raw.decode("utf-8")


def _split_reference(data: bytes, max_line: int) -> list[str]:
    sp = LineSplitter(max_line)
    sp.feed(data)
    out = [p.raw for p in iter(sp.next, None)]
    if (p := sp.flush()) is not None:
        out.append(p.raw)
    return [decode_line(raw)[0] for raw in out]


@given(
    parts=st.lists(st.sampled_from(CHUNKS + [b"\xff", b"\n\n"]), max_size=300),
    cuts=st.lists(st.integers(1, 60), min_size=1, max_size=20),
    max_line=st.integers(4, 16),
    max_lines=st.integers(1, 7),
    max_bytes=st.integers(1, 40),
)
@settings(max_examples=300, deadline=None)
def test_take_into_batches_match_line_by_line(
    parts: list[bytes], cuts: list[int], max_line: int, max_lines: int, max_bytes: int
) -> None:
    """The fast path (one split, one decode per run of lines) gives the same lines as
    the line-by-line path, and every batch respects the limits."""
    data = b"".join(parts)
    sp = LineSplitter(max_line)
    batches: list[Lines] = []
    pos, i = 0, 0
    while pos < len(data):
        sp.feed(data[pos : pos + cuts[i % len(cuts)]])
        pos += cuts[i % len(cuts)]
        i += 1
        while True:
            out = Lines()
            sp.take_into(out, max_lines, max_bytes)
            batches.append(out)
            if not out.full:
                break
    if (p := sp.flush()) is not None:
        out = Lines()
        out.add(p)
        batches.append(out)
    got = [line for b in batches for line in b.lines]
    assert got == _split_reference(data, max_line)
    assert sum(b.consumed for b in batches) == len(data)
    for b in batches:
        assert len(b.lines) <= max_lines
        assert b.nbytes <= max_bytes or len(b.lines) == 1


def test_splitter_prefers_clause_separators() -> None:
    sp = LineSplitter(10)
    sp.feed("你好，世界很大".encode() + b"\n")  # 3+3+3 | 3+3+3+3
    first = sp.next()
    assert first is not None and first.raw.decode() == "你好，" and first.new_long
    rest = [sp.next(), sp.next()]
    assert [p.raw.decode() for p in rest if p] == ["世界很", "大"]
