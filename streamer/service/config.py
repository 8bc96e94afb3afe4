"""Daemon configuration: a TOML file, validated into frozen dataclasses, plus CLI overrides.

Why a hand-written validator instead of a schema library: the product promise is that
*every* bad value is rejected at start with one line naming the dotted key and the file
(``streamer.toml: engine.min_count: must be an integer >= 1, got -3``), and that the
process exits 2 before it touches state. Doing that with a small table of typed readers
keeps the messages exact and adds no dependency.

Conventions (documented in config/streamer.toml as well):

* Sizes: an integer is bytes; strings take B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB.
  The multipliers are binary in every spelling (1MB = 1MiB = 1048576 bytes, as in
  PostgreSQL's configuration) so that ``memory = "256MB"`` is exactly the engine's
  default budget and a state written by ``streamer discover`` has the same fingerprint.
* Durations: a number is seconds; strings take ms, s, m, h, d and may be compound
  (``"1h30m"``).
* Relative paths (sources.globs, engine.known, state.dir, export.dir, view.shards) are
  resolved against the current working directory of the process, not against the config
  file: ``scripts/run`` starts in the repository root, so the shipped ``inbox/*.txt`` means
  ``<repo>/inbox/*.txt``, and a user who runs ``streamer run`` elsewhere gets the
  directories where they stand, the same as for command-line paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from streamer.core.engine_config import EngineConfig, SettingError, default_min_pmi
from streamer.core.lexicon import DEFAULT_KNOWN

T = TypeVar("T")

TIME_MODES = ("wall", "replay")
EXPORT_FORMATS = ("jsonl", "csv", "tsv", "jieba")
EXPORT_SELECTIONS = ("all", "new", "top")  # as streamer.storage.exports.SELECTIONS
LOG_LEVELS = ("debug", "info", "warning", "error")

_SIZE_UNITS = {
    "b": 1,
    "k": 2**10, "kb": 2**10, "kib": 2**10,
    "m": 2**20, "mb": 2**20, "mib": 2**20,
    "g": 2**30, "gb": 2**30, "gib": 2**30,
    "t": 2**40, "tb": 2**40, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_RE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration problem. ``str()`` is the one line the CLI prints before exiting 2."""

    def __init__(self, origin: str, key: str | None, problem: str) -> None:
        self.origin = origin
        self.key = key
        self.problem = problem
        where = f"{origin}: {key}" if key else origin
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------- value parsers


def parse_size(value: Any) -> int:
    """'256MB' / '1GiB' / 1048576 -> bytes. Raises ValueError with a user-facing reason."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size such as \"256MB\" or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = m.group(2).lower() or "b"
            if unit in _SIZE_UNITS:
                return int(float(m.group(1)) * _SIZE_UNITS[unit])
        raise ValueError(
            f"must be a size such as \"256MB\", \"1GiB\" or a number of bytes, got {value!r}")
    raise ValueError(
        f"must be a size such as \"256MB\" or a number of bytes, got {type(value).__name__}")


def parse_duration(value: Any) -> float:
    """'10s' / '5m' / '1h30m' / '250ms' / 2.5 -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as \"10s\" or seconds, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite duration, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = None
        if seconds is not None:
            return parse_duration(seconds)
        if _DURATION_RE.match(text):
            return sum(float(n) * _DURATION_UNITS[u.lower()]
                       for n, u in _DURATION_PART.findall(text))
        raise ValueError(
            f"must be a duration such as \"10s\", \"5m\", \"1h\" or seconds, got {value!r}")
    raise ValueError(f"must be a duration such as \"10s\" or seconds, got {type(value).__name__}")


