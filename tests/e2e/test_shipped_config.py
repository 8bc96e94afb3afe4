"""The shipped configuration, as a newcomer runs it: common words are known, not new.

`python -m streamer run --config config/streamer.toml` (what scripts/run starts), with only
its directories, port, source glob and rescore interval moved into a temporary directory.
Its known lexicon is the name "jieba"; text full of 酒店 服务 房间 喜欢 plus an invented word
must list the invented word as new and none of the common ones, also after SIGHUP reloads
the lexicon by name.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import INJECTED, VOCAB, DaemonProcess, append_lines, background

from streamer.core.lexicon import resolve_known
from streamer.storage.lexicon_cache import LexiconFileCache

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "streamer.toml"
COMMON = ("酒店", "服务", "房间", "喜欢")
NEW_WORD = INJECTED[0]
assert not set(NEW_WORD) & set("".join(COMMON))


class ShippedService(DaemonProcess):
    """The service on config/streamer.toml; everything it writes goes under *root*."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.config = SHIPPED

    def start(self) -> None:
        self.spawn("--state-dir", str(self.root / "state"),
                   "--export-dir", str(self.root / "exports"),
                   "--source", str(self.inbox / "*.txt"),
                   # the shipped 10 s would only make the test wait
                   "--rescore-interval", "0.5")

    def words(self, query: str) -> list[dict[str, Any]]:
        status, body = self.request("/words?" + query)
        assert status == 200, body
        return body["words"]

    def rescored(self, lines: int) -> dict[str, Any]:
        """Wait until *lines* are counted and a rescore has seen all of them."""
        def done() -> dict[str, Any] | None:
            s = self.stats()
            seen = (s.get("engine") or {}).get("lines_ingested")
            return s if s["lines_ingested"] >= lines and seen == s["lines_ingested"] else None

        return self.wait_for(done, f"a rescore of {lines} lines")


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[ShippedService]:
    svc = ShippedService(tmp_path)
    try:
        yield svc
    finally:
        svc.cleanup()


def test_shipped_configuration_lists_no_common_word_as_new(
        shipped: ShippedService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a cache of parsed lexicons of its own (storage.lexicon_cache): the service writes it
    cache = tmp_path / "lexicon-cache"
    monkeypatch.setenv("STREAMER_CACHE_DIR", str(cache))
    shipped.start()
    rng = random.Random(11)
    # the common words in every line, the invented one in every third
    lines = [line + "".join(rng.sample(COMMON, len(COMMON))) + "。"
             for line in background(rng, 1200, (NEW_WORD,), every=3)]
    text = "\n".join(lines)
    assert all(text.count(w) >= 1000 for w in COMMON)
    append_lines(shipped.inbox / "feed.txt", lines)
    stats = shipped.rescored(len(lines))
    assert stats["known_words"] > 349_000, stats

    def check() -> None:
        listed = {w["word"]: w for w in shipped.words("limit=10000")}
        new = {w["word"] for w in shipped.words("new=true&limit=10000")}
        assert NEW_WORD in new, sorted(new)
        assert not new & set(COMMON), sorted(new & set(COMMON))
        assert not new & set(VOCAB), sorted(new & set(VOCAB))
        # the common words are found as words, and they are known: that is why not new
        found = [listed[w] for w in COMMON if w in listed]
        assert found and all(w["known"] and not w["new"] for w in found), found

    check()
    # SIGHUP re-reads the lexicons, names included; the list stays right
    log_before = shipped.log()
    shipped.proc.send_signal(signal.SIGHUP)
    shipped.wait_for(lambda: shipped.log().count("SIGHUP: reloaded known lexicons (")
                     > log_before.count("SIGHUP: reloaded known lexicons ("),
                     "the lexicon reloaded after SIGHUP")
    more = background(rng, 300, (NEW_WORD,), every=3)
    append_lines(shipped.inbox / "feed.txt", more)
    shipped.rescored(len(lines) + len(more))
    check()
    assert "known lexicons: " in shipped.log() and "jieba (" in shipped.log()
    assert shipped.stop() == 0
    # the service wrote the parsed lexicon at start: one file, valid for jieba as it is
    assert len(list(cache.glob("lexicon-*.npz"))) == 1
    hit = LexiconFileCache(cache).get([resolve_known("jieba")])
    assert hit is not None and len(hit) > 349_000
