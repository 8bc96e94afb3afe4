"""Byte ranges of files, split at line starts, read as the whole-file reader would read them.

A partitioned batch run hands each worker a few ranges of the input files. For its counts
to add up to those of one process reading the files from the start, a range must yield the
same lines, and an over-long line the same pieces, as :func:`blocks.iter_raw_blocks` over
the whole file. Two things make that hold:

* a range starts just after a newline (or at 0) and ends just after one (or at the end of
  the file), so no line is split between ranges;
* reads stay aligned to multiples of the block size from the start of the file, as they
  are for the whole-file reader, so a line longer than a block is cut at the same places.
  (At a line start the whole-file reader holds only that line's bytes up to the next
  aligned boundary, which is what the range reader holds after its first read.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from streamer.input.batch_reader import BLOCK, ReadStats, iter_raw_blocks


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` .. ``end`` - 1 of the file at ``path``."""

    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def next_line_start(path: str, offset: int, size: int, chunk: int = 1 << 16) -> int:
    """The smallest position >= ``offset`` that starts a line (follows a newline), or
    ``size``. Reads from ``offset - 1`` up to the next newline."""
    if offset <= 0:
        return 0
    with open(path, "rb") as fh:
        pos = offset - 1
        fh.seek(pos)
        while pos < size:
            data = fh.read(chunk)
            if not data:
                break
            nl = data.find(b"\n")
            if nl >= 0:
                return pos + nl + 1
            pos += len(data)
    return size


def split_ranges(paths: list[str], parts: int) -> list[list[ByteRange]]:
    """Split the concatenation of ``paths`` into ``parts`` runs of ranges of about equal
    bytes, each cut at a line start; run k is read after run k - 1. A run may be empty
    (a single line longer than a share) and may span files; empty files give no range."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes)
    # the cut points, as (file index, offset) in reading order
    cuts: list[tuple[int, int]] = []
    base = 0
    k = 1
    for i, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        while k < parts and k * total // parts < base + size:
            want = k * total // parts - base
            at = next_line_start(path, want, size)
            if cuts and cuts[-1][0] == i:
                at = max(at, cuts[-1][1])
            cuts.append((i, at))
            k += 1
        base += size
    while len(cuts) < parts - 1:
        cuts.append((len(paths) - 1, sizes[-1] if sizes else 0))
    bounds = [(0, 0), *cuts, (len(paths), 0)]
    runs: list[list[ByteRange]] = []
    for (fa, oa), (fb, ob) in zip(bounds, bounds[1:], strict=False):
        run: list[ByteRange] = []
        for i in range(fa, min(fb, len(paths) - 1) + 1):
            start = oa if i == fa else 0
            end = ob if i == fb else sizes[i]
            if end > start:
                run.append(ByteRange(paths[i], start, end))
        runs.append(run)
    return runs


class _AlignedRange:
    """A read-only stream over one range whose reads end on multiples of ``block`` from
    the start of the file (or at the range's end)."""

    def __init__(self, fh: object, start: int, end: int, block: int) -> None:
        self.fh, self.pos, self.end, self.block = fh, start, end, block
        fh.seek(start)  # type: ignore[attr-defined]

    def read(self, n: int = -1) -> bytes:
        stop = min((self.pos // self.block + 1) * self.block, self.end)
        if stop <= self.pos:
            return b""
        data = self.fh.read(stop - self.pos)  # type: ignore[attr-defined]
        self.pos += len(data)
        return data


def iter_range_blocks(r: ByteRange, stats: ReadStats,
                      block: int = BLOCK) -> Iterator[tuple[bytes, int]]:
    """:func:`blocks.iter_raw_blocks` of one range: the same lines (and pieces of over-long
    lines) as the whole-file reader yields for those bytes."""
    with open(r.path, "rb") as fh:
        yield from iter_raw_blocks(_AlignedRange(fh, r.start, r.end, block),  # type: ignore[arg-type]
                                   stats, block)
