"""HTTP API tests on a real loopback socket.

The daemon is not needed: :class:`DemoView` is a small ServiceView holding
real Published/Word objects (a stand-in until `python -m streamer run` gets its
own end-to-end tests). test_dashboard.py imports it from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from streamer import top
from streamer.results import WORD_FIELDS, Published, Word
from streamer.server import (
    IngestUnavailable,
    Metric,
    ServiceView,
    WordDetail,
    bound_port,
    make_app,
    render_metrics,
    start_server,
)

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_795_600_000.0  # fixed stream time: 2026-11-25

#: (word, recent count, total, score, emergence, new, known, minutes since first seen, example)
DEMO = [
    ("新冠肺炎", 412.3, 980, 9.81, 3.4, True, False, 1, "新冠肺炎疫情防控进入新阶段"),
    ("内卷", 211.0, 540, 8.2, 2.1, True, False, 8, "年轻人都在说内卷，其实是竞争太激烈"),
    ("躺平", 180.4, 301, 7.9, 4.8, True, False, 15, "与其内卷不如躺平"),
    ("打工人", 150.0, 420, 7.1, 1.2, True, False, 22, "打工人，打工魂，打工都是人上人"),
    ("元宇宙", 97.2, 150, 6.6, 5.6, True, False, 29, "科技公司纷纷押注元宇宙"),
    ("凡尔赛", 80.1, 260, 6.1, 0.8, True, False, 36, "这段话\t真是\n凡尔赛文学"),
    ("B站", 77.0, 700, 5.9, 1.0, False, True, 43, "在B站看了一个视频"),
    ("yyds", 66.5, 90, 5.2, 2.9, True, False, 50, "这个游戏yyds"),
    ("破防", 51.2, 77, 4.8, 1.7, True, False, 57, "看完直接破防了"),
    ("绝绝子", 40.0, 60, 4.1, 3.3, False, False, 64, "这家奶茶绝绝子"),
]
#: a word the dashboard test reveals only from the second poll on.
LATE = Word("电子榨菜", 33.0, 33, 3.9, 7.5, pmi=6.0, left_entropy=2.0, right_entropy=2.2,
            new=True, first_seen=NOW - 5, last_seen=NOW, example="吃饭时看的视频叫电子榨菜")


def demo_words(now: float = NOW) -> tuple[Word, ...]:
    return tuple(
        Word(w, c, t, s, e, pmi=5.0 + i / 10, left_entropy=2.3, right_entropy=2.8 - i / 20,
             known=known, new=new, first_seen=now - 60 * minutes, last_seen=now - 2,
             example=ex)
        for i, (w, c, t, s, e, new, known, minutes, ex) in enumerate(DEMO)
    )


class DemoView:
    """A ServiceView over fixed data; records what POST /ingest hands it."""

    def __init__(self, words: tuple[Word, ...] | None = None, *, healthy: bool = True,
                 rescored_at: float | None = None, late: tuple[Word, ...] = ()):
        self.words = demo_words() if words is None else words
        self.late = late
        self.healthy = healthy
        self.rescored_at = time.time() - 4 if rescored_at is None else rescored_at
        self.ingested: list[str] = []
        self.word_polls = 0  # GET /words requests seen (set by the dashboard test)
        self.t0 = time.time()
        self.refuse_ingest = False

    def published(self) -> Published:
        words = self.words + (self.late if self.word_polls >= 2 else ())
        return Published(words=words, rescored_at=self.rescored_at, stream_time=NOW,
                         rescore_seconds=0.42)

    def stats(self) -> dict[str, Any]:
        elapsed = time.time() - self.t0
        chars = 123_456_789 + int(2_400_000 * elapsed) + sum(map(len, self.ingested))
        return {
            "chars_ingested": chars,
            "lines_ingested": 2_000_000 + int(40_000 * elapsed) + len(self.ingested),
            "bytes_ingested": chars * 3,
            "queue_depth": 2,
            "tracked_candidates": 184_223,
            "sources": [
                {"id": "file:/var/log/feed/weibo.log", "status": "tailing", "offset": 918_213},
                {"id": "dir:/data/inbox", "status": "idle"},
                {"id": "stdin", "status": "closed"},
            ],
            "last_rescore": self.rescored_at,
            "last_snapshot": None,
            "memory": {"rss_bytes": 312 * 2**20, "budget_bytes": 256 * 2**20},
        }

    def word_detail(self, word: str) -> WordDetail | None:
        names = [w.word for w in self.words + self.late]
        if word == "跟踪中":  # tracked by the engine, not (yet) a published word
            return {"history": [(NOW - 60, 1.0), (NOW, 2.5)], "examples": ["还在跟踪中"]}
        if word not in names:
            return None
        i = names.index(word)
        history = [(NOW - 60 * (30 - k), 5 + (i + 1) * k * 0.6 + 6 * math.sin(k / 2.5 + i))
                   for k in range(30)]
        return {"history": history, "examples": [f"例句{j}：{word}" for j in range(3)]}

    def metrics(self) -> list[Metric]:
        return [
            Metric("streamer_ingested_chars_total", "counter", "Characters ingested.",
                   123_456_789),
            Metric("streamer_ingested_lines_total", "counter", "Lines ingested.", 2_000_000),
            Metric("streamer_queue_depth", "gauge", "Batches waiting for the engine.", 2),
            Metric("streamer_rescore_duration_seconds", "summary", "Rescore time.", 4.2,
                   suffix="_sum"),
            Metric("streamer_rescore_duration_seconds", "summary", "Rescore time.", 10,
                   suffix="_count"),
            Metric("streamer_errors_total", "counter", "Errors by kind.", 3,
                   {"kind": 'decode "utf-8"\\ line\nbreak'}),
            Metric("streamer_errors_total", "counter", "Errors by kind.", 1, {"kind": "io"}),
            Metric("streamer_tracked_candidates", "gauge", "Candidates tracked.", 184_223),
            Metric("streamer_last_rescore_age_seconds", "gauge", "Help with \\ and\nnewline.",
                   float("nan")),
        ]

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.healthy:
            return True, {"sources": 3}
        return False, {"reason": "no rescore for 600 s"}

    async def ingest(self, lines: list[str]) -> int:
        if self.refuse_ingest:
            raise IngestUnavailable("shutting down")
        self.ingested.extend(lines)
        return len(lines)


class BrokenView(DemoView):
    """A view whose methods raise: the server must answer 500/503 and keep going."""

    def stats(self) -> dict[str, Any]:
        raise RuntimeError("stats exploded")

    def health(self) -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("health exploded")


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Run *app* on 127.0.0.1:<free port> in a thread; yield its base URL.

    For callers that are not coroutines (urllib, subprocesses, the browser).
    """
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def boot() -> None:
        try:
            ready["runner"] = await start_server(app, "127.0.0.1", 0)
        except BaseException as exc:  # reported to the waiting thread
            ready["error"] = exc
        started.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.create_task(boot())
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("server did not start")
    if "error" in ready:
        raise ready["error"]
    runner = ready["runner"]
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@contextlib.asynccontextmanager
async def running(view: ServiceView, **kwargs: Any):
    runner = await start_server(make_app(view, **kwargs), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{bound_port(runner)}") as session:
            yield session
    finally:
        await runner.cleanup()


def strict_json(text: str) -> Any:
    """json.loads that rejects NaN/Infinity like browsers do."""
    def bad(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as resp:
        assert resp.content_type == "application/json", (path, resp.content_type)
        return resp.status, strict_json(await resp.text())


# --------------------------------------------------------------------------- contract


def test_demo_view_satisfies_protocol() -> None:
    assert isinstance(DemoView(), ServiceView)


def test_ingest_without_token_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="token"):
        make_app(DemoView(), ingest_enabled=True)


# --------------------------------------------------------------------------- health


async def test_healthz_ok() -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, "/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert 0 <= body["last_rescore_age_s"] < 3600
    assert body["sources"] == 3


async def test_healthz_unhealthy_is_503_with_details() -> None:
    async with running(DemoView(healthy=False)) as s:
        status, body = await get(s, "/healthz")
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["reason"] == "no rescore for 600 s"


async def test_healthz_before_first_rescore() -> None:
    view = DemoView(words=())
    view.rescored_at = None  # type: ignore[assignment]
    async with running(view) as s:
        status, body = await get(s, "/healthz")
    assert status == 200 and body["last_rescore_age_s"] is None


async def test_failing_view_gives_json_errors_and_server_survives() -> None:
    async with running(BrokenView()) as s:
        status, body = await get(s, "/stats")
        assert status == 500 and "error" in body
        status, body = await get(s, "/healthz")
        assert status == 503 and "health exploded" in body["error"]
        status, body = await get(s, "/words?limit=1")
        assert status == 200 and len(body["words"]) == 1


# --------------------------------------------------------------------------- /words


async def test_words_default_order_and_fields() -> None:
    view = DemoView()
    async with running(view) as s:
        status, body = await get(s, "/words")
    assert status == 200
    assert [w["word"] for w in body["words"]] == [w.word for w in view.words]
    assert body["total"] == len(view.words)
    assert body["rescored_at"].endswith("Z") and body["stream_time"].startswith("2026-11-25")
    first = body["words"][0]
    assert list(first) == [*WORD_FIELDS, "rank"]
    assert first == {**view.words[0].to_dict(), "rank": 1}
    assert "history" not in first


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=3", ["新冠肺炎", "内卷", "躺平"]),
        ("new=false", ["B站", "绝绝子"]),
        ("new=0&sort=word", ["B站", "绝绝子"]),
        ("new=true&limit=2", ["新冠肺炎", "内卷"]),
        ("min_count=150", ["新冠肺炎", "内卷", "躺平", "打工人"]),
        ("min_count=80.1&new=true", ["新冠肺炎", "内卷", "躺平", "打工人", "元宇宙", "凡尔赛"]),
        ("sort=emergence&limit=3", ["元宇宙", "躺平", "新冠肺炎"]),
        ("sort=count&limit=2", ["新冠肺炎", "内卷"]),
        ("sort=first_seen&limit=2", ["新冠肺炎", "内卷"]),
        ("sort=word&limit=3", ["B站", "yyds", "元宇宙"]),
        ("sort=score&limit=1&unknown_param=1", ["新冠肺炎"]),
        ("limit=10000", [w[0] for w in DEMO]),
    ],
)
async def test_words_parameters(query: str, expected: list[str]) -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, f"/words?{query}")
    assert status == 200, body
    assert [w["word"] for w in body["words"]] == expected


