"""Shared set-up for the suite.

tests/unit       in-process, milliseconds: the engine's pieces
tests/component  one module against real files, sockets or a child process
tests/e2e        `python -m streamer` as a subprocess, as a user runs it (and chromium)

pytest puts this directory on sys.path (rootdir conftest, no __init__.py), so every test
imports the shared helpers as ``helpers`` and ``demo_view``.

Fixtures: ``redis_server``, a real redis-server on a free loopback port (tests that read
a Redis stream; CI installs Debian's redis-server, see .ci/run); ``lexicon_cache_dir``
(automatic), one cache of parsed lexicons for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RedisServer


@pytest.fixture(scope="session", autouse=True)
def lexicon_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cache of parsed lexicons of every `python -m streamer` child of the session
    (storage.lexicon_cache): a directory of the session instead of the user's
    ~/.cache/streamer, shared by all tests so that jieba's dict.txt is parsed once."""
    path = tmp_path_factory.mktemp("lexicon-cache")
    old = os.environ.get("STREAMER_CACHE_DIR")
    os.environ["STREAMER_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("STREAMER_CACHE_DIR", None)
    else:
        os.environ["STREAMER_CACHE_DIR"] = old


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, without persistence (``.url``,
    ``.port``, ``.stop()``/``.start()`` to restart it on the same port, ``.client()``).
    Killed at teardown. A test that needs the data to survive a restart makes its own
    ``RedisServer(path, persist=True)``."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
