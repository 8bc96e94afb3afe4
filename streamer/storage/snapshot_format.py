"""Snapshot byte format: one file holding a dict of values and numpy arrays.

This module reads and writes ONE snapshot file; which files a directory holds, and which
one to load, is :mod:`streamer.storage.snapshot_store`. It knows nothing about the engine:
it stores any dict of ints, floats, strs, bytes, bools, None, lists, dicts and numpy
arrays.

File format, version 2
======================

All fixed-width integers are unsigned big-endian. A file is exactly
``16 + H + P`` bytes::

    offset     size  content
    0          8     magic b"STRMSNAP"
    8          4     H, header length in bytes (uint32; at most 16 MiB)
    12         4     zlib.crc32 of the H header bytes (uint32)
    16         H     header: one msgpack map with str keys (below)
    16+H       P     payload as stored: one zstd frame, P = header["payload_length"]

Header keys (every format version keeps the 16-byte prefix and a msgpack map holding
``format_version``, so an old reader can say "too new" instead of "corrupt"):

    format_version      int    2. Versions other than 1 and 2 raise SnapshotVersionError.
    created             float  unix seconds (time.time()) when the write started
    streamer_version    str    streamer.__version__ of the writer ("0" if unknown)
    fingerprint         str    caller's hash of the engine configuration that shapes the state
    metadata            map    caller's metadata: the same values as the state (see
                               Values below, tuples as ExtType 2) except arrays
    checksum_algorithm  str    "sha256"
    compression         str    "zstd"
    tree_length         int    T, bytes of the msgpack tree at the start of the raw payload
    raw_length          int    R, bytes of the raw (uncompressed) payload
    payload_length      int    P, bytes of the payload as stored (compressed)
    checksum            str    64 lowercase hex digits: SHA-256 of the P stored bytes

The writer emits the last four keys last, the lengths as msgpack uint64 (0xcf + 8 bytes)
and ``checksum`` as a 64-character str8, so the header has the same length before and
after the values are known: it writes a placeholder header (with CRC 0), streams the
payload while compressing and hashing it, then seeks back and rewrites the prefix and
header. Readers accept any valid msgpack encoding of the header.

Raw payload (R bytes; on disk it is the single zstd frame that decompresses to it,
level ZSTD_LEVEL, single-threaded, with zstd's own content checksum)::

    [0, T)    the tree: one msgpack map, the state dict. bin and str are distinct
              (use_bin_type); map keys are any hashable value allowed under Values.
              Two extension types (msgpack ExtType, ext 8/16/32 encoding):
              code 2, a tuple: its data is the msgpack array of its items (same rules,
                  recursively), so tuples - and dicts with tuple keys - load back as such.
              code 3, an int outside -2**63 .. 2**64-1: its data is the two's complement
                  big-endian bytes, bit_length // 8 + 1 of them.
              code 1, a numpy array: its data is the msgpack array
                  [dtype, shape, offset, nbytes]:
                  dtype   str        numpy ``dtype.str`` with explicit byte order, e.g. "<u4"
                  shape   list of int
                  offset  int        start of the array's bytes, counted from D (below);
                                     a multiple of 64
                  nbytes  int        itemsize * prod(shape)
                  The array's bytes are not in the tree but in the array section.
    [T, R)    the array section. D = T rounded up to a multiple of 64 (raw payload
              offsets). Each array's raw bytes, C order, lie at raw offset D + offset, in
              the order the tree mentions the arrays, each array starting at the next
              multiple of 64 after the previous one ends. Gaps are zero bytes. The raw
              payload ends where the last array ends (or at T without arrays).

Version 1 (still read): no ``compression`` and ``raw_length`` keys; the payload is stored
raw (P = R), the checksum covers it, and D is counted in file offsets: the first file
offset >= 16 + H + T that is a multiple of 64 (the arrays were memory-mappable).

Why compress: the state is dominated by the count-min sketch, allocated at the memory
budget and mostly zero until a great deal of text has been read (176 MiB raw at the
default 256MB budget; ~1 MiB compressed after a few hundred lines, ~130x smaller), and a
service meant to run for months writes one snapshot per interval. zstd level 3 runs at
several hundred MB/s on one core on such data and decompresses faster still; streaming
keeps memory bounded both ways. Compressing costs CPU in the snapshot thread, not in
the ingestion pause (the state copy), which is unchanged.

Why the checksum covers the stored (compressed) bytes rather than the raw payload: it is
the bytes on disk that rot, tear or get truncated, so verifying them needs no
decompression (``inspect --verify``, retention's checks stay O(stored bytes)), and
damage is caught before a decompressor is fed garbage. A bug in the codec itself would
not be caught by it; zstd's frame checksum (XXH64 of the raw content, checked while
decompressing) covers that, and the loader also checks that exactly R raw bytes come out.

The loader decodes the small tree first, allocates each array with ``np.empty`` and
decompresses (version 1: ``readinto``) the file straight into it while hashing the stored
bytes. Peak memory while loading is therefore the size of the state itself plus zstd's
window and an 8 MiB buffer (not 2-3 times it, as with msgpack ext data copied to bytes
and then to a writable array), the arrays are writable and own their memory, and
``inspect_snapshot`` summarises the state by decompressing only the tree.

Why SHA-256 over the payload: it must detect torn or stale pages, truncation and bit rot in
payloads of up to hundreds of MB. CRC-32 leaves a 2**-32 miss chance for random damage and
its burst-error guarantees only hold for short messages; a cryptographic digest has no
structural blind spots and also identifies content (two snapshots with the same checksum
hold the same state, useful when merging). With SHA-NI (most x86 since ~2017, ARMv8 crypto)
hashlib does ~1.5 GB/s. hashlib and zstandard release the GIL, so hashing and compressing
in the daemon's worker thread do not stall the event loop. The short header gets CRC-32,
which is strong for short messages and keeps a flipped bit in the fingerprint from being
reported as a configuration change.

Values: None, bool, int (any size), float, str, bytes, list, tuple, dict and numpy arrays
round-trip exactly (arrays in C order, with the stored dtype, byte order included; an array
referenced twice is stored twice). Numpy scalars come back as Python scalars and subclasses
as their base type (Counter -> dict, IntEnum -> int). Arrays of object or structured dtype,
sets, datetimes and other objects raise TypeError when writing, so a snapshot that was
written can always be read. Cost: lists, dicts and scalars are packed and decoded by
msgpack's C code (~0.3 us per item); a tuple costs a few microseconds (one nested msgpack
call each), so bulk data belongs in lists or, better, numpy arrays.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np
import zstandard

from streamer import __version__
from streamer.storage.atomic import atomic_write

MAGIC = b"STRMSNAP"
FORMAT_VERSION = 2
#: Versions this reader loads: 1 (uncompressed payload) and 2 (zstd-compressed payload).
READABLE_VERSIONS = (1, 2)
COMPRESSION = "zstd"
#: zstd level of the payload: level 3 (zstd's default) compresses the mostly-zero sketch
#: ~30x at several hundred MB/s on one core; higher levels cost CPU for a few percent.
ZSTD_LEVEL = 3
CHECKSUM_ALGORITHM = "sha256"
ARRAY_EXT_CODE = 1
TUPLE_EXT_CODE = 2
BIGINT_EXT_CODE = 3
#: Array data starts at file offsets that are multiples of this (bytes).
ALIGN = 64
#: the form of a dtype the writer stores (numpy's dtype.str): byte order, kind, size
_DTYPE_STR = re.compile(r"[<>|][biufcmMSUV][0-9]+(\[[a-zA-Z0-9]+\])?")
#: Largest header accepted (bytes); guards against allocating garbage lengths.
MAX_HEADER_LENGTH = 16 * 2**20
_PREFIX = struct.Struct(">8sII")  # magic, header length, header crc32
#: Read/write/hash granularity for array data (bytes).
_CHUNK = 8 * 2**20
_STREAMER_VERSION = __version__
_DIGEST_HEX_LEN = 64
#: Structural dicts (at most _STREAM_KEYS keys, nested at most _STREAM_DEPTH deep) are
#: written key by key, so the packer holds one sub-value's encoding at a time, not the
#: whole tree's. Larger dicts (word -> count tables) are packed in one C call: walking
#: them key by key in Python would cost ~3 us per entry.
_STREAM_DEPTH = 3
_STREAM_KEYS = 256


# --------------------------------------------------------------------------- errors


class SnapshotError(Exception):
    """A snapshot file cannot be used.

    ``path`` is the file, ``message`` the explanation without the path, ``reason`` a short
    slug (used in the ``.bad-<reason>`` name the loader gives the file).
    """

    reason = "error"

    def __init__(self, path: str | os.PathLike[str], message: str, reason: str | None = None):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
        self.message = message
        if reason is not None:
            self.reason = reason


class NotASnapshot(SnapshotError):
    """The file is empty or is not a snapshot at all (wrong magic bytes)."""

    reason = "foreign"


class SnapshotCorrupt(SnapshotError):
    """A snapshot that is truncated, fails its checksum or cannot be decoded."""

    reason = "corrupt"


class SnapshotVersionError(SnapshotError):
    """A snapshot written in a format version this streamer does not know (a newer one)."""

    reason = "version"

    def __init__(self, path: str | os.PathLike[str], version: int):
        super().__init__(
            path,
            f"snapshot format version {version} is newer than this streamer "
            f"{_STREAMER_VERSION} supports (<= {FORMAT_VERSION})",
        )
        self.version = version


class FingerprintMismatch(SnapshotError):
    """A good snapshot made with an engine configuration that shapes the state differently.

    Not corruption: the file is left in place. The daemon exits with status 2 unless it
    was started with ``--reset-state``.
    """

    reason = "fingerprint"

    def __init__(self, path: str | os.PathLike[str], expected: str, found: str):
        super().__init__(
            path,
            f"snapshot was made with configuration fingerprint {found!r}, "
            f"the current configuration has {expected!r}",
        )
        self.expected = expected
        self.found = found


#: Problems that make the loader set a file aside and fall back to an older one.
UNUSABLE = (NotASnapshot, SnapshotCorrupt, SnapshotVersionError)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A loaded snapshot: its file, its header (see the module docstring) and the state."""

    path: Path
    header: dict[str, Any]
    state: dict[str, Any]


