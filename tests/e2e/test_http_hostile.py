"""The HTTP server against hostile or unlucky clients, on a real `python -m streamer run`.

A flood of idle sockets under a low descriptor limit, running out of descriptors while
accepting, many concurrent heavy /words requests, malformed requests, deeply nested
JSON, foreign Host headers (DNS rebinding), a port already in use and an ingest without
a token. Every flood is bounded in count and in time; nothing asserts on speed: the
checks are what was answered, what the metrics counted and what the log says.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, VOCAB, LiveService, streamer_env, toml_text

from streamer.service.server import LOG_INTERVAL, host_allowed, host_allowlist

TOKEN = "tok-hostile"


def low_fd_limit(n: int) -> Callable[[], None]:
    """preexec_fn: soft and hard RLIMIT_NOFILE = n in the child."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


def metric(svc: LiveService, name: str, labels: str = "") -> float:
    """One sample of /metrics (0 when absent)."""
    status, _, body = svc.http("GET", "/metrics")
    assert status == 200
    pattern = re.compile(rf"^{re.escape(name + labels)} (\S+)$", re.M)
    m = pattern.search(body.decode("utf-8"))
    return float(m.group(1)) if m else 0.0


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send *data* on a fresh connection, read to EOF: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def get_with_host(port: int, host: str | None, path: str = "/stats") -> tuple[int, Any]:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    version = "1.1" if host is not None else "1.0"
    status, headers, body = raw(port, f"GET {path} HTTP/{version}\r\n{host_line}"
                                      "Connection: close\r\n\r\n".encode())
    assert headers["content-type"].startswith("application/json"), headers
    return status, json.loads(body)


