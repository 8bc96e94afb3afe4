"""Snapshot files: the daemon's whole state on disk, written atomically, loaded with fallback.

The daemon hands :func:`write_snapshot` a dict (the engine's ``state_dict()`` plus source
positions) between two batches, so the counts and the offsets stored together agree.
Restoring the newest good snapshot and resuming every source at its stored offset gives
exactly-once counting across restarts, crashes and ``kill -9``. This module knows nothing
about the engine: it stores any dict of ints, floats, strs, bytes, bools, None, lists, dicts
and numpy arrays.

File format, version 1
======================

All fixed-width integers are unsigned big-endian. A file is exactly
``16 + H + P`` bytes::

    offset     size  content
    0          8     magic b"STRMSNAP"
    8          4     H, header length in bytes (uint32; at most 16 MiB)
    12         4     zlib.crc32 of the H header bytes (uint32)
    16         H     header: one msgpack map with str keys (below)
    16+H       P     payload, P = header["payload_length"]

Header keys (every format version keeps the 16-byte prefix and a msgpack map holding
``format_version``, so an old reader can say "too new" instead of "corrupt"):

    format_version      int    1. A larger value raises SnapshotVersionError.
    created             float  unix seconds (time.time()) when the write started
    streamer_version    str    streamer.__version__ of the writer ("0" if unknown)
    fingerprint         str    caller's hash of the engine configuration that shapes the state
    metadata            map    caller's metadata: the same values as the state (see
                               Values below, tuples as ExtType 2) except arrays
    checksum_algorithm  str    "sha256"
    tree_length         int    T, bytes of the msgpack tree at the start of the payload
    payload_length      int    P, bytes of the payload
    checksum            str    64 lowercase hex digits: SHA-256 of the P payload bytes

The writer emits the last three keys last, ``tree_length`` and ``payload_length`` as msgpack
uint64 (0xcf + 8 bytes) and ``checksum`` as a 64-character str8, so the header has the same
length before and after the values are known: it writes a placeholder header (with CRC 0),
streams the payload while hashing it, then seeks back and rewrites the prefix and header.
Readers accept any valid msgpack encoding of the header.

Payload (P bytes)::

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
    [T, P)    the array section. D = the first file offset >= 16 + H + T that is a multiple
              of 64. Each array's raw bytes, C order, lie at file offset D + offset, in the
              order the tree mentions the arrays, each array starting at the next multiple
              of 64 after the previous one ends. Gaps are zero bytes. The payload ends where
              the last array ends (or at T without arrays).

So a 256 MB uint32 table costs 256 MB (+ < 64 bytes) on disk, and the arrays start at
64-byte aligned file offsets (memory-mappable). Keeping the raw bytes out of the msgpack
tree, instead of inside each ExtType's data, is deliberate: the loader decodes the small
tree first, allocates each array with ``np.empty`` and ``readinto``s the file straight into
it while hashing the same memory. Peak memory while loading is therefore the size of the
state itself (not 2-3 times it, as with msgpack ext data copied to bytes and then to a
writable array), the arrays are writable and own their memory, and ``inspect_snapshot``
summarises the state by reading only the header and the tree.

Why SHA-256 over the payload: it must detect torn or stale pages, truncation and bit rot in
payloads of hundreds of MB. CRC-32 leaves a 2**-32 miss chance for random damage and its
burst-error guarantees only hold for short messages; a cryptographic digest has no
structural blind spots and also identifies content (two snapshots with the same checksum
hold the same state, useful when merging). With SHA-NI (most x86 since ~2017, ARMv8 crypto)
hashlib does ~1.5 GB/s: on the development VM 0.17 s for 256 MB against 0.33 s for BLAKE2b
and 0.07 s for CRC-32, small next to writing 256 MB to disk (~1 s with fsync). hashlib
releases the GIL, so hashing in the daemon's worker thread does not stall the event loop.
The short header gets CRC-32, which is strong for short messages and keeps a flipped bit in
the fingerprint from being reported as a configuration change.

Values: None, bool, int (any size), float, str, bytes, list, tuple, dict and numpy arrays
round-trip exactly (arrays in C order, with the stored dtype, byte order included; an array
referenced twice is stored twice). Numpy scalars come back as Python scalars and subclasses
as their base type (Counter -> dict, IntEnum -> int). Arrays of object or structured dtype,
sets, datetimes and other objects raise TypeError when writing, so a snapshot that was
written can always be read. Cost: lists, dicts and scalars are packed and decoded by
msgpack's C code (~0.3 us per item); a tuple costs a few microseconds (one nested msgpack
call each), so bulk data belongs in lists or, better, numpy arrays.

Files in a snapshot directory::

    snapshot-20260509T073525.123456Z-000042.snap   a snapshot (UTC time of writing, seq)
    .tmp-snapshot-...-000042.snap.<pid>            being written by <pid>, or left by a
                                                   killed writer (ignored by the loader,
                                                   removed by the next write)
    snapshot-...-000041.snap.bad-<reason>          set aside by the loader, never deleted

Names sort in creation order even if the clock steps back: a new name is never older than
the newest existing one, and seq grows by one per write.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import logging
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np

from streamer import __version__

__all__ = [
    "ARRAY_EXT_CODE",
    "TUPLE_EXT_CODE",
    "BIGINT_EXT_CODE",
    "CHECKSUM_ALGORITHM",
    "FORMAT_VERSION",
    "MAGIC",
    "FingerprintMismatch",
    "LoadResult",
    "NotASnapshot",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotVersionError",
    "describe",
    "format_description",
    "format_inspection",
    "inspect_snapshot",
    "list_snapshots",
    "load_file",
    "load_latest",
    "write_snapshot",
]

log = logging.getLogger("streamer.storage.snapshot")

MAGIC = b"STRMSNAP"
FORMAT_VERSION = 1
CHECKSUM_ALGORITHM = "sha256"
ARRAY_EXT_CODE = 1
TUPLE_EXT_CODE = 2
BIGINT_EXT_CODE = 3
#: Array data starts at file offsets that are multiples of this (bytes).
ALIGN = 64
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

_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{8}T\d{6}\.\d{6}Z)-(\d+)\.snap$")
_TEMP_RE = re.compile(r"^\.tmp-(snapshot-\d{8}T\d{6}\.\d{6}Z-\d+\.snap)\.(\d+)$")
_BAD_RE = re.compile(r"^(snapshot-\d{8}T\d{6}\.\d{6}Z-\d+\.snap)\.bad-([a-z-]+?)(?:-(\d+))?$")
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


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
_UNUSABLE = (NotASnapshot, SnapshotCorrupt, SnapshotVersionError)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A loaded snapshot: its file, its header (see the module docstring) and the state."""

    path: Path
    header: dict[str, Any]
    state: dict[str, Any]