# --------------------------------------------------------------------------- writing


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _check_array(arr: np.ndarray) -> None:
    dt = arr.dtype
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        raise TypeError(f"cannot snapshot a numpy array of dtype {dt} (not raw fixed-size data)")
    if np.dtype(dt.str) != dt:
        raise TypeError(f"cannot snapshot a numpy array of dtype {dt}: {dt.str!r} loses details")


#: Subclasses of these are stored as the base type (Counter -> dict, IntEnum -> int, ...).
_PLAIN_BASES: tuple[type, ...] = (int, float, str, bytes, dict, list)


def _make_default(on_array: Callable[[np.ndarray], Any] | None) -> Callable[[Any], Any]:
    """msgpack ``default`` hook for a Packer with ``strict_types=True``.

    strict_types sends tuples and subclasses of the built-in types here instead of packing
    them itself. Tuples become ExtType 2 so that they load back as tuples: a tuple packed
    as a plain msgpack array would load as a list, and a dict with tuple keys (natural for
    n-grams) would then fail to load at all (unhashable key) - a snapshot the writer
    accepted but the loader must set aside. msgpack also calls this for ints beyond 64
    bits (numpy's PCG64 generator state holds 128-bit ints): ExtType 3. Arrays go to
    ``on_array`` (None: refused, as in metadata); numpy scalars become Python scalars;
    anything else is a TypeError.
    """

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if on_array is None:
                raise TypeError("numpy arrays are not allowed in snapshot metadata")
            return on_array(obj)
        if isinstance(obj, tuple):
            return msgpack.ExtType(
                TUPLE_EXT_CODE,
                msgpack.packb(list(obj), default=default, use_bin_type=True, strict_types=True),
            )
        if type(obj) is int:  # msgpack overflowed: beyond 64 bits
            return msgpack.ExtType(
                BIGINT_EXT_CODE, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True)
            )
        if isinstance(obj, np.bool_ | np.integer | np.floating):
            return obj.item()
        for base in _PLAIN_BASES:
            if isinstance(obj, base):
                return base(obj)
        raise TypeError(f"cannot snapshot a value of type {type(obj).__name__}: {obj!r:.80}")

    return default


