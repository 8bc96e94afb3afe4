"""Snapshots: the daemon's whole state on disk, written atomically, loaded with fallback.

The names callers use (``from streamer.storage import snapshot``), gathered from the
three modules that hold them:

* :mod:`streamer.storage.snapshot_format` - the bytes of one file (header, checksum,
  msgpack extension types, aligned raw arrays): ``write_file``, ``load_file``, errors;
* :mod:`streamer.storage.snapshot_store` - a directory of snapshots (naming, keep-K
  retention, leftover temporary files, setting bad files aside, falling back to an
  older one, making room on a full disk): ``write_snapshot``, ``load_latest``,
  ``read_newest``, ``newest_header`` and ``newest_signature`` (read-only, for another
  writer's directory),
  ``list_snapshots``, ``SnapshotWriteError``, ``error_kind``,
  ``intervals_without_snapshot``;
* :mod:`streamer.storage.snapshot_inspect` - summaries and text for
  ``streamer snapshot inspect``/``list``: ``inspect_snapshot``, ``describe``.
"""

from __future__ import annotations

from streamer.storage.snapshot_format import (
    ALIGN,
    ARRAY_EXT_CODE,
    BIGINT_EXT_CODE,
    CHECKSUM_ALGORITHM,
    FORMAT_VERSION,
    MAGIC,
    TUPLE_EXT_CODE,
    FingerprintMismatch,
    LoadResult,
    NotASnapshot,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotVersionError,
    load_file,
    write_file,
)
from streamer.storage.snapshot_inspect import (
    describe,
    format_description,
    format_inspection,
    inspect_snapshot,
)
from streamer.storage.snapshot_store import (
    SnapshotWriteError,
    error_kind,
    intervals_without_snapshot,
    list_snapshots,
    load_latest,
    newest_header,
    newest_signature,
    read_newest,
    write_snapshot,
)

__all__ = [
    "ALIGN",
    "ARRAY_EXT_CODE",
    "BIGINT_EXT_CODE",
    "CHECKSUM_ALGORITHM",
    "FORMAT_VERSION",
    "MAGIC",
    "TUPLE_EXT_CODE",
    "FingerprintMismatch",
    "LoadResult",
    "NotASnapshot",
    "SnapshotCorrupt",
    "SnapshotError",
    "SnapshotVersionError",
    "SnapshotWriteError",
    "describe",
    "error_kind",
    "format_description",
    "format_inspection",
    "inspect_snapshot",
    "intervals_without_snapshot",
    "list_snapshots",
    "load_file",
    "load_latest",
    "newest_header",
    "newest_signature",
    "read_newest",
    "write_file",
    "write_snapshot",
]