async def test_words_sort_keeps_published_rank() -> None:
    async with running(DemoView()) as s:
        _, body = await get(s, "/words?sort=word&limit=1")
    assert body["words"][0]["word"] == "B站" and body["words"][0]["rank"] == 7


async def test_words_with_history() -> None:
    async with running(DemoView()) as s:
        _, body = await get(s, "/words?limit=2&history=1")
    hist = body["words"][0]["history"]
    assert len(hist) == 30
    assert all(isinstance(t, str) and t.endswith("Z") and isinstance(c, float) for t, c in hist)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("limit=1&limit=2", "limit"),
        ("new=maybe", "new"),
        ("new=", "new"),
        ("history=", "history"),
        ("new=yes%20please", "new"),
        ("sort=bogus", "sort"),
        ("sort=", "sort"),
        ("sort=SCORE", "sort"),
        ("min_count=-1", "min_count"),
        ("min_count=nan", "min_count"),
        ("min_count=inf", "min_count"),
        ("min_count=lots", "min_count"),
        ("history=perhaps", "history"),
    ],
)
async def test_words_bad_parameters_are_400(query: str, param: str) -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, f"/words?{query}")
    assert status == 400
    assert body["parameter"] == param
    assert param in body["error"]


async def test_non_finite_numbers_become_null() -> None:
    words = (Word("怪词", 3.0, 3, float("inf"), float("nan"), pmi=float("-inf")),)
    async with running(DemoView(words=words)) as s:
        status, body = await get(s, "/words")  # strict_json rejects NaN/Infinity
        assert status == 200
        w = body["words"][0]
        assert w["count"] == 3 and w["score"] is None and w["emergence"] is None
        assert w["pmi"] is None
        status, body = await get(s, f"/words/{quote('怪词')}")
        assert status == 200 and body["score"] is None


