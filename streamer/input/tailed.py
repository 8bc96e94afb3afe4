"""One file being tailed: its descriptor, identity, offsets, line splitter and counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.input.changes import Key, detached_state
from streamer.input.lines import LineCounts, LineSplitter
from streamer.input.positions import FileIdentity, FilePosition


@dataclass(eq=False, kw_only=True)
class TailedFile(LineCounts):
    """One open file of a FileSource, with the counts of what was read from it and
    handed out (``offset``: just after the last line handed out). Mutated only by the
    thread doing I/O, or by the event loop while no I/O runs (OpenFiles.lock)."""

    uid: int  # this process's handle of the file (FilePosition.handle)
    path: str
    fd: int | None
    dev: int
    ino: int
    fingerprint: str
    fingerprint_bytes: int
    read_offset: int  # bytes read into the splitter (offset + splitter.pending)
    splitter: LineSplitter
    size: int = 0
    mtime_ns: int = -1
    last_change: float = 0.0  # monotonic time the size last changed
    attached: bool = True  # the path still names this file
    detached_scan: int = 0  # scan count when it stopped being attached
    drained: bool = False  # read to the end since it was opened or detached
    after: TailedFile | None = None  # predecessor at the same path, drained first
    more: bool = False  # the last fill stopped at a batch limit
    state: str = "open"
    errors: dict[str, str] = field(default_factory=dict)  # operation -> last OS error
    truncations: int = 0
    dropped_bytes: int = 0  # unread backlog lost to truncations (see restart)
    rebased: int = 0  # bytes handed out before the last truncation (offset restarted at 0)
    # Descriptor bound (OpenFiles.max_open): a file waiting for a descriptor has fd None.
    parked: bool = False  # closed while idle; reopened by identity when it changes
    opened: bool = True  # False: matched, never opened yet; ``start`` applies when it is
    start: str = "begin"

    @property
    def key(self) -> Key:
        return (self.dev, self.ino)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino, self.fingerprint, self.fingerprint_bytes)

    def has_data(self) -> bool:
        return self.more or self.size > self.read_offset

    def position(self) -> FilePosition:
        """Where to resume once every line handed out so far has been consumed."""
        return FilePosition(self.path, self.dev, self.ino, self.fingerprint,
                            self.fingerprint_bytes, self.offset, self.uid,
                            self.rebased + self.offset)

    def detach(self, scans: int, nlink: int) -> None:
        """The path no longer names this file: it is finished through the descriptor."""
        self.attached = False
        self.detached_scan = scans
        self.drained = False
        self.state = detached_state(nlink)

    def restart(self, fingerprint: tuple[str, int]) -> int:
        """Truncated: read again from 0, whose first bytes have ``fingerprint``.

        Returns the bytes dropped: ``max(size, read_offset) - offset``, everything the
        file was last seen to hold beyond the last line handed out (read but not handed
        out, or not read yet). Bytes written after the last poll and before the
        truncation are lost too, but no reader can count them."""
        dropped = max(self.size, self.read_offset) - self.offset
        self.dropped_bytes += dropped
        self.rebased += self.offset
        self.truncations += 1
        self.state = "truncated"
        self.offset = self.read_offset = 0
        self.more = False
        self.splitter.reset()
        self.fingerprint, self.fingerprint_bytes = fingerprint
        return dropped

    def status(self, source_id: str, committed: FilePosition | None) -> dict[str, Any]:
        """Counters and state, for the service's status page."""
        return {
            "source": source_id,
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "state": self.state,
            "closed": self.fd is None,
            "offset": self.offset,
            "committed_offset": committed.offset if committed else None,
            "size": self.size,
            "bytes_read": self.bytes_read,
            "lines": self.lines,
            "replaced_bytes": self.replaced_bytes,
            "long_lines": self.long_lines,
            "truncations": self.truncations,
            "dropped_bytes": self.dropped_bytes,
            "parked": self.parked or not self.opened,
            "error": "; ".join(self.errors.values()) or None,
        }
