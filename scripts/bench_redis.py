"""Benchmark: entries/s through a Redis stream into the service, against the same lines
from a file.

Usage, from the repository root (needs redis-server on PATH and `pip install
'streamer[redis]'`)::

    .venv/bin/python scripts/bench_redis.py                    # 200k entries
    .venv/bin/python scripts/bench_redis.py --entries 50000 --batch-entries 2000

What it does, on a temporary directory:

1. Starts a real ``redis-server`` (no persistence) on a free loopback port and adds
   ``--entries`` entries to one stream (field ``text``, one line each): the non-empty
   lines of People's Daily January 1998 (``pd_199801_raw.txt``, raw text: ``--text``),
   repeated as needed. The XADD rate (pipelined, 1000 per round trip) is reported too.
2. :func:`start_services` starts ``--services`` N (default 1) ``python -m streamer run``
   processes that read that stream as one consumer group (shards, each its own state
   directory and so its own consumer name), engine defaults (256 MB sketch), no known
   lexicon, wall time. Entries/s and Han chars/s are measured from the first line counted
   (by any of them) to the last (the sum of their ``/stats`` lines_ingested, polled every
   0.1 s), so interpreter start and group creation are left out.
3. The same lines are written to one file and read by one service with a file source,
   measured the same way: the ratio tells what Redis costs against a local file.

The report (markdown) goes to stdout, progress to stderr. Standard library and redis-py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

STREAM = "bench"
GROUP = "streamer"
DEFAULT_TEXT = Path("/work/bench-cache/pd_199801_raw.txt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------- redis-server


def start_redis(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server without persistence on a free loopback port, answering PING."""
    port = free_port()
    log = open(root / "redis.log", "wb")  # noqa: SIM115 (kept open for the child)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(root)],
                            stdout=log, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            if client.ping():
                return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError("redis-server does not answer")


def add_entries(port: int, lines: Sequence[str], chunk: int = 1000) -> float:
    """XADD every line as one entry (pipelined); returns the seconds it took."""
    import redis

    client = redis.Redis(port=port)
    t0 = time.perf_counter()
    for i in range(0, len(lines), chunk):
        pipe = client.pipeline(transaction=False)
        for line in lines[i:i + chunk]:
            pipe.xadd(STREAM, {"text": line})
        pipe.execute()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- services


@dataclass
class Service:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    def lines(self) -> int:
        try:
            return int(http_json(self.port, "/stats")["lines_ingested"])
        except OSError:
            return 0

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def config_text(source: dict[str, Any]) -> str:
    """A service configuration: defaults, no known lexicon, the given source."""
    out = ["[engine]", "known = []", "[sources]"]
    out += [f"{k} = {json.dumps(v)}" for k, v in source.get("sources", {}).items()]
    if "redis" in source:
        out.append("[redis]")
        out += [f"{k} = {json.dumps(v)}" for k, v in source["redis"].items()]
    return "\n".join(out) + "\n"


