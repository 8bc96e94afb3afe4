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
                          sort (score|count|emergence|first_seen|word), history (true|false)
GET  /words/{word}        one word: fields + rank + history + examples; 404 if unknown
GET  /stats               view.stats() plus server_time, a summary of the published list
                          and ingest_rate (chars/s, lines/s and their recent history)
GET  /metrics             Prometheus text format 0.0.4
POST /ingest              lines of text (text/plain, or JSON lines {"text": ...});
                          404 unless enabled; Bearer token; 413 over max_body

Design choices worth knowing:

* Disabled /ingest answers 404 (the endpoint does not exist for this
  configuration), not 403, which would suggest that some credential could open
  it. Enabling it without a token is refused at start-up.
* Unknown query parameters are ignored (browsers and proxies add cache
  busters); a known parameter that is malformed, empty or repeated is a 400
  naming it.
* Any exception in a handler or in the view becomes a logged 500 JSON answer;
  the server keeps serving.
* JSON never contains NaN/Infinity (they become null): browsers reject them.
* The ingest rate is measured here, not in each browser: the server samples the
  view's cumulative counters every RATE_PERIOD seconds, so every client sees the
  same rate (averaged over RATE_WINDOW) and the last minutes of it as soon as it
  opens the page, instead of a noisy difference between its own two last polls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from aiohttp import web

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
_WORD_INDEX = web.AppKey("word_index", list)

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


# =========================================================================== middleware


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Every error becomes JSON; nothing a client sends can take the server down."""
    try:
        response = await handler(request)
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
    for k, v in _SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    route = request.match_info.route.resource
    handler_name = route.canonical if route is not None else "unmatched"
    counts = request.app[_HTTP_COUNTS]
    key = (handler_name, str(response.status))
    counts[key] = counts.get(key, 0) + 1
    return response


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
    words = pub.select(new=new, min_count=min_count)
    if sort == "count":
        words.sort(key=lambda w: _finite(w.count), reverse=True)
    elif sort == "emergence":
        words.sort(key=lambda w: _finite(w.emergence), reverse=True)
    elif sort == "first_seen":
        words.sort(key=lambda w: _finite(w.first_seen), reverse=True)
    elif sort == "word":
        words.sort(key=lambda w: w.word)
    total = len(words)
    index = _index(request, pub)
    view = request.app[_VIEW]
    out = []
    for w in words[:limit]:
        d = w.to_dict()
        d["rank"] = index.get(w.word, (None,))[0]
        if with_history:
            d["history"] = _history(view.word_detail(w.word), SPARK_POINTS)
        out.append(d)
    return _json({
        "rescored_at": iso_time(pub.rescored_at),
        "stream_time": iso_time(pub.stream_time),
        "total": total,
        "words": out,
    })


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


async def _metrics(request: web.Request) -> web.Response:
    samples = list(request.app[_VIEW].metrics() or ())
    samples += _http_metrics(request.app[_HTTP_COUNTS])
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
    body = await request.read()  # client_max_size also stops chunked bodies at max_body
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
             ingest_enabled: bool = False) -> web.Application:
    """The aiohttp application serving *view*.

    *max_body* bounds every request body (POST /ingest is the only route that
    reads one). Enabling ingest without a token raises ValueError: an open
    write endpoint is one DNS-rebinding page away from any local browser.
    """
    if ingest_enabled and not ingest_token:
        raise ValueError("POST /ingest needs a bearer token (ingest_token) when enabled")
    if max_body < 1:
        raise ValueError("max_body must be >= 1")
    app = web.Application(middlewares=[_guard], client_max_size=max_body)
    app[_VIEW] = view
    app[_CONFIG] = {"ingest_enabled": ingest_enabled, "ingest_token": ingest_token or "",
                    "max_body": max_body}
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
                       port: int = DEFAULT_PORT, *, access_log: bool = False
                       ) -> web.AppRunner:
    """Serve *app* on host:port; return the runner (``await runner.cleanup()`` to stop).

    Port 0 picks a free port: read it from :func:`bound_port`. Access logging is
    off by default because the dashboard polls every two seconds.
    Raises OSError (address in use, permission) after releasing the runner.
    """
    runner = web.AppRunner(app, handle_signals=False,
                           access_log=logging.getLogger("aiohttp.access") if access_log
                           else None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
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