def parse_listen(value: Any) -> tuple[str, int]:
    """'127.0.0.1:8377' / '[::1]:8377' / 'localhost:0' -> (host, port)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string \"HOST:PORT\", got {type(value).__name__}")
    text = value.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", text) or re.fullmatch(
        r"([A-Za-z0-9.\-]+):(\d{1,5})", text)
    if not m:
        raise ValueError(f"must be HOST:PORT (IPv6 as [::1]:PORT), got {value!r}")
    host, port = m.group(1), int(m.group(2))
    if port > 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    if text.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address: {host!r}") from None
    elif re.fullmatch(r"[\d.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"not an IPv4 address: {host!r}") from None
    elif not re.fullmatch(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*",
                          host):
        raise ValueError(f"not a valid host name: {host!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_size(n: int) -> str:
    """Bytes -> the shortest exact human spelling ('256MB'), for logs and dumps."""
    for unit, mult in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)



# --------------------------------------------------------------------------- table reader


class _Table:
    """Typed, consuming access to one TOML table; leftover keys are unknown keys."""

    def __init__(self, origin: str, prefix: str, data: Mapping[str, Any]) -> None:
        self.origin = origin
        self.prefix = prefix
        self.data = dict(data)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.origin, self.key(name), problem)

    def take(self, name: str, default: T, conv: Callable[[Any], T]) -> T:
        if name not in self.data:
            return default
        raw = self.data.pop(name)
        try:
            return conv(raw)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def finish(self, allowed: tuple[str, ...]) -> None:
        if self.data:
            name = sorted(self.data)[0]
            hint = f" (known keys: {', '.join(allowed)})" if allowed else ""
            raise self.error(name, f"unknown key{hint}")


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {_show(v)}")
    return v


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise ValueError(f"must be an integer >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise ValueError(f"must be an integer <= {hi}, got {v}")
        return v
    return conv


def _float(lo: float | None = None, *, strict: bool = False) -> Callable[[Any], float]:
    def conv(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"must be a number, got {_show(v)}")
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"must be a finite number, got {v!r}")
        if lo is not None and (f <= lo if strict else f < lo):
            raise ValueError(f"must be a number {'>' if strict else '>='} {lo:g}, got {v!r}")
        return f
    return conv


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {_show(v)}")
    return v


def _path(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty path string, got {_show(v)}")
    if "\x00" in v:
        raise ValueError("must not contain NUL")
    return v


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}, got {_show(v)}")
        return v.lower()
    return conv


def _list_of(conv: Callable[[Any], T]) -> Callable[[Any], tuple[T, ...]]:
    def inner(v: Any) -> tuple[T, ...]:
        if not isinstance(v, list):
            raise ValueError(f"must be a list, got {_show(v)}")
        out = []
        for i, item in enumerate(v):
            try:
                out.append(conv(item))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return tuple(out)
    return inner


def _positive_duration(v: Any) -> float:
    s = parse_duration(v)
    if s <= 0:
        raise ValueError(f"must be a positive duration, got {v!r}")
    return s


def _timestamp(v: Any) -> float:
    """Replay start: epoch seconds or a TOML date-time (offset-less ones are taken as UTC)."""
    from datetime import UTC

    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp()
    if isinstance(v, str):
        try:
            d = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be a date-time or epoch seconds, got {v!r}") from None
        return _timestamp(d)
    return _float()(v)


def _show(v: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table", datetime: "date-time", date: "date", time: "time"}.get(type(v))
    return f"{kind or type(v).__name__} {v!r}" if not isinstance(v, dict) else "a table"


def _section(root: _Table, name: str) -> _Table:
    if name not in root.data:
        return _Table(root.origin, name, {})
    raw = root.data.pop(name)
    if not isinstance(raw, dict):
        raise ConfigError(root.origin, name, f"must be a table [{name}], got {_show(raw)}")
    return _Table(root.origin, name, raw)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _min_size(lo: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        n = parse_size(v)
        if n < lo:
            raise ValueError(f"must be at least {format_size(lo)} ({lo} bytes), got {v!r}")
        return n
    return conv


def _optional_int(v: Any) -> int | None:
    # TOML has no null; 0 is accepted as "derive it" / "no limit" for capacity, max_words, top_k.
    if type(v) is int and v == 0:
        return None
    return _int()(v)


def _optional_positive(v: Any) -> int | None:
    n = _optional_int(v)
    if n is not None and n < 1:
        raise ValueError(f"must be an integer >= 1 (or 0 for none), got {n}")
    return n


def _half_life(v: Any) -> float:
    # 0 = no decay (counts are plain occurrences, as in `discover`): TOML has no
    # infinity, and 0 already means "none" for capacity, max_words and top_k
    s = parse_duration(v)
    return math.inf if s == 0 else s


def _lower(v: Any) -> str:
    return _str(v).lower()


def _unique(conv: Callable[[Any], tuple[str, ...]]) -> Callable[[Any], tuple[str, ...]]:
    def inner(v: Any) -> tuple[str, ...]:
        items = conv(v)
        return tuple(dict.fromkeys(items))
    return inner


def _host_name(v: Any) -> str:
    """A Host name for http.allowed_hosts: a DNS name, an IPv4 or IPv6 address, or "*"."""
    if v == "*":
        return v
    problem = f"must be a host name, an IP address or \"*\", got {_show(v)}"
    if not isinstance(v, str) or not v.strip():
        raise ValueError(problem)
    name = v.strip().lower().rstrip(".")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        parse_listen(f"[{bare}]:0" if ":" in bare else f"{bare}:0")
    except ValueError:
        raise ValueError(problem) from None
    return bare


def _listen(v: Any) -> str:
    parse_listen(v)
    return v.strip()


# --------------------------------------------------------------------------- sections
#
# Each key is declared once: its default and the reader that turns a TOML value into it (the
# reader checks the type and the range of service settings). Engine values are only converted
# here: EngineConfig checks them, and check() reports its SettingError under the key.


def setting(default: Any, read: Callable[[Any], Any]) -> Any:
    """A dataclass field with its TOML reader."""
    return field(default=default, metadata={"read": read})


_ENGINE = EngineConfig()


@dataclass(frozen=True)
class SourcesConfig:
    """What to tail.

    globs           file globs, relative to the working directory; new matches are picked up.
    stdin           also read standard input (``tail -F x | streamer run --stdin``).
    from_beginning  for files that already exist at the very first start (no stored position):
                    read them whole (true) or only what is appended from now on (false).
                    Files that appear later are always read from their first byte, and
                    restored positions always win.
    max_line_bytes  longer lines are cut into clause-safe pieces instead of buffered whole.
    scan_interval   how often globs are re-expanded to pick up new files.
    poll_interval   how often open files are checked for growth, rotation and truncation.
    rotate_wait     how long a rotated-away file that stopped growing is kept open (writers
                    that still hold it get this long to finish).
    queue_batches   capacity of the queue between sources and the engine (backpressure).
    batch_bytes     target size of one batch handed to the engine.
    max_open_files  files held open at once, at most (0: the process's RLIMIT_NOFILE
                    minus a reserve for snapshots, exports and HTTP); idle files are
                    closed and reopened by identity when they grow.
    """

    globs: tuple[str, ...] = setting(("inbox/*.txt",), _list_of(_path))
    stdin: bool = setting(False, _bool)
    from_beginning: bool = setting(True, _bool)
    max_line_bytes: int = setting(2**20, _min_size(256))
    scan_interval: float = setting(1.0, _positive_duration)
    poll_interval: float = setting(0.2, _positive_duration)
    rotate_wait: float = setting(5.0, parse_duration)
    queue_batches: int = setting(16, _int(1, 10_000))
    batch_bytes: int = setting(2**20, _min_size(1024))
    max_open_files: int = setting(0, _int(0, 1 << 20))


REDIS_SCHEMES = ("redis", "rediss")
REDIS_STARTS = ("begin", "now")
#: query parameters of `--source redis://HOST:PORT/STREAM?...` -> [redis] keys
REDIS_QUERY = ("group", "field", "consumer", "start", "db")
#: [redis] keys a --source redis://... keeps from the file (the others come from the flag)
REDIS_TUNING = ("batch_entries", "block", "claim_idle", "claim_interval", "retry_max",
                "max_unacked")


def _redis_url(v: Any) -> str:
    """A Redis server URL, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss: TLS);
    "" for no Redis source."""
    text = _str(v).strip()
    if not text:
        return ""
    problem = f"must be redis://HOST:PORT or rediss://HOST:PORT (optionally /DB), got {v!r}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in REDIS_SCHEMES or not parts.hostname or parts.query \
            or parts.fragment or (port is not None and not 0 < port < 65536):
        raise ValueError(problem)
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ValueError(f"{problem} (the path is a database number; the stream is "
                         "redis.stream)")
    return text


def parse_redis_source(text: str) -> dict[str, str]:
    """``redis://HOST:PORT/STREAM?group=G&field=text&consumer=C&start=now&db=N`` (the
    --source form) -> [redis] keys. ValueError says what is wrong."""
    parts = urlsplit(text)
    server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    stream = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not stream:
        raise ValueError(f"{text!r}: give the stream as the path: "
                         "redis://HOST:PORT/STREAM?group=GROUP")
    out = {"stream": stream}
    query = parse_qs(parts.query, keep_blank_values=True)
    for name, values in query.items():
        if name not in REDIS_QUERY:
            raise ValueError(f"{text!r}: unknown parameter {name!r} (known: "
                             f"{', '.join(REDIS_QUERY)})")
        if len(values) != 1 or not values[0]:
            raise ValueError(f"{text!r}: {name} must have one non-empty value")
        out[name] = values[0]
    if "group" not in out:
        raise ValueError(f"{text!r}: missing group=GROUP (the consumer group to join)")
    db = out.pop("db", None)
    if db is not None and not db.isdigit():
        raise ValueError(f"{text!r}: db must be a database number, got {db!r}")
    out["url"] = _redis_url(server + (f"/{db}" if db is not None else ""))
    if "start" in out:
        out["start"] = _choice(REDIS_STARTS)(out["start"])
    return out


def is_redis_source(text: str) -> bool:
    """Whether a --source value names a Redis stream rather than a file glob."""
    return text.split("://", 1)[0].lower() in REDIS_SCHEMES and "://" in text


@dataclass(frozen=True)
class RedisConfig:
    """A Redis stream as a source (needs ``pip install streamer[redis]``).

    url             the server, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss:// for
                    TLS); "" = no Redis source.
    stream, group   the stream key and the consumer group to join (created if missing,
                    with the stream).
    field           the entry field holding the text (one or more lines).
    consumer        this service's name in the group; "" = host name + a hash of the
                    absolute state.dir, stable across restarts (a restarted consumer must
                    find its own pending entries under its name).
    start           where a group this service creates starts: "begin" (the stream's first
                    entry) or "now" (entries added from now on). An existing group keeps
                    its place.
    batch_entries   entries per read (XREADGROUP COUNT).
    block           how long a read waits for new entries (also how late a stop request
                    may be honoured).
    claim_idle      pending entries of other consumers idle this long are taken over
                    (XAUTOCLAIM); must exceed intervals.snapshot, since a live consumer
                    acknowledges only after a snapshot.
    claim_interval  how often the group's pending list is searched for such entries.
    retry_max       longest wait between two attempts while Redis is unreachable.
    max_unacked     entries counted (or in flight) and not yet acknowledged, at most: the
                    capacity of the id set a snapshot stores (~100 bytes of memory each);
                    reading pauses there until a snapshot is written and acknowledged. It
                    should exceed the entries of one snapshot interval.
    """

    url: str = setting("", _redis_url)
    stream: str = setting("", _str)
    group: str = setting("", _str)
    field: str = setting("text", _str)
    consumer: str = setting("", _str)
    start: str = setting("begin", _choice(REDIS_STARTS))
    batch_entries: int = setting(1000, _int(1, 100_000))
    block: float = setting(1.0, _positive_duration)
    claim_idle: float = setting(300.0, _positive_duration)
    claim_interval: float = setting(10.0, _positive_duration)
    retry_max: float = setting(30.0, _positive_duration)
    max_unacked: int = setting(1_000_000, _int(1000, 100_000_000))


@dataclass(frozen=True)
class EngineSection:
    """Engine parameters (streamer.core.engine_config.EngineConfig documents each) and the
    known lexicons.

    Defaults are the engine's, except half_life (the engine's batch default is "no decay";
    a service needs the ranking to follow what is happening now) and max_words (bounds
    the published list of a service that runs for months). min_pmi None = derived from the
    order (2, 4, 6, ... nats). ``known`` holds lexicon paths or names
    (streamer.core.lexicon.resolve_known), jieba's by default, as for `discover`."""

    order: int = setting(_ENGINE.order, _int())
    min_count: int = setting(_ENGINE.min_count, _int())
    min_pmi: tuple[float, ...] | None = setting(None, _list_of(_float()))
    bound_share: float = setting(_ENGINE.bound_share, _float(0.0))
    min_entropy: float = setting(_ENGINE.min_entropy, _float())
    units: str = setting(_ENGINE.units, _lower)
    memory: int = setting(_ENGINE.memory, parse_size)
    exact: bool = setting(_ENGINE.exact, _bool)
    depth: int = setting(_ENGINE.depth, _int())
    seed: int = setting(_ENGINE.seed, _int())
    half_life: float = setting(3600.0, _half_life)
    capacity: int | None = setting(None, _optional_int)
    max_words: int | None = setting(10_000, _optional_int)
    known: tuple[str, ...] = setting(DEFAULT_KNOWN, _list_of(_path))

    def __post_init__(self) -> None:
        if self.min_pmi is None:  # derived from the order, as the engine derives it
            object.__setattr__(self, "min_pmi", default_min_pmi(self.order))

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for EngineConfig (everything but the lexicon paths)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.pop("known")
        return d

    def engine_config(self) -> EngineConfig:
        """The engine's configuration (raises SettingError for an impossible value)."""
        return EngineConfig(**self.engine_kwargs())


