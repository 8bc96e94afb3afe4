"""HTTP API tests on a real loopback socket, against :class:`demo_view.DemoView`.

The contract of each endpoint is checked here with a view whose words are known exactly;
tests/e2e/test_service_http.py checks the same endpoints on a real `streamer run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from demo_view import DEMO, BrokenView, DemoView, serve_in_thread
from helpers import strict_json

from streamer.cli import top
from streamer.core.results import WORD_FIELDS, Word
from streamer.service.server import (
    Metric,
    ServiceView,
    bound_port,
    make_app,
    render_metrics,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]
@contextlib.asynccontextmanager
async def running(view: ServiceView, **kwargs: Any):
    runner = await start_server(make_app(view, **kwargs), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{bound_port(runner)}") as session:
            yield session
    finally:
        await runner.cleanup()


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
             "import sys; from streamer.cli.main import main; sys.exit(main(sys.argv[1:]))",
             "top", "--url", url, "-n", "3", "--watch", "0.2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
            # a terminal's Ctrl-C reaches a program whose SIGINT is not ignored; a suite
            # started in the background by a non-interactive shell ignores it, and
            # Python then installs no KeyboardInterrupt handler in its children
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
