"""What a source hands on and what a snapshot stores: file identities and resume positions.

File identity
    A file is identified by device + inode + a fingerprint of its first bytes:
    ``sha1(first min(size, 256) bytes)`` together with the number of bytes hashed.
    Device + inode alone are not enough across restarts, because an inode freed by a
    deletion is soon reused by an unrelated file. While the file is shorter than 256
    bytes the fingerprint grows: each time the file is seen larger, it is recomputed over
    the new ``min(size, 256)`` bytes. A stored fingerprint of ``n`` bytes matches a file
    when the file has at least ``n`` bytes and the sha1 of its first ``n`` bytes is equal
    (bytes of an append-only file never change, so the stored prefix stays valid).
    An empty file has the empty fingerprint and is matched by device + inode only:
    there is nothing else to compare, and an empty file has nothing to lose.
    Filebeat's filestream ``fingerprint`` and Vector's ``checksum`` strategies are the
    models; unlike them we do not wait for the file to reach the fingerprint length
    before reading, because short files (one chat message) are normal input here.

Positions
    Every batch carries a position: what to resume from once the batch has been
    consumed. Offsets only ever point just after a line that was handed out, and are only
    committed after the engine consumed it, so restoring a snapshot counts every line
    exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, TypeAlias

#: bytes of the start of a file hashed into its fingerprint (at most)
FINGERPRINT_BYTES = 256


def fingerprint(head: bytes) -> tuple[str, int]:
    """The fingerprint of a file whose first bytes are ``head`` (at most
    ``FINGERPRINT_BYTES`` of them are hashed): (sha1 hex digest, bytes hashed)."""
    data = head[:FINGERPRINT_BYTES]
    return hashlib.sha1(data).hexdigest(), len(data)


def fingerprint_matches(head: bytes, digest: str, nbytes: int) -> bool:
    """Whether a file starting with ``head`` (at least its first ``nbytes`` bytes) is
    the file a fingerprint ``(digest, nbytes)`` was taken of."""
    data = head[:nbytes]
    return len(data) == nbytes and hashlib.sha1(data).hexdigest() == digest


@dataclass(frozen=True)
class FileIdentity:
    """What makes a file the same file: device, inode and a fingerprint of its start.

    ``fingerprint`` is the sha1 hex digest of the first ``fingerprint_bytes`` bytes.
    """

    dev: int
    ino: int
    fingerprint: str
    fingerprint_bytes: int


@dataclass(frozen=True)
class FilePosition:
    """Resume point of one file: the byte offset just after the last line handed out.

    ``handle`` tells which open file of this process the position belongs to (two files
    can share a device+inode over time); ``consumed`` is every byte this process handed
    out of that file so far, across truncations (``offset`` restarts at 0 on one), so
    that the bytes a commit adds are ``consumed`` minus the last committed ``consumed``.
    Neither is part of the stored form.
    """

    path: str
    dev: int
    ino: int
    fingerprint: str
    fingerprint_bytes: int
    offset: int
    handle: int = field(default=-1, compare=False, repr=False)
    consumed: int = field(default=0, compare=False, repr=False)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino, self.fingerprint, self.fingerprint_bytes)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON/msgpack-able)."""
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "fingerprint": self.fingerprint,
            "fingerprint_bytes": self.fingerprint_bytes,
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FilePosition:
        """Parse a stored position; ``ValueError`` names what is wrong with it."""
        try:
            pos = cls(
                path=str(data["path"]),
                dev=int(data["dev"]),
                ino=int(data["ino"]),
                fingerprint=str(data["fingerprint"]),
                fingerprint_bytes=int(data["fingerprint_bytes"]),
                offset=int(data["offset"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad file position {data!r}: {exc}") from exc
        if pos.offset < 0 or not 0 <= pos.fingerprint_bytes <= FINGERPRINT_BYTES:
            raise ValueError(f"bad file position {data!r}: offset or fingerprint size")
        return pos


@dataclass(frozen=True)
class StdinPosition:
    """Bytes of standard input consumed. Informational: stdin cannot be replayed."""

    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": "stdin", "offset": self.offset}


@dataclass(frozen=True)
class RedisPosition:
    """The Redis stream entries a batch holds: their ids (``"<ms>-<seq>"``), in delivery
    order, and the bytes of text they carried. Committing it marks those entries counted;
    they are acknowledged (XACK) once a snapshot holding them is on disk
    (:class:`~streamer.input.redis_stream.RedisStreamSource`)."""

    ids: tuple[str, ...]
    nbytes: int = field(default=0, compare=False)


SourcePosition: TypeAlias = FilePosition | StdinPosition | RedisPosition


@dataclass(frozen=True)
class Batch:
    """Lines for the engine, and the position to commit once they have been consumed.

    All lines of a batch come from one file (``position.path`` for a file source), or
    from the whole entries of one Redis stream (``position.ids``).
    """

    source_id: str
    lines: list[str]
    position: SourcePosition