@dataclass(frozen=True)
class TimeConfig:
    """Stream time.

    mode "wall": stream time is the wall clock.
    mode "replay": stream time = start + characters ingested / chars_per_second, so a run over
    the same input gives the same times, rankings and first_seen whatever the machine speed.
    """

    mode: str = setting("wall", _choice(TIME_MODES))
    chars_per_second: float = setting(1000.0, _float(0.0, strict=True))
    start: float = setting(1_704_067_200.0, _timestamp)  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class IntervalsConfig:
    rescore: float = setting(10.0, _positive_duration)
    snapshot: float = setting(60.0, _positive_duration)
    export: float = setting(60.0, _positive_duration)


@dataclass(frozen=True)
class StateConfig:
    dir: str = setting("state", _path)
    keep: int = setting(2, _int(1, 1000))


@dataclass(frozen=True)
class ExportConfig:
    """Periodic exports. ``latest.jsonl`` is also replaced after every rescore, with the same
    selection and top_k, so that it always agrees with the newest timestamped export."""

    dir: str = setting("exports", _path)
    formats: tuple[str, ...] = setting(("jsonl",), _unique(_list_of(_choice(EXPORT_FORMATS))))
    selection: str = setting("all", _choice(EXPORT_SELECTIONS))
    top_k: int | None = setting(None, _optional_positive)
    retention_files: int = setting(0, _int(0))  # 0 = keep every timestamped export
    retention_days: float = setting(0.0, _float(0.0))  # 0 = no age limit


