"""The service's outputs against a real running daemon: HTTP API, periodic exports and
`streamer top`.

One `python -m streamer run` process per module (see `svc`) tails text files in a
temporary directory: background sentences whose vocabulary is in a known lexicon, plus
two made-up words (helpers.INJECTED) that the service must discover as new. Everything
is reached the way users reach it: real sockets, real files, real subprocesses; nothing
of ours is mocked. Waiting is polling with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import unicodedata
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import INJECTED, ROOT, VOCAB, LiveService, background, start_fed_service

from streamer.core.results import WORD_FIELDS
from streamer.service.server import RATE_PERIOD, RateMeter

TOKEN = "s3cret-token"
MAX_BODY = 16 * 1024
RETENTION = 2
FORMATS = {"jsonl": "jsonl", "csv": "csv", "tsv": "tsv", "jieba": "jieba.txt"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STAMPED = re.compile(r"^words-(\d{8}T\d{6}Z)\.(jsonl|csv|tsv|jieba\.txt)$")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The module's daemon: all export formats, only new words exported, keep 2 files,
    POST /ingest on with a token and a small body limit."""
    service = start_fed_service(tmp_path_factory.mktemp("service"), {
        "export": {"formats": list(FORMATS), "selection": "new",
                   "retention_files": RETENTION},
        "http": {"ingest_enabled": True, "ingest_token": TOKEN, "max_body": MAX_BODY},
    })
    yield service
    service.cleanup()


def quote(word: str) -> str:
    return urllib.parse.quote(word, safe="")


def more_text(svc: LiveService, n: int = 200, seed: int | None = None) -> int:
    """Feed n more lines (with the injected words) and wait until the published list
    covers them, so that later reads in a test see one list; returns lines_ingested."""
    rng = random.Random(seed if seed is not None else svc.written)
    svc.feed(background(rng, n, INJECTED))
    return svc.rescored()["lines_ingested"]


# =========================================================================== /healthz


