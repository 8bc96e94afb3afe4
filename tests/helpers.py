"""Shared helpers for tests that run the real service: `python -m streamer run` as a
subprocess on a temporary directory, fed with text files, reached over real sockets.

Conventions (as in test_daemon.py): replay time so that runs are reproducible, small
memory, sub-second intervals, a free localhost port; waiting is always "poll until a
condition holds, or fail at a generous deadline with the service log", never a fixed
sleep for correctness and never an assertion on timing.

Also the headless-Chromium runner shared by the dashboard tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
DEADLINE = 90.0  # seconds; generous, CI machines can be slow

#: Common words for background text; none shares a character with the injected words.
VOCAB = tuple("""
我们 你们 他们 今天 明天 昨天 天气 非常 一个 朋友 工作 学习 中国 城市 晚上 早上 喜欢
吃饭 电影 音乐 时间 问题 孩子 老师 学生 公司 我 你 他 她 的 了 是 在 有 和 也 就 都 很
还 说 去 来 看 想 要 会 能 这个 那个 什么 怎么 因为 所以 但是 如果 已经 现在 觉得 知道
东西 地方 事情 大家 自己 一起 可以 没有 时候 开始 发现 生活 世界 国家 经济 社会 发展
市场 企业 技术 政府 历史 文化 新闻 手机 网络 电脑 汽车 医院 学校 银行 超级 商店 价格
""".split())
#: Made-up words injected into the background text (one line in `every`): they become
#: cohesive, free-standing pieces the service must discover as new.
INJECTED = ("蓝鲸币", "绿萝熊")
assert not set("".join(INJECTED)) & set("".join(VOCAB))


# =========================================================================== text


def sentence(rng: random.Random, inject: str | None = None,
             lengths: tuple[int, int] = (5, 12)) -> str:
    """A sentence of VOCAB words (a number in *lengths*, inclusive), *inject* among them."""
    words = [rng.choice(VOCAB) for _ in range(rng.randint(*lengths))]
    if inject is not None:
        words.insert(rng.randrange(len(words) + 1), inject)
    return "".join(words) + rng.choice("，。！？")


def background(rng: random.Random, n: int, inject: Sequence[str] = (),
               every: int = 6) -> list[str]:
    """n lines of random sentences; every `every`-th line carries one injected word
    (taking turns when several are given)."""
    out = []
    for i in range(n):
        word = inject[(i // every) % len(inject)] if inject and i % every == 0 else None
        out.append(sentence(rng, word) + sentence(rng))
    return out


def append(path: Path, data: str | bytes) -> None:
    """Append *data* (text is written as UTF-8) in one write and flush it."""
    with open(path, "ab") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines in one write, as a producer flushing a buffer does."""
    append(path, "".join(line + "\n" for line in lines))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamer_env() -> dict[str, str]:
    """The environment for a `python -m streamer ...` child: this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# =========================================================================== config

#: The test configuration: everything fast and small. Sections are merged key by key
#: with the overrides a test passes. No known lexicon unless a test gives one: the tests
#: write their own vocabulary (test_shipped_config.py runs the default, jieba).
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "sources": {"globs": ["inbox/*.txt"], "scan_interval": "100ms",
                "poll_interval": "50ms", "rotate_wait": "500ms"},
    "engine": {"memory": "8MB", "min_count": 5, "known": []},
    "time": {"mode": "replay", "chars_per_second": 1000},
    "intervals": {"rescore": "300ms", "snapshot": "2s", "export": "500ms"},
    "state": {"dir": "state"},
    "export": {"dir": "exports"},
    "log": {"level": "info"},
}


def toml_text(config: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML document for a two-level {section: {key: value}} mapping.

    JSON scalars and arrays are valid TOML for the values used here (strings,
    numbers, booleans, lists of strings)."""
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        for key, value in values.items():
            out.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(out) + "\n"


