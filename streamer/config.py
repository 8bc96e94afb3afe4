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
* Relative paths (sources.globs, engine.known, state.dir, export.dir) are resolved
  against the current working directory of the process, not against the config file:
  ``scripts/run`` starts in the repository root, so the shipped ``inbox/*.txt`` means
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

from streamer.lexicon import DEFAULT_KNOWN

T = TypeVar("T")

#: The smallest memory budget accepted: below this the sketches are too narrow to be useful
#: (collisions dominate every count) and the engine would only produce noise.
MIN_MEMORY = 4 * 2**20

#: Longest n-gram order accepted: the cost of counting grows linearly with the order and the
#: cohesive-set tables with its square; nothing in Chinese needs more than 8-unit atoms
#: (longer words emerge from chained cohesive n-grams anyway).
MAX_ORDER = 8

UNITS = ("mixed", "han")
TIME_MODES = ("wall", "replay")
EXPORT_FORMATS = ("jsonl", "csv", "tsv", "jieba")
EXPORT_SELECTIONS = ("all", "new", "top")  # as streamer.exports.SELECTIONS
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
    """True for localhost and loopback addresses (the only safe place for an open ingest)."""
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


def format_duration(s: float) -> str:
    for unit, mult in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= mult and s % mult == 0:
            return f"{int(s // mult)}{unit}"
    return f"{s:g}s"


# --------------------------------------------------------------------------- sections


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
    """

    globs: tuple[str, ...] = ("inbox/*.txt",)
    stdin: bool = False
    from_beginning: bool = True
    max_line_bytes: int = 2**20
    scan_interval: float = 1.0
    poll_interval: float = 0.2
    rotate_wait: float = 5.0
    queue_batches: int = 16
    batch_bytes: int = 2**20


def _engine_default(name: str) -> Any:
    """The engine's own default for a field, so that the daemon and `streamer discover`
    never drift apart (a state saved by one must load in the other)."""
    from streamer.engine import EngineConfig

    for f in dataclasses.fields(EngineConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)


@dataclass(frozen=True)
class EngineSection:
    """Engine parameters; mirrors streamer.engine.EngineConfig (docs/contracts.md).

    Defaults are the engine's, except half_life (the engine's batch default is "no decay";
    a service needs the ranking to follow what is happening now) and max_words (bounds
    the published list of a service that runs for months). ``known`` holds lexicon paths
    or names (streamer.lexicon.resolve_known), jieba's by default, as for `discover`."""

    order: int = _engine_default("order")
    min_count: int = _engine_default("min_count")
    min_pmi: tuple[float, ...] = _engine_default("min_pmi")
    min_entropy: float = _engine_default("min_entropy")
    units: str = _engine_default("units")
    memory: int = _engine_default("memory")
    exact: bool = _engine_default("exact")
    depth: int = _engine_default("depth")
    seed: int = _engine_default("seed")
    half_life: float = 3600.0
    capacity: int | None = None
    max_words: int | None = 10_000
    known: tuple[str, ...] = DEFAULT_KNOWN

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for EngineConfig (everything but the lexicon paths)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.pop("known")
        return d


@dataclass(frozen=True)
class TimeConfig:
    """Stream time.

    mode "wall": stream time is the wall clock.
    mode "replay": stream time = start + characters ingested / chars_per_second, so a run over
    the same input gives the same times, rankings and first_seen whatever the machine speed.
    """

    mode: str = "wall"
    chars_per_second: float = 1000.0
    start: float = 1_704_067_200.0  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class IntervalsConfig:
    rescore: float = 10.0
    snapshot: float = 60.0
    export: float = 60.0


@dataclass(frozen=True)
class StateConfig:
    dir: str = "state"
    keep: int = 2


@dataclass(frozen=True)
class ExportConfig:
    """Periodic exports. ``latest.jsonl`` is also replaced after every rescore, with the same
    selection and top_k, so that it always agrees with the newest timestamped export."""

    dir: str = "exports"
    formats: tuple[str, ...] = ("jsonl",)
    selection: str = "all"
    top_k: int | None = None
    retention_files: int = 0  # 0 = keep every timestamped export
    retention_days: float = 0.0  # 0 = no age limit


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8377"
    enabled: bool = True
    ingest_enabled: bool = False
    ingest_token: str = ""
    max_body: int = 2**20

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration. ``origin`` names where it came from, for messages."""

    sources: SourcesConfig = field(default_factory=SourcesConfig)
    engine: EngineSection = field(default_factory=EngineSection)
    time: TimeConfig = field(default_factory=TimeConfig)
    intervals: IntervalsConfig = field(default_factory=IntervalsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
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


# --------------------------------------------------------------------------- table reader


def default_min_pmi(order: int) -> tuple[float, ...]:
    """The reference thresholds 2, 4, 6 for orders 2..4, continued +2 per further order."""
    return tuple(2.0 * (n - 1) for n in range(2, order + 1))


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


# --------------------------------------------------------------------------- loading


def from_dict(data: Mapping[str, Any], origin: str = "<config>") -> Config:
    """Validate a parsed TOML document into a Config (raises ConfigError)."""
    root = _Table(origin, "", data)

    t = _section(root, "sources")
    d = SourcesConfig()
    sources = SourcesConfig(
        globs=t.take("globs", d.globs, _list_of(_path)),
        stdin=t.take("stdin", d.stdin, _bool),
        from_beginning=t.take("from_beginning", d.from_beginning, _bool),
        max_line_bytes=t.take("max_line_bytes", d.max_line_bytes, _min_size(256)),
        scan_interval=t.take("scan_interval", d.scan_interval, _positive_duration),
        poll_interval=t.take("poll_interval", d.poll_interval, _positive_duration),
        rotate_wait=t.take("rotate_wait", d.rotate_wait, parse_duration),
        queue_batches=t.take("queue_batches", d.queue_batches, _int(1, 10_000)),
        batch_bytes=t.take("batch_bytes", d.batch_bytes, _min_size(1024)),
    )
    t.finish(_fields(SourcesConfig))

    t = _section(root, "engine")
    e = EngineSection()
    order = t.take("order", e.order, _int(2, MAX_ORDER))
    explicit_pmi = "min_pmi" in t.data
    min_pmi = t.take("min_pmi", default_min_pmi(order), _list_of(_float()))
    if explicit_pmi:
        if len(min_pmi) != order - 1:
            raise t.error("min_pmi", f"needs {order - 1} values (one per order 2..{order}, "
                                     f"engine.order = {order}), got {len(min_pmi)}")
        for i in range(1, len(min_pmi)):
            if min_pmi[i] <= min_pmi[i - 1]:
                raise t.error("min_pmi", "must increase with the order (longer n-grams have "
                                         f"larger PMI by construction), got {list(min_pmi)}")
    engine = EngineSection(
        order=order,
        min_count=t.take("min_count", e.min_count, _int(1)),
        min_pmi=min_pmi,
        min_entropy=t.take("min_entropy", e.min_entropy, _float(0.0)),
        units=t.take("units", e.units, _choice(UNITS)),
        memory=t.take("memory", e.memory, _min_size(MIN_MEMORY)),
        exact=t.take("exact", e.exact, _bool),
        depth=t.take("depth", e.depth, _int(1, 16)),
        seed=t.take("seed", e.seed, _int(0, 2**63 - 1)),
        half_life=t.take("half_life", e.half_life, _positive_duration),
        capacity=t.take("capacity", e.capacity, _optional_int(1)),
        max_words=t.take("max_words", e.max_words, _optional_int(1)),
        known=t.take("known", e.known, _list_of(_path)),
    )
    t.finish(_fields(EngineSection))

    t = _section(root, "time")
    tm = TimeConfig()
    time_cfg = TimeConfig(
        mode=t.take("mode", tm.mode, _choice(TIME_MODES)),
        chars_per_second=t.take("chars_per_second", tm.chars_per_second,
                                _float(0.0, strict=True)),
        start=t.take("start", tm.start, _timestamp),
    )
    t.finish(_fields(TimeConfig))

    t = _section(root, "intervals")
    iv = IntervalsConfig()
    intervals = IntervalsConfig(
        rescore=t.take("rescore", iv.rescore, _positive_duration),
        snapshot=t.take("snapshot", iv.snapshot, _positive_duration),
        export=t.take("export", iv.export, _positive_duration),
    )
    t.finish(_fields(IntervalsConfig))

    t = _section(root, "state")
    st = StateConfig()
    state = StateConfig(
        dir=t.take("dir", st.dir, _path),
        keep=t.take("keep", st.keep, _int(1, 1000)),
    )
    t.finish(_fields(StateConfig))

    t = _section(root, "export")
    ex = ExportConfig()
    export = ExportConfig(
        dir=t.take("dir", ex.dir, _path),
        formats=t.take("formats", ex.formats, _unique(_list_of(_choice(EXPORT_FORMATS)))),
        selection=t.take("selection", ex.selection, _choice(EXPORT_SELECTIONS)),
        top_k=t.take("top_k", ex.top_k, _optional_int(1)),
        retention_files=t.take("retention_files", ex.retention_files, _int(0)),
        retention_days=t.take("retention_days", ex.retention_days, _float(0.0)),
    )
    t.finish(_fields(ExportConfig))

    t = _section(root, "http")
    h = HttpConfig()
    listen = t.take("listen", h.listen, _listen)
    http = HttpConfig(
        listen=listen,
        enabled=t.take("enabled", h.enabled, _bool),
        ingest_enabled=t.take("ingest_enabled", h.ingest_enabled, _bool),
        ingest_token=t.take("ingest_token", h.ingest_token, _str),
        max_body=t.take("max_body", h.max_body, _min_size(1)),
    )
    t.finish(_fields(HttpConfig))

    t = _section(root, "log")
    log = LogConfig(level=t.take("level", LogConfig().level, _choice(LOG_LEVELS)))
    t.finish(_fields(LogConfig))

    root.finish(tuple(f for f in _fields(Config) if f not in ("origin", "flags")))
    cfg = Config(sources=sources, engine=engine, time=time_cfg, intervals=intervals,
                 state=state, export=export, http=http, log=log, origin=origin)
    check(cfg)
    return cfg


def check(cfg: Config) -> None:
    """Cross-field rules (apply to the file and to the result of overrides)."""
    h = cfg.http
    if h.enabled and h.ingest_enabled and not h.ingest_token and not is_loopback(h.host):
        raise ConfigError(cfg.origin, "http.ingest_token",
                          f"must be set when http.ingest_enabled is true and http.listen "
                          f"({h.listen}) is not a loopback address")


def _min_size(lo: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        n = parse_size(v)
        if n < lo:
            raise ValueError(f"must be at least {format_size(lo)} ({lo} bytes), got {v!r}")
        return n
    return conv


def _optional_int(lo: int) -> Callable[[Any], int | None]:
    inner = _int(lo)

    def conv(v: Any) -> int | None:
        # TOML has no null; 0 is accepted as "derive it" for capacity/top_k.
        if type(v) is int and v == 0:
            return None
        return inner(v)
    return conv


def _unique(conv: Callable[[Any], tuple[str, ...]]) -> Callable[[Any], tuple[str, ...]]:
    def inner(v: Any) -> tuple[str, ...]:
        items = conv(v)
        return tuple(dict.fromkeys(items))
    return inner


def _listen(v: Any) -> str:
    parse_listen(v)
    return v.strip()


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
    p.add_argument("--source", dest="sources", action="append", metavar="GLOB",
                   help="file or glob to tail (repeatable; replaces sources.globs)")
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

    src, eng, iv = cfg.sources, cfg.engine, cfg.intervals
    st, ex, http, log = cfg.state, cfg.export, cfg.http, cfg.log
    flags = dict(cfg.flags)
    g = getattr
    for attr, key, flag in (("sources", "sources.globs", "--source"),
                            ("state_dir", "state.dir", "--state-dir"),
                            ("export_dir", "export.dir", "--export-dir"),
                            ("listen", "http.listen", "--listen"),
                            ("known", "engine.known", "--known"),
                            ("no_known", "engine.known", "--no-known")):
        if g(args, attr, None):
            flags[key] = flag
    if g(args, "sources", None):
        src = dataclasses.replace(src, globs=conv("--source", list(args.sources),
                                                  _list_of(_path)))
    if g(args, "stdin", None):
        src = dataclasses.replace(src, stdin=True)
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
                                                      _int(1)))
    if g(args, "known", None):
        eng = dataclasses.replace(eng, known=conv("--known", list(args.known), _list_of(_path)))
    if g(args, "no_known", None):
        eng = dataclasses.replace(eng, known=())
    if g(args, "log_level", None) is not None:
        log = dataclasses.replace(log, level=conv("--log-level", args.log_level,
                                                  _choice(LOG_LEVELS)))
    out = dataclasses.replace(cfg, sources=src, engine=eng, intervals=iv, state=st,
                              export=ex, http=http, log=log, flags=tuple(sorted(flags.items())))
    check(out)
    return out