def _encode_header(fields: dict[str, Any], lengths: dict[str, int], checksum: str) -> bytes:
    """Header bytes whose length does not depend on the values written last (``lengths``
    as uint64, then the checksum)."""
    if len(checksum) != _DIGEST_HEX_LEN:
        raise ValueError("checksum must be 64 hex digits")
    packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_make_default(None))
    parts = [packer.pack_map_header(len(fields) + len(lengths) + 1)]
    for key, value in fields.items():
        parts += [packer.pack(key), packer.pack(value)]
    for key, n in lengths.items():
        parts += [packer.pack(key), b"\xcf" + n.to_bytes(8, "big")]
    parts += [packer.pack("checksum"), packer.pack(checksum)]
    return b"".join(parts)


class _DiskWriter:
    """The file end of the payload: hashes and counts the bytes that reach the disk."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.hash = hashlib.sha256()
        self.length = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        self.f.write(data)
        self.length += len(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()


class _PayloadWriter:
    """Takes the raw payload (tree and array section), counts it and compresses it to a
    :class:`_DiskWriter`. Single-threaded zstd: the daemon writes snapshots in a thread
    of their own, and extra compression threads would take cores from ingestion."""

    def __init__(self, f: BinaryIO):
        self.disk = _DiskWriter(f)
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True) \
            .stream_writer(self.disk, closefd=False)
        self.length = 0

    def write(self, data: bytes | memoryview) -> None:
        self._zstd.write(data)
        self.length += len(data)

    def pad_to(self, length: int) -> None:
        if length > self.length:
            self.write(bytes(length - self.length))

    def finish(self) -> None:
        self._zstd.flush(zstandard.FLUSH_FRAME)


def _write_stream(f: BinaryIO, state: dict[str, Any], fingerprint: str,
                  metadata: dict[str, Any]) -> None:
    """Write a complete snapshot to ``f`` (positioned at 0) in one pass over the state."""
    fields = {
        "format_version": FORMAT_VERSION,
        "created": time.time(),
        "streamer_version": _STREAMER_VERSION,
        "fingerprint": fingerprint,
        "metadata": metadata,
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "compression": COMPRESSION,
    }
    lengths = dict.fromkeys(("tree_length", "raw_length", "payload_length"), 0)
    header = _encode_header(fields, lengths, "0" * _DIGEST_HEX_LEN)
    if len(header) > MAX_HEADER_LENGTH:
        raise ValueError(f"snapshot metadata too large: header of {len(header)} bytes")
    f.write(_PREFIX.pack(MAGIC, len(header), 0))
    f.write(header)

    out = _PayloadWriter(f)
    arrays: list[np.ndarray] = []
    next_offset = 0

    def on_array(arr: np.ndarray) -> msgpack.ExtType:
        nonlocal next_offset
        _check_array(arr)
        desc = [arr.dtype.str, list(arr.shape), next_offset, arr.nbytes]
        arrays.append(arr)
        next_offset = _align(next_offset + arr.nbytes)
        return msgpack.ExtType(ARRAY_EXT_CODE, msgpack.packb(desc))

    packer = msgpack.Packer(default=_make_default(on_array), use_bin_type=True,
                            autoreset=True, strict_types=True)

    def emit(obj: Any, depth: int) -> None:
        if isinstance(obj, dict) and depth < _STREAM_DEPTH and len(obj) <= _STREAM_KEYS:
            out.write(packer.pack_map_header(len(obj)))
            for key, value in obj.items():
                out.write(packer.pack(key))
                emit(value, depth + 1)
        else:
            out.write(packer.pack(obj))

    try:
        emit(state, 0)
        tree_length = out.length
        data_start = _align(tree_length)
        offset = 0
        for arr in arrays:
            out.pad_to(data_start + offset)
            nbytes = arr.nbytes
            if nbytes:
                flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
                mv = memoryview(flat)
                for i in range(0, nbytes, _CHUNK):
                    out.write(mv[i : i + _CHUNK])
            offset = _align(offset + nbytes)
        out.finish()
    finally:
        # emit and the packer's default hook are recursive closures, so they form
        # reference cycles, and through on_array they reach every array of the state:
        # without this the state would stay alive until the cyclic collector runs, and
        # the memory freed after a snapshot would not be there to return to the OS
        arrays.clear()
    lengths = {"tree_length": tree_length, "raw_length": out.length,
               "payload_length": out.disk.length}
    header = _encode_header(fields, lengths, out.disk.hash.hexdigest())
    f.seek(0)
    f.write(_PREFIX.pack(MAGIC, len(header), zlib.crc32(header)))
    f.write(header)


def temp_name(final: str) -> str:
    """Name of the temporary file a write to ``final`` goes through: ``.tmp-<final>.<pid>``
    (hidden, and it names its writer so that a leftover can be told from a live write)."""
    return f".tmp-{final}.{os.getpid()}"


def write_file(path: str | os.PathLike[str], state: dict[str, Any], *, fingerprint: str,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write one snapshot to ``path`` atomically; return the path.

    Used for explicit paths (``discover --save-state``, ``snapshot merge -o``) and by
    :func:`streamer.storage.snapshot_store.write_snapshot`. The file goes through
    :func:`temp_name` in the same directory and
    :func:`streamer.storage.atomic.atomic_write`: after a crash at any moment ``path``
    is either the old file or the complete new one. Raises TypeError for values that
    cannot be stored; on any error the temporary file is removed.

    ``state`` must not be mutated while this runs: the arrays are written from the
    caller's memory without copying them, hashing each chunk as it is written. Memory
    use beyond the state is the msgpack encoding of the largest non-array value packed
    in one piece (a list, or a dict of more than 256 keys), a contiguous copy of any
    non-contiguous array, and the zstd compressor's context (a few MiB at level 3).
    CPU: zstd level 3 over the raw payload plus SHA-256 over the compressed bytes.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    if not isinstance(fingerprint, str):
        raise TypeError("fingerprint must be a str")
    final = Path(path)
    with atomic_write(final, temp_name=temp_name(final.name)) as f:
        _write_stream(f, state, fingerprint, dict(metadata or {}))
    return final


# --------------------------------------------------------------------------- reading


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    # FileIO.read may return fewer bytes than asked only at end of file.
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_header(f: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
    """Read and validate the prefix and header; return (header, payload file offset)."""
    prefix = _read_exact(f, _PREFIX.size)
    if not prefix:
        raise NotASnapshot(path, "empty file (0 bytes)", reason="empty")
    if not MAGIC.startswith(prefix[: len(MAGIC)]):
        raise NotASnapshot(path, f"not a snapshot file (starts with {prefix[:8]!r})")
    if len(prefix) < _PREFIX.size:
        raise SnapshotCorrupt(path, f"truncated: only {len(prefix)} bytes", reason="truncated")
    _, length, crc = _PREFIX.unpack(prefix)
    if length > MAX_HEADER_LENGTH:
        raise SnapshotCorrupt(path, f"implausible header length {length} bytes")
    raw = _read_exact(f, length)
    if len(raw) < length:
        raise SnapshotCorrupt(
            path, f"truncated inside the header ({_PREFIX.size + len(raw)} bytes)",
            reason="truncated",
        )
    if zlib.crc32(raw) != crc:
        raise SnapshotCorrupt(path, "header checksum mismatch (damaged header)")
    try:
        header = _unpack(raw, _tuple_hook)
    except Exception as e:  # any decoding failure of a CRC-clean header means a bad writer
        raise SnapshotCorrupt(path, f"undecodable header: {e}") from e
    if not isinstance(header, dict):
        raise SnapshotCorrupt(path, "header is not a map")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise SnapshotCorrupt(path, f"bad format_version {version!r}")
    if version not in READABLE_VERSIONS:
        raise SnapshotVersionError(path, version)
    for key, types in _HEADER_TYPES.items():
        if not isinstance(header.get(key), types) or isinstance(header.get(key), bool):
            raise SnapshotCorrupt(path, f"header field {key!r} missing or of the wrong type")
    if header["checksum_algorithm"] != CHECKSUM_ALGORITHM:
        raise SnapshotCorrupt(
            path, f"unknown checksum algorithm {header['checksum_algorithm']!r}"
        )
    if version >= 2:
        for key, types in _V2_HEADER_TYPES.items():
            if not isinstance(header.get(key), types) or isinstance(header.get(key), bool):
                raise SnapshotCorrupt(path, f"header field {key!r} missing or of the wrong type")
        if header["compression"] != COMPRESSION:
            raise SnapshotCorrupt(path, f"unknown compression {header['compression']!r}")
    if not 0 <= header["tree_length"] <= raw_length(header):
        raise SnapshotCorrupt(path, "header lengths are inconsistent")
    return header, _PREFIX.size + length


def raw_length(header: dict[str, Any]) -> int:
    """Bytes of the uncompressed payload (the tree and the array section)."""
    if header["format_version"] >= 2:
        return int(header["raw_length"])
    return int(header["payload_length"])


def compression(header: dict[str, Any]) -> str:
    """How the payload is stored on disk: "zstd" (version 2) or "none" (version 1)."""
    return str(header["compression"]) if header["format_version"] >= 2 else "none"


def _data_start(header: dict[str, Any], payload_start: int) -> int:
    """Start of the array section, counted in uncompressed payload bytes from its start.
    Version 1 aligns it to a file offset (its arrays were memory-mappable), version 2 to
    the start of the uncompressed payload."""
    tree_length = header["tree_length"]
    if header["format_version"] >= 2:
        return _align(tree_length)
    return _align(payload_start + tree_length) - payload_start


_HEADER_TYPES: dict[str, type | tuple[type, ...]] = {
    "created": (int, float),
    "streamer_version": str,
    "fingerprint": str,
    "metadata": dict,
    "checksum_algorithm": str,
    "tree_length": int,
    "payload_length": int,
    "checksum": str,
}
_V2_HEADER_TYPES: dict[str, type | tuple[type, ...]] = {
    "compression": str,
    "raw_length": int,
}


def check_size(path: Path, header: dict[str, Any], payload_start: int, size: int) -> None:
    expected = payload_start + header["payload_length"]
    if size < expected:
        raise SnapshotCorrupt(
            path,
            f"truncated: {size} bytes on disk, the header promises {expected}",
            reason="truncated",
        )
    if size > expected:
        raise SnapshotCorrupt(
            path, f"{size - expected} bytes of trailing data after the payload"
        )


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """An array descriptor from the tree, validated but not loaded."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _unpack(data: bytes | bytearray, ext_hook: Callable[[int, bytes], Any]) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True,
                           ext_hook=ext_hook)


