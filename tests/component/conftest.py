"""The `start` fixture of the source tests: start(source_factory) -> source_harness.Harness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from source_harness import Harness

from streamer.input.positions import Batch


@pytest.fixture
async def start():
    """start(source_factory) -> Harness; every harness is stopped at teardown."""
    harnesses: list[Harness] = []

    def _start(make: Callable[[asyncio.Queue[Batch]], Any], *, maxsize: int = 64, **kw: Any):
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=maxsize)
        h = Harness(make(queue), queue, **kw)
        harnesses.append(h)
        return h

    yield _start
    for h in harnesses:
        if not h.run_task.done():
            await h.stop()
        h.consume_task.cancel()