def merged(base: Mapping[str, Mapping[str, Any]],
           extra: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in (extra or {}).items():
        out.setdefault(section, {}).update(values)
    return out


# =========================================================================== the service


class DaemonProcess:
    """What every test's `python -m streamer run` process shares: spawning it with the
    config file in its directory, its log, stopping or killing it, JSON requests to its
    port and polling until a condition holds. Subclasses set up root, config and port."""

    #: Default seconds stop() waits for the process to exit after the signal.
    stop_timeout = 60.0
    #: Seconds wait_for() sleeps between checks.
    poll_interval = 0.05

    def __init__(self, root: Path) -> None:
        """Directory *root* with an inbox/, the config path and a free port; no process yet."""
        self.root = root
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.config = root / "streamer.toml"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_path = root / "daemon-0.log"
        #: run in the child before exec (e.g. resource.setrlimit for a low descriptor limit)
        self.preexec_fn: Callable[[], None] | None = None

    # ---------------------------------------------------------------- process

    def launch(self, args: Sequence[str], *, log_mode: str = "wb") -> subprocess.Popen[bytes]:
        """`python -m streamer run --config <config> *args` in root, output to log_path."""
        cmd = [sys.executable, "-m", "streamer", "run", "--config", str(self.config), *args]
        with open(self.log_path, log_mode) as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=streamer_env(), preexec_fn=self.preexec_fn)
        return self.proc

    def spawn(self, *args: str, listen: bool = True) -> subprocess.Popen[bytes]:
        """One more run, logged to daemon-<run>.log; listening on port unless told not."""
        self.runs += 1
        self.log_path = self.root / f"daemon-{self.runs}.log"
        listen_args = ["--listen", f"127.0.0.1:{self.port}"] if listen else []
        return self.launch([*listen_args, *args])

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        assert self.proc is not None
        if timeout is None:
            timeout = self.stop_timeout
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit {timeout}s after signal {sig}\n{self.log()}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # ---------------------------------------------------------------- HTTP

    def request(self, path: str) -> tuple[int, Any]:
        """(status, JSON body) of a GET; HTTP errors are answers, not exceptions."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stats(self) -> dict[str, Any]:
        status, body = self.request("/stats")
        assert status == 200, body
        return body

    def lines(self) -> int:
        return int(self.stats()["lines_ingested"])

    # ---------------------------------------------------------------- waiting

    def wait_for(self, check: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
        """Poll `check` until it returns a truthy value; fail with the log at the deadline."""
        end = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the service exited ({self.proc.returncode}) while "
                                     f"waiting for {what}\n{self.log()[-5000:]}")
            try:
                value = check()
                if value:
                    return value
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last_exc = exc
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what} (last error: {last_exc})"
                                     f"\n{self.log()[-5000:]}")
            time.sleep(self.poll_interval)


class LiveService(DaemonProcess):
    """One real `python -m streamer run` process: its directory, config and HTTP client."""

    def __init__(self, root: Path, config: Mapping[str, Mapping[str, Any]] | None = None,
                 *, known: Sequence[str] | None = None) -> None:
        super().__init__(root)
        self.exports = root / "exports"
        cfg = merged(BASE_CONFIG, config)
        if known is not None:
            lexicon = root / "known.txt"
            lexicon.write_text("".join(w + "\n" for w in known), encoding="utf-8")
            cfg["engine"]["known"] = [str(lexicon)]
        cfg.setdefault("http", {})["listen"] = f"127.0.0.1:{self.port}"
        self.config.write_text(toml_text(cfg), encoding="utf-8")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "daemon.log"
        self.written = 0  # lines appended through feed()

    # ---------------------------------------------------------------- process

    def start(self, *args: str) -> LiveService:
        self.launch(args, log_mode="ab")
        self.wait_for(lambda: self.health_status() == 200, "the service to become healthy")
        return self

    # ---------------------------------------------------------------- HTTP

    def http(self, method: str, path: str, data: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def get(self, path: str) -> tuple[int, Any]:
        """(status, JSON body) of a GET; the body must be strict JSON (no NaN)."""
        status, headers, body = self.http("GET", path)
        assert headers.get("Content-Type", "").startswith("application/json"), (path, headers)
        return status, strict_json(body.decode("utf-8"))

    def post(self, path: str, data: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
        status, _, body = self.http("POST", path, data, headers)
        return status, strict_json(body.decode("utf-8"))

    def health_status(self) -> int:
        try:
            return self.http("GET", "/healthz")[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/stats")
        assert status == 200, body
        return body

    def words(self, **query: Any) -> list[dict[str, Any]]:
        status, body = self.get("/words?" + urllib.parse.urlencode(query))
        assert status == 200, body
        return body["words"]

    # ---------------------------------------------------------------- waiting

    def feed(self, lines: Sequence[str], name: str = "feed.txt") -> int:
        """Append *lines* to inbox/<name> and wait until the engine has counted them all
        (lines reach the engine only through the files this object wrote, plus whatever
        a test posts to /ingest, so ">=" is the right check). Returns lines_ingested."""
        append_lines(self.inbox / name, lines)
        self.written += len(lines)
        target = self.written
        return self.wait_for(lambda: (n := self.stats()["lines_ingested"]) >= target and n,
                             f"{target} lines ingested")

    def rescored(self) -> dict[str, Any]:
        """Wait until the published list covers every line counted so far; returns /stats.

        /stats "engine" holds the engine's statistics as of the last rescore, so its
        lines_ingested equals the service's once a rescore has seen every counted line.
        (An idle service does not rescore again for a minute, so waiting for "one more
        rescore" would be wrong.) In replay mode stream time stands still without text,
        so the list then stays as it is until more text arrives."""
        def done() -> dict[str, Any] | None:
            s = self.stats()
            return s if (s.get("engine") or {}).get("lines_ingested") == \
                s["lines_ingested"] else None

        return self.wait_for(done, "a rescore of everything ingested")


def strict_json(text: str) -> Any:
    """json.loads that rejects NaN/Infinity like browsers do."""
    def bad(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def start_fed_service(root: Path, config: Mapping[str, Mapping[str, Any]] | None = None,
                      *, chunks: int = 4, lines_per_chunk: int = 500,
                      seed: int = 20240101) -> LiveService:
    """A started service, its background vocabulary in a known lexicon, fed in a few
    chunks (a steady stream, not one file read at start) with the INJECTED words, and
    waited on until both injected words are published and the list covers everything
    fed. Kill it with cleanup()."""
    svc = LiveService(root, config, known=VOCAB)
    try:
        svc.start()
        rng = random.Random(seed)
        for _ in range(chunks):
            svc.feed(background(rng, lines_per_chunk, INJECTED))

        def published() -> bool:
            listed = {w["word"] for w in svc.words(limit=10_000)}
            return all(w in listed for w in INJECTED)

        svc.wait_for(published, f"{', '.join(INJECTED)} published")
        svc.rescored()
    except BaseException:
        svc.cleanup()
        raise
    return svc


# =========================================================================== small disks


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of ``size`` bytes at ``mountpoint`` (created), unmounted afterwards.

    Needs root (or CAP_SYS_ADMIN); skips the test with the reason when ``mount`` fails.
    Read-only: :func:`remount` the same path with ``ro``.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint: Path, mode: str) -> None:
    """Remount a tmpfs from :func:`tmpfs` read-only (``"ro"``) or read-write (``"rw"``)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mountpoint)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """Write a ballast file so that ``leave`` bytes (rounded down to 4 KiB) stay free on
    ``directory``'s file system; returns the ballast."""
    ballast = directory / "ballast"
    st = os.statvfs(directory)
    n = max(0, st.f_bavail * st.f_frsize - leave) // 4096 * 4096
    with open(ballast, "ab") as f:
        f.write(b"\xff" * n)
    return ballast


