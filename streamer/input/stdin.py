"""Reading standard input (or any readable descriptor) as a source.

:class:`StdinSource` applies the line rules of :mod:`streamer.input.lines` to
``sys.stdin.buffer``. Its position is the number of bytes consumed; standard input cannot
be replayed, so ``restore`` only logs that it is ignoring the stored positions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
from typing import Any, BinaryIO

from streamer.input.lines import READ_SIZE, LineCounts, LineLimits, Lines, LineSplitter
from streamer.input.positions import Batch, StdinPosition

log = logging.getLogger(__name__)


class StdinSource:
    """Reads lines from standard input (or any readable file descriptor).

    Reads happen in a worker thread after ``select`` says data is ready (with a
    ``poll_interval`` timeout, so ``stop()`` is honoured promptly and no thread stays
    blocked on a silent terminal); the same line, long-line and decoding rules as files
    apply. ``run()`` returns at end of input, after handing out an unterminated last
    line. The position is the number of bytes consumed; it cannot be resumed, because
    standard input cannot be rewound (POSIX only: ``select`` on pipes).
    """

    def __init__(
        self,
        queue: asyncio.Queue[Batch],
        *,
        stream: BinaryIO | int | None = None,
        source_id: str = "stdin",
        max_line_bytes: int = 1 << 20,
        batch_lines: int = 2000,
        batch_bytes: int = 1 << 20,
        poll_interval: float = 0.2,
    ) -> None:
        self.limits = LineLimits(max_line_bytes, batch_lines, batch_bytes)
        self.queue = queue
        self.source_id = source_id
        self.poll_interval = poll_interval
        self._stream = stream
        self._splitter = LineSplitter(max_line_bytes)
        self._counts = LineCounts()
        self._committed = 0
        self._state = "open"
        self._stop_requested = False

    def restore(self, positions: list[dict[str, Any]]) -> None:
        """Standard input cannot be rewound: stored positions are logged and ignored."""
        if positions:
            log.info("%s: standard input cannot be resumed; starting fresh", self.source_id)

    async def run(self) -> None:
        """Read until end of input or ``stop()``."""
        stream = sys.stdin.buffer if self._stream is None else self._stream
        fd = stream if isinstance(stream, int) else stream.fileno()
        try:
            while not self._stop_requested:
                data = await asyncio.to_thread(self._read_available, fd)
                if data is None:
                    continue  # nothing within poll_interval
                self._counts.bytes_read += len(data)
                self._splitter.feed(data)
                while True:
                    out = Lines()
                    self._splitter.take_into(out, self.limits.batch_lines,
                                            self.limits.batch_bytes)
                    if not data and not out.full:  # end of input: the rest is a line too
                        piece = self._splitter.flush()
                        if piece is not None:
                            out.add(piece)
                    if out.lines:
                        await self._put(out)
                    if not out.full:
                        break
                if not data:
                    self._state = "eof"
                    log.info("%s: end of input after %d bytes", self.source_id,
                             self._counts.offset)
                    return
        finally:
            if self._state == "open":
                self._state = "stopped"

    async def _put(self, out: Lines) -> None:
        for at in self._counts.add(out):
            log.warning("%s: long line cut at offset %d: longer than %d bytes",
                        self.source_id, at, self.limits.max_line_bytes)
        position = StdinPosition(self._counts.offset)
        await self.queue.put(Batch(self.source_id, out.lines, position))

    def _read_available(self, fd: int) -> bytes | None:
        """Bytes ready now (b"" at end of input), or None if none came in time."""
        ready, _, _ = select.select([fd], [], [], self.poll_interval)
        if not ready:
            return None
        chunks: list[bytes] = []
        total = 0
        while total < self.limits.batch_bytes:
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if not select.select([fd], [], [], 0)[0]:
                break
        # End of input right after data is reported by the next call.
        return b"".join(chunks)

    def stop(self) -> None:
        """Ask ``run()`` to return (within ``poll_interval``)."""
        self._stop_requested = True

    def commit(self, position: StdinPosition) -> None:
        if not isinstance(position, StdinPosition):
            raise TypeError(f"not a StdinPosition: {position!r}")
        self._committed = position.offset

    def committed_positions(self) -> list[dict[str, Any]]:
        """Bytes consumed, for the record; ``restore`` cannot use them."""
        return [StdinPosition(self._committed).to_dict()]

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "source": self.source_id,
                "path": "<stdin>",
                "state": self._state,
                "offset": self._counts.offset,
                "committed_offset": self._committed,
                "bytes_read": self._counts.bytes_read,
                "lines": self._counts.lines,
                "replaced_bytes": self._counts.replaced_bytes,
                "long_lines": self._counts.long_lines,
            }
        ]
