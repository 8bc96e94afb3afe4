"""Snapshot inspection: summaries and text for ``streamer snapshot inspect`` and ``list``.

Reads headers and trees only (and, when asked, hashes payloads to verify them); never
loads an array and never changes a file, so it is safe on a directory a daemon is using.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamer.storage.sizes import format_bytes
from streamer.storage.snapshot_format import (
    ArrayRef,
    SnapshotCorrupt,
    SnapshotError,
    check_size,
    compression,
    format_created,
    raw_length,
    read_header,
    scan_tree,
    verify_payload,
)
from streamer.storage.snapshot_store import BAD_RE, TEMP_RE, list_snapshots

__all__ = ["describe", "format_description", "format_inspection", "inspect_snapshot"]


def _summarize(value: Any, depth: int = 0) -> dict[str, Any]:
    """Type and size of one state value; arrays are ArrayRef (not loaded)."""
    if isinstance(value, ArrayRef):
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
        if isinstance(v, ArrayRef):
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
    None), ``header`` (dict or None), ``payload_size`` (bytes the header promises, as
    stored), ``payload_on_disk`` (bytes present), ``compression`` ("zstd", "none" for
    format version 1, or None without a header), ``raw_size`` (bytes of the uncompressed
    payload, or None), ``checksum`` ("verified", "mismatch", "truncated",
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
        "payload_size": None, "payload_on_disk": None, "compression": None,
        "raw_size": None, "checksum": "unavailable",
        "state": None, "arrays": None, "array_bytes": None,
    }

    def fail(e: SnapshotError) -> dict[str, Any]:
        if info["status"] == "ok":
            info["status"], info["error"] = e.reason, e.message
        return info

    with open(path, "rb", buffering=0) as f:
        size = info["file_size"] = os.fstat(f.fileno()).st_size
        try:
            header, payload_start = read_header(f, path)
        except SnapshotError as e:
            return fail(e)
        info["header"] = header
        info["payload_size"] = header["payload_length"]
        info["payload_on_disk"] = max(0, size - payload_start)
        info["compression"] = compression(header)
        info["raw_size"] = raw_length(header)
        try:
            check_size(path, header, payload_start, size)
        except SnapshotError as e:
            fail(e)
        # a compressed tree's length on disk is unknown: try, a short file is reported
        if info["compression"] != "none" or size >= payload_start + header["tree_length"]:
            try:
                state, refs = scan_tree(f, path, header, payload_start)
                info["state"] = {str(k): _summarize(v) for k, v in state.items()}
                info["arrays"] = len(refs)
                info["array_bytes"] = sum(r.nbytes for r in refs)
            except SnapshotCorrupt as e:  # damaged tree: report, keep going to the checksum
                fail(e)
        if size < payload_start + header["payload_length"]:
            info["checksum"] = "truncated"
        elif not verify:
            info["checksum"] = "not-verified"
        else:
            try:
                verified = verify_payload(f, path, header, payload_start)
            except SnapshotCorrupt as e:  # the file shrank while we read it
                info["checksum"] = "truncated"
                return fail(e)
            if verified:
                info["checksum"] = "verified"
            else:
                info["checksum"] = "mismatch"
                info["status"] = "checksum"
                info["error"] = "payload checksum mismatch (damaged data)"
    return info


def _format_summary(summary: dict[str, Any]) -> str:
    kind = summary["type"]
    if kind == "ndarray":
        shape = "x".join(str(n) for n in summary["shape"]) or "scalar"
        return f"ndarray {summary['dtype']} {shape} ({format_bytes(summary['bytes'])})"
    if kind in ("dict", "list", "tuple"):
        noun = "keys" if kind == "dict" else "items"
        arrays = f", {format_bytes(summary['bytes'])} in arrays" if summary["bytes"] else ""
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
            if "stream" in p:  # a Redis stream: the counted ids are acked, not re-read
                lines.append(f"    {sid}: stream {p.get('stream')!r} group {p.get('group')!r}"
                             f" consumer {p.get('consumer')!r}: {p.get('counted_ids')} "
                             "counted entries not yet acknowledged")
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
        lines.append(f"created     {format_created(header['created'])} (unix {header['created']})")
        lines.append(f"fingerprint {header['fingerprint']}")
        on_disk = f"{info['payload_on_disk']:,} on disk"
        if info["compression"] == "none":
            lines.append(f"payload     {info['payload_size']:,} bytes uncompressed ({on_disk}; "
                         f"tree {header['tree_length']:,})")
        else:
            ratio = info["raw_size"] / info["payload_size"] if info["payload_size"] else 0.0
            lines.append(f"payload     {info['payload_size']:,} bytes {info['compression']} "
                         f"({on_disk}), {info['raw_size']:,} bytes raw ({ratio:.1f}x; "
                         f"tree {header['tree_length']:,})")
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
                     f"{format_bytes(info['array_bytes'])} in arrays")

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
        bad, temp = BAD_RE.match(name), TEMP_RE.match(name)
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
        created = format_created(row["created"]) if row["created"] is not None else "-"
        mark = "*" if row["newest"] else " "
        status = row["status"] if row["error"] is None else f"{row['status']} ({row['error']})"
        lines.append(f"{mark} {row['name']}  {row['size']:>14,}  {created}  {status}")
    return "\n".join(lines)
