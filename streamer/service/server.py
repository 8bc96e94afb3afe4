"""HTTP API and dashboard of the daemon (aiohttp, loopback by default).

The server owns no state. The daemon hands it a :class:`ServiceView` — a small
read-mostly facade over the engine, sources and timers — and every request
reads from that view. Published word lists are immutable and swapped in one
assignment, so handlers never lock and never wait for the engine.

Endpoints (all responses JSON unless noted; errors are ``{"error": "..."}``):

GET  /                    dashboard (static/index.html; app.js, style.css under /static/)
GET  /healthz             200 {"status": "ok", "last_rescore_age_s": ...} | 503 "unhealthy"
                          or "degraded" (serving, but e.g. snapshots failing), with "reason"
GET  /words               ranked words; query: limit (1..10000, default 100),
                          new (true|false|1|0), min_count (number >= 0),
                          sort (score|count|emergence|first_seen|word), history (true|false);
                          emergence = rising now (scoring.trend, up to 3) times quality
GET  /words/{word}        one word: fields + rank + history + examples; 404 if unknown
GET  /stats               view.stats() plus server_time, a summary of the published list
                          and ingest_rate (chars/s, lines/s and their recent history)
GET  /metrics             Prometheus text format 0.0.4
POST /ingest              lines of text (text/plain, or JSON lines {"text": ...});
                          404 unless enabled; Bearer token; 413 over max_body;
                          408 when the body takes longer than header_timeout
any                       400 malformed request (and closed); 421 Host not answered

Design choices worth knowing:

* Disabled /ingest answers 404 (the endpoint does not exist for this
  configuration), not 403, which would suggest that some credential could open
  it. Enabling it without a token is refused at start-up, on loopback too: any
  web page open in a local browser can POST text/plain to 127.0.0.1.
* Unknown query parameters are ignored (browsers and proxies add cache
  busters); a known parameter that is malformed, empty or repeated is a 400
  naming it.
* Any exception in a handler or in the view becomes a logged 500 JSON answer;
  the server keeps serving.
* JSON never contains NaN/Infinity (they become null): browsers reject them.
* Connections are the server's, not the client's: at most ``max_connections``
  (fewer when RLIMIT_NOFILE minus ``reserved_fds`` does not leave room, so
  clients can never take the descriptors snapshots, exports and tailed files
  need). A connection must send a complete request head within
  ``header_timeout`` of opening (and a POST body within it too), and is closed
  after ``idle_timeout`` without a request. At the cap, the idle connection
  nearest its deadline is closed for a new one; when every connection is busy,
  new ones wait in the kernel's listen backlog.
* Failed accepts (EMFILE) and malformed requests are logged at most once per
  LOG_INTERVAL with a count, never with a traceback; malformed requests get the
  same JSON error body as every other error.
* On a loopback bind only loopback Host names are answered (421 otherwise):
  a web page that rebinds its own DNS name to 127.0.0.1 cannot read the API.
  ``allowed_hosts`` adds names ("*" turns the check off).
* GET /words never builds a body on the event loop: each word's JSON object is
  made once per published list in a worker thread, bodies are put together from
  them in worker threads, at most RENDER_SLOTS at a time (further requests wait
  their turn, not 503: the connection cap bounds them), and cached per list and
  query, so identical requests between two rescores share one body.
* The ingest rate is measured here, not in each browser: the server samples the
  view's cumulative counters every RATE_PERIOD seconds, so every client sees the
  same rate (averaged over RATE_WINDOW) and the last minutes of it as soon as it
  opens the page, instead of a noisy difference between its own two last polls.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from streamer.core.results import Published, Word, iso_time
from streamer.service.config import is_loopback
from streamer.storage.exports import json_safe

log = logging.getLogger("streamer.service.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8377
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
#: history points per word returned by /words?history=true (sparklines).
SPARK_POINTS = 48
SORTS = ("score", "count", "emergence", "first_seen", "word")
#: seconds between samples of the ingest counters (GET /stats "ingest_rate").
RATE_PERIOD = 2.0
#: samples kept: the dashboard's rate sparkline covers RATE_POINTS * RATE_PERIOD seconds.
RATE_POINTS = 90
#: the current rate is averaged over about this many seconds.
RATE_WINDOW = 10.0
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: [http] defaults: seconds to send a request head (and a POST body) ...
HEADER_TIMEOUT = 10.0
#: ... seconds a kept-alive connection may wait for its next request ...
IDLE_TIMEOUT = 30.0
#: ... most open client connections, and descriptors kept back from them.
MAX_CONNECTIONS = 256
RESERVED_FDS = 128
#: Fewer connections than this (RLIMIT_NOFILE too low for the reserve) is a start-up error.
MIN_CONNECTIONS = 8
#: Seconds between two log lines about the same kind of client trouble.
LOG_INTERVAL = 10.0
#: Seconds the accept loop backs off after EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_RETRY = 0.5
#: Connections accepted per readiness event (the rest wait for the next loop turn).
ACCEPT_BATCH = 64
#: /words bodies rendered at the same time (threads), and bytes of rendered bodies kept.
RENDER_SLOTS = 2
RENDER_CACHE_BYTES = 32 << 20
#: Host names (and any loopback IP literal) a loopback bind answers to.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


# =========================================================================== contract


class WordDetail(TypedDict):
    """What :meth:`ServiceView.word_detail` returns for a tracked word.

    history   (stream time in epoch seconds, recent decayed count) samples,
              oldest first. The server renders the times as ISO 8601 UTC (an
              already formatted ISO string is passed through unchanged).
    examples  short contexts the word occurred in, most recent first.
    """

    history: Sequence[tuple[float, float]]
    examples: Sequence[str]


MetricType = Literal["counter", "gauge", "untyped", "summary", "histogram"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One Prometheus sample; samples sharing a name form one metric family.

    name    family name, e.g. ``streamer_ingested_chars_total`` (counters should
            end in ``_total``; units in the name: ``_seconds``, ``_bytes``).
    type    counter | gauge | untyped | summary | histogram (same for a family).
    help    one line of documentation (HELP is taken from the first sample).
    value   the sample value (ints, floats, bools; NaN/Inf allowed).
    labels  label name -> value; values are escaped by the renderer.
    suffix  for summary/histogram samples: "_sum", "_count" or "_bucket"
            (bucket samples carry an ``le`` label). Empty otherwise.

    The ``streamer_http_`` prefix is reserved for the server's own metrics.
    """

    name: str
    type: MetricType
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    suffix: str = ""


