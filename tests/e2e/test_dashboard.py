"""The dashboard in a real headless Chromium against the real server.

Chromium's ``--virtual-time-budget`` runs the page's timers (the 2 s refresh)
in virtual time and waits for network fetches, so a single ``--dump-dom``
returns the page after several refresh cycles without any sleeping here.
Screenshots go to test-artifacts/ (git-ignored) for people to look at.

Two kinds of server: the real app over a DemoView (fixed data, for exact
assertions on rendering, escaping and highlighting), and a real
``python -m streamer run`` daemon fed with text (the injected words must show up).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from demo_view import DEMO, LATE, DemoView, demo_words, serve_in_thread
from helpers import (
    ARTIFACTS,
    CHROMIUM,
    INJECTED,
    VOCAB,
    LiveService,
    chromium,
    png_size,
    start_fed_service,
)

from streamer.core.results import Word
from streamer.service.server import make_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install chromium; .ci/run installs it)"),
]

HOSTILE = Word("注入", 20.0, 20, 3.0, 1.1, new=True, first_seen=None,
               example='<img src=x onerror="document.title=\'pwned\'"><b>粗体</b>注入')


def app_for(view: DemoView) -> web.Application:
    """The real app plus a counter of GET /words, so that the view can reveal
    a word from the second poll on (a row that "just appeared")."""
    app = make_app(view)

    @web.middleware
    async def count_polls(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/words":
            view.word_polls += 1
        return await handler(request)

    app.middlewares.append(count_polls)
    return app


class Rows(HTMLParser):
    """Collects the <tr> elements of tbody#rows: attributes, cell texts, child tags."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.ids: dict[str, str] = {}
        self._in_body = False
        self._cell: list[str] | None = None
        self._capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self._capture = a["id"]
            self.ids.setdefault(a["id"], "")
        if tag == "tbody" and a.get("id") == "rows":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({"attrs": a, "cells": [], "tags": [], "td_attrs": []})
        elif self._in_body and self.rows:
            self.rows[-1]["tags"].append(tag)
            if tag == "td":
                self._cell = []
                self.rows[-1]["cells"].append(self._cell)
                self.rows[-1]["td_attrs"].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        if tag == "td":
            self._cell = None
        self._capture = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._capture:
            self.ids[self._capture] += data


def parse(dom: str) -> Rows:
    parser = Rows()
    parser.feed(dom)
    return parser


def test_dashboard_shows_words_and_highlights_new_rows(tmp_path: Path) -> None:
    view = DemoView(words=demo_words() + (HOSTILE,), late=(LATE,))
    with serve_in_thread(app_for(view)) as url:
        dom = chromium(url + "/", tmp_path / "profile", "--dump-dom")
    page = parse(dom)
    rows = [r for r in page.rows if "data-word" in r["attrs"]]
    shown = [r["attrs"]["data-word"] for r in rows]
    # default view: new words only, in published order; LATE arrived with the 2nd poll
    expected = [w for w, *rest in DEMO if rest[4]] + [HOSTILE.word, LATE.word]
    assert shown == expected, dom[:3000]
    assert view.word_polls >= 2
    by_word = {r["attrs"]["data-word"]: r for r in rows}
    # the row that appeared after the first load is highlighted, the others are not
    assert "fresh" in by_word[LATE.word]["attrs"].get("class", "").split()
    assert not any("fresh" in (by_word[w]["attrs"].get("class") or "") for w in expected[:-1])
    # cells: rank, word, trend, score, count, rising (emergence), first seen, example
    first = ["".join(c).strip() for c in by_word["新冠肺炎"]["cells"]]
    assert first[0] == "1" and first[1].startswith("新冠肺炎") and first[3] == "9.81"
    assert first[4] == "412" and first[5] == "3.40"
    assert first[7] == "新冠肺炎疫情防控进入新阶段"
    assert "polyline" in by_word["新冠肺炎"]["tags"]  # sparkline drawn from the history
    # stream text is text: the hostile example did not become elements
    hostile = by_word[HOSTILE.word]
    assert "img" not in hostile["tags"] and "b" not in hostile["tags"]
    assert "".join(hostile["cells"][7]).startswith("<img src=x")
    assert "pwned" not in dom.split("</title>")[0]
    # health, rate from /stats deltas, and the sources list
    assert page.ids["health-text"] == "healthy"
    assert page.ids["rate-chars"] not in ("", "—")
    assert page.ids["n-words"] == str(len(view.published().words))
    assert "file:/var/log/feed/weibo.log" in dom