def test_healthz(svc: LiveService) -> None:
    status, body = svc.get("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    age = body["last_rescore_age_s"]
    assert isinstance(age, float | int) and age >= 0
    assert body["lines_ingested"] >= svc.written


# =========================================================================== /words


def test_words_default_list(svc: LiveService) -> None:
    status, body = svc.get("/words")
    assert status == 200
    assert ISO.match(body["rescored_at"]) and ISO.match(body["stream_time"])
    assert body["stream_time"].startswith("2024-01-01")  # replay time, from the config
    words = body["words"]
    assert 0 < len(words) <= 100 and body["total"] >= len(words)
    for w in words:
        assert list(w) == [*WORD_FIELDS, "rank"], w
        assert "history" not in w
    assert [w["rank"] for w in words] == list(range(1, len(words) + 1))
    scores = [w["score"] for w in words]
    assert scores == sorted(scores, reverse=True)
    listed = {w["word"] for w in svc.words(limit=10_000)}
    assert set(INJECTED) <= listed


def test_words_limit_new_min_count(svc: LiveService) -> None:
    status, body = svc.get("/words?limit=1")
    assert status == 200 and len(body["words"]) == 1 and body["total"] > 1

    new = svc.words(new="true", limit=10_000)
    old = svc.words(new="false", limit=10_000)
    assert new and old, (new, old)
    assert all(w["new"] for w in new) and not any(w["new"] for w in old)
    assert set(INJECTED) <= {w["word"] for w in new}, new
    # the background vocabulary is in the known lexicon: listed perhaps, never as new
    assert not {w["word"] for w in new} & set(VOCAB), new
    assert all(w["known"] for w in old), [w for w in old if not w["known"]]

    everything = svc.words(limit=10_000)
    counts = sorted(w["count"] for w in everything)
    threshold = counts[len(counts) // 2]
    above = svc.words(min_count=threshold, limit=10_000)
    assert above and all(w["count"] >= threshold for w in above), (threshold, above)
    assert len(above) < len(everything) or counts[0] == threshold, (threshold, counts)


@pytest.mark.parametrize("sort, key", [
    ("score", "score"), ("count", "count"), ("emergence", "emergence"),
    ("first_seen", "first_seen"), ("word", "word"),
])
def test_words_sort(svc: LiveService, sort: str, key: str) -> None:
    words = svc.words(sort=sort, limit=10_000)
    values = [w[key] for w in words]
    if sort == "word":
        assert values == sorted(values)
    else:
        assert values == sorted(values, reverse=True), values
    # ranks stay the published ranks, whatever the order
    assert sorted(w["rank"] for w in words) == list(range(1, len(words) + 1))


def test_words_history_for_sparklines(svc: LiveService) -> None:
    words = svc.words(history="true", limit=10_000)
    by_word = {w["word"]: w for w in words}
    for word in INJECTED:
        history = by_word[word]["history"]
        assert history, word
        for t, count in history:
            assert ISO.match(t) and isinstance(count, float | int)
        assert [t for t, _ in history] == sorted(t for t, _ in history)


def test_word_detail(svc: LiveService) -> None:
    word = INJECTED[0]
    status, detail = svc.get("/words/" + quote(word))
    assert status == 200
    assert detail["word"] == word and detail["published"] is True
    for field in WORD_FIELDS:
        assert field in detail, field
    assert detail["new"] is True and detail["known"] is False
    assert detail["total_count"] >= 5 and detail["count"] > 0
    assert ISO.match(detail["first_seen"]) and ISO.match(detail["last_seen"])
    assert detail["first_seen"] <= detail["last_seen"]
    listed = {w["word"]: w for w in svc.words(limit=10_000)}
    assert detail["rank"] == listed[word]["rank"]
    assert detail["examples"] and all(word in e for e in detail["examples"])
    assert word in detail["example"]
    history = detail["history"]
    assert history and all(ISO.match(t) for t, _ in history)

    # the time series grows as the stream goes on (one point per rescore)
    more_text(svc, 300)

    def longer() -> bool:
        _, d = svc.get("/words/" + quote(word))
        return len(d["history"]) > len(history)

    svc.wait_for(longer, f"a longer history of {word}")


@pytest.mark.parametrize("word", ["不存在的词", "x", "%00", "a" * 300, "蓝鲸"])
def test_unknown_word_is_404(svc: LiveService, word: str) -> None:
    status, body = svc.get("/words/" + quote(word))
    assert status == 404
    assert body["word"] == word and "unknown word" in body["error"]


# =========================================================================== /stats


def test_stats(svc: LiveService) -> None:
    lines = more_text(svc, 100)
    feed = svc.inbox / "feed.txt"
    size = feed.stat().st_size

    def row_done() -> dict[str, Any] | None:
        for row in svc.stats()["sources"]:
            if row.get("path", "").endswith("feed.txt") and row["committed_offset"] == size:
                return row
        return None

    row = svc.wait_for(row_done, "feed.txt fully read")
    assert row["status"] in ("open", "eof", "idle", "tailing") and row["id"]
    assert row["lines"] == svc.written and row["error"] is None
    s = svc.wait_for(lambda: (st := svc.stats())["last_snapshot"] and st, "a snapshot")
    assert s["lines_ingested"] >= lines
    assert s["chars_ingested"] > s["lines_ingested"]
    assert s["bytes_ingested"] >= size
    assert s["queue_depth"] >= 0 and s["queue_capacity"] > 0
    assert s["tracked_candidates"] > 0
    assert s["time_mode"] == "replay"
    for key in ("last_rescore", "last_snapshot", "last_export"):
        assert s["started"] <= s[key] <= s["server_time"], key
    assert s["rescores"] >= 1 and s["snapshots"] >= 1 and s["exports"] >= 1
    mem = s["memory"]
    assert mem["rss_bytes"] > 0 and mem["budget_bytes"] == 8 * 2**20
    assert s["published"]["words"] > s["published"]["new_words"] >= len(INJECTED)
    assert ISO.match(s["published"]["rescored_at"])


def test_stats_ingest_rate(svc: LiveService) -> None:
    """The server samples the ingest counters itself: a rate (and its recent history for
    the dashboard's sparkline) is there for any client, from its first request."""
    more_text(svc, 200)
    rate = svc.wait_for(lambda: (r := svc.stats()["ingest_rate"])["chars_per_s"] and r,
                        "a non-zero ingest rate")
    assert rate["chars_per_s"] > 0 and rate["lines_per_s"] > 0
    assert 0 < rate["window_s"] and rate["period_s"] == RATE_PERIOD
    assert all(isinstance(v, float | int) and v >= 0 for v in rate["history"])


def test_rate_meter() -> None:
    meter = RateMeter(points=4, window=10.0)

    def counters(chars: int, lines: int) -> dict[str, int]:
        return {"chars_ingested": chars, "lines_ingested": lines}

    assert meter.summary(0.0, counters(0, 0))["chars_per_s"] is None
    meter.add(0.0, counters(0, 0))
    assert meter.summary(0.2, counters(10, 1))["chars_per_s"] is None  # too short to say
    for t in range(2, 12, 2):
        meter.add(float(t), counters(100 * t, t))
    assert len(meter.samples) == 5  # bounded: points + 1
    summary = meter.summary(13.0, counters(1300, 13))
    # from the newest sample at least 10 s old (t = 2)
    assert summary["chars_per_s"] == 100.0 and summary["lines_per_s"] == 1.0
    assert summary["window_s"] == 11.0 and summary["history"] == [100.0] * 4
    meter.add(14.0, {"chars_ingested": "x"})  # unusable stats are skipped
    meter.add(14.0, counters(5, 1))  # counters went back: a restarted service
    assert list(meter.samples) == [(14.0, 5.0, 1.0)]
    assert meter.summary(16.0, counters(25, 3))["chars_per_s"] == 10.0


# =========================================================================== /metrics


def metrics(svc: LiveService) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = svc.http("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    assert families
    return families


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name}{labels}")


def test_metrics_parse_and_counters_grow(svc: LiveService) -> None:
    before = metrics(svc)
    types = {name: f.type for name, f in before.items()}
    for name, kind in [
        ("streamer_lines_ingested", "counter"), ("streamer_chars_ingested", "counter"),
        ("streamer_batches", "counter"), ("streamer_queue_depth", "gauge"),
        ("streamer_rescore_seconds", "gauge"), ("streamer_snapshot_seconds", "gauge"),
        ("streamer_candidates", "gauge"), ("streamer_ingest_errors", "counter"),
        ("streamer_http_requests", "counter"),
    ]:
        assert types.get(name) == kind, (name, types.get(name))
    lines0 = sample(before, "streamer_lines_ingested_total")
    chars0 = sample(before, "streamer_chars_ingested_total")
    batches0 = sample(before, "streamer_batches_total")
    assert lines0 >= svc.written
    assert sample(before, "streamer_ingest_errors_total") == 0

    lines = more_text(svc, 150)
    after = metrics(svc)
    assert sample(after, "streamer_lines_ingested_total") >= lines > lines0
    assert sample(after, "streamer_chars_ingested_total") > chars0
    assert sample(after, "streamer_batches_total") > batches0
    # the server's own request counter saw the first /metrics request
    assert sample(after, "streamer_http_requests_total", handler="/metrics", code="200") >= 1


# =========================================================================== POST /ingest


def ingest(svc: LiveService, body: bytes, token: str | None = TOKEN,
           ctype: str = "text/plain; charset=utf-8") -> tuple[int, Any]:
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return svc.post("/ingest", body, headers)


def test_ingest_needs_the_token(svc: LiveService) -> None:
    before = svc.stats()["http_lines"]
    for token in (None, "", "wrong", TOKEN + "x"):
        status, body = ingest(svc, "一行文字\n".encode(), token=token)
        assert status == 401 and "token" in body["error"], token
    status, headers, _ = svc.http("POST", "/ingest", b"x\n", {"Content-Type": "text/plain"})
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert svc.stats()["http_lines"] == before


def test_ingest_body_limit_is_413(svc: LiveService) -> None:
    big = ("超长的正文" * 2000 + "\n").encode()
    assert len(big) > MAX_BODY
    status, body = ingest(svc, big)
    assert status == 413 and "limit" in body["error"]
    # a chunked body has no Content-Length: the limit still holds while reading
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        chunks = (big[i:i + 4096] for i in range(0, len(big), 4096))
        conn.request("POST", "/ingest", body=chunks, encode_chunked=True,
                     headers={"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert "error" in json.loads(resp.read())
    finally:
        conn.close()
    assert svc.health_status() == 200


def test_ingest_lines_are_counted(svc: LiveService) -> None:
    rng = random.Random(77)
    text_lines = background(rng, 30)
    json_lines = background(rng, 12)
    s0 = svc.stats()
    status, body = ingest(svc, "\n".join(text_lines).encode() + b"\n")
    assert status == 200 and body == {"accepted": 30}
    ndjson = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in json_lines)
    status, body = ingest(svc, ndjson.encode(), ctype="application/x-ndjson")
    assert status == 200 and body == {"accepted": 12}
    target = s0["lines_ingested"] + 42
    s1 = svc.wait_for(lambda: (s := svc.stats())["lines_ingested"] >= target and s,
                      "the posted lines to be counted")
    assert s1["http_lines"] == s0["http_lines"] + 42
    assert s1["chars_ingested"] >= s0["chars_ingested"] + sum(map(len, text_lines + json_lines))
    svc.rescored()  # later tests read one stable list


def test_ingest_bad_requests(svc: LiveService) -> None:
    status, body = ingest(svc, b'{"text": "ok"}\n{not json}\n', ctype="application/x-ndjson")
    assert status == 400 and body["line"] == 2
    status, body = ingest(svc, b'{"words": 1}\n', ctype="application/x-ndjson")
    assert status == 400 and "text" in body["error"]
    status, body = ingest(svc, b"\xff\xfe bad utf-8\n")
    assert status == 400 and "UTF-8" in body["error"]
    status, body = ingest(svc, b"<a/>", ctype="application/xml")
    assert status == 415
    status, _, raw = svc.http("GET", "/ingest")
    assert status == 405 and "error" in json.loads(raw)


# =========================================================================== malformed input


@pytest.mark.parametrize("query, param", [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=", "limit"),
    ("limit=1&limit=2", "limit"), ("new=maybe", "new"), ("new=", "new"),
    ("min_count=-1", "min_count"), ("min_count=nan", "min_count"),
    ("min_count=inf", "min_count"), ("min_count=x", "min_count"), ("sort=bogus", "sort"),
    ("sort=", "sort"), ("history=2", "history"),
])
def test_malformed_queries_are_400(svc: LiveService, query: str, param: str) -> None:
    status, body = svc.get("/words?" + query)
    assert status == 400, (query, body)
    assert body["parameter"] == param and param in body["error"]


def test_unknown_parameters_are_ignored_and_unknown_paths_404(svc: LiveService) -> None:
    status, body = svc.get("/words?limit=2&_=12345&utm_source=x")
    assert status == 200 and len(body["words"]) == 2
    status, body = svc.get("/no/such/path")
    assert status == 404 and "error" in body
    status, _, raw = svc.http("DELETE", "/words")
    assert status == 405 and "error" in json.loads(raw)


def test_garbage_on_the_socket_does_not_hurt_the_service(svc: LiveService) -> None:
    for junk in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /ingest HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"GET /words HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", svc.port), timeout=30) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:200]
        if answer:
            assert answer.split()[1][:1] == b"4", answer[:200]
    assert svc.health_status() == 200
    assert svc.words(limit=1)