# --------------------------------------------------------------------------- names


def _sort_key(path: Path) -> tuple[str, int]:
    m = _SNAPSHOT_RE.match(path.name)
    assert m is not None
    return m.group(1), int(m.group(2))


def list_snapshots(directory: str | os.PathLike[str]) -> list[Path]:
    """Snapshot files in ``directory``, oldest first (the last one is the newest).

    Only final names count: temporary and set-aside files are not listed. A missing
    directory has no snapshots.
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    paths = [directory / n for n in names if _SNAPSHOT_RE.match(n)]
    return sorted(paths, key=_sort_key)


def _next_name(directory: Path, now: float) -> str:
    """Name for a new snapshot that sorts after every existing one.

    The timestamp is the UTC time of writing, unless the clock stepped back below the
    newest existing name, which then lends its timestamp; seq is one more than the largest
    existing seq, so names never collide and never sort before older ones.
    """
    stamp = datetime.fromtimestamp(now, UTC).strftime(_STAMP_FORMAT)
    existing = [_sort_key(p) for p in list_snapshots(directory)]
    if not existing:
        return f"snapshot-{stamp}-{1:06d}.snap"
    newest_stamp = max(existing)[0]
    seq = max(s for _, s in existing) + 1
    return f"snapshot-{max(stamp, newest_stamp)}-{seq:06d}.snap"


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


def _encode_header(fields: dict[str, Any], tree_length: int, payload_length: int,
                   checksum: str) -> bytes:
    """Header bytes whose length does not depend on the three values written last."""
    if len(checksum) != _DIGEST_HEX_LEN:
        raise ValueError("checksum must be 64 hex digits")
    packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_make_default(None))
    parts = [packer.pack_map_header(len(fields) + 3)]
    for key, value in fields.items():
        parts += [packer.pack(key), packer.pack(value)]
    for key, n in (("tree_length", tree_length), ("payload_length", payload_length)):
        parts += [packer.pack(key), b"\xcf" + n.to_bytes(8, "big")]
    parts += [packer.pack("checksum"), packer.pack(checksum)]
    return b"".join(parts)


class _PayloadWriter:
    """Writes payload bytes to a file, hashing them and counting them on the way."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.hash = hashlib.sha256()
        self.length = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.f.write(data)
        self.length += len(data)

    def pad_to(self, length: int) -> None:
        if length > self.length:
            self.write(bytes(length - self.length))