def _tuple_hook(code: int, data: bytes) -> Any:
    """msgpack ``ext_hook`` for the header: tuples and big ints, no arrays."""
    if code == TUPLE_EXT_CODE:
        return tuple(_unpack(data, _tuple_hook))
    if code == BIGINT_EXT_CODE:
        return _bigint(data)
    raise ValueError(f"unexpected msgpack extension type {code}")


def _bigint(data: bytes) -> int:
    if not data:
        raise ValueError("empty big integer")
    return int.from_bytes(data, "big", signed=True)


def _ext_hook(data_start: int, raw_length: int,
              make: Callable[[ArrayRef], Any]) -> Callable[[int, bytes], Any]:
    """msgpack ``ext_hook`` for the tree: tuples, and array descriptors validated against
    the file layout and handed to ``make``."""
    expected = 0

    def hook(code: int, data: bytes) -> Any:
        nonlocal expected
        if code == TUPLE_EXT_CODE:
            return tuple(_unpack(data, hook))
        if code == BIGINT_EXT_CODE:
            return _bigint(data)
        if code != ARRAY_EXT_CODE:
            raise ValueError(f"unknown msgpack extension type {code}")
        desc = msgpack.unpackb(data, raw=False)
        if not (isinstance(desc, list) and len(desc) == 4):
            raise ValueError("malformed array descriptor")
        dtype_str, shape, offset, nbytes = desc
        if not (isinstance(dtype_str, str) and isinstance(shape, list)
                and all(type(n) is int and n >= 0 for n in shape)):
            raise ValueError("malformed array descriptor")
        if not _DTYPE_STR.fullmatch(dtype_str):
            # the writer stores dtype.str ("<u4", "|u1", "|S12"); anything else is damage
            # (and np.dtype would accept deprecated aliases or object types)
            raise ValueError(f"dtype {dtype_str!r} in array descriptor")
        dt = np.dtype(dtype_str)
        if offset != expected or nbytes != dt.itemsize * math.prod(shape):
            raise ValueError("array descriptor disagrees with the file layout")
        if data_start + offset + nbytes > raw_length:
            raise ValueError("array data beyond the end of the payload")
        expected = _align(offset + nbytes)
        return make(ArrayRef(dt, tuple(shape), offset, nbytes))

    return hook


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding a large tree.

    Decoding allocates millions of containers, none of them garbage, and the collector
    would keep scanning them: about an eighth of the decoding time on large trees.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _DiskReader:
    """Reads the ``length`` payload bytes that follow the header, hashing every byte read.
    Reading past them is end of file; a file that ends before them is truncated."""

    def __init__(self, f: BinaryIO, length: int, path: Path):
        self.f = f
        self.remaining = length
        self.path = path
        self.hash = hashlib.sha256()

    def _short(self) -> SnapshotCorrupt:
        return SnapshotCorrupt(self.path, "truncated while reading the payload",
                               reason="truncated")

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")[: self.remaining]
        if not len(view):
            return 0
        n = self.f.readinto(view)
        if not n:
            raise self._short()
        self.hash.update(view[:n])
        self.remaining -= n
        return n

    def read(self, size: int = -1) -> bytes:
        n = self.remaining if size < 0 else min(size, self.remaining)
        data = _read_exact(self.f, n)
        if len(data) < n:
            raise self._short()
        self.hash.update(data)
        self.remaining -= n
        return data

    def drain(self) -> None:
        """Hash the rest of the payload without keeping it."""
        buf = bytearray(min(self.remaining, _CHUNK))
        while self.remaining:
            self.readinto(buf)


