"""Fixed-width byte rows in preallocated arrays: the storage primitives the candidate
table, its texts, its example pool and the once-listed registry share.

A text is kept as the UTF-8 bytes in a zero-padded row of a 2-D uint8 array with its
length beside it; these functions fit a text to a row, decode many rows in one call,
and pack rows without their padding for a snapshot (and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NL = 10


def resident(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed array whose pages are all touched now (np.zeros maps them lazily,
    so the resident size would grow as the table fills)."""
    a = np.empty(shape, dtype=dtype)
    a.fill(0)
    return a


def fit_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes at a character boundary."""
    b = text.encode("utf-8", "surrogatepass")
    if len(b) <= limit:
        return b
    cut = limit
    while cut > 0 and (b[cut] & 0xC0) == 0x80:  # b[cut] continues the previous character
        cut -= 1
    return b[:cut]


def decode_rows(rows: np.ndarray, lens: np.ndarray) -> list[str]:
    """The UTF-8 strings in the first ``lens[i]`` bytes of each row of ``rows``
    (zero-padded), decoded in one call: rows are joined with a newline, which no
    stored text contains. O(n * width) numpy work and one ``bytes.decode``."""
    n = len(rows)
    if n == 0:
        return []
    width = rows.shape[1]
    lens = lens.astype(np.int64)
    buf = np.zeros((n, width + 1), np.uint8)
    buf[:, :width] = rows
    buf[np.arange(n), lens] = _NL
    flat = buf[np.arange(width + 1) <= lens[:, None]].tobytes()
    out = flat.decode("utf-8", "surrogatepass").split("\n")
    if len(out) == n + 1:
        return out[:-1]
    return [bytes(r[:k]).decode("utf-8", "surrogatepass")  # a newline inside: row by row
            for r, k in zip(rows, lens.tolist(), strict=True)]


def fill_rows(out: np.ndarray, rows: np.ndarray, data: list[bytes],
              lens: np.ndarray) -> None:
    """Write ``data[i]`` (``lens[i]`` bytes) at the start of row ``rows[i]`` of ``out``
    (the rows are zero beforehand, every item fits its row), in one scatter."""
    flat = np.frombuffer(b"".join(data), np.uint8)
    out[np.repeat(rows, lens), np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)] \
        = flat


def pack_rows(rows: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The first lens[...] bytes of each row (last axis), concatenated in order."""
    # rows are zero-padded and UTF-8 has no zero byte but for U+0000, which stored
    # texts and contexts do not contain: the nonzero bytes are the text (2.5x faster
    # than a mask from the lengths, and this runs while ingestion waits for a snapshot)
    flat = rows[rows != 0]
    if len(flat) == int(lens.sum(dtype=np.int64)):
        return flat
    return rows[np.arange(rows.shape[-1]) < lens[..., None]]


def unpack_rows(flat: np.ndarray, lens: np.ndarray, out: np.ndarray) -> None:
    """Inverse of pack_rows into ``out`` (zero padding restored)."""
    mask = np.arange(out.shape[-1]) < lens[..., None]
    flat = np.asarray(flat, np.uint8)
    if flat.shape != (int(np.count_nonzero(mask)),):
        raise ValueError("packed bytes disagree with their lengths")
    out[...] = 0
    out[mask] = flat
