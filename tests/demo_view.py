"""A ServiceView with known words, served on a loopback socket in a thread.

The HTTP contract and dashboard tests use it where the exact words and fields must be known
in advance; a real `streamer run` is exercised by tests/e2e.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from streamer.core.results import Published, Word
from streamer.service.server import (
    IngestUnavailable,
    Metric,
    WordDetail,
    bound_port,
    start_server,
)

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


