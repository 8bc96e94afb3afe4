"""Redis Streams as a source: one member of a consumer group, counted exactly once.

One stream, one consumer group, one consumer name (stable across restarts of a service).
Each entry's text is one field (``field``); it holds one or more lines, cut by the line
rules of files (:mod:`streamer.input.lines`). A batch is whole entries; its position is
their ids (:class:`~streamer.input.positions.RedisPosition`).

Exactly once across kill -9 (the counts of a snapshot and the acknowledgements agree)::

    XREADGROUP > / XAUTOCLAIM ---batch---> engine ---commit(ids)---> counted
    snapshot: committed_positions() = counted (under the engine lock, with the counts)
    snapshot on disk ---acknowledge(ids)---> owed ---XACK---> dropped from counted

* An entry is XACKed only once a snapshot that counted it is on disk. Until then it stays
  in the group's pending list (PEL) under this consumer's name.
* At start the restored snapshot's ``counted`` ids are XACKed first (they are counted and
  on disk; XACK of an id no longer pending does nothing), then the consumer re-reads its
  own pending entries (``XREADGROUP ... 0``): what is left there was delivered but not in
  the snapshot, and is counted now.
* Entries another consumer left pending for ``claim_idle`` seconds are taken over with
  XAUTOCLAIM every ``claim_interval``, so a consumer that dies for good loses nothing.
  This consumer's own pending entries (in flight or counted, not yet acked) are skipped
  when XAUTOCLAIM returns them. ``claim_idle`` must exceed the snapshot interval (the
  configuration checks it), or live consumers' entries would be taken from them.

``counted`` holds only the ids since the last acknowledgement, so its size (and the
snapshot's share of it) is about the entries of one snapshot interval (~100 bytes per id
in memory, ~20 in the snapshot); it grows only while snapshots or acks fail, and reading
pauses when it and the ids in flight reach ``max_unacked``.

Lost entries are counted, not hidden: pending ids whose entry was deleted (XREADGROUP 0
and XAUTOCLAIM give them without fields, or in XAUTOCLAIM's list of deleted ids), and
entries trimmed before the group read them (estimated at each connection from XINFO:
``entries-added - entries-read - length`` when the stream's first entry lies after the
group's last-delivered id).

Redis down or restarted: every command error closes the connection; the source retries
with a doubling backoff up to ``retry_max``, logs the outage once a minute at most, and
reports it through :meth:`problem` (health) and :meth:`status`. A group that vanished
(Redis restarted without its data) is created again from the start of the stream.

The client is redis-py's asyncio API, imported when ``run()`` starts (an optional extra:
``pip install streamer[redis]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamer.input.lines import Lines, LineSplitter, decode_line
from streamer.input.positions import Batch, RedisPosition

log = logging.getLogger(__name__)

#: the pip extra that installs the client
EXTRA = "streamer[redis]"
#: first retry delay after a Redis error (seconds); doubles up to retry_max
RETRY_FIRST = 0.2
#: an outage (or a warning that repeats, such as entries without the field) is logged
#: at most this often, with the count since the last message
LOG_EVERY = 60.0
#: ids per XACK command
ACK_CHUNK = 1000
#: seconds to wait for connecting, and beyond BLOCK for a reply, before calling Redis gone
CONNECT_TIMEOUT = 5.0
REPLY_MARGIN = 10.0
#: an entry id: milliseconds and sequence
_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
#: bytes the line cutter may take at once from one entry (effectively unlimited: an entry
#: is bounded by Redis itself, 512 MB, and its lines by max_line_bytes)
_NO_LIMIT = 1 << 62


class RedisUnavailable(ImportError):
    """The redis client is not installed; the message names the extra."""


def import_client() -> Any:
    """``redis.asyncio``, or RedisUnavailable naming the extra to install."""
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        raise RedisUnavailable(f"the Redis source needs the redis client: pip install "
                               f"'{EXTRA}'") from None
    return redis_asyncio


def redacted(url: str) -> str:
    """The URL without its password, for logs and /stats."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def id_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a sortable pair (ms, seq)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_lines(raw: bytes, splitter: LineSplitter, out: Lines) -> None:
    """Cut the text of one entry into ``out``: its lines by the rules of files, the last
    one whether or not it ends in a newline (an entry is complete). ``splitter`` must be
    empty and is left empty.

    An entry no longer than ``max_line_bytes`` (the usual case) holds no long line: it is
    decoded in one call and split at newlines, which gives what the cutter gives (a
    newline is never part of a UTF-8 sequence, so decoding stops a bad sequence there
    either way) at a fraction of its per-call cost."""
    if len(raw) <= splitter.max_line_bytes:
        if not raw:
            return
        text, bad = decode_line(raw[:-1] if raw.endswith(b"\n") else raw)
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        out.lines.extend(lines)
        out.consumed += len(raw)
        out.nbytes += len(raw) - len(lines)
        out.bad += bad
        return
    splitter.feed(raw)
    splitter.take_into(out, _NO_LIMIT, _NO_LIMIT)
    piece = splitter.flush()
    if piece is not None:
        out.add(piece)