# =========================================================================== dashboard files


def test_dashboard_files_are_served(svc: LiveService) -> None:
    status, headers, body = svc.http("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    html = body.decode("utf-8")
    for name in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        status, headers, data = svc.http("GET", "/static/" + name)
        assert status == 200 and data, name


# =========================================================================== exports


def stamped_files(directory: Path) -> dict[str, list[str]]:
    """format -> sorted timestamped export names in *directory*."""
    out: dict[str, list[str]] = {fmt: [] for fmt in FORMATS}
    ext_to_fmt = {ext: fmt for fmt, ext in FORMATS.items()}
    for name in os.listdir(directory):
        m = STAMPED.match(name)
        if m:
            out[ext_to_fmt[m.group(2)]].append(name)
    return {fmt: sorted(names) for fmt, names in out.items()}


def parse_export(fmt: str, data: bytes) -> list[dict[str, Any]]:
    """Parse one export the way a downstream job would; rows as dicts."""
    text = data.decode("utf-8")
    assert text.endswith("\n") or text == "", "a partly written last line"
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        for row in rows:
            assert list(row) == list(WORD_FIELDS)
        return rows
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        assert tuple(reader.fieldnames or ()) == WORD_FIELDS
        return list(reader)
    if fmt == "tsv":
        head, *body = text.splitlines()
        assert tuple(head.split("\t")) == WORD_FIELDS
        rows = []
        for line in body:
            cells = line.split("\t")
            assert len(cells) == len(WORD_FIELDS), line
            rows.append(dict(zip(WORD_FIELDS, cells, strict=True)))
        return rows
    rows = []
    for line in text.splitlines():
        word, freq = line.split(" ")
        assert int(freq) >= 1
        rows.append({"word": word, "freq": int(freq)})
    return rows


def snapshot_exports(directory: Path) -> dict[str, tuple[list[str], bytes, bytes]] | None:
    """format -> (timestamped names, newest bytes, latest bytes), when the directory is
    in a steady state: exactly RETENTION files of each format and latest.<ext> equal to
    the newest one. None while an export is being written (the caller polls)."""
    out = {}
    for fmt, names in stamped_files(directory).items():
        if len(names) != RETENTION:
            return None
        newest = (directory / names[-1]).read_bytes()
        latest = (directory / f"latest.{FORMATS[fmt]}").read_bytes()
        if newest != latest:
            return None
        out[fmt] = (names, newest, latest)
    return out


def test_periodic_exports_every_format_with_retention(svc: LiveService) -> None:
    exports = svc.exports
    seen: dict[str, set[str]] = {fmt: set() for fmt in FORMATS}
    latest = exports / "latest.jsonl"
    svc.wait_for(latest.exists, "latest.jsonl")
    old_handle = open(latest, "rb")  # a reader in the middle of reading the old file
    old_inode = os.fstat(old_handle.fileno()).st_ino
    try:
        # keep the stream going until more exports were written than retention keeps
        while min(len(v) for v in seen.values()) <= RETENTION + 1:
            exported = svc.stats()["exports"]
            more_text(svc, 60)
            svc.wait_for(lambda e=exported: svc.stats()["exports"] > e, "one more export")
            for fmt, names in stamped_files(exports).items():
                seen[fmt].update(names)
        steady = svc.wait_for(lambda: snapshot_exports(exports),
                              f"{RETENTION} exports of each format, latest = newest")
        # latest.* was replaced by a rename: the old reader still has a whole old file
        assert os.stat(latest).st_ino != old_inode
        parse_export("jsonl", old_handle.read())
    finally:
        old_handle.close()

    for fmt, (names, newest, _) in steady.items():
        # retention kept the newest RETENTION of all the timestamps this format had
        assert names == sorted(seen[fmt] | set(names))[-RETENTION:], (fmt, names)
        stamps = {STAMPED.match(n).group(1) for n in names}  # type: ignore[union-attr]
        for stamp in stamps:
            datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        rows = parse_export(fmt, newest)
        words = [r["word"] for r in rows]
        # selection = "new": the injected words, and no known vocabulary
        assert set(INJECTED) <= set(words), (fmt, words)
        assert not set(words) & set(VOCAB), (fmt, words)
        if fmt == "jsonl":
            assert all(r["new"] is True and r["known"] is False for r in rows)
        elif fmt in ("csv", "tsv"):
            assert all(r["new"] == "true" and r["known"] == "false" for r in rows)
            assert all(float(r["score"]) > 0 and int(r["total_count"]) >= 5 for r in rows)
    # no temporary file is ever visible under an export name
    assert all(n.startswith(("words-", "latest.")) for n in os.listdir(exports)
               if not n.startswith(".")), os.listdir(exports)


def test_jieba_export_loads_into_a_fresh_tokenizer(svc: LiveService) -> None:
    jieba = pytest.importorskip("jieba")
    path = svc.exports / "latest.jieba.txt"
    svc.wait_for(path.exists, "latest.jieba.txt")
    words = [line.split(" ")[0] for line in path.read_text(encoding="utf-8").splitlines()]
    assert set(INJECTED) <= set(words)
    jieba.setLogLevel(60)
    text = f"昨天的{INJECTED[0]}和今天的{INJECTED[1]}"
    tok = jieba.Tokenizer()
    assert not set(INJECTED) & set(tok.lcut(text, HMM=False))  # unknown to jieba itself
    tok.load_userdict(str(path))
    assert set(INJECTED) <= set(tok.lcut(text, HMM=False))


def test_sigterm_writes_a_final_export_of_the_top_words(tmp_path: Path) -> None:
    """selection = "top": only the best K; the export timer never fires (1 h), so the
    timestamped files afterwards were written at shutdown."""
    top_k = 3
    service = start_fed_service(tmp_path, {
        "intervals": {"export": "1h", "snapshot": "1h"},
        "export": {"formats": ["jsonl", "csv"], "selection": "top", "top_k": top_k},
    }, chunks=2)
    try:
        service.rescored()  # the list as of everything fed: the shutdown rescore's list
        best = [w["word"] for w in service.words(limit=top_k)]
        assert not list(service.exports.glob("words-*"))
        assert service.stop(signal.SIGTERM) == 0
    finally:
        service.cleanup()
    assert "export written (shutdown)" in service.log()
    for fmt in ("jsonl", "csv"):
        ext = FORMATS[fmt]
        (stamped,) = service.exports.glob(f"words-*.{ext}")
        data = stamped.read_bytes()
        assert (service.exports / f"latest.{ext}").read_bytes() == data
        assert [r["word"] for r in parse_export(fmt, data)] == best


# =========================================================================== streamer top


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def cells(line: str) -> list[tuple[int, int, str]]:
    """(start column, end column, text) of the cells of a table line; cells are
    separated by two or more spaces; columns are terminal (display) columns."""
    out = []
    for m in re.finditer(r"\S+(?: \S+)*", line):
        start = display_width(line[:m.start()])
        out.append((start, start + display_width(m.group()), m.group()))
    return out


def top(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "streamer", "top", *args], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def check_table(out: str, expect_words: set[str]) -> list[list[tuple[int, int, str]]]:
    head, blank, *table = out.splitlines()
    assert head.startswith("streamer top ·") and blank == ""
    rows = [cells(line) for line in table]
    header = rows[0]
    assert [c[2] for c in header] == ["#", "word", "score", "count", "emergence",
                                      "first seen (UTC)", "new"]
    right = {0, 2, 3, 4}  # right-aligned columns (#, score, count, emergence)
    for row in rows[1:]:
        assert len(row) in (6, 7), row  # the "new" column is empty for known words
        for i, (start, end, _) in enumerate(row):
            if i in right:
                assert end == header[i][1], (row, header)
            else:
                assert start == header[i][0], (row, header)
    assert expect_words <= {row[1][2] for row in rows[1:]}, out
    return rows


def test_top_from_the_daemon_url(svc: LiveService) -> None:
    proc = top("--url", svc.url, "-n", "200")
    assert proc.returncode == 0, proc.stderr
    rows = check_table(proc.stdout, set(INJECTED))
    injected = [r for r in rows[1:] if r[1][2] in INJECTED]
    assert all(r[-1][2] == "new" for r in injected)
    proc = top("--url", svc.url, "-n", "5", "--new")
    assert proc.returncode == 0, proc.stderr
    rows = check_table(proc.stdout, set())
    assert all(r[-1][2] == "new" for r in rows[1:]) and len(rows) - 1 <= 5


def test_top_from_the_export_dir(svc: LiveService) -> None:
    svc.wait_for((svc.exports / "latest.jsonl").exists, "latest.jsonl")
    proc = top("--export-dir", str(svc.exports), "-n", "50")
    assert proc.returncode == 0, proc.stderr
    check_table(proc.stdout, set(INJECTED))
    assert str(svc.exports / "latest.jsonl") in proc.stdout.splitlines()[0]


def test_top_unreachable_url_is_exit_2() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        proc = top("--url", f"http://127.0.0.1:{port}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("streamer top: error: cannot reach")


# =========================================================================== demo feeder


def test_demo_feed_script_feeds_the_service(svc: LiveService, tmp_path: Path) -> None:
    """scripts/demo_feed.py, the feeder the README suggests, appends whole lines at a
    rate into a file the service tails; the service counts every one of them."""
    corpus = tmp_path / "corpus.txt"
    lines = background(random.Random(99), 120, INJECTED)
    corpus.write_text("\n\n".join(lines) + "\n", encoding="utf-8")  # blank lines skipped
    before = svc.stats()["lines_ingested"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_feed.py"), str(corpus),
         str(svc.inbox / "demo.txt"), "--rate", "2000", "--skip", "20", "--limit", "100"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "done, 100 lines" in proc.stderr
    written = (svc.inbox / "demo.txt").read_text(encoding="utf-8")
    assert written == "".join(line + "\n" for line in lines[10:110])
    svc.wait_for(lambda: svc.stats()["lines_ingested"] >= before + 100,
                 "the demo lines to be counted")