async def test_empty_published_list() -> None:
    async with running(DemoView(words=())) as s:
        status, body = await get(s, "/words?new=true")
    assert status == 200 and body["words"] == [] and body["total"] == 0


# --------------------------------------------------------------------------- /words/{word}


async def test_word_detail() -> None:
    view = DemoView()
    async with running(view) as s:
        status, body = await get(s, "/words/" + quote("躺平"))
    assert status == 200
    assert {k: body[k] for k in WORD_FIELDS} == view.words[2].to_dict()
    assert body["rank"] == 3 and body["published"] is True
    assert len(body["history"]) == 30 and body["history"][0][0].endswith("Z")
    assert body["examples"] == ["例句0：躺平", "例句1：躺平", "例句2：躺平"]


async def test_word_detail_ascii_and_tracked_only() -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, "/words/yyds")
        assert status == 200 and body["word"] == "yyds"
        status, body = await get(s, "/words/" + quote("跟踪中"))
        assert status == 200 and body["published"] is False
        assert body["examples"] == ["还在跟踪中"] and len(body["history"]) == 2
        assert "score" not in body


@pytest.mark.parametrize("word", ["不存在的词", "x" * 500, "%00", "a b", "..%2F..%2Fetc"])
async def test_unknown_word_is_404_json(word: str) -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, "/words/" + quote(word, safe=""))
    assert status == 404
    assert "unknown word" in body["error"]