class _RateLimited:
    """A warning logged at most once per LOG_EVERY seconds, with the count in between."""

    def __init__(self) -> None:
        self._last = -LOG_EVERY
        self._unlogged = 0

    def __call__(self, level: int, msg: str, *args: Any) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY:
            suffix = f" ({self._unlogged} time(s) since the last such message)" \
                if self._unlogged > 1 else ""
            log.log(level, msg + suffix, *args)
            self._last = now
            self._unlogged = 0


class RedisStreamSource:
    """Reads one Redis stream as a member ``consumer`` of consumer group ``group``.

    The interface of the other sources (``run``, ``stop``, ``commit``,
    ``committed_positions``, ``restore``, ``status``) plus ``acknowledge(positions)``
    (called once a snapshot holding those positions is on disk), ``drain(timeout)`` (send
    the owed acks and close, at shutdown) and ``problem()`` (why it is degraded, or None).

    ``start`` ("begin" or "now") is where a group created by this source starts: the first
    entry of the stream, or entries added from now on. An existing group keeps its place.
    ``batch_entries`` is the COUNT of each read, ``block`` (seconds) how long a read waits
    for new entries (and so how late ``stop()`` may be honoured), ``claim_idle`` the idle
    time after which another consumer's pending entry is taken over, every
    ``claim_interval``; ``retry_max`` caps the backoff after errors; acks owed for more
    than ``ack_overdue`` seconds make :meth:`problem` report them. Reading pauses while
    ``max_unacked`` entries are counted or in flight and not acknowledged (the bound of
    the id sets, and of the snapshot's share of them, when snapshots stop succeeding).
    """

    def __init__(
        self,
        queue: asyncio.Queue[Batch],
        *,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        field: str = "text",
        start: str = "begin",
        batch_entries: int = 1000,
        block: float = 1.0,
        claim_idle: float = 300.0,
        claim_interval: float = 10.0,
        retry_max: float = 30.0,
        max_unacked: int = 1_000_000,
        ack_overdue: float = 300.0,
        max_line_bytes: int = 1 << 20,
        batch_bytes: int = 1 << 20,
        source_id: str = "redis",
    ) -> None:
        if start not in ("begin", "now"):
            raise ValueError(f"start must be 'begin' or 'now', got {start!r}")
        self.queue = queue
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.field = field
        self.start = start
        self.batch_entries = batch_entries
        self.block = block
        self.claim_idle = claim_idle
        self.claim_interval = claim_interval
        self.retry_max = retry_max
        self.max_unacked = max_unacked
        self.ack_overdue = ack_overdue
        self.batch_bytes = batch_bytes
        self.max_line_bytes = max_line_bytes
        self.source_id = source_id
        self._field_b = field.encode("utf-8")
        self._splitter = LineSplitter(max_line_bytes)
        #: counted by the engine (committed), not yet acknowledged: what a snapshot stores
        self._counted: set[str] = set()
        #: handed to the queue, not yet committed
        self._inflight: set[str] = set()
        #: in a snapshot on disk (or deleted): to XACK
        self._owed: set[str] = set()
        self._owed_since: float | None = None
        self._restored_any = False  # restore() gave positions: not a first start
        self._pending_done = False  # own pending entries re-read (once per run)
        self._connected_once = False
        self._client: Any = None
        self._redis: Any = None  # the redis.asyncio module
        self._connected = False
        self._state = "starting"
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._stop_requested = False
        self._paused = False  # max_unacked reached: no reads until acks come
        self._wake: asyncio.Event | None = None  # wakes the ack loop
        self._ack_task: asyncio.Task[None] | None = None
        self._log_outage = _RateLimited()
        self._log_ack_failure = _RateLimited()
        self._log_no_field = _RateLimited()
        # counters (cumulative for this process)
        self.entries_read = 0  # delivered by XREADGROUP (new and own pending) or claimed
        self.entries_counted = 0  # committed: their lines were counted by the engine
        self.entries_acked = 0  # XACK removed them from the pending list
        self.entries_claimed = 0  # taken over from other consumers (XAUTOCLAIM)
        self.entries_lost = 0  # deleted or trimmed before they were counted
        self.entries_skipped = 0  # counted by the restored snapshot, acked at start
        self.entries_without_field = 0
        self.reconnects = 0
        self.lines = 0
        self.bytes_read = 0
        self.bytes_committed = 0
        self.replaced_bytes = 0
        self.long_lines = 0

    # ------------------------------------------------------------------ the interface

    def restore(self, positions: list[dict[str, Any]]) -> None:
        """Take the ids the snapshot counted; they are acked (not counted) at start.

        Positions of another stream or group are ignored with a warning: those entries
        are not this group's to acknowledge."""
        # a stored position of this stream says the group existed: if it is missing now,
        # Redis lost it, and it is created again from the start of the stream
        self._restored_any = any(d.get("stream") == self.stream and d.get("group") == self.group
                                 for d in positions)
        for data in positions:
            if data.get("stream") != self.stream or data.get("group") != self.group:
                log.warning("%s: the snapshot holds a position of stream %r group %r, not "
                            "of %r group %r: ignored", self.source_id, data.get("stream"),
                            data.get("group"), self.stream, self.group)
                continue
            ids = data.get("counted")
            if not isinstance(ids, list) or not all(
                    isinstance(i, str) and _ID.match(i) for i in ids):
                log.warning("%s: ignoring a stored position with bad ids", self.source_id)
                continue
            self._counted.update(ids)
            self._owed.update(ids)
            if data.get("consumer") not in (None, self.consumer):
                log.info("%s: the snapshot was taken by consumer %r, this one is %r; its "
                         "counted entries are acknowledged whoever holds them",
                         self.source_id, data.get("consumer"), self.consumer)
        if self._owed:
            self._owed_since = time.monotonic()

    async def run(self) -> None:
        """Read until ``stop()``: connect, re-read own pending entries, then new ones and
        claimed ones; Redis errors are retried with backoff, never raised."""
        self._redis = import_client()
        self._wake = asyncio.Event()
        self._ack_task = asyncio.get_running_loop().create_task(
            self._ack_loop(), name=f"{self.source_id}-acks")
        delay = RETRY_FIRST
        try:
            while not self._stop_requested:
                try:
                    await self._connect()
                    delay = RETRY_FIRST
                    if not self._pending_done:
                        await self._send_acks()  # the restored ids first: they are counted
                        await self._read_own_pending()
                    await self._read_new()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not self._is_redis_error(exc):
                        raise
                    await self._disconnected(exc)
                    await self._sleep(delay)
                    delay = min(delay * 2, self.retry_max)
        finally:
            self._state = "stopped"

    def stop(self) -> None:
        """Ask ``run()`` to return (within ``block`` seconds)."""
        self._stop_requested = True
        if self._wake is not None:
            self._wake.set()

    def commit(self, position: RedisPosition) -> None:
        """The engine counted the entries of ``position``: they are to be snapshotted."""
        if not isinstance(position, RedisPosition):
            raise TypeError(f"not a RedisPosition: {position!r}")
        self._inflight.difference_update(position.ids)
        self._counted.update(position.ids)
        self.entries_counted += len(position.ids)
        self.bytes_committed += position.nbytes

    def committed_positions(self) -> list[dict[str, Any]]:
        """For the snapshot: the ids counted and not yet acknowledged (call it under the
        engine lock, with the counts)."""
        return [{"source": "redis", "stream": self.stream, "group": self.group,
                 "consumer": self.consumer, "counted": list(self._counted)}]

    def acknowledge(self, positions: list[dict[str, Any]]) -> None:
        """A snapshot holding ``positions`` (from :meth:`committed_positions`) is on disk:
        XACK their ids (now, or once Redis is back). Idempotent."""
        ids: set[str] = set()
        for data in positions:
            if data.get("stream") == self.stream and data.get("group") == self.group:
                ids.update(i for i in data.get("counted") or () if i in self._counted)
        if not ids:
            return
        if not self._owed:
            self._owed_since = time.monotonic()
        self._owed.update(ids)
        if self._wake is not None:
            self._wake.set()

    async def drain(self, timeout: float) -> None:
        """At shutdown, after the final snapshot: send the owed acks (one attempt, at most
        ``timeout`` seconds), stop the ack loop and close the connection. Acks that fail
        stay owed in the snapshot: the next start sends them."""
        if self._ack_task is not None:
            self._ack_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ack_task
        if self._owed:
            try:
                await asyncio.wait_for(self._send_acks(), timeout)
            except (TimeoutError, Exception) as exc:
                if not isinstance(exc, TimeoutError) and not self._is_redis_error(exc):
                    raise
                log.warning("%s: %d ack(s) not sent at shutdown (%s); the snapshot holds "
                            "them and the next start sends them", self.source_id,
                            len(self._owed), str(exc) or "timed out")
        await self._close_client()

    def problem(self) -> str | None:
        """Why the source is degraded (for /healthz), or None."""
        if self._stop_requested:
            return None
        now = time.monotonic()
        if not self._connected and self._down_since is not None:
            return (f"redis {redacted(self.url)} stream {self.stream!r} unreachable for "
                    f"{now - self._down_since:.0f} s ({self._last_error}); retrying")
        if self._owed and self._owed_since is not None \
                and now - self._owed_since > self.ack_overdue:
            return (f"redis stream {self.stream!r}: {len(self._owed)} ack(s) owed for "
                    f"{now - self._owed_since:.0f} s ({self._last_error or 'retrying'})")
        return None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def acks_owed(self) -> int:
        return len(self._owed)

    def status(self) -> list[dict[str, Any]]:
        return [{
            "source": self.source_id,
            "kind": "redis",
            "path": f"{redacted(self.url)}/{self.stream}",
            "state": self._state,
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "field": self.field,
            "connected": self._connected,
            "paused": self._paused,
            "reconnects": self.reconnects,
            "last_error": self._last_error,
            "entries_read": self.entries_read,
            "entries_counted": self.entries_counted,
            "entries_acked": self.entries_acked,
            "entries_claimed": self.entries_claimed,
            "entries_lost": self.entries_lost,
            "entries_skipped": self.entries_skipped,
            "entries_without_field": self.entries_without_field,
            "counted_unacked": len(self._counted),
            "acks_owed": len(self._owed),
            "in_flight": len(self._inflight),
            "lines": self.lines,
            "bytes_read": self.bytes_read,
            "committed_offset": self.bytes_committed,
            "replaced_bytes": self.replaced_bytes,
            "long_lines": self.long_lines,
        }]

    # ------------------------------------------------------------------ connection

    def _is_redis_error(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError | TimeoutError) or (
            self._redis is not None and isinstance(exc, self._redis.RedisError))

    async def _connect(self) -> None:
        """Connect (if not connected), make sure the group exists, check for trimming."""
        if self._connected:
            return
        if self._client is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # no retries inside the client: this source retries (and says so) itself
            self._client = self._redis.Redis.from_url(
                self.url, decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=self.block + REPLY_MARGIN, retry=Retry(NoBackoff(), 0))
        await self._client.ping()
        await self._ensure_group()
        await self._check_trimmed()
        was_down = self._down_since
        self._connected = True
        self._state = "connected"
        self._down_since = None
        if was_down is not None:
            self.reconnects += 1
            log.info("%s: reconnected to %s after %.1f s", self.source_id,
                     redacted(self.url), time.monotonic() - was_down)
        else:
            log.info("%s: reading stream %r of %s as consumer %r of group %r",
                     self.source_id, self.stream, redacted(self.url), self.consumer,
                     self.group)
        self._connected_once = True
        if self._owed and self._wake is not None:
            self._wake.set()

    async def _ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists. A group created again after
        this process (or its snapshot) knew it starts at the beginning of the stream: it
        vanished with Redis's data, and the entries added since are unread."""
        try:
            groups = await self._client.xinfo_groups(self.stream)
        except self._redis.ResponseError:
            groups = []  # no such key
        if any(_text(g.get("name")) == self.group for g in groups):
            return
        again = self._connected_once or self._restored_any
        start_id = "0" if again or self.start == "begin" else "$"
        try:
            await self._client.xgroup_create(self.stream, self.group, id=start_id,
                                             mkstream=True)
        except self._redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return  # another consumer created it meanwhile
        if again:
            log.warning("%s: consumer group %r of stream %r was missing (Redis restarted "
                        "without its data?): created again from the start of the stream",
                        self.source_id, self.group, self.stream)
        else:
            log.info("%s: created consumer group %r of stream %r from %s", self.source_id,
                     self.group, self.stream,
                     "the start of the stream" if start_id == "0" else "now on")

    async def _check_trimmed(self) -> None:
        """Entries trimmed (XTRIM, MAXLEN) before the group read them: counted as lost.

        When the stream's first entry lies after the group's last-delivered id, the
        entries in between are gone unread; Redis counts them as entries-added minus the
        group's entries-read minus the entries still there. Checked once per connection;
        with several consumers in the group, each may report the same gap."""
        try:
            info = await self._client.xinfo_stream(self.stream)
            groups = await self._client.xinfo_groups(self.stream)
        except self._redis.ResponseError:
            return
        group = next((g for g in groups if _text(g.get("name")) == self.group), None)
        if group is None:
            return
        read = group.get("entries-read")
        added = info.get("entries-added")
        if read is None or added is None:
            return
        last = id_key(_text(group.get("last-delivered-id")) or "0-0")
        first_entry = info.get("first-entry")
        if first_entry:
            first = id_key(_text(first_entry[0]))
            if first <= last:
                return  # nothing unread was trimmed
        lost = int(added) - int(read) - int(info.get("length") or 0)
        if lost > 0:
            self.entries_lost += lost
            log.warning("%s: %d entries of stream %r were trimmed before group %r read "
                        "them: counted as lost", self.source_id, lost, self.stream,
                        self.group)

    async def _disconnected(self, exc: BaseException) -> None:
        if isinstance(exc, self._redis.ResponseError) and "NOGROUP" in str(exc):
            self._last_error = f"consumer group missing: {exc}"
        else:
            self._last_error = f"{type(exc).__name__}: {exc}"
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._connected = False
        if self._state != "stopped":
            self._state = "disconnected"
        self._log_outage(logging.WARNING, "%s: redis %s: %s; retrying with backoff",
                         self.source_id, redacted(self.url), self._last_error)
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but return at once on stop()."""
        wake = asyncio.Event()
        end = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(0.1, end - time.monotonic()))

    # ------------------------------------------------------------------ reading

    async def _read_own_pending(self) -> None:
        """Entries delivered to this consumer before a restart and not acked: the restored
        snapshot's ids were acked just before, so what is left was not counted."""
        start = "0-0"
        while not self._stop_requested:
            reply = await self._client.xreadgroup(self.group, self.consumer,
                                                  {self.stream: start},
                                                  count=self.batch_entries)
            entries = _entries(reply)
            if not entries:
                break
            fresh = []
            for raw_id, fields in entries:
                eid = _text(raw_id)
                if eid in self._inflight or eid in self._counted or eid in self._owed:
                    continue  # handed out, or found deleted, by an interrupted pass
                self.entries_read += bool(fields)  # without: deleted (lost)
                fresh.append((eid, fields))
            await self._hand_out(fresh)
            start = _text(entries[-1][0])
        else:
            return
        self._pending_done = True
        if self.entries_read or self.entries_skipped:
            log.info("%s: start: %d entr(ies) the snapshot counted acknowledged, %d pending "
                     "entr(ies) of consumer %r re-read to be counted", self.source_id,
                     self.entries_skipped, self.entries_read, self.consumer)

    async def _read_new(self) -> None:
        """New entries (XREADGROUP >), and every claim_interval the entries other
        consumers left pending for claim_idle, until stop() or an error.

        The first claim comes claim_idle after the (re)connection, not at once: after an
        outage every pending entry looks idle (Redis counts from its delivery), and the
        other consumers need that long to reconnect and acknowledge what they counted."""
        loop = asyncio.get_running_loop()
        next_claim = loop.time() + self.claim_idle
        block_ms = max(1, int(self.block * 1000))
        while not self._stop_requested:
            if len(self._counted) + len(self._inflight) >= self.max_unacked:
                if not self._paused:
                    self._paused = True
                    log.warning("%s: %d entries counted or in flight and not acknowledged "
                                "(max_unacked): reading paused until a snapshot is written "
                                "and acknowledged", self.source_id, self.max_unacked)
                await self._sleep(min(self.block, 0.5))
                continue
            if self._paused:
                self._paused = False
                log.info("%s: acknowledged: reading again", self.source_id)
            if loop.time() >= next_claim:
                await self._claim()
                next_claim = loop.time() + self.claim_interval
                continue
            reply = await self._client.xreadgroup(self.group, self.consumer,
                                                  {self.stream: ">"},
                                                  count=self.batch_entries, block=block_ms)
            entries = _entries(reply)
            self.entries_read += len(entries)
            await self._hand_out([(_text(i), f) for i, f in entries])

    async def _claim(self) -> None:
        """One pass of XAUTOCLAIM over the group's pending list."""
        cursor = "0-0"
        min_idle = int(self.claim_idle * 1000)
        while not self._stop_requested:
            reply = await self._client.xautoclaim(self.stream, self.group, self.consumer,
                                                  min_idle, cursor, count=self.batch_entries)
            nxt, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            # ids this source knows (counted, in flight, or already found deleted and owed
            # an ack) are not news: XAUTOCLAIM reports deleted ids whatever their idle time
            known = self._counted, self._inflight, self._owed
            gone = [d for d in map(_text, deleted) if not any(d in k for k in known)]
            if gone:
                self.entries_lost += len(gone)
                log.warning("%s: %d pending entr(ies) of stream %r were deleted before they "
                            "were counted (%s...): counted as lost", self.source_id,
                            len(gone), self.stream, gone[0])
            fresh = []
            for raw_id, fields in entries:
                eid = _text(raw_id)
                if eid in self._inflight or eid in self._counted:
                    continue  # ours already: in the queue, or counted and not yet acked
                fresh.append((eid, fields))
            if fresh:
                self.entries_claimed += len(fresh)
                self.entries_read += len(fresh)
                log.info("%s: claimed %d entr(ies) idle for %g s or more", self.source_id,
                         len(fresh), self.claim_idle)
                await self._hand_out(fresh)
            cursor = _text(nxt)
            if cursor == "0-0":
                return

    async def _hand_out(self, entries: Sequence[tuple[str, dict[bytes, bytes] | None]]) -> None:
        """Cut entries into batches of whole entries (at most batch_bytes of text, or one
        entry) and queue them. Entries without text to count (deleted, without the field,
        empty) are committed at once: there is nothing of them to snapshot but their id."""
        out = Lines()
        ids: list[str] = []
        nbytes = 0
        no_text: list[str] = []
        deleted: list[str] = []
        for eid, fields in entries:
            if not fields:  # deleted while pending: nothing left to count
                deleted.append(eid)
                continue
            raw = fields.get(self._field_b)
            if raw is None:
                self.entries_without_field += 1
                self._log_no_field(logging.WARNING, "%s: entry %s of stream %r has no field "
                                   "%r: skipped", self.source_id, eid, self.stream, self.field)
                no_text.append(eid)
                continue
            self.bytes_read += len(raw)
            before = len(out.lines)
            entry_lines(raw, self._splitter, out)
            if len(out.lines) == before:
                no_text.append(eid)
                continue
            ids.append(eid)
            nbytes += len(raw)
            if out.nbytes >= self.batch_bytes:
                await self._put(out, ids, nbytes)
                out, ids, nbytes = Lines(), [], 0
        if ids:
            await self._put(out, ids, nbytes)
        if deleted:
            self.entries_lost += len(deleted)
            log.warning("%s: %d pending entr(ies) of stream %r were deleted before they were "
                        "counted (%s...): counted as lost", self.source_id, len(deleted),
                        self.stream, deleted[0])
            self._owe(deleted)
        if no_text:
            self.commit(RedisPosition(tuple(no_text)))

    async def _put(self, out: Lines, ids: list[str], nbytes: int) -> None:
        self.lines += len(out.lines)
        self.replaced_bytes += out.bad
        self.long_lines += len(out.long_at)
        self._inflight.update(ids)
        await self.queue.put(Batch(self.source_id, out.lines, RedisPosition(tuple(ids), nbytes)))

    # ------------------------------------------------------------------ acks

    def _owe(self, ids: Iterable[str]) -> None:
        if not self._owed:
            self._owed_since = time.monotonic()
        self._owed.update(ids)
        if self._wake is not None:
            self._wake.set()

    async def _send_acks(self) -> None:
        """XACK every owed id, in chunks; an error leaves the rest owed and propagates."""
        while self._owed:  # more may be owed meanwhile (each await lets others run)
            ids = list(self._owed)
            for i in range(0, len(ids), ACK_CHUNK):
                chunk = ids[i:i + ACK_CHUNK]
                if self._client is None:
                    raise ConnectionError("not connected")
                n = await self._client.xack(self.stream, self.group, *chunk)
                self.entries_acked += int(n)
                self._owed.difference_update(chunk)
                self._counted.difference_update(chunk)
                if not self._pending_done:  # the restored ids: counted before this start
                    self.entries_skipped += int(n)
        self._owed_since = None

    async def _ack_loop(self) -> None:
        """Send owed acks when told (acknowledge) or, while they fail, with backoff."""
        assert self._wake is not None
        delay = RETRY_FIRST
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay if self._owed else None)
            self._wake.clear()
            if not self._owed or not self._connected or not self._pending_done:
                continue  # run() sends them once connected and the pending re-read is done
            try:
                await self._send_acks()
                delay = RETRY_FIRST
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._is_redis_error(exc):
                    raise
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._log_ack_failure(logging.WARNING, "%s: cannot acknowledge %d entr(ies):"
                                      " %s; retrying", self.source_id, len(self._owed), exc)
                delay = min(delay * 2, self.retry_max)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply for one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for value in reply.values():
            return list(value[0]) if value and isinstance(value[0], list) else list(value)
        return []
    return list(reply[0][1])
