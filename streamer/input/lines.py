"""The one line cutter: bytes to decoded lines, for the tailing sources and the batch reader.

Only complete lines (ending in ``b"\\n"``) are handed out, so a partial last line waits for
its newline and a multi-byte character split across two writes is never broken: decoding
happens only on complete lines, as UTF-8 with ``errors="replace"``; replaced bytes are
counted. A trailing ``"\\r"`` is stripped. A line longer than the limit is handed out in
pieces of at most that many bytes, each cut by :func:`cut_point`: after the last clause
separator in the window (:data:`CUT_SEPARATORS`) or else at a character boundary, so no
word is glued to a fragment of the next and no character is cut in two.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import NamedTuple

#: bytes a tailing source reads per system call
READ_SIZE = 256 * 1024
#: bytes a long line may be cut after, in order of no preference (the last one wins).
#: Each is a clause break for the engine (anything but a Han character or an ASCII letter
#: or digit is one), so a cut right after it never splits a word.
CUT_SEPARATORS: tuple[bytes, ...] = (
    b" ",
    b"\t",
    b",",
    b".",
    b";",
    b"!",
    b"?",
    *(c.encode("utf-8") for c in "，。！？；、"),
)
#: bytes at the end of a cut window searched for a separator: bounds the cost of a cut
#: (one ``rfind`` per separator) and keeps pieces close to the longest allowed
CUT_SEARCH = 64 * 1024
#: the shortest max_line_bytes: one UTF-8 character must fit in a piece
MIN_LINE_BYTES = 4
_REPLACEMENT = "\ufffd"
_REPLACEMENT_UTF8 = _REPLACEMENT.encode("utf-8")


@dataclass(frozen=True, slots=True)
class LineLimits:
    """How a source cuts its input: the longest line handed out whole (bytes; a longer
    one is handed out in pieces of at most that many) and the largest batch (lines, and
    bytes of line content). ``ValueError`` when unusable."""

    max_line_bytes: int = 1 << 20
    batch_lines: int = 2000
    batch_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.max_line_bytes < MIN_LINE_BYTES:
            raise ValueError(f"max_line_bytes must be at least {MIN_LINE_BYTES}")
        if self.batch_lines < 1 or self.batch_bytes < 1:
            raise ValueError("batch_lines and batch_bytes must be positive")


def decode_line(raw: bytes) -> tuple[str, int]:
    """Decode one complete line as UTF-8, replacing bad bytes; return (text, bad bytes).

    The count is exact without a Python loop: each U+FFFD the decoder introduced
    (beyond those genuinely in the input, which are always decoded as themselves)
    stands for a run of bad bytes, and the valid bytes re-encode to themselves.
    """
    text = raw.decode("utf-8", "replace")
    if _REPLACEMENT not in text:
        return text, 0
    introduced = text.count(_REPLACEMENT) - raw.count(_REPLACEMENT_UTF8)
    if introduced <= 0:
        return text, 0
    valid = len(text.encode("utf-8")) - len(_REPLACEMENT_UTF8) * introduced
    return text, len(raw) - valid


def cut_point(buf: bytes, start: int, end: int) -> int:
    """Where to cut ``buf[start:]`` so that the piece is at most ``end - start`` bytes.

    Right after the last of :data:`CUT_SEPARATORS` in the last ``CUT_SEARCH`` bytes of
    the window if there is one, else at ``end`` moved back to the start of a UTF-8
    character (at most 3 bytes: beyond that the data is not UTF-8 anyway). ``buf[end]``
    must exist. Both the tailing sources (:class:`LineSplitter`) and the batch reader cut
    here, so a long line is cut at the same points whichever reads it. Cost: one
    ``rfind`` per separator over at most ``CUT_SEARCH`` bytes.
    """
    best = -1
    for sep in CUT_SEPARATORS:
        i = buf.rfind(sep, max(start, end - CUT_SEARCH), end)
        if i >= 0 and i + len(sep) > best:
            best = i + len(sep)
    if best > start:
        return best
    cut = end
    for _ in range(3):
        if cut - 1 > start and (buf[cut] & 0xC0) == 0x80:
            cut -= 1
        else:
            break
    if (buf[cut] & 0xC0) == 0x80:  # not UTF-8: any cut is as good as another
        return end
    return cut


class Piece(NamedTuple):
    """A line (without its newline and trailing CR) or a piece of a long line."""

    raw: bytes
    consumed: int  # bytes of input it accounts for (newline included)
    cut: bool  # a piece of a line longer than max_line_bytes (no newline consumed)
    new_long: bool  # the first piece of such a line


@dataclass
class Lines:
    """Decoded lines being gathered into one batch, and what they account for."""

    lines: list[str] = field(default_factory=list)
    consumed: int = 0  # input bytes, newlines included
    nbytes: int = 0  # bytes of line content (the batch_bytes measure)
    bad: int = 0  # bytes replaced by U+FFFD
    long_at: list[int] = field(default_factory=list)  # consumed-offsets of long lines
    full: bool = False  # stopped at a batch limit

    def add(self, piece: Piece) -> None:
        if piece.new_long:
            self.long_at.append(self.consumed)
        text, bad = decode_line(piece.raw)
        self.lines.append(text)
        self.consumed += piece.consumed
        self.nbytes += len(piece.raw)
        self.bad += bad


@dataclass(eq=False)
class LineCounts:
    """What a source read from one input and handed out, for its status. Compared by
    identity, as the inputs they count are."""

    offset: int = 0  # bytes consumed: just after the last line handed out
    bytes_read: int = 0
    lines: int = 0
    replaced_bytes: int = 0
    long_lines: int = 0

    def add(self, out: Lines) -> list[int]:
        """Count lines handed out; return the offsets of the long lines they start."""
        long_starts = [self.offset + at for at in out.long_at]
        self.long_lines += len(long_starts)
        self.offset += out.consumed
        self.lines += len(out.lines)
        self.replaced_bytes += out.bad
        return long_starts


class LineSplitter:
    """Cuts a byte stream into complete lines and bounded pieces of overlong lines.

    It buffers at most one partial line (up to ``max_line_bytes``) plus the data of the
    last ``feed``; callers feed more only when :meth:`next` returns ``None``.
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < MIN_LINE_BYTES:
            raise ValueError(f"max_line_bytes must be at least {MIN_LINE_BYTES} (one UTF-8"
                             " character)")
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._start = 0
        self._in_long = False

    @property
    def pending(self) -> int:
        """Bytes fed but not yet handed out."""
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> None:
        if self._start:
            self._buf = self._buf[self._start :] + data
            self._start = 0
        else:
            self._buf += data

    def next(self) -> Piece | None:
        """The next complete line or long-line piece, or None until more data is fed."""
        buf, s, m = self._buf, self._start, self.max_line_bytes
        nl = buf.find(b"\n", s, s + m + 1)
        if nl >= 0:
            raw = buf[s:nl]
            self._start = nl + 1
            self._in_long = False
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            return Piece(raw, nl + 1 - s, False, False)
        if len(buf) - s > m:
            cut = cut_point(buf, s, s + m)
            new_long = not self._in_long
            self._in_long = True
            self._start = cut
            return Piece(buf[s:cut], cut - s, True, new_long)
        return None

    def flush(self) -> Piece | None:
        """Hand out the unterminated rest (the input ended for good), if any."""
        if not self.pending:
            return None
        raw = self._buf[self._start :]
        consumed = len(raw)
        self.reset()
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return Piece(raw, consumed, False, False)

    def reset(self) -> None:
        self._buf = b""
        self._start = 0
        self._in_long = False

    def take_into(self, out: Lines, max_lines: int, max_bytes: int) -> None:
        """Move complete lines (and long-line pieces) into ``out`` up to the limits.

        A line is added only if ``out`` stays within ``max_bytes`` of content, except
        that an empty ``out`` always takes one line. ``out.full`` is set when a limit
        stopped it; otherwise every complete line buffered has been taken.
        """
        while len(out.lines) < max_lines:
            taken = self._take_fast(out, max_lines, max_bytes)
            if taken > 0:
                continue
            if taken < 0:
                out.full = True
                return
            saved = (self._start, self._in_long)
            piece = self.next()
            if piece is None:
                return
            if out.lines and out.nbytes + len(piece.raw) > max_bytes:
                self._start, self._in_long = saved  # give it back for the next batch
                out.full = True
                return
            out.add(piece)
        out.full = True

    def _take_fast(self, out: Lines, max_lines: int, max_bytes: int) -> int:
        """Take a run of ordinary complete lines with one split and one decode.

        Per-line Python work would cap a source at a few MB/s. Returns the number of
        lines taken, 0 when the next item needs :meth:`next` (no complete line, or a long
        line), -1 when the next line does not fit in ``max_bytes``.
        """
        if self._in_long:
            return 0
        buf, s, m = self._buf, self._start, self.max_line_bytes
        end = buf.rfind(b"\n", s)
        if end < 0:
            return 0
        room = max_lines - len(out.lines)
        parts = buf[s:end].split(b"\n", room)
        if len(parts) > room:
            parts.pop()  # the unsplit rest
        lens = list(map(len, parts))
        if max(lens) > m:
            first_long = next(i for i, n in enumerate(lens) if n > m)
            if first_long == 0:
                return 0
            del lens[first_long:]
        sizes = list(accumulate(lens))
        k = bisect_right(sizes, max_bytes - out.nbytes)
        if k == 0:
            if out.lines:
                return -1
            k = 1
        length = sizes[k - 1] + k  # content plus newlines
        text, bad = decode_line(buf[s : s + length - 1])
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        out.lines.extend(lines)
        out.consumed += length
        out.nbytes += sizes[k - 1]
        out.bad += bad
        self._start = s + length
        return k
