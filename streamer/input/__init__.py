"""Bytes to lines: the batch reader of `discover` and the tailing sources of the service.

    lines.py         the one line cutter (decoding, clause-safe cuts of over-long lines)
    batch_reader.py  `discover`: files read once, in blocks of complete lines
    positions.py     file identity, resume positions, the Batch a source hands on
    changes.py       what a stat of a tailed file means (rotated, truncated, gone...)
    tailed.py        one tailed file: descriptor, identity, offsets, counters
    open_files.py    the I/O of tailing: glob scans, opening, change checks, reads
    files.py         FileSource: tailing the files matched by globs (the event loop side)
    stdin.py         StdinSource: standard input as a source
    redis_stream.py  RedisStreamSource: a Redis stream read by a consumer group (the
                     client, redis-py, is imported only when it runs)

This layer knows files, descriptors and positions, never the engine: it does not import
streamer.core.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.input.files import FileSource
    from streamer.input.positions import Batch, FilePosition, RedisPosition, StdinPosition
    from streamer.input.redis_stream import RedisStreamSource
    from streamer.input.stdin import StdinSource

    #: what the service runs as a source
    Source = FileSource | StdinSource | RedisStreamSource

#: name -> module that defines it. Imported on first use (PEP 562): `discover` imports
#: only batch_reader, and the tailing sources bring in asyncio (~70 ms of its start-up)
_LAZY = {"Batch": "positions", "FilePosition": "positions", "FileSource": "files",
         "RedisPosition": "positions", "RedisStreamSource": "redis_stream",
         "StdinPosition": "positions", "StdinSource": "stdin"}


def __getattr__(name: str) -> Any:
    if name == "Source":
        return __getattr__("FileSource") | __getattr__("StdinSource") | \
            __getattr__("RedisStreamSource")
    if name in _LAZY:
        value = getattr(import_module(f"streamer.input.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Batch", "FilePosition", "FileSource", "RedisPosition", "RedisStreamSource",
           "Source", "StdinPosition", "StdinSource"]