def _write_file(f: BinaryIO, state: dict[str, Any], fingerprint: str,
                metadata: dict[str, Any]) -> None:
    """Write a complete snapshot to ``f`` (positioned at 0) in one pass over the state."""
    fields = {
        "format_version": FORMAT_VERSION,
        "created": time.time(),
        "streamer_version": _STREAMER_VERSION,
        "fingerprint": fingerprint,
        "metadata": metadata,
        "checksum_algorithm": CHECKSUM_ALGORITHM,
    }
    header = _encode_header(fields, 0, 0, "0" * _DIGEST_HEX_LEN)
    if len(header) > MAX_HEADER_LENGTH:
        raise ValueError(f"snapshot metadata too large: header of {len(header)} bytes")
    f.write(_PREFIX.pack(MAGIC, len(header), 0))
    f.write(header)
    payload_start = _PREFIX.size + len(header)

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
        data_start = _align(payload_start + tree_length) - payload_start  # relative to payload
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
    finally:
        # emit and the packer's default hook are recursive closures, so they form
        # reference cycles, and through on_array they reach every array of the state:
        # without this the state would stay alive until the cyclic collector runs, and
        # the memory freed after a snapshot would not be there to return to the OS
        arrays.clear()
    header = _encode_header(fields, tree_length, out.length, out.hash.hexdigest())
    f.seek(0)
    f.write(_PREFIX.pack(MAGIC, len(header), zlib.crc32(header)))
    f.write(header)