@dataclass(frozen=True)
class HttpConfig:
    listen: str = setting("127.0.0.1:8377", _listen)
    enabled: bool = setting(True, _bool)
    ingest_enabled: bool = setting(False, _bool)
    ingest_token: str = setting("", _str)
    max_body: int = setting(2**20, _min_size(1))
    header_timeout: float = setting(10.0, _positive_duration)
    idle_timeout: float = setting(30.0, _positive_duration)
    max_connections: int = setting(256, _int(1))
    reserved_fds: int = setting(128, _int(0))
    allowed_hosts: tuple[str, ...] = setting((), _list_of(_host_name))

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]


@dataclass(frozen=True)
class ViewConfig:
    """A merged view of shard services (streamer.service.shard_view).

    shards    state directories of the shard services (their ``state.dir``, shared or
              copied here); non-empty makes this service the view: it reads no sources,
              and every ``interval`` merges the shards' newest snapshots and publishes.
    interval  how often the shards' directories are checked for new snapshots.
    """

    shards: tuple[str, ...] = setting((), _unique(_list_of(_path)))
    interval: float = setting(10.0, _positive_duration)


@dataclass(frozen=True)
class LogConfig:
    level: str = setting("info", _choice(LOG_LEVELS))


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration. ``origin`` names where it came from, for messages."""

    sources: SourcesConfig = field(default_factory=SourcesConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    engine: EngineSection = field(default_factory=EngineSection)
    time: TimeConfig = field(default_factory=TimeConfig)
    intervals: IntervalsConfig = field(default_factory=IntervalsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    view: ViewConfig = field(default_factory=ViewConfig)
    log: LogConfig = field(default_factory=LogConfig)
    origin: str = "built-in defaults"
    #: dotted key -> the command-line flag that set it (for messages about its value)
    flags: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every section (for `--dump-config`-style logging and tests)."""
        d = dataclasses.asdict(self)
        d.pop("origin")
        d.pop("flags")
        return d

    def where(self, key: str) -> str:
        """'<file>: <key>' or 'command line: <flag>' - who set the value of *key*."""
        flag = dict(self.flags).get(key)
        return f"command line: {flag}" if flag else f"{self.origin}: {key}"