def start_service(root: Path, python: str, source: dict[str, Any]) -> Service:
    root.mkdir(parents=True, exist_ok=True)
    (root / "streamer.toml").write_text(config_text(source), encoding="utf-8")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(bc.REPO), os.environ.get("PYTHONPATH")) if p))
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen([python, "-m", "streamer", "run", "--config", "streamer.toml",
                                 "--listen", f"127.0.0.1:{port}"], cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    return Service(root, port, proc)


def start_services(n: int, root: Path, python: str, redis_port: int,
                   batch_entries: int) -> list[Service]:
    """N services reading the stream as one consumer group (each its own state
    directory, hence its own consumer name)."""
    redis = {"url": f"redis://127.0.0.1:{redis_port}", "stream": STREAM, "group": GROUP,
             "batch_entries": batch_entries}
    return [start_service(root / f"shard-{i}", python, {"sources": {"globs": []},
                                                        "redis": redis})
            for i in range(n)]


def measure(services: Sequence[Service], total_lines: int, timeout: float) -> dict[str, float]:
    """Poll until the services together counted total_lines: seconds from the first line
    counted to the last (and from the start of polling)."""
    t0 = time.perf_counter()
    first = None
    while True:
        for s in services:
            if s.proc.poll() is not None:
                raise RuntimeError(f"service in {s.root} exited: "
                                   + (s.root / "daemon.log").read_text()[-2000:])
        n = sum(s.lines() for s in services)
        now = time.perf_counter()
        if n and first is None:
            first = now
        if n >= total_lines:
            return {"seconds": now - (first or now), "wall": now - t0, "lines": n}
        if now - t0 > timeout:
            raise RuntimeError(f"timed out: {n} of {total_lines} lines counted")
        time.sleep(0.1)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT,
                    help="UTF-8 text whose non-empty lines are the entries (repeated)")
    ap.add_argument("--batch-entries", type=int, default=1000, help="redis.batch_entries")
    ap.add_argument("--services", type=int, default=1,
                    help="services reading the stream as one consumer group (shards)")
    ap.add_argument("--python", default=bc.default_python())
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("bench_redis: redis-server is not on PATH", file=sys.stderr)
        return 2
    base = [ln for ln in args.text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    lines = [base[i % len(base)] for i in range(args.entries)]
    han = sum(bc.count_han(ln) for ln in lines)
    nbytes = sum(len(ln.encode()) + 1 for ln in lines)
    info = bc.machine_info(args.python)
    results: dict[str, dict[str, float]] = {}
    redis_key = f"redis, {args.services} service(s) in one group"
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        root = Path(tmp)
        redis_proc, redis_port = start_redis(root)
        try:
            bc.log(f"adding {len(lines)} entries ({bc.fmt_bytes(nbytes)}) ...")
            xadd_s = add_entries(redis_port, lines)
            bc.log(f"XADD: {len(lines) / xadd_s:,.0f} entries/s")
            services = start_services(args.services, root / "redis", args.python, redis_port,
                                      args.batch_entries)
            try:
                results[redis_key] = measure(services, len(lines), args.timeout)
            finally:
                for s in services:
                    s.stop()
        finally:
            redis_proc.terminate()
            redis_proc.wait()
        feed = root / "file" / "inbox"
        feed.mkdir(parents=True)
        (feed / "feed.txt").write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        svc = start_service(root / "file", args.python,
                            {"sources": {"globs": ["inbox/*.txt"]}})
        try:
            results["file, 1 service"] = measure([svc], len(lines), args.timeout)
        finally:
            svc.stop()
    rows = []
    for name, r in results.items():
        rows.append((name, f"{r['seconds']:.1f}", f"{len(lines) / r['seconds']:,.0f}",
                     f"{han / r['seconds'] / 1e6:.2f}", f"{r['wall']:.1f}"))
    ratio = results[redis_key]["seconds"] / results["file, 1 service"]["seconds"]
    print(f"Command: `{bc.this_command()}`  \nDate: {info['date']}  \n"
          f"Machine: {bc.machine_line(info)}\n")
    hiredis = subprocess.run([args.python, "-c", "import redis.utils as u; "
                              "print(u.HIREDIS_AVAILABLE)"], capture_output=True, text=True,
                             env=dict(os.environ)).stdout.strip()
    print(f"{len(lines):,} entries (one line each, {bc.fmt_bytes(nbytes)}, {han:,} Han "
          f"characters) from {args.text.name}; XADD (pipelined) {len(lines) / xadd_s:,.0f} "
          f"entries/s; redis.batch_entries = {args.batch_entries}; hiredis parser: "
          f"{hiredis}.\n")
    print(bc.md_table(("source", "seconds (first to last line)", "entries/s",
                       "M Han chars/s", "wall incl. start-up, s"), rows))
    print(f"\nRedis ({args.services} service(s)) takes {ratio:.2f}x the time of one service "
          "on a file for the same lines.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