def log_since(svc: LiveService, offset: int) -> str:
    return svc.log()[offset:]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A plain service with ingest on, for the malformed-request and Host tests."""
    service = LiveService(tmp_path_factory.mktemp("hostile"), {
        "http": {"ingest_enabled": True, "ingest_token": TOKEN, "header_timeout": "2s"}})
    try:
        service.start()
        yield service
    finally:
        service.cleanup()


# =========================================================================== item 2


def open_flood(port: int, n: int, deadline: float) -> list[socket.socket]:
    """Up to n connected sockets that send nothing (connects that the backlog does not
    take within the deadline are dropped)."""
    socks = []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.socket()
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def test_idle_socket_flood_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    """400 silent sockets against a service limited to 256 descriptors: the cap (derived
    from the limit minus the reserve) holds, idle ones are evicted and timed out, /healthz
    answers, snapshots go on, the log stays short, SIGTERM exits 0."""
    limit = 256
    started = time.monotonic()
    svc = LiveService(tmp_path, {"http": {"header_timeout": "1s", "idle_timeout": "2s"}})
    svc.preexec_fn = low_fd_limit(limit)
    flood: list[socket.socket] = []
    try:
        svc.start()
        log = svc.log()
        assert "http.max_connections lowered from 256 to" in log, log
        cap = metric(svc, "streamer_http_connection_limit")
        assert 8 <= cap <= limit - 128
        rng = random.Random(1)
        svc.feed([rng.choice(VOCAB) * 3 + "。" for _ in range(200)])
        before = svc.stats()["snapshots"]

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 600:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1024), hard))
        flood = open_flood(svc.port, 400, time.monotonic() + 60)
        assert len(flood) > cap  # more clients than the cap, all connected

        assert svc.health_status() == 200  # a new client still gets an answer
        svc.wait_for(lambda: metric(svc, "streamer_http_connections_closed_total",
                                    '{reason="evicted"}') > 0, "evictions at the cap")
        assert metric(svc, "streamer_http_connections") <= cap
        # the silent ones are closed by the server after header_timeout
        svc.wait_for(lambda: metric(svc, "streamer_http_connections_closed_total",
                                    '{reason="header_timeout"}') > 0, "header timeouts")
        for s in flood[-5:]:
            s.settimeout(DEADLINE)
            assert s.recv(1) == b""  # EOF: closed by the server
        # descriptors were left for the rest of the service: it still snapshots
        svc.feed([rng.choice(VOCAB) * 4 + "。" for _ in range(200)], "more.txt")
        svc.wait_for(lambda: svc.stats()["snapshots"] > before, "a snapshot after the flood")

        # a second wave held open while the service is stopped
        flood += open_flood(svc.port, 100, time.monotonic() + 30)
        assert svc.stop() == 0
        log = svc.log()
        assert "Traceback" not in log and "out of system resource" not in log, log[-3000:]
        # rate-limited: the first line, then at most one count line per LOG_INTERVAL
        lines = [ln for ln in log.splitlines() if "connection cap" in ln]
        assert 1 <= len(lines) <= 2 + (time.monotonic() - started) / LOG_INTERVAL, lines
    finally:
        for s in flood:
            s.close()
        svc.cleanup()


def test_out_of_descriptors_while_accepting_is_one_log_line(tmp_path: Path) -> None:
    """With the descriptor limit lowered under the running service (prlimit), every
    accept fails with EMFILE: the server backs off and counts instead of logging each
    one; when descriptors are back it answers again."""
    svc = LiveService(tmp_path, {"intervals": {"snapshot": "1h", "export": "1h"}})
    svc.preexec_fn = low_fd_limit(256)
    flood: list[socket.socket] = []
    try:
        svc.start()
        pid = svc.proc.pid  # type: ignore[union-attr]
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use, 256))
        end = time.monotonic() + 3.0  # a bounded flood: 3 s of connects, at most 100
        while time.monotonic() < end and len(flood) < 100:
            flood += open_flood(svc.port, 1, end)
            time.sleep(0.02)
        svc.wait_for(lambda: "cannot accept HTTP connections" in svc.log(), "the EMFILE line")
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, 256))
        for s in flood:
            s.close()
        svc.wait_for(lambda: svc.health_status() == 200, "answers once descriptors are back")
        assert metric(svc, "streamer_http_accept_errors_total") >= 2  # retried, counted
        log = svc.log()
        assert "Too many open files" in log
        lines = [ln for ln in log.splitlines() if "accept" in ln]
        assert 1 <= len(lines) <= 2, lines  # first failure + at most one count line
        assert "out of system resource" not in log and "Traceback" not in log, log[-3000:]
        assert svc.stop() == 0
    finally:
        for s in flood:
            s.close()
        svc.cleanup()


def test_too_few_descriptors_for_the_reserve_is_exit_2(tmp_path: Path) -> None:
    svc = LiveService(tmp_path, {"http": {"reserved_fds": 200}})
    svc.preexec_fn = low_fd_limit(128)
    proc = svc.launch([])
    assert proc.wait(DEADLINE) == 2
    log = svc.log()
    assert "http.reserved_fds" in log and "RLIMIT_NOFILE is 128" in log, log
    assert "Traceback" not in log


def test_slow_request_heads_and_bodies_are_cut_off(svc: LiveService) -> None:
    """A head that never ends is closed after header_timeout; a POST body that never
    arrives gets 408 (JSON) after it."""
    timeouts0 = metric(svc, "streamer_http_connections_closed_total",
                       '{reason="header_timeout"}')
    with socket.create_connection(("127.0.0.1", svc.port), timeout=DEADLINE) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert s.recv(1) == b""  # closed by the server, no answer
    assert metric(svc, "streamer_http_connections_closed_total",
                  '{reason="header_timeout"}') > timeouts0
    head = (f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n").encode()
    status, headers, body = raw(svc.port, head + "你好".encode(), timeout=DEADLINE)
    assert status == 408 and headers["content-type"].startswith("application/json")
    assert "did not arrive" in json.loads(body)["error"]


# =========================================================================== item 4


def big_list_lines(n_words: int = 3000, repeats: int = 8, seed: int = 7) -> list[str]:
    """Text in which n_words made-up two-character words each occur `repeats` times between
    random common words: a published list of thousands of words (~1 MB as JSON)."""
    rng = random.Random(seed)
    common = set("".join(VOCAB))
    han = [chr(c) for c in range(0x4E00, 0x9FA5) if chr(c) not in common]
    rng.shuffle(han)
    words = ["".join(han[2 * i:2 * i + 2]) for i in range(n_words)]
    lines = []
    for _ in range(repeats):
        order = words[:]
        rng.shuffle(order)
        for i in range(0, len(order), 4):
            parts = []
            for w in order[i:i + 4]:
                parts += [rng.choice(VOCAB), w]
            lines.append("".join(parts) + rng.choice(VOCAB) + "。")
    return lines


def test_concurrent_heavy_word_lists_leave_the_loop_free(tmp_path: Path) -> None:
    """Identical heavy requests share one rendering; distinct ones render in worker
    threads while /healthz and /metrics keep being answered."""
    svc = LiveService(tmp_path, {"engine": {"memory": "16MB", "min_count": 5}})
    try:
        svc.start()
        svc.feed(big_list_lines())
        svc.rescored()
        total = svc.get("/words?limit=1")[1]["total"]
        assert total >= 2000

        # 1. 30 identical requests at once: one rendering per published list
        renders0 = metric(svc, "streamer_http_words_renders_total")
        results: list[tuple[int, bytes]] = []

        def fetch(path: str) -> None:
            status, _, body = svc.http("GET", path)
            results.append((status, body))

        threads = [threading.Thread(target=fetch, args=("/words?limit=10000",))
                   for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert len(results) == 30 and all(s == 200 for s, _ in results)
        bodies = [json.loads(b) for _, b in results]
        assert all(len(b["words"]) == total for b in bodies)
        lists = {b["rescored_at"] for b in bodies}
        assert metric(svc, "streamer_http_words_renders_total") - renders0 <= len(lists)

        # 2. distinct heavy queries (no cache can help): the server answers /metrics
        # and /healthz while renderings are running or queued
        seen_busy = threading.Event()
        health: list[int] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                health.append(svc.health_status())
                if metric(svc, "streamer_http_words_renders_running") + \
                        metric(svc, "streamer_http_words_renders_waiting") > 0:
                    seen_busy.set()

        poller = threading.Thread(target=poll)
        poller.start()
        results.clear()
        wave = 0
        try:
            while not seen_busy.is_set():
                assert wave < 10, "never answered while a rendering was in progress"
                threads = [threading.Thread(
                    target=fetch, args=(f"/words?limit=10000&history=true&min_count=0.00{wave}"
                                        f"{i:03d}",)) for i in range(40)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(DEADLINE)
                wave += 1
        finally:
            stop.set()
            poller.join(DEADLINE)
        assert results and all(s == 200 for s, _ in results)
        assert all(json.loads(b)["words"] for _, b in results)
        assert health and all(h == 200 for h in health), health
        assert svc.stop() == 0
    finally:
        svc.cleanup()


# =========================================================================== item 7


def test_malformed_requests_get_json_and_one_log_line(svc: LiveService) -> None:
    offset = len(svc.log())
    bad0 = metric(svc, "streamer_http_malformed_requests_total")
    long_url = b"GET /words?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    bad_header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n"
    bad_line = b"GET /healthz HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n"
    for _ in range(100):
        for request in (long_url, bad_header, bad_line):
            status, headers, body = raw(svc.port, request)
            assert status == 400
            assert headers["content-type"].startswith("application/json"), headers
            assert json.loads(body)["error"].startswith("bad request: ")
    assert metric(svc, "streamer_http_malformed_requests_total") - bad0 == 300
    assert svc.health_status() == 200
    log = log_since(svc, offset)
    assert "Traceback" not in log, log[:3000]
    assert len([ln for ln in log.splitlines() if "malformed" in ln]) <= 2, log[:3000]


# =========================================================================== item 8


def test_deeply_nested_json_line_is_400(svc: LiveService) -> None:
    depth = 100_000
    line = b'{"text": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}\n"
    status, body = svc.post("/ingest", line, {"Content-Type": "application/x-ndjson",
                                              "Authorization": f"Bearer {TOKEN}"})
    assert status == 400, body
    assert body == {"error": "line 1: JSON nested too deeply", "line": 1}
    assert svc.health_status() == 200
    assert "RecursionError" not in svc.log()


# =========================================================================== item 12


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]",
                                  "127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
                                  "127.0.0.2", None])
def test_loopback_host_names_are_answered(svc: LiveService, host: str | None) -> None:
    status, body = get_with_host(svc.port, host.format(port=svc.port) if host else None)
    assert status == 200 and "lines_ingested" in body


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{port}",
                                  "localhost.attacker.example", "127.0.0.1.nip.io",
                                  "[::1", "", "10.0.0.1"])
def test_foreign_host_names_are_421(svc: LiveService, host: str) -> None:
    status, body = get_with_host(svc.port, host.format(port=svc.port))
    assert status == 421, body
    assert "allowed_hosts" in body["error"]
    status, body = get_with_host(svc.port, host.format(port=svc.port), "/healthz")
    assert status == 421


def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    svc = LiveService(tmp_path, {"http": {"allowed_hosts": ["words.example.org"]}})
    try:
        svc.start()
        assert get_with_host(svc.port, "words.example.org:8080")[0] == 200
        assert get_with_host(svc.port, "localhost")[0] == 200
        assert get_with_host(svc.port, "attacker.example")[0] == 421
    finally:
        svc.cleanup()


def test_host_allowlist_rules() -> None:
    loop_only = host_allowlist("127.0.0.1")
    assert host_allowed("localhost:8377", loop_only)
    assert not host_allowed("example.org", loop_only)
    assert host_allowlist("127.0.0.1", ["*"]) is None
    assert host_allowlist("0.0.0.0") is None  # a public bind answers any name ...
    public = host_allowlist("0.0.0.0", ["Words.Example.org."])
    assert host_allowed("words.example.org", public)  # ... unless names are given
    assert not host_allowed("attacker.example", public)


# =========================================================================== item 13


def test_port_in_use_is_exit_2_with_one_line(tmp_path: Path) -> None:
    svc = LiveService(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", svc.port))
        taken.listen()
        cmd = [sys.executable, "-m", "streamer", "run", "--config", str(svc.config)]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                              env=streamer_env(), timeout=DEADLINE)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "cannot listen" in ln]
    assert errors == [f"streamer run: error: cannot listen on 127.0.0.1:{svc.port}: "
                      "Address already in use"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_ingest_without_a_token_is_refused_on_loopback_too(tmp_path: Path) -> None:
    config = tmp_path / "streamer.toml"
    config.write_text(toml_text({"http": {"listen": "127.0.0.1:0", "ingest_enabled": True}}),
                      encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "streamer", "run", "--config", str(config)],
                          cwd=tmp_path, capture_output=True, text=True, env=streamer_env(),
                          timeout=DEADLINE)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "http.ingest_token: must be set" in proc.stderr


def test_ingest_with_the_token_on_loopback(svc: LiveService) -> None:
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    assert svc.post("/ingest", "你好\n".encode(), headers)[0] == 401
    status, body = svc.post("/ingest", "你好\n".encode(),
                            {**headers, "Authorization": f"Bearer {TOKEN}"})
    assert (status, body) == (200, {"accepted": 1})


def test_sigterm_exits_0_with_a_slow_client_connected(svc: LiveService) -> None:
    """Last in this module: a client in the middle of a request head does not hold the
    stop (and nothing of the earlier abuse left the service unable to stop)."""
    with socket.create_connection(("127.0.0.1", svc.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0")
        assert svc.stop(signal.SIGTERM) == 0
