"""Running a tailing source against real files and a real event loop, for the source tests.

Nothing relies on a sleep for correctness: every wait polls a condition (lines delivered,
bytes read, scans done) with a deadline. Lines carry unique ids so that lost and
duplicated lines are both visible.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamer.input.files import FileSource
from streamer.input.positions import Batch

FAST = {"poll_interval": 0.01, "scan_interval": 0.05, "rotate_wait": 0.2}
DEADLINE = 10.0


def restoring(patterns: list[str], positions: list[dict], **kw: object
              ) -> Callable[[asyncio.Queue[Batch]], FileSource]:
    """A FileSource factory for start(): a fresh source resumed at ``positions``."""
    def make(q: asyncio.Queue[Batch]) -> FileSource:
        src = FileSource(patterns, q, **{**FAST, **kw})  # type: ignore[arg-type]
        src.restore(positions)
        return src

    return make


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``cond`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Harness:
    """Runs a source and a consumer that records lines and commits every batch."""

    def __init__(self, source: Any, queue: asyncio.Queue[Batch], commit: bool = True) -> None:
        self.source = source
        self.queue = queue
        self.commit = commit
        self.batches: list[Batch] = []
        self.lines: list[str] = []
        self.run_task = asyncio.create_task(source.run())
        self.consume_task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            batch = await self.queue.get()
            self.batches.append(batch)
            self.lines.extend(batch.lines)
            if self.commit:
                self.source.commit(batch.position)

    def file_status(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.source.status() if Path(s["path"]).name == name]

    def counter(self, name: str, key: str) -> Any:
        """``key`` of the first status entry of file ``name`` (None before it is open)."""
        found = self.file_status(name)
        return found[0][key] if found else None

    async def wait_lines(self, n: int) -> None:
        try:
            await wait_until(lambda: len(self.lines) >= n, f"{n} lines")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; have {len(self.lines)}") from None
        self.check_running()

    async def wait_scans(self, n: int = 3) -> None:
        """Let ``n`` more glob scans (and the polls between them) happen."""
        target = self.source.scans + n
        await wait_until(lambda: self.source.scans >= target, "scans")

    def check_running(self) -> None:
        if self.run_task.done():
            self.run_task.result()  # raise the source's exception
            raise AssertionError("source stopped")

    async def stop(self) -> None:
        """Stop the source, then let the consumer drain what it already queued."""
        self.source.stop()
        await asyncio.wait_for(self.run_task, DEADLINE)
        await wait_until(self.queue.empty, "queue drained")
        self.consume_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.consume_task


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def numbered(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(start, start + n)]


def text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def assert_exactly_once(got: list[str], expected: list[str]) -> None:
    dups = [line for line, c in Counter(got).items() if c > 1]
    assert not dups, f"duplicated: {dups[:5]}"
    missing = set(expected) - set(got)
    assert not missing, f"lost {len(missing)}: {sorted(missing)[:5]}"
    assert sorted(got) == sorted(expected)
