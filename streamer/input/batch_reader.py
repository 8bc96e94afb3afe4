"""The batch reader of `streamer discover`: files read once, start to end, in blocks of lines.

Files are read in binary blocks of complete lines, so memory stays at a few blocks
whatever the input. A buffer of more than ``block`` bytes without a newline is an
over-long line: it is handed on in pieces of at most ``block`` bytes, cut where the
tailing sources cut (:func:`streamer.input.lines.cut_point`), so that a single 100 MB line
is processed in bounded memory. Undecodable bytes become U+FFFD and are counted
(:func:`streamer.input.lines.decode_line`); NUL bytes are counted and treated as clause
breaks like any other non-word character.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from streamer.input.lines import cut_point, decode_line

BLOCK = 1 << 19  # bytes read at a time (and the longest piece a long line is cut into):
# small enough that a few blocks in flight stay well under the memory budget


@dataclass
class ReadStats:
    """What the reader saw: bytes, lines, replaced (undecodable) bytes, NUL bytes, and
    the cuts made in over-long lines."""

    bytes: int = 0
    lines: int = 0
    replaced: int = 0
    nul: int = 0
    long_lines_cut: int = 0
    per_file: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Decoded:
    """A block of lines as text, with what decoding saw (added to ReadStats by the
    thread that owns the stats)."""

    text: str
    lines: int
    nul: int
    replaced: int

    def count_into(self, stats: ReadStats) -> None:
        stats.lines += self.lines
        stats.nul += self.nul
        stats.replaced += self.replaced


def iter_raw_blocks(stream: BinaryIO, stats: ReadStats,
                    block: int = BLOCK) -> Iterator[tuple[bytes, int]]:
    """Yield (raw bytes of complete lines, 1 if they end a line else 0), ~``block``
    bytes at a time; decode each with ``decode_block`` (in any thread).

    A block holds at most ``2 * block`` bytes (a line's start left over from the last
    read, then one read); pieces of an over-long line hold at most ``block`` bytes.
    """
    rest = b""
    while True:
        data = stream.read(block)
        if not data:
            break
        stats.bytes += len(data)
        buf = rest + data
        end = buf.rfind(b"\n")
        if end >= 0:
            rest = buf[end + 1:]
            yield buf[:end], 1
            continue
        start = 0
        while len(buf) - start > block:  # cut_point reads buf[start + block]
            cut = cut_point(buf, start, start + block)
            stats.long_lines_cut += 1
            yield buf[start:cut], 0
            start = cut
        rest = buf[start:]
    if rest:
        yield rest, 1


def decode_text(raw: bytes, complete: int) -> str:
    """The text of a block alone, as decode_block gives it, without counting lines, NUL
    and replaced bytes (a second pass over input whose first pass counted them).
    ``complete`` is unused: it is taken so that a reader's (raw, complete) pair unpacks
    into either function. Thread-safe."""
    return decode_line(raw)[0]


def decode_block(raw: bytes, complete: int) -> Decoded:
    """Decode a block of lines; ``complete`` is 1 when it ends a line. Thread-safe."""
    text, replaced = decode_line(raw)
    return Decoded(text, raw.count(b"\n") + complete, raw.count(b"\x00"), replaced)
