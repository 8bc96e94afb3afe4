"""Reading text files for batch runs: complete lines, bounded memory, bad bytes counted.

Files are read in binary blocks and cut into lines; a line longer than the block
size is cut at a character boundary, preferring the last ASCII space or
punctuation in the block, so that a single 100 MB line is processed in bounded
memory. Undecodable bytes become U+FFFD and are counted; NUL bytes are counted
and treated as clause breaks like any other non-word character.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

BLOCK = 1 << 19  # bytes read at a time (and the longest piece a long line is cut into):
# small enough that a few blocks in flight stay well under the memory budget


@dataclass
class ReadStats:
    """What the reader saw: bytes, lines, replaced (undecodable) bytes, NUL bytes."""

    bytes: int = 0
    lines: int = 0
    replaced: int = 0
    nul: int = 0
    long_lines_cut: int = 0
    per_file: dict[str, int] = field(default_factory=dict)


_local = threading.local()  # the error handler's count, per thread: blocks decode in workers


def _count_replace(err: UnicodeDecodeError) -> tuple[str, int]:
    _local.n = getattr(_local, "n", 0) + err.end - err.start
    return "\ufffd", err.end


codecs.register_error("streamer-count", _count_replace)


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


def _safe_cut(block: bytes) -> int:
    """Where to cut an over-long line: after the last ASCII break, else at a char boundary."""
    window = block[-65536:]
    best = max(window.rfind(c) for c in (b" ", b"\t", b",", b".", b"!", b"?", b";"))
    if best >= 0:
        return len(block) - len(window) + best + 1
    cut = len(block)
    while cut > 0 and (block[cut - 1] & 0xC0) == 0x80:  # inside a multi-byte sequence
        cut -= 1
    if cut > 0 and block[cut - 1] >= 0xC0:  # a lead byte whose continuation is cut off
        cut -= 1
    return cut or len(block)


def iter_raw_blocks(stream: BinaryIO, stats: ReadStats,
                    block: int = BLOCK) -> Iterator[tuple[bytes, int]]:
    """Yield (raw bytes of complete lines, 1 if they end a line else 0), ~``block``
    bytes at a time; decode each with ``decode_block`` (in any thread)."""
    rest = b""
    while True:
        data = stream.read(block)
        if not data:
            break
        stats.bytes += len(data)
        buf = rest + data
        end = buf.rfind(b"\n")
        if end < 0:
            if len(buf) < block:
                rest = buf
                continue
            cut = _safe_cut(buf)
            stats.long_lines_cut += 1
            head, rest = buf[:cut], buf[cut:]
            yield head, 0
            continue
        head, rest = buf[:end], buf[end + 1:]
        yield head, 1
    if rest:
        yield rest, 1


def decode_block(raw: bytes, complete: int) -> Decoded:
    """Decode a block of lines; ``complete`` is 1 when it ends a line. Thread-safe."""
    try:
        text = raw.decode("utf-8")
        replaced = 0
    except UnicodeDecodeError:
        _local.n = 0
        text = raw.decode("utf-8", "streamer-count")
        replaced = _local.n
    return Decoded(text, raw.count(b"\n") + complete, raw.count(b"\x00"), replaced)


def iter_text_blocks(stream: BinaryIO, stats: ReadStats, block: int = BLOCK) -> Iterator[str]:
    """Yield decoded text of complete lines (newline-separated), ~``block`` bytes at a time."""
    for raw, complete in iter_raw_blocks(stream, stats, block):
        d = decode_block(raw, complete)
        d.count_into(stats)
        yield d.text