def _raw_reader(disk: _DiskReader, header: dict[str, Any]) -> Any:
    """A reader of the uncompressed payload over ``disk``: ``disk`` itself in version 1,
    a streaming zstd decompressor in version 2 (it reads ~128 KiB of compressed bytes at
    a time, so memory stays bounded whatever the payload's size)."""
    if compression(header) == "none":
        return disk
    return zstandard.ZstdDecompressor().stream_reader(disk, closefd=False)


def _read_into(src: Any, buf: memoryview, path: Path) -> None:
    """Fill ``buf`` from the payload reader ``src``; an early end is truncation."""
    pos = 0
    while pos < len(buf):
        n = src.readinto(buf[pos : pos + _CHUNK])
        if not n:
            raise SnapshotCorrupt(path, "truncated while reading the payload", reason="truncated")
        pos += n


def _skip(src: Any, n: int, path: Path) -> None:
    """Read and drop the next ``n`` bytes of ``src``."""
    buf = bytearray(min(n, _CHUNK))
    while n > 0:
        view = memoryview(buf)[: min(n, len(buf))]
        _read_into(src, view, path)
        n -= len(view)


def _read_payload(f: BinaryIO, path: Path, header: dict[str, Any], payload_start: int) -> Any:
    """Read, decode and verify the payload that follows the header in ``f``.

    The checksum is decided first: a damaged payload is reported as a checksum mismatch
    even when the damage also broke decompression or decoding."""
    tree_length = header["tree_length"]
    total = raw_length(header)
    disk = _DiskReader(f, header["payload_length"], path)
    raw = _raw_reader(disk, header)
    data_start = _data_start(header, payload_start)

    fills: list[tuple[int, np.ndarray]] = []

    def make(ref: ArrayRef) -> np.ndarray:
        arr = np.empty(ref.shape, ref.dtype)
        fills.append((data_start + ref.offset, arr))
        return arr

    error: Exception | None = None
    state: Any = None
    try:
        tree = bytearray(tree_length)
        _read_into(raw, memoryview(tree), path)
        try:
            with _gc_paused():
                state = _unpack(tree, _ext_hook(data_start, total, make))
            if not isinstance(state, dict):
                raise ValueError(f"the state is a {type(state).__name__}, not a map")
        except Exception as e:  # decoding garbage can fail in many ways
            error, fills = e, []
        pos = tree_length
        for start, arr in fills:
            _skip(raw, start - pos, path)
            if arr.nbytes:
                _read_into(raw, memoryview(arr.reshape(-1).view(np.uint8)), path)
            pos = start + arr.nbytes
        _skip(raw, total - pos, path)
        if raw is not disk and raw.read(1):
            raise SnapshotCorrupt(path, "the compressed payload holds more data than its "
                                        "header says")
    except (SnapshotCorrupt, zstandard.ZstdError) as e:
        error = e
    finally:
        # the ext hook is a recursive closure (a reference cycle) that reaches `fills`:
        # cleared, the arrays live exactly as long as the caller keeps the state
        fills.clear()
    disk.drain()
    if disk.hash.hexdigest() != header["checksum"]:
        raise SnapshotCorrupt(path, "payload checksum mismatch (damaged data)", reason="checksum")
    if isinstance(error, SnapshotCorrupt):
        raise error
    if isinstance(error, zstandard.ZstdError):
        raise SnapshotCorrupt(path, f"cannot decompress the payload: {error}") from error
    if error is not None:
        raise SnapshotCorrupt(path, f"undecodable payload: {error}") from error
    return state