#: the TOML tables: [name] -> its section class (every other top-level key is unknown)
SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)
            if f.default_factory is not dataclasses.MISSING}


# --------------------------------------------------------------------------- loading


def _read_section(root: _Table, name: str, cls: Callable[..., T]) -> T:
    t = _section(root, name)
    values = {f.name: t.take(f.name, f.default, f.metadata["read"])
              for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    t.finish(_fields(cls))  # type: ignore[arg-type]
    return cls(**values)


def from_dict(data: Mapping[str, Any], origin: str = "<config>") -> Config:
    """Validate a parsed TOML document into a Config (raises ConfigError)."""
    root = _Table(origin, "", data)
    sections = {name: _read_section(root, name, cls) for name, cls in SECTIONS.items()}
    root.finish(tuple(SECTIONS))
    cfg = Config(**sections, origin=origin)  # type: ignore[arg-type]
    check(cfg)
    return cfg


def check(cfg: Config) -> None:
    """Rules across fields, and the engine's own check of its values (apply to the file and
    to the result of overrides); errors name the key, or the flag that set it."""
    try:
        cfg.engine.engine_config()
    except SettingError as exc:
        key = f"engine.{exc.field}"
        flag = dict(cfg.flags).get(key)
        raise (ConfigError("command line", flag, exc.problem) if flag
               else ConfigError(cfg.origin, key, exc.problem)) from None
    _check_redis(cfg)
    h = cfg.http
    if h.enabled and h.ingest_enabled and not h.ingest_token:
        # on loopback too: any web page open in a local browser can POST text/plain there
        raise ConfigError(cfg.origin, "http.ingest_token",
                          "must be set when http.ingest_enabled is true (on a loopback "
                          "address too: any web page in a local browser can POST to it)")
    if cfg.view.shards:
        flag = dict(cfg.flags).get("view.shards")

        def bad(problem: str) -> ConfigError:
            return (ConfigError("command line", flag, problem) if flag
                    else ConfigError(cfg.origin, "view.shards", problem))

        given = [f for f in ("--source", "--stdin") if f in dict(cfg.flags).values()]
        if given:
            raise bad(f"a merged view reads no sources: drop {' and '.join(given)} (or "
                      "run a shard without --shard)")
        if h.ingest_enabled:
            # lines posted to a view would be counted into a merged state that the next
            # merge rebuilds from the shards: they would vanish
            raise bad("a merged view counts no text of its own: set http.ingest_enabled = "
                      "false (post to a shard instead)")
        own = Path(cfg.state.dir).resolve()
        for shard in cfg.view.shards:
            if Path(shard).resolve() == own:
                raise bad(f"{shard} is this service's own state.dir: the view's snapshots "
                          "must not be read back as a shard")


def _check_redis(cfg: Config) -> None:
    r = cfg.redis
    if not r.url:
        return

    def fail(key: str, problem: str) -> ConfigError:
        flag = dict(cfg.flags).get(key)
        return (ConfigError("command line", flag, problem) if flag
                else ConfigError(cfg.origin, key, problem))

    for key in ("stream", "group", "field"):
        if not getattr(r, key).strip():
            raise fail(f"redis.{key}", "must be set (a non-empty string) when redis.url is")
    if r.claim_idle <= cfg.intervals.snapshot:
        raise fail("redis.claim_idle",
                   f"must be longer than intervals.snapshot ({cfg.intervals.snapshot:g} s): "
                   "a live consumer acknowledges its entries only after a snapshot, and "
                   "another consumer would take them over before")


def load(path: str | Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the built-in defaults (= shipped file)."""
    if path is None:
        return Config()
    p = Path(path)
    origin = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(origin, None, "configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(origin, None, "is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(origin, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(origin, None, f"not valid UTF-8 at byte {exc.start}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, None, f"invalid TOML: {exc}") from None
    return from_dict(data, origin)


# --------------------------------------------------------------------------- CLI overrides


def add_override_arguments(p: argparse.ArgumentParser) -> None:
    """The `streamer run` flags that override the file. Values are parsed in apply_overrides,
    so a bad flag produces the same kind of one-line message as a bad key."""
    p.add_argument("--source", dest="sources", action="append", metavar="GLOB|URL",
                   help="file or glob to tail, or a Redis stream "
                        "redis://HOST:PORT/STREAM?group=G[&field=text&consumer=C&start=now]"
                        " (repeatable; the values given replace sources.globs and [redis])")
    p.add_argument("--stdin", action="store_true", default=None,
                   help="also read standard input")
    p.add_argument("--state-dir", metavar="DIR", help="snapshot directory (state.dir)")
    p.add_argument("--export-dir", metavar="DIR", help="export directory (export.dir)")
    http = p.add_mutually_exclusive_group()
    http.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (http.listen)")
    http.add_argument("--no-http", action="store_true", default=None,
                      help="do not serve HTTP")
    p.add_argument("--rescore-interval", metavar="S", help="seconds or '10s' (intervals.rescore)")
    p.add_argument("--snapshot-interval", metavar="S", help="intervals.snapshot")
    p.add_argument("--export-interval", metavar="S", help="intervals.export")
    p.add_argument("--min-count", metavar="N", help="engine.min_count")
    known = p.add_mutually_exclusive_group()
    known.add_argument("--known", action="append", metavar="PATH|NAME",
                       help="known lexicon: a file, one word per line, or a name (jieba). "
                            "Repeatable; the values given replace engine.known")
    known.add_argument("--no-known", action="store_true", default=None,
                       help="no known lexicon (engine.known = [])")
    begin = p.add_mutually_exclusive_group()
    begin.add_argument("--from-beginning", dest="from_beginning", action="store_true",
                       default=None, help="read files present at first start from byte 0")
    begin.add_argument("--from-end", dest="from_beginning", action="store_false",
                       help="only read what is appended after the first start")
    p.add_argument("--shard", dest="shards", action="append", metavar="DIR",
                   help="run as the merged view of shard services: DIR is a shard's state "
                        "directory (repeatable; replaces view.shards; no sources are read)")
    p.add_argument("--log-level", metavar="LEVEL", help=f"one of {', '.join(LOG_LEVELS)}")


def apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge command-line flags over the file; errors name the flag."""

    def conv(flag: str, value: Any, fn: Callable[[Any], T]) -> T:
        try:
            return fn(value)
        except ValueError as exc:
            raise ConfigError("command line", flag, str(exc)) from None

    def number(text: str) -> Any:
        # flags arrive as strings; accept "10" and "10s" alike for durations
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text

    src, eng, iv, rd = cfg.sources, cfg.engine, cfg.intervals, cfg.redis
    st, ex, http, log = cfg.state, cfg.export, cfg.http, cfg.log
    flags = dict(cfg.flags)
    g = getattr
    for attr, key, flag in (("sources", "sources.globs", "--source"),
                            ("state_dir", "state.dir", "--state-dir"),
                            ("export_dir", "export.dir", "--export-dir"),
                            ("listen", "http.listen", "--listen"),
                            ("known", "engine.known", "--known"),
                            ("min_count", "engine.min_count", "--min-count"),
                            ("no_known", "engine.known", "--no-known"),
                            ("shards", "view.shards", "--shard")):
        if g(args, attr, None):
            flags[key] = flag
    if g(args, "sources", None):
        urls = [v for v in args.sources if is_redis_source(v)]
        globs = [v for v in args.sources if not is_redis_source(v)]
        if len(urls) > 1:
            raise ConfigError("command line", "--source", "at most one Redis stream")
        src = dataclasses.replace(src, globs=conv("--source", globs, _list_of(_path)))
        # the stream's identity comes from the flag alone; the file's tuning stays
        rd = dataclasses.replace(RedisConfig(), **{k: getattr(rd, k) for k in REDIS_TUNING})
        if urls:
            rd = dataclasses.replace(rd, **conv("--source", urls[0], parse_redis_source))
            for key in ("url", "stream", "group", "field", "consumer", "start"):
                flags[f"redis.{key}"] = "--source"
    if g(args, "stdin", None):
        src = dataclasses.replace(src, stdin=True)
        flags["sources.stdin"] = "--stdin"
    if g(args, "from_beginning", None) is not None:
        src = dataclasses.replace(src, from_beginning=bool(args.from_beginning))
    if g(args, "state_dir", None) is not None:
        st = dataclasses.replace(st, dir=conv("--state-dir", args.state_dir, _path))
    if g(args, "export_dir", None) is not None:
        ex = dataclasses.replace(ex, dir=conv("--export-dir", args.export_dir, _path))
    if g(args, "listen", None) is not None:
        http = dataclasses.replace(http, listen=conv("--listen", args.listen, _listen),
                                   enabled=True)
    if g(args, "no_http", None):
        http = dataclasses.replace(http, enabled=False)
    for flag, attr in (("--rescore-interval", "rescore"), ("--snapshot-interval", "snapshot"),
                       ("--export-interval", "export")):
        value = g(args, attr + "_interval", None)
        if value is not None:
            iv = dataclasses.replace(iv, **{attr: conv(flag, number(value), _positive_duration)})
    if g(args, "min_count", None) is not None:
        eng = dataclasses.replace(eng, min_count=conv("--min-count", number(args.min_count),
                                                      _int()))
    if g(args, "known", None):
        eng = dataclasses.replace(eng, known=conv("--known", list(args.known), _list_of(_path)))
    if g(args, "no_known", None):
        eng = dataclasses.replace(eng, known=())
    view = cfg.view
    if g(args, "shards", None):
        view = dataclasses.replace(view, shards=conv("--shard", list(args.shards),
                                                     _unique(_list_of(_path))))
    if g(args, "log_level", None) is not None:
        log = dataclasses.replace(log, level=conv("--log-level", args.log_level,
                                                  _choice(LOG_LEVELS)))
    out = dataclasses.replace(cfg, sources=src, redis=rd, engine=eng, intervals=iv, state=st,
                              export=ex, http=http, view=view, log=log,
                              flags=tuple(sorted(flags.items())))
    check(out)
    return out