# =========================================================================== browser


def chromium(url: str, profile: Path, *extra: str, budget_ms: int = 5000) -> str:
    """Run headless Chromium on *url* and return its stdout (the DOM with --dump-dom).

    ``--virtual-time-budget`` runs the page's timers (its 2 s refresh) in virtual time
    and waits for network fetches, so one run shows the page after several refreshes
    without any sleeping here."""
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}", *extra, url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- a stream with a burst

#: made-up words (no character shared with the background vocabulary)
STEADY_FREQUENT = "紫檀鸽"   # in every other line from the start
STEADY = "橙鲤舟"            # in every sixth line from the start
BURST = "黛狐铃"             # absent, then in every sixth line of the last quarter
HANDFUL = "靛蜥笛"           # six times, all in the last lines
MADE_UP = (STEADY_FREQUENT, STEADY, BURST, HANDFUL)
assert not set("".join(MADE_UP)) & set("".join(VOCAB))


def stream(n: int = 4000, seed: int = 7) -> list[str]:
    """n lines of background text carrying the made-up words as their names say."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = []
        if i % 2 == 0:
            words.append(STEADY_FREQUENT)
        if i % 6 == 3:
            words.append(STEADY)
        if i >= 3 * n // 4 and i % 6 == 1:
            words.append(BURST)
        if i >= n - 60 and i % 10 == 5:
            words.append(HANDFUL)
        line = "".join(sentence(rng, w) for w in words) if words else ""
        lines.append(line + sentence(rng))
    return lines


# =========================================================================== redis-server


REDIS_SERVER = "redis-server"


class RedisServer:
    """A real ``redis-server`` on a free loopback port, in its own directory.

    ``persist=False``: no RDB, no AOF (``--save "" --appendonly no``): a restart comes
    back empty. ``persist=True``: append-only file fsynced on every write in ``root``, so
    :meth:`stop` + :meth:`start` keep the streams and groups (an outage with the data
    kept). :meth:`start` restarts on the same port. Used by the ``redis_server`` fixture
    (tests/conftest.py) and scripts/bench_redis.py."""

    def __init__(self, root: Path, *, persist: bool = False, port: int | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persist = persist
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "redis.log"

    def start(self, timeout: float = 30.0) -> RedisServer:
        """Start (or restart) on the same port; returns once it answers PING."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        persistence = (["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
                       if self.persist else ["--appendonly", "no", "--save", ""])
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.root), "--protected-mode", "no", *persistence]
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            except FileNotFoundError:
                raise AssertionError(f"{REDIS_SERVER} is not installed: the Redis tests need "
                                     "Debian's redis-server package (.ci/run installs it)"
                                     ) from None
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited ({self.proc.returncode})\n"
                                     + self.log_path.read_text(errors="replace")[-3000:])
            if self.ping():
                return self
            if time.monotonic() > end:
                raise AssertionError("redis-server does not answer PING\n"
                                     + self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it (SIGTERM: with persist=True it writes nothing more than the AOF has)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> Any:
        """A synchronous redis-py client (decode_responses=True)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


# ------------------------------------------------------------------- a Redis stream's entries

#: the stream and consumer group of the Redis tests unless a test names others
REDIS_STREAM = "news"
REDIS_GROUP = "streamers"


def entries(rng: random.Random, n: int) -> list[str]:
    """n entry texts of 1-3 lines (sentences) each."""
    return ["\n".join(sentence(rng) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def entries_of(lines: Sequence[str], rng: random.Random) -> list[str]:
    """*lines* in order, grouped into entry texts of 1-3 lines each."""
    out, i = [], 0
    while i < len(lines):
        k = rng.randint(1, 3)
        out.append("\n".join(lines[i:i + k]))
        i += k
    return out


def lines_of(texts: Sequence[str]) -> int:
    """Lines in entry texts (each holds no empty line)."""
    return sum(t.count("\n") + 1 for t in texts)


def chars_of(texts: Sequence[str]) -> int:
    """Characters of entry texts without the line breaks (the service's chars_ingested)."""
    return sum(len(t) - t.count("\n") for t in texts)


def xadd(server: RedisServer, texts: Sequence[str], pause: float = 0.0, chunk: int = 50,
         stream: str = REDIS_STREAM) -> None:
    """Add entries (field ``text``) in pipelined chunks, optionally pausing between chunks
    (a live feed)."""
    r = server.client()
    for i in range(0, len(texts), chunk):
        pipe = r.pipeline(transaction=False)
        for t in texts[i:i + chunk]:
            pipe.xadd(stream, {"text": t})
        pipe.execute()
        if pause:
            time.sleep(pause)


def pending(server: RedisServer, group: str = REDIS_GROUP, stream: str = REDIS_STREAM,
            consumer: str | None = None) -> int:
    """Entries in the group's pending list (XPENDING), of one consumer if given."""
    r = server.client()
    if consumer is None:
        return int(r.xpending(stream, group)["pending"])
    return sum(int(c["pending"]) for c in r.xpending(stream, group)["consumers"]
               if c["name"] == consumer)


def redis_service(root: Path, server: RedisServer, *, snapshot_every: str = "300ms",
                  config: Mapping[str, Mapping[str, Any]] | None = None,
                  **redis: Any) -> LiveService:
    """A service (not started) whose one source is *server*'s stream ``news`` in group
    ``streamers`` (``[redis]`` keys override), exact counters, snapshots every
    *snapshot_every*; *config* sections merged over that."""
    section = {"url": server.url, "stream": REDIS_STREAM, "group": REDIS_GROUP,
               "block": "100ms", "retry_max": "500ms", **redis}
    cfg = merged({"sources": {"globs": []}, "engine": {"exact": True},
                  "intervals": {"snapshot": snapshot_every}, "redis": section}, config)
    return LiveService(root, cfg)


def redis_status(svc: LiveService) -> dict[str, Any]:
    """The Redis source's row of the service's /stats sources."""
    return next(s for s in svc.stats()["sources"] if s.get("kind") == "redis")


# =========================================================================== snapshots on disk


def durable_lines(state_dir: Path) -> int:
    """Lines counted by the newest snapshot in *state_dir* (0 without one)."""
    from streamer.storage import snapshot

    result = snapshot.load_latest(state_dir)
    return 0 if result is None else int(result.state["engine"]["lines_ingested"])


def engine_state(state_dir: Path) -> dict[str, Any]:
    """The engine state of the newest snapshot file in *state_dir*."""
    from streamer.storage import snapshot

    newest = snapshot.list_snapshots(state_dir)[-1]
    return snapshot.load_file(newest).state["engine"]


def assert_counts_equal(view: LiveService, single: LiveService) -> None:
    """The merged view counts exactly what one service counts: the totals (from /stats)
    and, after both stop, the n-gram and unigram tables of their newest snapshots."""
    import numpy as np

    mine, one = view.stats(), single.stats()
    for key in ("lines_ingested", "chars_ingested", "units_ingested"):
        assert mine[key] == one[key], key
    assert view.stop() == 0 and single.stop() == 0
    a, b = engine_state(single.root / "state"), engine_state(view.root / "state")
    for key in ("keys", "counts"):
        assert np.array_equal(a["counter"][key], b["counter"][key]), key
    assert np.array_equal(a["unigrams"], b["unigrams"])
    assert a["total_units"] == b["total_units"]


def shared_words(view: LiveService, single: LiveService, texts: Sequence[str],
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both published lists, word -> row, after checking what holds for every pair: the
    injected words are in both, every word in both has the same pmi (the same exact
    counts), and no injected word is counted more often than it occurs in *texts*."""
    view_words = {w["word"]: w for w in view.words(limit=10_000)}
    single_words = {w["word"]: w for w in single.words(limit=10_000)}
    both = set(view_words) & set(single_words)
    assert set(INJECTED) <= both
    assert all(view_words[w]["pmi"] == single_words[w]["pmi"] for w in both)
    for word in INJECTED:
        n = sum(t.count(word) for t in texts)
        assert 0 < view_words[word]["count"] <= n
        assert 0 < single_words[word]["count"] <= n
    return view_words, single_words