def load_file(path: str | os.PathLike[str], *, fingerprint: str | None = None) -> LoadResult:
    """Load and verify one snapshot file (format version 1 or 2).

    Raises NotASnapshot (empty or foreign file), SnapshotCorrupt (truncated, checksum
    mismatch, undecodable), SnapshotVersionError (newer format), FingerprintMismatch (when
    ``fingerprint`` is given and differs; checked before the payload is read) and OSError
    for files that cannot be read. Arrays in the state are writable and own their memory.
    Memory: the state itself plus zstd's window and one 8 MiB buffer.
    """
    path = Path(path)
    with open(path, "rb", buffering=0) as f:
        header, payload_start = read_header(f, path)
        check_size(path, header, payload_start, os.fstat(f.fileno()).st_size)
        if fingerprint is not None and header["fingerprint"] != fingerprint:
            raise FingerprintMismatch(path, fingerprint, header["fingerprint"])
        state = _read_payload(f, path, header, payload_start)
    return LoadResult(path, header, state)


def scan_tree(f: BinaryIO, path: Path, header: dict[str, Any],
              payload_start: int) -> tuple[dict[Any, Any], list[ArrayRef]]:
    """Decode the tree without loading any array: (state with ArrayRef in place of each
    array, the ArrayRefs in file order). ``f`` must be positioned at ``payload_start``.
    Cost: reading (and decompressing) the tree, the header's ``tree_length`` bytes,
    whatever the size of the arrays. Raises SnapshotCorrupt when the tree is cut short
    or cannot be decoded; the checksum is not verified (:func:`verify_payload`).
    """
    disk = _DiskReader(f, header["payload_length"], path)
    data_start = _data_start(header, payload_start)
    tree = bytearray(header["tree_length"])
    refs: list[ArrayRef] = []

    def make(ref: ArrayRef) -> ArrayRef:
        refs.append(ref)
        return ref

    try:
        _read_into(_raw_reader(disk, header), memoryview(tree), path)
        with _gc_paused():
            state = _unpack(tree, _ext_hook(data_start, raw_length(header), make))
        if not isinstance(state, dict):
            raise ValueError(f"the state is a {type(state).__name__}, not a map")
    except SnapshotCorrupt:
        raise
    except Exception as e:  # decoding garbage can fail in many ways
        raise SnapshotCorrupt(path, f"undecodable payload: {e}") from e
    return state, refs


def verify_payload(f: BinaryIO, path: Path, header: dict[str, Any], payload_start: int) -> bool:
    """Whether the payload's SHA-256 matches the header's checksum. Reads (and hashes)
    the payload as stored, in chunks of 8 MiB, keeping none of it and decompressing
    nothing; raises SnapshotCorrupt if the file ends early."""
    f.seek(payload_start)
    disk = _DiskReader(f, header["payload_length"], path)
    disk.drain()
    return disk.hash.hexdigest() == header["checksum"]


def format_created(t: float) -> str:
    """ISO 8601 UTC for the header's ``created`` unix seconds (as given if out of
    datetime's range)."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return f"unix {t}"
