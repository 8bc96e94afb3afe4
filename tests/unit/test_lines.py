"""The one line cutter (streamer.input.lines), and the batch reader and the tailing sources
cutting an over-long line at the same points. In memory, no event loop."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.input.batch_reader import BLOCK, ReadStats, decode_block, iter_raw_blocks
from streamer.input.lines import CUT_SEARCH, LineSplitter, cut_point


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


CHUNKS = [b"a", b" ", b".", "，".encode(), "。".encode(), "汉".encode(), "😀".encode(), b"xy"]


@given(
    parts=st.lists(st.sampled_from(CHUNKS + [b"\xff"]), max_size=300),
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