# --------------------------------------------------------------------------- /stats


async def test_stats() -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, "/stats")
    assert status == 200
    assert body["queue_depth"] == 2 and body["sources"][0]["status"] == "tailing"
    assert abs(body["server_time"] - time.time()) < 3600
    assert body["published"] == {"words": 10, "new_words": 8, "rescored_at": body[
        "published"]["rescored_at"], "stream_time": "2026-11-25T09:46:40Z",
        "rescore_seconds": 0.42}


# --------------------------------------------------------------------------- /metrics


async def test_metrics_parse_strictly() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    async with running(DemoView()) as s:
        await get(s, "/words")
        async with s.get("/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    # Every family announced with HELP and TYPE before its samples, none 'unknown'.
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert all(f.type != "unknown" for f in families.values()), families
    lines = text.splitlines()
    for line in lines:
        if not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert any(name.startswith(h.split()[2]) for h in lines if h.startswith("# TYPE"))
    assert families["streamer_ingested_chars"].type == "counter"
    assert families["streamer_ingested_chars"].samples[0].value == 123_456_789
    assert families["streamer_queue_depth"].type == "gauge"
    summary = {s.name: s.value for s in families["streamer_rescore_duration_seconds"].samples}
    assert summary == {"streamer_rescore_duration_seconds_sum": 4.2,
                       "streamer_rescore_duration_seconds_count": 10}
    errors = {s.labels["kind"]: s.value for s in families["streamer_errors"].samples}
    assert errors == {'decode "utf-8"\\ line\nbreak': 3, "io": 1}  # escaping round-trips
    assert math.isnan(families["streamer_last_rescore_age_seconds"].samples[0].value)
    assert families["streamer_last_rescore_age_seconds"].documentation == \
        "Help with \\ and\nnewline."
    http = {(s.labels["handler"], s.labels["code"]): s.value
            for s in families["streamer_http_requests"].samples}
    assert http[("/words", "200")] >= 1


def test_render_metrics_drops_what_prometheus_would_reject() -> None:
    text = render_metrics([
        Metric("ok_total", "counter", "fine", 1),
        Metric("bad name", "gauge", "space in name", 1),
        Metric("ok_total", "gauge", "type conflict", 2),
        Metric("ok_total", "counter", "duplicate series", 3),
        Metric("lbl", "gauge", "bad label", 1, {"0bad": "x"}),
        Metric("val", "gauge", "bad value", "many"),  # type: ignore[arg-type]
        Metric("g", "gauge", "", True, {"b": "1", "a": "2"}),
        Metric("inf", "gauge", "inf", float("-inf")),
    ])
    assert text.splitlines() == [
        "# HELP ok_total fine", "# TYPE ok_total counter", "ok_total 1",
        "# HELP g g", "# TYPE g gauge", 'g{b="1",a="2"} 1',
        "# HELP inf inf", "# TYPE inf gauge", "inf -Inf",
    ]
    assert render_metrics([]) == ""


# --------------------------------------------------------------------------- errors & static


async def test_unknown_path_and_method() -> None:
    async with running(DemoView()) as s:
        status, body = await get(s, "/no/such/path")
        assert status == 404 and "error" in body
        async with s.delete("/words") as resp:
            assert resp.status == 405
            assert "error" in strict_json(await resp.text())
        status, body = await get(s, "/static/..%2F..%2Fserver.py")
        assert status == 404


async def test_dashboard_files_are_served() -> None:
    async with running(DemoView()) as s:
        async with s.get("/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            html = await resp.text()
        assert '<tbody id="rows">' in html
        for name, ctype in [("app.js", "text/javascript"), ("style.css", "text/css"),
                            ("favicon.svg", "image/svg+xml")]:
            async with s.get(f"/static/{name}") as resp:
                assert resp.status == 200 and resp.content_type == ctype
                assert len(await resp.read()) > 100


# --------------------------------------------------------------------------- /ingest

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def post(s: aiohttp.ClientSession, data: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async with s.post("/ingest", data=data, headers=headers) as resp:
        return resp.status, strict_json(await resp.text())


async def test_ingest_disabled_is_404() -> None:
    view = DemoView()
    async with running(view) as s:
        status, body = await post(s, b"hello", {**AUTH, "Content-Type": "text/plain"})
    assert status == 404 and "disabled" in body["error"]
    assert view.ingested == []


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", TOKEN,
                                  f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"])
async def test_ingest_needs_the_token(auth: str | None) -> None:
    view = DemoView()
    headers = {"Content-Type": "text/plain"}
    if auth is not None:
        headers["Authorization"] = auth
    async with running(view, ingest_enabled=True, ingest_token=TOKEN) as s:
        async with s.post("/ingest", data="新词".encode(), headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert view.ingested == []


async def test_ingest_text_and_json_lines() -> None:
    view = DemoView()
    async with running(view, ingest_enabled=True, ingest_token=TOKEN) as s:
        status, body = await post(s, "第一行\r\n第二行\n\n第四行\n".encode(),
                                  {**AUTH, "Content-Type": "text/plain; charset=utf-8"})
        assert (status, body) == (200, {"accepted": 4})
        ndjson = "\n".join(json.dumps({"text": t}, ensure_ascii=False)
                           for t in ["元宇宙来了", "多行\n文本"]) + "\n\n"
        status, body = await post(s, ndjson.encode(),
                                  {**AUTH, "Content-Type": "application/x-ndjson"})
        assert (status, body) == (200, {"accepted": 3})
        status, body = await post(s, b"", {**AUTH, "Content-Type": "text/plain"})
        assert (status, body) == (200, {"accepted": 0})
    assert view.ingested == ["第一行", "第二行", "", "第四行", "元宇宙来了", "多行", "文本"]


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b'{"text": "ok"}\n{"text": broken}\n', "application/x-ndjson", 400),
        (b'["not an object"]\n', "application/x-ndjson", 400),
        (b'{"txt": "wrong key"}\n', "application/json", 400),
        (b'{"text": 42}\n', "application/x-ndjson", 400),
        (b"\xff\xfe invalid utf-8", "text/plain", 400),
        (b"hello", "application/octet-stream", 415),
        (b"hello", "text/plain; charset=latin-1", 415),
        (b"x" * 2000, "text/plain", 413),
    ],
)
async def test_ingest_rejects_bad_bodies(body: bytes, ctype: str, status: int) -> None:
    view = DemoView()
    async with running(view, ingest_enabled=True, ingest_token=TOKEN, max_body=1024) as s:
        got, answer = await post(s, body, {**AUTH, "Content-Type": ctype})
    assert got == status, answer
    assert answer["error"]
    assert view.ingested == []  # nothing half-ingested from a rejected body


async def test_ingest_chunked_body_over_limit_is_413() -> None:
    view = DemoView()

    async def chunks():
        for _ in range(40):
            yield b"y" * 100

    async with running(view, ingest_enabled=True, ingest_token=TOKEN, max_body=1024) as s:
        status, body = await post(s, chunks(), {**AUTH, "Content-Type": "text/plain"})
        assert status == 413
        status, body = await post(s, b"still fine", {**AUTH, "Content-Type": "text/plain"})
        assert status == 200
    assert view.ingested == ["still fine"]


async def test_ingest_unavailable_is_503() -> None:
    view = DemoView()
    view.refuse_ingest = True
    async with running(view, ingest_enabled=True, ingest_token=TOKEN) as s:
        status, body = await post(s, b"line", {**AUTH, "Content-Type": "text/plain"})
    assert status == 503 and "shutting down" in body["error"]


async def test_garbage_requests_do_not_take_the_server_down() -> None:
    app = make_app(DemoView())
    runner = await start_server(app, "127.0.0.1", 0)
    port = bound_port(runner)
    try:
        for junk in [b"\x00\x01\x02 nonsense\r\n\r\n", b"GET /words?limit=%ZZ HTTP/1.1\r\n\r\n",
                     b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(junk)
            await writer.drain()
            await reader.read(65536)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- streamer top


def run_top(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="streamer")
    top.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["top", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_top_from_url_aligns_cjk_columns() -> None:
    with serve_in_thread(make_app(DemoView())) as url:
        status, out, err = run_top("--url", url, "-n", "5")
    assert status == 0, err
    lines = out.splitlines()
    table = lines[2:]
    assert table[0].split() == ["#", "word", "score", "count", "emergence", "first", "seen",
                                "(UTC)", "new"]
    assert [row.split()[1] for row in table[1:]] == ["新冠肺炎", "内卷", "躺平", "打工人", "元宇宙"]
    # Columns line up in display width: all five rows end in 'new', like the header.
    widths = {top.display_width(row) for row in table}
    assert len(widths) == 1, table
    assert "2026-11-25 09:45:40" in table[1] and table[1].endswith("new")
    assert "of 10 words" in lines[0]


def test_top_new_only_and_bad_url() -> None:
    with serve_in_thread(make_app(DemoView())) as url:
        status, out, _ = run_top("--url", url + "/", "-n", "20", "--new")
        assert status == 0
        assert "B站" not in out and "绝绝子" not in out and "yyds" in out
    # the server is gone now: one line on stderr, status 2
    status, out, err = run_top("--url", url)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "cannot reach" in err
    status, _, err = run_top("--url", "ftp://example.org")
    assert status == 2 and "http" in err


def test_top_reports_http_errors() -> None:
    async def nope(request: web.Request) -> web.Response:
        return web.json_response({"error": "nope"}, status=500)

    app = web.Application()
    app.router.add_get("/words", nope)
    with serve_in_thread(app) as url:
        status, _, err = run_top("--url", url)
    assert status == 2 and "HTTP 500" in err and "nope" in err


def test_top_watch_exits_0_on_ctrl_c() -> None:
    with serve_in_thread(make_app(DemoView())) as url:
        proc = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from streamer.cli import main; sys.exit(main(sys.argv[1:]))",
             "top", "--url", url, "-n", "3", "--watch", "0.2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for two redraws
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("(refreshing every"):
                seen.append(line)
                if len(seen) == 2:
                    break
        assert len(seen) == 2, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(2)  # SIGINT, what Ctrl-C sends
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_top_cli_unreachable_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "top", "--url", "http://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot reach" in proc.stderr