def test_dashboard_when_service_is_unhealthy(tmp_path: Path) -> None:
    view = DemoView(words=(), healthy=False)
    with serve_in_thread(app_for(view)) as url:
        page = parse(chromium(url + "/", tmp_path / "profile", "--dump-dom"))
    assert page.ids["health-text"] == "unhealthy: no rescore for 600 s"
    assert [r["attrs"].get("class") for r in page.rows] == ["empty"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_dashboard_screenshot(tmp_path: Path, scheme: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"dashboard-{scheme}.png"
    shot.unlink(missing_ok=True)
    extra = ["--force-dark-mode"] if scheme == "dark" else []
    now = time.time()  # "first seen" relative to the present, as on a live service
    view = DemoView(words=demo_words(now), late=(replace(LATE, first_seen=now - 5),))
    with serve_in_thread(app_for(view)) as url:
        chromium(url + "/", tmp_path / "profile", f"--screenshot={shot}",
                 "--window-size=1280,800", *extra)
    assert png_size(shot) == (1280, 800)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    if scheme == "light":
        shutil.copyfile(shot, ARTIFACTS / "dashboard.png")


# =========================================================================== real daemon


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A real `python -m streamer run` fed with background text and the injected words."""
    svc = start_fed_service(tmp_path_factory.mktemp("live"))
    yield svc
    svc.cleanup()


def fmt_num(x: float, digits: int) -> str:
    """The page's fmtNum: integers as they are, others with *digits* decimals."""
    return str(int(x)) if float(x).is_integer() else f"{x:.{digits}f}"


def test_dashboard_shows_the_injected_words_of_a_real_daemon(live: LiveService,
                                                              tmp_path: Path) -> None:
    stats = live.rescored()  # idle from here on: the page and /words see the same list
    listed = {w["word"]: w for w in live.words(new="true", limit=50)}
    dom = chromium(live.url + "/", tmp_path / "profile", "--dump-dom")
    page = parse(dom)
    rows = {r["attrs"]["data-word"]: r for r in page.rows if "data-word" in r["attrs"]}
    # default view: the new words, which are the injected ones and no known vocabulary
    assert set(INJECTED) <= set(rows), sorted(rows)
    assert not set(rows) & set(VOCAB)
    assert list(rows) == list(listed)
    places = {word: i for i, word in enumerate(listed, 1)}
    for word in INJECTED:
        w = listed[word]
        cells = ["".join(c).strip() for c in rows[word]["cells"]]
        # "#" is the place in this table; the rank among all words is in the tooltip
        assert cells[0] == str(places[word])
        assert rows[word]["td_attrs"][0]["title"] == f"rank {w['rank']} among all published words"
        assert cells[1] == word + "NEW"
        assert "svg" in rows[word]["tags"]  # the sparkline of its recent counts
        assert cells[3] == fmt_num(w["score"], 2)
        # first seen on the stream's clock (replay time here), not as a 2024 date
        assert cells[6].endswith(" ago"), cells
        assert word in cells[7] and "mark" in rows[word]["tags"]
    assert page.ids["health-text"] == "healthy"
    assert page.ids["n-words"] == f"{stats['published']['words']:,}"
    assert page.ids["n-new"] == str(stats["published"]["new_words"])
    assert page.ids["total-lines"] not in ("", "—")
    assert page.ids["rate-chars"] not in ("", "—")  # measured by the server
    assert "files:inbox/feed.txt" in dom  # the source, in the sources panel


def test_dashboard_screenshot_of_a_real_daemon(live: LiveService, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-live.png"
    shot.unlink(missing_ok=True)
    chromium(live.url + "/", tmp_path / "profile", f"--screenshot={shot}",
             "--window-size=1280,800")
    assert png_size(shot) == (1280, 800)
    assert shot.stat().st_size > 20_000
