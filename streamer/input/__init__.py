"""Bytes to lines: the batch reader of `discover` and the tailing sources of the service.

    lines.py         the one line cutter (decoding, clause-safe cuts of over-long lines)
    batch_reader.py  `discover`: files read once, in blocks of complete lines
    positions.py     file identity, resume positions, the Batch a source hands on
    changes.py       what a stat of a tailed file means (rotated, truncated, gone...)
    tailed.py        one tailed file: descriptor, identity, offsets, counters
    open_files.py    the I/O of tailing: glob scans, opening, change checks, reads
    files.py         FileSource: tailing the files matched by globs (the event loop side)
    stdin.py         StdinSource: standard input as a source

This layer knows files, descriptors and positions, never the engine: it does not import
streamer.core.
"""

from streamer.input.files import FileSource
from streamer.input.positions import Batch, FilePosition, StdinPosition
from streamer.input.stdin import StdinSource

__all__ = ["Batch", "FilePosition", "FileSource", "StdinPosition", "StdinSource"]
