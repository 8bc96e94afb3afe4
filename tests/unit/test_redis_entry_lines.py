"""An entry of a Redis stream is cut into lines as a file is (streamer.input.lines): the
fast path for short entries gives exactly what the line cutter gives."""

from __future__ import annotations

import random

from streamer.input.lines import Lines, LineSplitter
from streamer.input.redis_stream import entry_lines

ALPHABET = (b"a", b"\n", b"\r", "中".encode(), b"\xff", b" ", b"\xe4", "，".encode())


def cutter(raw: bytes, max_line_bytes: int) -> Lines:
    """The reference: the line cutter fed the entry, its unterminated rest flushed."""
    out = Lines()
    splitter = LineSplitter(max_line_bytes)
    splitter.feed(raw)
    splitter.take_into(out, 1 << 62, 1 << 62)
    piece = splitter.flush()
    if piece is not None:
        out.add(piece)
    return out


def test_entries_are_cut_as_the_line_cutter_cuts_them() -> None:
    rng = random.Random(13)
    for _ in range(5000):
        raw = b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        limit = rng.choice((4, 16, 64))
        got = Lines()
        entry_lines(raw, LineSplitter(limit), got)
        want = cutter(raw, limit)
        assert (got.lines, got.bad, got.consumed, len(got.long_at)) == (
            want.lines, want.bad, want.consumed, len(want.long_at)), raw


def test_three_lines_and_edge_cases() -> None:
    for raw, lines in ((b"a\nb\nc", ["a", "b", "c"]), (b"a\nb\nc\n", ["a", "b", "c"]),
                       (b"", []), (b"\n", [""]), (b"a\r\n\r\nb", ["a", "", "b"])):
        out = Lines()
        entry_lines(raw, LineSplitter(1024), out)
        assert out.lines == lines, raw
