"""The process's heap: fixed glibc malloc thresholds and handing freed memory back.

A service that must hold a flat RSS for months, and a batch run that must stay under its
memory target, both free large numpy temporaries; glibc keeps such pages unless told
otherwise. Nothing else of streamer lives here: no I/O, no state. Elsewhere than glibc,
every function does nothing.
"""

from __future__ import annotations

import ctypes


def tune_malloc() -> None:
    """Fixed glibc malloc thresholds for a process that must keep a flat RSS.

    By default glibc raises its mmap threshold to the size of the largest mapped block
    freed so far (up to 32 MB) and its trim threshold to twice that. After the first
    freed array of a few MB, every later array up to that size comes from the heaps
    (fast: no page faults) but a heap then keeps up to 64 MB free at its top, per
    thread arena, and RSS creeps up. Fixed values keep the fast path (arrays below
    32 MB from the heaps) and return a heap's free top above 4 MB. A low mmap threshold
    instead (every array over 1 MB freshly mapped) would cost ingest rate in page
    faults (docs/decisions.md has the figures)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * 2**20)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3


def release_freed_memory() -> None:
    """Hand memory freed after a batch, a snapshot copy or a rescore back to the OS.

    glibc keeps freed heap pages otherwise: once a large array has been freed it serves
    arrays up to 32 MB from the heap instead of fresh mappings, and RSS would step up at
    every snapshot and at rescores that scored more candidates than before."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