class IngestUnavailable(Exception):
    """Raised by :meth:`ServiceView.ingest` when it cannot take lines now
    (shutting down, queue closed); POST /ingest answers 503 with the message."""


@runtime_checkable
class ServiceView(Protocol):
    """What the HTTP server needs from the daemon.

    Every method is called on the event loop thread. The synchronous ones must
    return promptly: read immutable or cached data (the published list, counters
    kept by the daemon) and never wait for the engine's worker thread, or the
    whole API and every source stall with it.
    """

    def published(self) -> Published:
        """The current ranked list (an immutable object swapped atomically)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Service statistics for GET /stats and the dashboard; JSON-able values.

        Keys the dashboard reads (others are shown as-is in /stats):
          chars_ingested, lines_ingested, bytes_ingested  cumulative ints
          queue_depth          batches waiting for the engine
          tracked_candidates   size of the candidate table
          sources              list of {"id", "status", ...} dicts
          last_rescore, last_snapshot, last_export   epoch seconds or None
          memory               {"rss_bytes", "budget_bytes", ...}
        """
        ...

    def word_detail(self, word: str) -> WordDetail | None:
        """History and examples of *word*, or None when it is not tracked."""
        ...

    def metrics(self) -> Iterable[Metric]:
        """Samples for GET /metrics (ingest counters, queue depth, durations...)."""
        ...

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details). Not healthy -> /healthz answers 503 with the details; a
        details "status" (e.g. "degraded") replaces the default "unhealthy"."""
        ...

    async def ingest(self, lines: list[str]) -> int:
        """Queue *lines* (no line ends) for the engine; return how many were accepted.

        Should apply back-pressure by awaiting queue space rather than dropping;
        raise IngestUnavailable to refuse (503).
        """
        ...


# =========================================================================== metrics text

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SUFFIXES = {
    "counter": ("",), "gauge": ("",), "untyped": ("",),
    "summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count"),
}


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def render_metrics(metrics: Iterable[Metric]) -> str:
    """Prometheus text exposition format 0.0.4 for *metrics*.

    Samples are grouped into families by name, in order of first appearance,
    each family with one HELP and one TYPE line. Invalid names, a type that
    conflicts with the family's, and duplicate series are dropped with a
    warning instead of producing a page Prometheus would reject as a whole.
    """
    families: dict[str, tuple[Metric, list[str]]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for m in metrics:
        if not _METRIC_NAME.match(m.name or "") or m.type not in _SUFFIXES:
            log.warning("dropping metric with invalid name or type: %r %r", m.name, m.type)
            continue
        if m.suffix not in _SUFFIXES[m.type]:
            log.warning("dropping %s sample with suffix %r", m.name, m.suffix)
            continue
        fam = families.get(m.name)
        if fam is None:
            fam = families[m.name] = (m, [])
        elif fam[0].type != m.type:
            log.warning("dropping %s sample: type %s conflicts with %s",
                        m.name, m.type, fam[0].type)
            continue
        labels = tuple((str(k), str(v)) for k, v in (m.labels or {}).items())
        if any(not _LABEL_NAME.match(k) or k.startswith("__") for k, _ in labels):
            log.warning("dropping %s sample with invalid label name: %r", m.name, labels)
            continue
        key = (m.name + m.suffix, tuple(sorted(labels)))
        if key in seen:
            log.warning("dropping duplicate series %s%r", m.name + m.suffix, labels)
            continue
        try:
            value = _format_value(m.value)
        except (TypeError, ValueError):
            log.warning("dropping %s sample with non-numeric value %r", m.name, m.value)
            continue
        seen.add(key)
        label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
        sample = m.name + m.suffix + (f"{{{label_text}}}" if label_text else "")
        fam[1].append(f"{sample} {value}")
    out = []
    for name, (first, samples) in families.items():
        if not samples:
            continue
        out.append(f"# HELP {name} {_escape_help(first.help or name)}")
        out.append(f"# TYPE {name} {first.type}")
        out.extend(samples)
    return "\n".join(out) + "\n" if out else ""


# =========================================================================== app state

_VIEW = web.AppKey("view", ServiceView)
_CONFIG = web.AppKey("config", dict)
_HTTP_COUNTS = web.AppKey("http_counts", dict)
_STATIC = web.AppKey("static", dict)

_CONTENT_TYPES = {
    ".html": "text/html", ".js": "text/javascript", ".css": "text/css",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The dashboard loads only its own files; stream text shown in it can never run script.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
          ) -> web.Response:
    text = json.dumps(json_safe(data), ensure_ascii=False, allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json",
                        charset="utf-8", headers=headers)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = extra.pop("headers", None)
    return _json({"error": message, **extra}, status=status, headers=headers)


class _BadParam(Exception):
    def __init__(self, param: str, message: str):
        super().__init__(f"parameter {param!r}: {message}")
        self.param = param


def _load_static() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type) of the packaged dashboard files."""
    files: dict[str, tuple[bytes, str]] = {}
    try:
        root = resources.files("streamer.service") / "static"
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        log.warning("dashboard files not found in the streamer package")
        return files
    for entry in entries:
        name = entry.name
        suffix = name[name.rfind("."):] if "." in name else ""
        if not entry.is_file() or name.startswith(".") or suffix not in _CONTENT_TYPES:
            continue
        files[name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


# =========================================================================== ingest rate


class RateMeter:
    """Recent ingest rates from samples of cumulative (chars, lines) counters.

    Bounded (RATE_POINTS samples). A counter that goes backwards (a service that
    restarted with an empty state behind the same view) starts the series over.
    """

    def __init__(self, points: int = RATE_POINTS, window: float = RATE_WINDOW) -> None:
        self.samples: collections.deque[tuple[float, float, float]] = \
            collections.deque(maxlen=points + 1)
        self.window = window

    @staticmethod
    def _counters(stats: Mapping[str, Any]) -> tuple[float, float] | None:
        try:
            chars, lines = float(stats["chars_ingested"]), float(stats["lines_ingested"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(chars) and math.isfinite(lines)):
            return None
        return chars, lines

    def add(self, t: float, stats: Mapping[str, Any]) -> None:
        counters = self._counters(stats)
        if counters is None:
            return
        if self.samples:
            last = self.samples[-1]
            if counters[0] < last[1] or counters[1] < last[2]:
                self.samples.clear()
            elif t <= last[0]:
                return
        self.samples.append((t, *counters))

    def summary(self, t: float, stats: Mapping[str, Any]) -> dict[str, Any]:
        """{chars_per_s, lines_per_s, window_s, period_s, history}: the rate over the
        last ~window seconds up to the counters in *stats* at time *t* (None until
        there is a sample at least half a second old), and chars/s between
        consecutive samples, oldest first (for a sparkline)."""
        counters = self._counters(stats)
        samples = list(self.samples)
        history = [round((b[1] - a[1]) / (b[0] - a[0]), 3)
                   for a, b in zip(samples, samples[1:], strict=False)]
        out: dict[str, Any] = {"chars_per_s": None, "lines_per_s": None, "window_s": None,
                               "period_s": RATE_PERIOD, "history": history}
        if counters is None:
            return out
        start = None
        for sample in samples:  # the newest sample at least `window` old, else the oldest
            if sample[0] <= t - self.window or start is None:
                start = sample
        if start is None or t - start[0] < 0.5 or counters[0] < start[1] \
                or counters[1] < start[2]:
            return out
        dt = t - start[0]
        out.update(chars_per_s=round((counters[0] - start[1]) / dt, 3),
                   lines_per_s=round((counters[1] - start[2]) / dt, 3),
                   window_s=round(dt, 3))
        return out


_RATES = web.AppKey("rates", RateMeter)


async def _sample_rates(app: web.Application) -> None:
    """Background task: feed the app's RateMeter every RATE_PERIOD seconds."""
    meter, view = app[_RATES], app[_VIEW]
    failing = False
    while True:
        try:
            meter.add(time.monotonic(), view.stats() or {})
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception:
            if not failing:  # once per failure streak, not every period
                log.exception("sampling the ingest counters for the ingest rate")
            failing = True
        await asyncio.sleep(RATE_PERIOD)


async def _rates_context(app: web.Application) -> Any:
    task = asyncio.get_running_loop().create_task(_sample_rates(app), name="http-rates")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# =========================================================================== client trouble


class LogLimiter:
    """At most one log line per *interval* seconds for one kind of event.

    The first event of a quiet period is logged at once; the ones that follow
    within the interval are only counted, and one line with their count (and
    the last message) is logged when the interval ends. No tracebacks: these
    are the clients' faults or the machine's limits, not bugs.
    """

    def __init__(self, logger: logging.Logger, level: int, what: str,
                 interval: float = LOG_INTERVAL) -> None:
        self.logger, self.level, self.what, self.interval = logger, level, what, interval
        self.total = 0
        self._quiet_until = 0.0
        self._held = 0
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None

    def note(self, message: str) -> None:
        self.total += 1
        now = time.monotonic()
        if now >= self._quiet_until:
            self._flush()
            self.logger.log(self.level, "%s", message)
            self._quiet_until = now + self.interval
            return
        self._held += 1
        self._last = message
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the next note flushes
                self._timer = asyncio.get_running_loop().call_later(
                    self._quiet_until - now, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            self.logger.log(self.level, "%d more %s in the last %gs (last: %s)",
                            self._held, self.what, self.interval, self._last)
            self._held = 0
            self._quiet_until = time.monotonic() + self.interval

    def close(self) -> None:
        self._flush()


def host_allowlist(bind_host: str, configured: Iterable[str] = ()) -> frozenset[str] | None:
    """Host names the server answers to, or None for any.

    A loopback bind answers to LOOPBACK_NAMES, loopback IP literals and
    *configured*; any other bind answers to any host unless names are
    configured. "*" among them turns the check off.
    """
    names = frozenset(_normal_host(h) for h in configured)
    if "*" in names:
        return None
    if is_loopback(bind_host) or names:
        return LOOPBACK_NAMES | names
    return None


def _normal_host(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


_HOST_PORT = re.compile(r"^(?:\[([0-9a-f:.]+)\]|([^:\[\]]*))(?::\d{1,5})?$")


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a Host header (name, IPv4 or [IPv6], with or without a port) is allowed.

    No Host header at all (HTTP/1.0 tools) is allowed: DNS rebinding needs a
    browser, and browsers always send one.
    """
    if allowed is None or header is None:
        return True
    m = _HOST_PORT.match(header.strip().lower())
    if m is None:
        return False
    name = (m.group(1) or m.group(2) or "").rstrip(".")
    if name in allowed:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class NetStats:
    """Counters of the connection layer, shared by the listener and /metrics."""

    def __init__(self) -> None:
        self.limit = 0
        self.open = 0
        self.closed: collections.Counter[str] = collections.Counter()
        self.accept_errors = LogLimiter(log, logging.WARNING, "failed accepts")
        self.bad_requests = LogLimiter(log, logging.WARNING, "malformed HTTP requests")
        self.at_cap = LogLimiter(log, logging.WARNING, "connections over the cap")

    def close(self) -> None:
        for limiter in (self.accept_errors, self.bad_requests, self.at_cap):
            limiter.close()


class _Connection(RequestHandler):
    """aiohttp's request handler plus what the listener needs to time out and evict it.

    A connection is *idle* while no request is being handled and nothing is
    waiting to be written. Its deadline: opening + header_timeout until its
    first request; after a response, the first byte of the next request +
    header_timeout, or the end of the response + idle_timeout when nothing
    arrives.
    """

    def __init__(self, listener: _Listener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener
        self.busy = 0
        self.requests = 0
        self.opened = self.idle_since = time.monotonic()
        self.data_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.listener.joined(self)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.listener.left(self)

    def data_received(self, data: bytes) -> None:
        if self.busy == 0 and self.data_at is None:
            self.data_at = time.monotonic()
        super().data_received(data)

    def begin(self) -> None:
        self.busy += 1
        self.requests += 1

    def end(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.idle_since = time.monotonic()
            self.data_at = None

    def deadline(self) -> float:
        lst = self.listener
        if self.requests == 0:
            return self.opened + lst.header_timeout
        if self.data_at is not None:
            return self.data_at + lst.header_timeout
        return self.idle_since + lst.idle_timeout

    def idle(self) -> bool:
        t = self.transport
        return self.busy == 0 and t is not None and not t.is_closing() \
            and t.get_write_buffer_size() == 0

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        """Malformed requests: a JSON error like the API's others, one rate-limited line."""
        reason = message or (str(exc) if exc else "") or "malformed request"
        reason = " ".join(reason.split())[:200]
        if status >= 500:
            log.error("error handling a request from %s: %s", request.remote, reason)
        else:
            self.listener.stats.bad_requests.note(
                f"malformed HTTP request from {request.remote}: {reason}")
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        resp = _error(status, f"bad request: {reason}" if status < 500
                      else "internal server error (see the service log)",
                      headers=_SECURITY_HEADERS)
        resp.force_close()
        return resp


class _Listener:
    """The accept loop: a connection cap, timeouts, and back-off when out of descriptors.

    asyncio's own accept loop logs a traceback for every EMFILE and schedules a
    retry for each, which snowballs into tens of thousands of lines a second;
    this one pauses the socket for ACCEPT_RETRY and counts.
    """

    def __init__(self, runner: web.AppRunner, socks: list[socket.socket], stats: NetStats,
                 *, cap: int, header_timeout: float, idle_timeout: float,
                 handler_args: Mapping[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = runner.server
        self.sockets = socks
        self.stats = stats
        self.cap = cap
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.handler_args = dict(handler_args)
        self.conns: dict[_Connection, None] = {}
        self.pending = 0  # accepted, transport not made yet
        self.paused: set[socket.socket] = set()
        self.full = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reaper: asyncio.Task[None] | None = None
        stats.limit = cap

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        for s in self.sockets:
            self.loop.add_reader(s.fileno(), self._accept, s)
        self.reaper = self.loop.create_task(self._reap(), name="http-reaper")

    def close(self) -> None:
        for s in self.sockets:
            if s.fileno() >= 0:
                self.loop.remove_reader(s.fileno())
                s.close()
        if self.reaper is not None:
            self.reaper.cancel()
        for t in self.tasks:
            t.cancel()
        self.stats.close()

    # ---------------------------------------------------------------- connections

    def joined(self, conn: _Connection) -> None:
        self.pending -= 1
        self.conns[conn] = None
        self.stats.open = len(self.conns)

    def left(self, conn: _Connection) -> None:
        self.conns.pop(conn, None)
        self.stats.open = len(self.conns)
        if self.full and len(self.conns) + self.pending < self.cap:
            self.full = False
            for s in self.sockets:
                if s not in self.paused and s.fileno() >= 0:
                    self.loop.add_reader(s.fileno(), self._accept, s)

    def _make(self) -> _Connection:
        return _Connection(self, self.server, loop=self.loop, **self.handler_args)

    def _evict_one(self) -> bool:
        idle = [c for c in self.conns if c.idle()]
        if not idle:
            return False
        victim = min(idle, key=_Connection.deadline)
        victim.force_close()
        self.stats.closed["evicted"] += 1
        self.stats.at_cap.note(f"connection cap ({self.cap}) reached: closed the idle "
                               "connection nearest its timeout for a new one")
        return True

    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self.conns) + self.pending >= self.cap and not self._evict_one():
                if self.pending:  # some are still being set up: look again next loop turn
                    return
                # every connection is busy: leave new ones in the kernel's backlog
                self.full = True
                for s in self.sockets:
                    if s.fileno() >= 0:
                        self.loop.remove_reader(s.fileno())
                self.stats.at_cap.note(f"connection cap ({self.cap}) reached with every "
                                       "connection busy: new ones wait in the backlog")
                return
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self.stats.accept_errors.note(f"cannot accept HTTP connections: {exc}")
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.loop.remove_reader(lsock.fileno())
                    self.paused.add(lsock)
                    self.loop.call_later(ACCEPT_RETRY, self._resume, lsock)
                return
            sock.setblocking(False)
            self.pending += 1
            task = self.loop.create_task(self._attach(sock))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self, lsock: socket.socket) -> None:
        self.paused.discard(lsock)
        if lsock.fileno() >= 0 and not self.full:
            self.loop.add_reader(lsock.fileno(), self._accept, lsock)

    async def _attach(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self._make, sock)
        except BaseException as exc:
            self.pending -= 1
            sock.close()
            if not isinstance(exc, Exception):
                raise
            self.stats.accept_errors.note(f"cannot set up an HTTP connection: {exc}")

    async def _reap(self) -> None:
        tick = min(1.0, max(0.05, min(self.header_timeout, self.idle_timeout) / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.idle() and conn.deadline() <= now:
                    reason = "idle_timeout" if conn.requests and conn.data_at is None \
                        else "header_timeout"
                    conn.force_close()
                    self.stats.closed[reason] += 1


def open_fds() -> int:
    """Descriptors this process has open now (0 where /proc is not available)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return 0


def connection_cap(wanted: int, reserved: int, listeners: int = 1) -> int:
    """*wanted*, lowered to what RLIMIT_NOFILE leaves after the open descriptors, the
    *reserved* ones and the listening sockets. ValueError below MIN_CONNECTIONS."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    in_use = open_fds()
    room = soft - in_use - reserved - listeners
    if room < MIN_CONNECTIONS:
        raise ValueError(
            f"RLIMIT_NOFILE is {soft}: with {in_use} descriptors open and {reserved} reserved "
            f"(http.reserved_fds) that leaves {max(room, 0)} for HTTP connections, fewer than "
            f"{MIN_CONNECTIONS}; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower "
            "http.reserved_fds")
    if room < wanted:
        log.warning("http.max_connections lowered from %d to %d: RLIMIT_NOFILE is %d, %d "
                    "descriptors are open and %d are reserved (http.reserved_fds)",
                    wanted, room, soft, in_use, reserved)
        return room
    return wanted


def _listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for host:port (every address it resolves to)."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # port 0: the port the first address got, for every address ("localhost:0")
            s.bind((addr[0], port, *addr[2:]))
            s.listen(backlog)
            s.setblocking(False)
            port = s.getsockname()[1]
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class _Site(web.BaseSite):
    """An aiohttp site served by :class:`_Listener` instead of loop.create_server."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, stats: NetStats, *,
                 max_connections: int, reserved_fds: int, header_timeout: float,
                 idle_timeout: float, handler_args: Mapping[str, Any]) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._opts = dict(max_connections=max_connections, reserved_fds=reserved_fds,
                          header_timeout=header_timeout, idle_timeout=idle_timeout,
                          handler_args=handler_args)
        self._stats = stats

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        o = self._opts
        socks = _listening_sockets(self._host, self._port, backlog=128)
        try:
            cap = connection_cap(o["max_connections"], o["reserved_fds"], len(socks))
        except BaseException:
            for s in socks:
                s.close()
            raise
        await super().start()
        listener = _Listener(self._runner, socks, self._stats, cap=cap,
                             header_timeout=o["header_timeout"],
                             idle_timeout=o["idle_timeout"], handler_args=o["handler_args"])
        listener.start()
        self._server = listener  # type: ignore[assignment]  # close() and sockets suffice


# =========================================================================== /words rendering


class WordsRenderer:
    """/words bodies, built off the loop and cached per published list and query.

    Identical requests while one is being built share it (one job per key); at
    most RENDER_SLOTS jobs run at a time and the others wait their turn. The
    words' JSON objects and history arrays are made once per list (see
    :class:`_Fragments`). Everything is dropped when a new list is published;
    bodies take at most RENDER_CACHE_BYTES (least recently used go first).
    """

    def __init__(self, slots: int = RENDER_SLOTS, max_bytes: int = RENDER_CACHE_BYTES) -> None:
        self.slots = slots
        self.max_bytes = max_bytes
        self.pub: Published | None = None
        #: per published list: each word's JSON object (and its history array), in
        #: list order, made once (a task, shared by the requests that need it)
        self.fragments: asyncio.Task[_Fragments] | None = None
        self.histories: asyncio.Task[list[str]] | None = None
        self.cache: collections.OrderedDict[Any, bytes | asyncio.Task[bytes]] = \
            collections.OrderedDict()
        self.size = 0
        self.renders = 0
        self.hits = 0
        self.waiting = 0
        self.running = 0
        self._sem: asyncio.Semaphore | None = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._sem = asyncio.Semaphore(self.slots)
        self.pool = concurrent.futures.ThreadPoolExecutor(self.slots,
                                                          thread_name_prefix="http-render")

    def close(self) -> None:
        for entry in (*self.cache.values(), self.fragments, self.histories):
            if isinstance(entry, asyncio.Task):
                entry.cancel()
        self.cache.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def words(self, pub: Published, index: Mapping[str, tuple[int, Word]]
                    ) -> _Fragments:
        """Every word of *pub* as a JSON object with its rank (made once per list)."""
        if self.pub is not pub or _failed(self.fragments):
            self._forget(pub)
            self.fragments = asyncio.get_running_loop().create_task(
                self.in_thread(lambda: _Fragments(pub, index)))
        return await asyncio.shield(self.fragments)

    async def history(self, pub: Published, view: ServiceView) -> list[str]:
        """Every word's sparkline history of *pub* as a JSON array (made once per list)."""
        if self.pub is not pub or _failed(self.histories):
            self._forget(pub)
            # word_detail reads the daemon's live history: on the loop, as the view
            # requires; it is updated with each published list, so once per list is right
            details = [view.word_detail(w.word) for w in pub.words]
            self.histories = asyncio.get_running_loop().create_task(self.in_thread(
                lambda: [_dumps(_history(d, SPARK_POINTS)) for d in details]))
        return await asyncio.shield(self.histories)

    def _forget(self, pub: Published) -> None:
        if pub is not self.pub:
            # running jobs finish for the requests awaiting them; only the maps are dropped
            self.cache.clear()
            self.size = 0
            self.fragments = self.histories = None
            self.pub = pub

    async def get(self, pub: Published, key: Any,
                  job: Callable[[], Awaitable[bytes]]) -> bytes:
        self._forget(pub)
        entry = self.cache.get(key)
        if isinstance(entry, bytes):
            self.hits += 1
            self.cache.move_to_end(key)
            return entry
        if entry is None:
            entry = asyncio.get_running_loop().create_task(self._run(pub, key, job))
            self.cache[key] = entry
        else:
            self.hits += 1
        return await asyncio.shield(entry)

    async def _run(self, pub: Published, key: Any, job: Callable[[], Awaitable[bytes]]
                   ) -> bytes:
        assert self._sem is not None
        task = asyncio.current_task()
        try:
            self.waiting += 1
            try:
                await self._sem.acquire()
            finally:
                self.waiting -= 1
            self.running += 1
            try:
                body = await job()
            finally:
                self.running -= 1
                self._sem.release()
        except BaseException:
            if self.cache.get(key) is task:
                del self.cache[key]
            raise
        self.renders += 1
        if self.pub is pub and self.cache.get(key) is task:
            self.cache[key] = body
            self.size += len(body)
            while self.size > self.max_bytes:
                oldest = next((k for k, v in self.cache.items() if isinstance(v, bytes)), None)
                if oldest is None:
                    break
                self.size -= len(self.cache.pop(oldest))  # type: ignore[arg-type]
        return body


_WORD_INDEX = web.AppKey("word_index", list)
_NET = web.AppKey("net", NetStats)
_RENDERER = web.AppKey("renderer", WordsRenderer)


async def _renderer_context(app: web.Application) -> Any:
    app[_RENDERER].start()
    yield
    app[_RENDERER].close()


# =========================================================================== middleware


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Every error becomes JSON; nothing a client sends can take the server down."""
    conn = request.protocol
    if isinstance(conn, _Connection):
        conn.begin()
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") \
            else exc.reason
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() in ("allow", "www-authenticate")}
        response = _error(exc.status, message, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error handling %s %s", request.method, request.path_qs)
        response = _error(500, "internal server error (see the service log)")
    finally:
        if isinstance(conn, _Connection):
            conn.end()
    for k, v in _SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    route = request.match_info.route.resource
    handler_name = route.canonical if route is not None else "unmatched"
    counts = request.app[_HTTP_COUNTS]
    key = (handler_name, str(response.status))
    counts[key] = counts.get(key, 0) + 1
    return response


async def _checked(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    host = request.headers.get("Host")
    allowed = request.app[_CONFIG]["allowed_hosts"]
    if not host_allowed(host, allowed):
        names = ", ".join(sorted(allowed or ()))
        return _error(421, f"host {host!r} is not served here (this server answers to "
                      f"{names}; http.allowed_hosts adds names)", host=host)
    return await handler(request)


# =========================================================================== handlers


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _BadParam(name, "given more than once")
    return values[0] if values else None


def _parse_bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise _BadParam(name, f"expected true or false, got {raw!r}")


def _finite(x: Any) -> float:
    """Sort key for engine numbers: NaN and None sort last in descending order."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return -math.inf
    return v if not math.isnan(v) else -math.inf


def _history(detail: Mapping[str, Any] | None, points: int | None = None) -> list[list[Any]]:
    """[[iso time, count], ...] from a WordDetail, tolerant of malformed samples."""
    if not detail:
        return []
    hist = list(detail.get("history") or ())
    if points is not None:
        hist = hist[-points:]
    out: list[list[Any]] = []
    for item in hist:
        try:
            t, c = item[0], item[1]
            out.append([t if isinstance(t, str) else iso_time(float(t)), float(c)])
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            continue
    return out


def _published(request: web.Request) -> Published:
    pub = request.app[_VIEW].published()
    return pub if pub is not None else Published()


def _index(request: web.Request, pub: Published) -> dict[str, tuple[int, Word]]:
    """word -> (rank, Word), cached per Published object (they are immutable)."""
    cache = request.app[_WORD_INDEX]
    if cache and cache[0] is pub:
        return cache[1]
    index = {w.word: (i, w) for i, w in enumerate(pub.words, 1)}
    cache[:] = [pub, index]
    return index


async def _healthz(request: web.Request) -> web.Response:
    view = request.app[_VIEW]
    try:
        ok, details = view.health()
        details = dict(details or {})
    except Exception as exc:
        log.exception("health check failed")
        return _json({"status": "unhealthy", "error": f"health check failed: {exc}"}, 503)
    age = None
    try:
        rescored_at = _published(request).rescored_at
        if rescored_at is not None:
            age = round(max(0.0, time.time() - rescored_at), 3)
    except Exception:
        log.exception("reading the published list for /healthz")
    # a view may qualify "not healthy", e.g. "degraded": serving, but state not saved
    status = "ok" if ok else str(details.get("status") or "unhealthy")
    body = {"status": status, "last_rescore_age_s": age}
    body.update({k: v for k, v in details.items() if k != "status"})
    return _json(body, 200 if ok else 503)


async def _words(request: web.Request) -> web.Response:
    try:
        raw = _one(request, "limit")
        limit = DEFAULT_LIMIT
        if raw is not None:
            try:
                limit = int(raw.strip())
            except ValueError:
                raise _BadParam("limit", f"expected an integer, got {raw!r}") from None
            if not 1 <= limit <= MAX_LIMIT:
                raise _BadParam("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
        raw = _one(request, "new")
        new = None if raw is None else _parse_bool("new", raw)
        raw = _one(request, "min_count")
        min_count = 0.0
        if raw is not None:
            try:
                min_count = float(raw.strip())
            except ValueError:
                raise _BadParam("min_count", f"expected a number, got {raw!r}") from None
            if not math.isfinite(min_count) or min_count < 0:
                raise _BadParam("min_count", f"must be a finite number >= 0, got {raw!r}")
        sort = _one(request, "sort")
        sort = "score" if sort is None else sort
        if sort not in SORTS:
            raise _BadParam("sort", f"expected one of {', '.join(SORTS)}, got {sort!r}")
        raw = _one(request, "history")
        with_history = raw is not None and _parse_bool("history", raw)
    except _BadParam as exc:
        return _error(400, str(exc), parameter=exc.param)

    pub = _published(request)
    key = (limit, new, min_count, sort, with_history)
    renderer = request.app[_RENDERER]
    index = _index(request, pub)
    view = request.app[_VIEW]

    async def job() -> bytes:
        fragments = await renderer.words(pub, index)
        histories = await renderer.history(pub, view) if with_history else None
        return await renderer.in_thread(lambda: fragments.body(
            *_select_words(pub, new, min_count, sort, limit), histories))

    body = await renderer.get(pub, key, job)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _select_words(pub: Published, new: bool | None, min_count: float, sort: str,
                  limit: int) -> tuple[list[Word], int]:
    """(the first *limit* words of the selection in *sort* order, the selection's size)."""
    words = pub.select(new=new, min_count=min_count)
    if sort == "count":
        words.sort(key=lambda w: _finite(w.count), reverse=True)
    elif sort == "emergence":
        words.sort(key=lambda w: _finite(w.emergence), reverse=True)
    elif sort == "first_seen":
        words.sort(key=lambda w: _finite(w.first_seen), reverse=True)
    elif sort == "word":
        words.sort(key=lambda w: w.word)
    return words[:limit], len(words)


def _dumps(data: Any) -> str:
    return json.dumps(json_safe(data), ensure_ascii=False, allow_nan=False)


def _failed(task: asyncio.Task[Any] | None) -> bool:
    """No task, or one that ended without a result (made again on the next request)."""
    return task is None or (task.done() and (task.cancelled() or task.exception() is not None))


class _Fragments:
    """The words of one published list as JSON objects (rank included), in list order.

    Encoded word by word, in a worker thread: one json.dumps call over a 3 MB list
    would hold the GIL, and so stall the event loop, for its whole duration.
    """

    def __init__(self, pub: Published, index: Mapping[str, tuple[int, Word]]) -> None:
        self.pub = pub
        self.position = {id(w): i for i, w in enumerate(pub.words)}
        self.objects = []
        for w in pub.words:
            d = w.to_dict()
            d["rank"] = index.get(w.word, (None,))[0]
            self.objects.append(_dumps(d))

    def body(self, words: Sequence[Word], total: int, histories: Sequence[str] | None
             ) -> bytes:
        """The /words body for *words* (objects of this list) out of *total* selected."""
        parts = []
        for w in words:
            i = self.position[id(w)]
            obj = self.objects[i]
            parts.append(obj if histories is None
                         else obj[:-1] + ', "history": ' + histories[i] + "}")
        head = {"rescored_at": iso_time(self.pub.rescored_at),
                "stream_time": iso_time(self.pub.stream_time), "total": total}
        return (_dumps(head)[:-1] + ', "words": [' + ", ".join(parts) + "]}").encode("utf-8")


async def _word(request: web.Request) -> web.Response:
    word = request.match_info["word"]
    pub = _published(request)
    hit = _index(request, pub).get(word)
    detail = request.app[_VIEW].word_detail(word)
    if hit is None and detail is None:
        return _error(404, f"unknown word: {word}", word=word)
    examples = [str(e) for e in (detail or {}).get("examples") or ()]
    if hit is None:
        return _json({"word": word, "published": False,
                      "history": _history(detail), "examples": examples})
    rank, w = hit
    if not examples and w.example:
        examples = [w.example]
    body = w.to_dict()
    body.update(rank=rank, published=True, history=_history(detail), examples=examples)
    return _json(body)


async def _stats(request: web.Request) -> web.Response:
    stats = dict(request.app[_VIEW].stats() or {})
    stats.setdefault("ingest_rate", request.app[_RATES].summary(time.monotonic(), stats))
    pub = _published(request)
    stats.setdefault("server_time", time.time())
    stats.setdefault("published", {
        "words": len(pub.words),
        "new_words": sum(1 for w in pub.words if w.new),
        "rescored_at": iso_time(pub.rescored_at),
        "stream_time": iso_time(pub.stream_time),
        "rescore_seconds": pub.rescore_seconds,
    })
    return _json(stats)


def _http_metrics(counts: Mapping[tuple[str, str], int]) -> list[Metric]:
    return [Metric("streamer_http_requests_total", "counter",
                   "HTTP requests answered, by route and status code.",
                   n, {"handler": handler, "code": code})
            for (handler, code), n in sorted(counts.items())]


def _net_metrics(net: NetStats, renderer: WordsRenderer) -> list[Metric]:
    out = [
        Metric("streamer_http_connections", "gauge", "Open HTTP client connections.",
               net.open),
        Metric("streamer_http_connection_limit", "gauge",
               "Most HTTP client connections (http.max_connections, after the descriptor "
               "reserve).", net.limit),
        Metric("streamer_http_accept_errors_total", "counter",
               "Connections that could not be accepted (e.g. out of descriptors).",
               net.accept_errors.total),
        Metric("streamer_http_malformed_requests_total", "counter",
               "Requests that could not be parsed (answered 400 and closed).",
               net.bad_requests.total),
        Metric("streamer_http_words_renders_total", "counter",
               "GET /words bodies rendered (the others came from the cache).",
               renderer.renders),
        Metric("streamer_http_words_cache_hits_total", "counter",
               "GET /words answers served from a rendered or rendering body.", renderer.hits),
        Metric("streamer_http_words_renders_running", "gauge",
               "GET /words bodies being rendered in worker threads now.", renderer.running),
        Metric("streamer_http_words_renders_waiting", "gauge",
               "GET /words renderings waiting for a worker thread.", renderer.waiting),
    ]
    for reason in ("header_timeout", "idle_timeout", "evicted"):
        out.append(Metric("streamer_http_connections_closed_total", "counter",
                          "Client connections closed by the server, by reason.",
                          net.closed[reason], {"reason": reason}))
    return out


async def _metrics(request: web.Request) -> web.Response:
    samples = list(request.app[_VIEW].metrics() or ())
    samples += _http_metrics(request.app[_HTTP_COUNTS])
    samples += _net_metrics(request.app[_NET], request.app[_RENDERER])
    return web.Response(body=render_metrics(samples).encode("utf-8"),
                        headers={"Content-Type": METRICS_CONTENT_TYPE})


_TEXT_TYPES = ("text/plain",)
_JSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines",
               "application/json")


def _split_lines(text: str) -> list[str]:
    """Lines without their ends; a final line end does not make an extra empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


async def _ingest(request: web.Request) -> web.Response:
    cfg = request.app[_CONFIG]
    if not cfg["ingest_enabled"]:
        return _error(404, "POST /ingest is disabled in this configuration")
    token: str = cfg["ingest_token"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), token.encode("utf-8")):
        return _error(401, "missing or wrong bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="streamer"'})
    ctype = request.content_type.lower()
    if ctype not in _TEXT_TYPES + _JSON_TYPES:
        return _error(415, f"unsupported content type {ctype!r}; send text/plain lines "
                      "or application/x-ndjson lines of {\"text\": ...}")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        return _error(415, f"unsupported charset {charset!r}; send UTF-8")
    max_body = cfg["max_body"]
    if request.content_length is not None and request.content_length > max_body:
        return _error(413, f"body of {request.content_length} bytes exceeds the limit "
                      f"of {max_body} bytes")
    try:
        async with asyncio.timeout(cfg["header_timeout"]):
            body = await request.read()  # client_max_size also stops chunked bodies
    except TimeoutError:
        resp = _error(408, f"the body did not arrive within {cfg['header_timeout']:g} s")
        resp.force_close()
        return resp
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _error(400, f"body is not valid UTF-8 (byte {exc.start})")
    text = text.removeprefix("\ufeff")
    if ctype in _TEXT_TYPES:
        lines = _split_lines(text)
    else:
        lines = []
        for lineno, raw in enumerate(_split_lines(text), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                return _error(400, f"line {lineno}: malformed JSON: {exc.msg}", line=lineno)
            except RecursionError:
                return _error(400, f"line {lineno}: JSON nested too deeply", line=lineno)
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                return _error(400, f'line {lineno}: expected an object with a string "text"',
                              line=lineno)
            lines.extend(_split_lines(obj["text"]) or [""])
    if not lines:
        return _json({"accepted": 0})
    try:
        accepted = await request.app[_VIEW].ingest(lines)
    except IngestUnavailable as exc:
        return _error(503, str(exc) or "ingest is unavailable")
    return _json({"accepted": int(accepted)})


async def _static(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "index.html")
    files = request.app[_STATIC]
    if name not in files:
        if name == "index.html":
            return _error(500, "dashboard files are missing from the installed package")
        return _error(404, f"no such file: {name}")
    data, ctype = files[name]
    headers = {"Content-Type": ctype + ("; charset=utf-8" if ctype.startswith("text/") else ""),
               "Cache-Control": "no-cache"}
    if ctype == "text/html":
        headers["Content-Security-Policy"] = _CSP
    return web.Response(body=data, headers=headers)


# =========================================================================== app


def make_app(view: ServiceView, *, ingest_token: str | None = None, max_body: int = 1 << 20,
             ingest_enabled: bool = False, allowed_hosts: Iterable[str] | None = None,
             header_timeout: float = HEADER_TIMEOUT) -> web.Application:
    """The aiohttp application serving *view*.

    *max_body* bounds every request body (POST /ingest is the only route that
    reads one), and *header_timeout* (seconds) the time it may take to arrive.
    Enabling ingest without a token raises ValueError: any web page open in a
    local browser can POST text/plain to a loopback address without asking.
    *allowed_hosts*: the Host names answered (see :func:`host_allowlist`);
    None answers any.
    """
    if ingest_enabled and not ingest_token:
        raise ValueError("POST /ingest needs a bearer token (ingest_token) when enabled")
    if max_body < 1:
        raise ValueError("max_body must be >= 1")
    app = web.Application(middlewares=[_guard], client_max_size=max_body)
    app[_VIEW] = view
    app[_CONFIG] = {"ingest_enabled": ingest_enabled, "ingest_token": ingest_token or "",
                    "max_body": max_body, "header_timeout": header_timeout,
                    "allowed_hosts": None if allowed_hosts is None
                    else frozenset(_normal_host(h) for h in allowed_hosts)}
    app[_NET] = NetStats()
    app[_RENDERER] = WordsRenderer()
    app.cleanup_ctx.append(_renderer_context)
    app[_HTTP_COUNTS] = {}
    app[_STATIC] = _load_static()
    app[_WORD_INDEX] = []
    app[_RATES] = RateMeter()
    app.cleanup_ctx.append(_rates_context)
    app.router.add_get("/", _static)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/words", _words)
    app.router.add_get("/words/{word}", _word)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/ingest", _ingest)
    return app


async def start_server(app: web.Application, host: str = DEFAULT_HOST,
                       port: int = DEFAULT_PORT, *, access_log: bool = False,
                       header_timeout: float = HEADER_TIMEOUT,
                       idle_timeout: float = IDLE_TIMEOUT,
                       max_connections: int = MAX_CONNECTIONS,
                       reserved_fds: int = RESERVED_FDS) -> web.AppRunner:
    """Serve *app* on host:port; return the runner (``await runner.cleanup()`` to stop).

    Port 0 picks a free port: read it from :func:`bound_port`. Access logging is
    off by default because the dashboard polls every two seconds. The
    connection cap is *max_connections*, lowered to RLIMIT_NOFILE minus the open
    descriptors and *reserved_fds* (see :func:`connection_cap`).
    Raises OSError (address in use, permission) or ValueError (too few
    descriptors) after releasing the runner.
    """
    if header_timeout <= 0 or idle_timeout <= 0:
        raise ValueError("header_timeout and idle_timeout must be positive")
    if max_connections < 1 or reserved_fds < 0:
        raise ValueError("max_connections must be >= 1 and reserved_fds >= 0")
    handler_args: dict[str, Any] = {
        # aiohttp's own keep-alive close is a backstop behind the listener's timeouts
        "keepalive_timeout": idle_timeout + header_timeout,
        "access_log": logging.getLogger("aiohttp.access") if access_log else None,
    }
    runner = web.AppRunner(app, handle_signals=False, **handler_args)
    await runner.setup()
    try:
        site = _Site(runner, host, port, app.get(_NET) or NetStats(),
                     max_connections=max_connections,
                     reserved_fds=reserved_fds, header_timeout=header_timeout,
                     idle_timeout=idle_timeout, handler_args=handler_args)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    if not is_loopback(host):
        log.warning("HTTP API listening on %s:%s, which is not a loopback address; "
                    "it has no authentication except on POST /ingest", host, port)
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (useful with port 0)."""
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("server is not listening on a TCP socket")