def _fsync_dir(directory: Path) -> None:
    """Make renames and creations in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot fsync a directory
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _remove_leftover_temps(directory: Path) -> None:
    """Delete temporary files of writers that are gone (killed or crashed mid-write).

    A temp file belonging to another live process is left alone (two writers in one
    directory are not supported, but one must not destroy the other's file). One of this
    process's own pid is stale: the write that made it is over (a restarted daemon often
    gets the same pid, e.g. pid 1 in a container).
    """
    for name in os.listdir(directory):
        m = _TEMP_RE.match(name)
        if not m:
            continue
        pid = int(m.group(2))
        if pid != os.getpid() and _pid_alive(pid):
            log.debug("leaving %s: process %d is still running", name, pid)
            continue
        with suppress(FileNotFoundError):
            os.unlink(directory / name)
            log.info("removed leftover temporary snapshot %s (interrupted write)",
                     directory / name)


def write_snapshot(
    directory: str | os.PathLike[str],
    state: dict[str, Any],
    *,
    fingerprint: str,
    metadata: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``state`` as a new snapshot in ``directory`` atomically; return its path.

    The file is written under a temporary name in the same directory, flushed, fsynced,
    renamed to its final name and the directory fsynced: after a crash or ``kill -9`` at
    any moment the directory holds either the old set of snapshots or the old set plus the
    complete new one. Afterwards the newest ``keep`` snapshots are kept and older ones
    deleted; a file whose header or size is wrong does not count as one of the ``keep``
    (it is set aside like the loader does, never deleted). Payload checksums of older
    snapshots are not re-read here (that would read every file on every write).

    ``state`` must not be mutated while this runs (take it between batches): the arrays
    are written from the caller's memory without copying them, hashing each chunk as it
    is written. Memory use beyond the state is the msgpack encoding of the largest
    non-array value packed in one piece (a list, or a dict of more than 256 keys), plus a
    contiguous copy of any non-contiguous array. One writer per directory: two processes
    (or threads) writing snapshots into the same directory are not supported.

    ``fingerprint`` identifies the engine configuration that shapes the state;
    ``metadata`` is any small msgpack-able dict (source positions, counters) stored in the
    header, readable without loading the state. Raises TypeError for values that cannot be
    stored and ValueError for ``keep`` < 1; on any error the temporary file is removed and
    existing snapshots are untouched.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    if not isinstance(fingerprint, str):
        raise TypeError("fingerprint must be a str")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftover_temps(directory)

    final = directory / _next_name(directory, time.time())
    _write_atomic(final, state, fingerprint, metadata)
    log.debug("wrote snapshot %s", final)
    try:
        _apply_retention(directory, keep, final)
    except OSError as e:  # the new snapshot is safe; old ones merely linger
        log.warning("could not prune old snapshots in %s: %s", directory, e)
    return final


def _write_atomic(final: Path, state: dict[str, Any], fingerprint: str,
                  metadata: dict[str, Any] | None) -> None:
    """Temp file beside ``final``, write, flush, fsync, rename over, fsync the directory."""
    tmp = final.parent / f".tmp-{final.name}.{os.getpid()}"
    try:
        with open(tmp, "xb") as f:
            _write_file(f, state, fingerprint, dict(metadata or {}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(final.parent)


def write_file(path: str | os.PathLike[str], state: dict[str, Any], *, fingerprint: str,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write one snapshot to an explicit path, atomically (``discover --save-state``,
    ``snapshot merge -o``). Same format and guarantees as write_snapshot, no retention."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    final = Path(path)
    _write_atomic(final, state, fingerprint, metadata)
    return final


def _apply_retention(directory: Path, keep: int, newest: Path) -> None:
    good = 0
    for path in reversed(list_snapshots(directory)):
        if good >= keep:
            with suppress(FileNotFoundError):
                path.unlink()
                log.debug("removed old snapshot %s", path)
            continue
        if path != newest:
            try:
                with open(path, "rb", buffering=0) as f:
                    header, payload_start = _read_header(f, path)
                    _check_size(path, header, payload_start, os.fstat(f.fileno()).st_size)
            except FileNotFoundError:
                continue
            except _UNUSABLE as e:
                log.warning("snapshot %s is unusable (%s); setting it aside", path, e.message)
                _set_aside(path, e.reason)
                continue
        good += 1


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


def _read_header(f: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
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
    if version > FORMAT_VERSION:
        raise SnapshotVersionError(path, version)
    for key, types in _HEADER_TYPES.items():
        if not isinstance(header.get(key), types) or isinstance(header.get(key), bool):
            raise SnapshotCorrupt(path, f"header field {key!r} missing or of the wrong type")
    if header["checksum_algorithm"] != CHECKSUM_ALGORITHM:
        raise SnapshotCorrupt(
            path, f"unknown checksum algorithm {header['checksum_algorithm']!r}"
        )
    if not 0 <= header["tree_length"] <= header["payload_length"]:
        raise SnapshotCorrupt(path, "header lengths are inconsistent")
    return header, _PREFIX.size + length


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


def _check_size(path: Path, header: dict[str, Any], payload_start: int, size: int) -> None:
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
class _ArrayRef:
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


def _ext_hook(data_start: int, payload_length: int,
              make: Callable[[_ArrayRef], Any]) -> Callable[[int, bytes], Any]:
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
        dt = np.dtype(dtype_str)
        if dt.hasobject:
            raise ValueError(f"object dtype {dtype_str!r} in array descriptor")
        if offset != expected or nbytes != dt.itemsize * math.prod(shape):
            raise ValueError("array descriptor disagrees with the file layout")
        if data_start + offset + nbytes > payload_length:
            raise ValueError("array data beyond the end of the payload")
        expected = _align(offset + nbytes)
        return make(_ArrayRef(dt, tuple(shape), offset, nbytes))

    return hook


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding a large tree.

    Decoding allocates millions of containers, none of them garbage, and the collector
    would keep scanning them (measured on a tree of 3.3 million items: ~1.05 s of CPU
    instead of ~1.2 s).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_into(f: BinaryIO, buf: memoryview, digest: Any, path: Path) -> None:
    """Fill ``buf`` from ``f`` in chunks, hashing each chunk; a short read is truncation."""
    pos = 0
    while pos < len(buf):
        chunk = buf[pos : pos + _CHUNK]
        n = f.readinto(chunk)
        if not n:
            raise SnapshotCorrupt(path, "truncated while reading the payload", reason="truncated")
        digest.update(chunk[:n])
        pos += n


def _hash_skip(f: BinaryIO, n: int, digest: Any, path: Path) -> None:
    """Hash the next ``n`` bytes of ``f`` without keeping them."""
    buf = bytearray(min(n, _CHUNK))
    while n > 0:
        view = memoryview(buf)[: min(n, len(buf))]
        _read_into(f, view, digest, path)
        n -= len(view)


def _read_payload(f: BinaryIO, path: Path, header: dict[str, Any], payload_start: int) -> Any:
    """Read, decode and verify the payload that follows the header in ``f``."""
    tree_length = header["tree_length"]
    payload_length = header["payload_length"]
    digest = hashlib.sha256()
    tree = bytearray(tree_length)
    _read_into(f, memoryview(tree), digest, path)
    data_start = _align(payload_start + tree_length) - payload_start

    fills: list[tuple[int, np.ndarray]] = []

    def make(ref: _ArrayRef) -> np.ndarray:
        arr = np.empty(ref.shape, ref.dtype)
        fills.append((data_start + ref.offset, arr))
        return arr

    error: Exception | None = None
    try:
        with _gc_paused():
            state = _unpack(tree, _ext_hook(data_start, payload_length, make))
        if not isinstance(state, dict):
            raise ValueError(f"the state is a {type(state).__name__}, not a map")
    except Exception as e:  # decoding garbage can fail in many ways
        error, fills = e, []
    pos = tree_length
    try:
        for start, arr in fills:
            _hash_skip(f, start - pos, digest, path)
            if arr.nbytes:
                _read_into(f, memoryview(arr.reshape(-1).view(np.uint8)), digest, path)
            pos = start + arr.nbytes
    finally:
        # the ext hook is a recursive closure (a reference cycle) that reaches `fills`:
        # cleared, the arrays live exactly as long as the caller keeps the state
        fills.clear()
    _hash_skip(f, payload_length - pos, digest, path)
    if digest.hexdigest() != header["checksum"]:
        raise SnapshotCorrupt(path, "payload checksum mismatch (damaged data)", reason="checksum")
    if error is not None:
        raise SnapshotCorrupt(path, f"undecodable payload: {error}") from error
    return state


def load_file(path: str | os.PathLike[str], *, fingerprint: str | None = None) -> LoadResult:
    """Load and verify one snapshot file.

    Raises NotASnapshot (empty or foreign file), SnapshotCorrupt (truncated, checksum
    mismatch, undecodable), SnapshotVersionError (newer format), FingerprintMismatch (when
    ``fingerprint`` is given and differs; checked before the payload is read) and OSError
    for files that cannot be read. Arrays in the state are writable and own their memory.
    """
    path = Path(path)
    with open(path, "rb", buffering=0) as f:
        header, payload_start = _read_header(f, path)
        _check_size(path, header, payload_start, os.fstat(f.fileno()).st_size)
        if fingerprint is not None and header["fingerprint"] != fingerprint:
            raise FingerprintMismatch(path, fingerprint, header["fingerprint"])
        state = _read_payload(f, path, header, payload_start)
    return LoadResult(path, header, state)


def _set_aside(path: Path, reason: str) -> Path | None:
    """Rename a bad snapshot to ``<name>.bad-<reason>[-N]`` without overwriting anything."""
    target = path.with_name(f"{path.name}.bad-{reason}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{reason}-{n}")
        n += 1
    try:
        os.rename(path, target)
        _fsync_dir(path.parent)
    except OSError as e:
        log.error("could not set aside bad snapshot %s: %s", path, e)
        return None
    return target


def load_latest(
    directory: str | os.PathLike[str], *, fingerprint: str | None = None
) -> LoadResult | None:
    """Load the newest usable snapshot in ``directory``, or None to start empty.

    Snapshots are tried newest first. An empty, foreign, truncated, damaged or too-new
    file is logged (logger "streamer.storage.snapshot"), renamed to ``<name>.bad-<reason>`` and
    the previous one is tried. Temporary files of interrupted writes are ignored.

    When ``fingerprint`` is given, the first snapshot with a readable header whose
    fingerprint differs raises FingerprintMismatch and stays where it is: it is not
    damaged, the configuration changed. OSErrors other than a file vanishing propagate
    (a permission problem or a failing disk is not a reason to discard state).
    """
    directory = Path(directory)
    snapshots = list_snapshots(directory)
    if not snapshots:
        log.info("no snapshot in %s; starting empty", directory)
        return None
    set_aside = 0
    for path in reversed(snapshots):
        try:
            result = load_file(path, fingerprint=fingerprint)
        except FileNotFoundError:
            log.warning("snapshot %s vanished while loading; trying the previous one", path)
            continue
        except _UNUSABLE as e:
            target = _set_aside(path, e.reason)
            set_aside += 1
            log.warning(
                "snapshot %s is unusable (%s); renamed to %s; falling back to the previous "
                "snapshot",
                path, e.message, target.name if target else "(rename failed)",
            )
            continue
        log.info("loaded snapshot %s (created %s)", path, _format_time(result.header["created"]))
        return result
    log.error(
        "no usable snapshot in %s (%d set aside as bad); starting empty", directory, set_aside
    )
    return None


# --------------------------------------------------------------------------- inspection


def _summarize(value: Any, depth: int = 0) -> dict[str, Any]:
    """Type and size of one state value; arrays are _ArrayRef (not loaded)."""
    if isinstance(value, _ArrayRef):
        return {"type": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape),
                "bytes": value.nbytes}
    if isinstance(value, dict):
        out: dict[str, Any] = {"type": "dict", "length": len(value),
                               "bytes": _array_bytes(value.values())}
        if depth < 2:
            out["items"] = {str(k): _summarize(v, depth + 1)
                            for k, v in list(value.items())[:50]}
        return out
    if isinstance(value, list | tuple):
        return {"type": type(value).__name__, "length": len(value),
                "bytes": _array_bytes(value)}
    if isinstance(value, str):
        return {"type": "str", "length": len(value),
                "value": value if len(value) <= 80 else value[:77] + "..."}
    if isinstance(value, bytes):
        return {"type": "bytes", "length": len(value)}
    return {"type": type(value).__name__, "value": value}


def _array_bytes(values: Iterable[Any]) -> int:
    """Total bytes of the arrays nested anywhere in ``values``."""
    total = 0
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, _ArrayRef):
            total += v.nbytes
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return total


def inspect_snapshot(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Describe one snapshot file without loading its arrays; never raises for bad content.

    Returns a dict with: ``path``, ``file_size`` (bytes), ``status`` ("ok" or a reason
    slug: empty, foreign, truncated, checksum, corrupt, version), ``error`` (message or
    None), ``header`` (dict or None), ``payload_size`` (bytes the header promises),
    ``payload_on_disk`` (bytes present), ``checksum`` ("verified", "mismatch", "truncated",
    "not-verified" when ``verify`` is false, "unavailable" without a header), ``state``
    (top-level key -> summary, or None: arrays give dtype, shape, bytes; lists, tuples and
    dicts their length and the bytes of arrays inside, dicts also ``items``, summaries of
    their first 50 entries, two levels deep; strs their length and value, cut at 80
    characters; bytes their length; other scalars their value),
    ``arrays`` and ``array_bytes``. Reading the header and tree is cheap; verifying the
    checksum reads the whole payload. Raises OSError if the file cannot be opened.
    """
    path = Path(path)
    info: dict[str, Any] = {
        "path": str(path), "file_size": 0, "status": "ok", "error": None, "header": None,
        "payload_size": None, "payload_on_disk": None, "checksum": "unavailable",
        "state": None, "arrays": None, "array_bytes": None,
    }

    def fail(e: SnapshotError) -> dict[str, Any]:
        if info["status"] == "ok":
            info["status"], info["error"] = e.reason, e.message
        return info

    with open(path, "rb", buffering=0) as f:
        size = info["file_size"] = os.fstat(f.fileno()).st_size
        try:
            header, payload_start = _read_header(f, path)
        except SnapshotError as e:
            return fail(e)
        info["header"] = header
        info["payload_size"] = header["payload_length"]
        info["payload_on_disk"] = max(0, size - payload_start)
        try:
            _check_size(path, header, payload_start, size)
        except SnapshotError as e:
            fail(e)
        tree_length = header["tree_length"]
        refs: list[_ArrayRef] = []
        if size >= payload_start + tree_length:
            tree = _read_exact(f, tree_length)
            data_start = _align(payload_start + tree_length) - payload_start

            def make(ref: _ArrayRef) -> _ArrayRef:
                refs.append(ref)
                return ref

            try:
                with _gc_paused():
                    state = _unpack(tree, _ext_hook(data_start, header["payload_length"], make))
                if not isinstance(state, dict):
                    raise ValueError(f"the state is a {type(state).__name__}, not a map")
                info["state"] = {str(k): _summarize(v) for k, v in state.items()}
                info["arrays"] = len(refs)
                info["array_bytes"] = sum(r.nbytes for r in refs)
            except Exception as e:  # damaged tree: report, keep going to the checksum
                fail(SnapshotCorrupt(path, f"undecodable payload: {e}"))
        if size < payload_start + header["payload_length"]:
            info["checksum"] = "truncated"
        elif not verify:
            info["checksum"] = "not-verified"
        else:
            f.seek(payload_start)
            digest = hashlib.sha256()
            try:
                _hash_skip(f, header["payload_length"], digest, path)
            except SnapshotCorrupt as e:  # the file shrank while we read it
                info["checksum"] = "truncated"
                return fail(e)
            if digest.hexdigest() == header["checksum"]:
                info["checksum"] = "verified"
            else:
                info["checksum"] = "mismatch"
                info["status"] = "checksum"
                info["error"] = "payload checksum mismatch (damaged data)"
    return info


def _format_time(t: float) -> str:
    """ISO 8601 UTC for unix seconds ``t`` (as given if out of datetime's range)."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return f"unix {t}"


def _format_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _format_summary(summary: dict[str, Any]) -> str:
    kind = summary["type"]
    if kind == "ndarray":
        shape = "x".join(str(n) for n in summary["shape"]) or "scalar"
        return f"ndarray {summary['dtype']} {shape} ({_format_bytes(summary['bytes'])})"
    if kind in ("dict", "list", "tuple"):
        noun = "keys" if kind == "dict" else "items"
        arrays = f", {_format_bytes(summary['bytes'])} in arrays" if summary["bytes"] else ""
        return f"{kind} of {summary['length']} {noun}{arrays}"
    if kind == "str":
        return f"str {summary['value']!r}"
    if kind == "bytes":
        return f"bytes of length {summary['length']}"
    return f"{kind} {summary['value']!r}"


def _format_positions(sources: dict[Any, Any]) -> list[str]:
    """The daemon's source positions (metadata "sources"), one line per file: the offsets
    a restart resumes from."""
    lines = ["  sources:"]
    for sid, positions in sources.items():
        if not isinstance(positions, list) or not positions:
            lines.append(f"    {sid}: {positions!r}")
            continue
        for p in positions:
            if not isinstance(p, dict):
                lines.append(f"    {sid}: {p!r}")
                continue
            where = p.get("path", "<stdin>")
            ident = (f" (dev {p['dev']}, inode {p['ino']}, first {p['fingerprint_bytes']} "
                     f"bytes sha1 {str(p['fingerprint'])[:12]})"
                     if {"dev", "ino", "fingerprint", "fingerprint_bytes"} <= p.keys() else "")
            lines.append(f"    {sid}: {where} offset {p.get('offset')}{ident}")
    return lines


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text for the dict returned by :func:`inspect_snapshot`."""
    lines = [f"snapshot    {info['path']}"]
    status = info["status"] if info["error"] is None else f"{info['status']}: {info['error']}"
    lines.append(f"status      {status}")
    lines.append(f"file size   {info['file_size']:,} bytes")
    header = info["header"]
    if header is not None:
        lines.append(f"format      version {header['format_version']}, written by streamer "
                     f"{header['streamer_version']}")
        lines.append(f"created     {_format_time(header['created'])} (unix {header['created']})")
        lines.append(f"fingerprint {header['fingerprint']}")
        lines.append(f"payload     {info['payload_size']:,} bytes "
                     f"({info['payload_on_disk']:,} on disk; tree {header['tree_length']:,})")
        lines.append(f"checksum    {header['checksum_algorithm']} {header['checksum']} "
                     f"[{info['checksum']}]")
        metadata = header["metadata"]
        if metadata:
            lines.append("metadata")
            for key, value in metadata.items():
                if key == "sources" and isinstance(value, dict):
                    lines.extend(_format_positions(value))
                    continue
                text = repr(value)
                lines.append(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    if info["state"] is not None:
        lines.append(f"state       {len(info['state'])} keys, {info['arrays']} arrays, "
                     f"{_format_bytes(info['array_bytes'])} in arrays")

        def walk(items: dict[str, Any], indent: int) -> None:
            for key, summary in items.items():
                lines.append(f"{'  ' * indent}{key}: {_format_summary(summary)}")
                if "items" in summary:
                    walk(summary["items"], indent + 1)

        walk(info["state"], 1)
    return "\n".join(lines)


def describe(directory: str | os.PathLike[str], *, verify: bool = True) -> list[dict[str, Any]]:
    """List the snapshot-related files in ``directory`` with their status.

    Snapshots come first, oldest first, then set-aside and temporary files by name; other
    files are not listed.

    Each row: ``name``, ``path``, ``kind`` ("snapshot", "bad" for files set aside,
    "temporary" for writes in progress or interrupted), ``size`` (bytes), ``status`` ("ok",
    a reason slug, "set-aside:<reason>" or "temporary"), ``error``, ``created`` (unix
    seconds or None), ``fingerprint`` (or None) and ``newest`` (true for the snapshot
    load_latest would try first). ``verify`` checks payload checksums (reads every file).
    """
    directory = Path(directory)
    rows: list[dict[str, Any]] = []
    snapshots = list_snapshots(directory)
    for path in snapshots:
        try:
            info = inspect_snapshot(path, verify=verify)
        except FileNotFoundError:
            continue
        header = info["header"] or {}
        rows.append({
            "name": path.name, "path": str(path), "kind": "snapshot",
            "size": info["file_size"], "status": info["status"], "error": info["error"],
            "created": header.get("created"), "fingerprint": header.get("fingerprint"),
            "newest": path == snapshots[-1],
        })
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    for name in names:
        bad, temp = _BAD_RE.match(name), _TEMP_RE.match(name)
        if not (bad or temp):
            continue
        try:
            size = (directory / name).stat().st_size
        except FileNotFoundError:
            continue
        rows.append({
            "name": name, "path": str(directory / name),
            "kind": "bad" if bad else "temporary", "size": size,
            "status": f"set-aside:{bad.group(2)}" if bad else "temporary", "error": None,
            "created": None, "fingerprint": None, "newest": False,
        })
    return rows


def format_description(rows: list[dict[str, Any]]) -> str:
    """Human-readable table for the rows returned by :func:`describe`."""
    if not rows:
        return "no snapshots"
    lines = []
    for row in rows:
        created = _format_time(row["created"]) if row["created"] is not None else "-"
        mark = "*" if row["newest"] else " "
        status = row["status"] if row["error"] is None else f"{row['status']} ({row['error']})"
        lines.append(f"{mark} {row['name']}  {row['size']:>14,}  {created}  {status}")
    return "\n".join(lines)
