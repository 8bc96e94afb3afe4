"""Benchmark: entries/s through a Redis stream into the service, against the same lines
from a file.

Usage, from the repository root (needs redis-server on PATH and `pip install
'streamer[redis]'`)::

    .venv/bin/python scripts/bench_redis.py                    # 200k entries, 1 and 2 services
    .venv/bin/python scripts/bench_redis.py --entries 50000 --batch-entries 2000
    .venv/bin/python scripts/bench_redis.py --services 1 2 --repeat 3 --no-file

What it does, on a temporary directory:

1. Starts a real ``redis-server`` (no persistence) on a free loopback port and adds
   ``--entries`` entries to a staging stream (field ``text``, one line each): the
   non-empty lines of People's Daily January 1998 (``pd_199801_raw.txt``, raw text:
   ``--text``), repeated as needed. The XADD rate (pipelined, 1000 per round trip) is
   reported too. Once every service has joined the group on the (empty) stream it reads,
   the staging stream is renamed to it, so no service starts ahead of the others.
2. :func:`start_services` starts N ``python -m streamer run`` processes that read that
   stream as one consumer group (shards, each its own state directory and so its own
   consumer name), engine defaults (256 MB sketch), no known lexicon, wall time; N takes
   each value of ``--services`` (default 1 and 2), each on a fresh redis-server, and the
   whole is repeated ``--repeat`` times (default 3; the medians are reported, the machine
   may be shared). Entries/s and Han chars/s are measured from the first line counted (by
   any of them) to the last (the sum of their ``/stats`` lines_ingested, polled every
   0.1 s), so interpreter start and group creation are left out. Per service: its share
   of the lines, its CPU seconds (user + system, /proc), and redis-server's CPU seconds,
   the figures a larger machine's throughput is estimated from (CPU from the moment all
   services wait for entries, so start-up is left out).
3. Unless ``--no-file``: the same lines are written to one file and read by one service
   with a file source, measured the same way: the ratio tells what Redis costs against a
   local file.

The report (markdown) goes to stdout, progress to stderr. Standard library and redis-py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

STREAM = "bench"
#: the entries are added here first, then renamed to STREAM once every service waits
STAGING = "bench-staging"
GROUP = "streamer"


# --------------------------------------------------------------------------- redis-server


def start_redis(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server without persistence on a free loopback port, answering PING."""
    port = bc.free_port()
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


def add_entries(port: int, lines: Sequence[str], chunk: int = 1000,
                stream: str = STAGING) -> float:
    """XADD every line as one entry of *stream* (pipelined), then create the group on it
    from its start; returns the seconds the XADDs took."""
    import redis

    client = redis.Redis(port=port)
    t0 = time.perf_counter()
    for i in range(0, len(lines), chunk):
        pipe = client.pipeline(transaction=False)
        for line in lines[i:i + chunk]:
            pipe.xadd(stream, {"text": line})
        pipe.execute()
    seconds = time.perf_counter() - t0
    client.xgroup_create(stream, GROUP, id="0")
    return seconds


def wait_for_consumers(port: int, n: int, timeout: float = 300.0) -> None:
    """Until n consumers of the group have asked the (empty) stream for entries."""
    import redis

    client = redis.Redis(port=port)
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.ResponseError):
            if len(client.xinfo_consumers(STREAM, GROUP)) >= n:
                return
        if time.monotonic() > end:
            raise RuntimeError(f"fewer than {n} consumers joined group {GROUP!r}")
        time.sleep(0.1)


def release_entries(port: int) -> None:
    """Put the staged stream (entries and group) in place of the empty one the services
    wait on: RENAME is atomic, so every service sees all entries at the same moment."""
    import redis

    redis.Redis(port=port).rename(STAGING, STREAM)


# --------------------------------------------------------------------------- services


@dataclass
class Service:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    def lines(self) -> int:
        try:
            return int(bc.get_json(self.port, "/stats", timeout=10)["lines_ingested"])
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
    port = bc.free_port()
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(services: Sequence[Service], total_lines: int, timeout: float) -> dict[str, Any]:
    """Poll until the services together counted total_lines: seconds from the first line
    counted to the last (and from the start of polling), each service's lines and CPU
    seconds at that moment."""
    t0 = time.perf_counter()
    first = None
    while True:
        for s in services:
            if s.proc.poll() is not None:
                raise RuntimeError(f"service in {s.root} exited: "
                                   + (s.root / "daemon.log").read_text()[-2000:])
        counts = [s.lines() for s in services]
        n = sum(counts)
        now = time.perf_counter()
        if n and first is None:
            first = now
        if n >= total_lines:
            return {"seconds": now - (first or now), "wall": now - t0, "lines": n,
                    "per_service": counts,
                    "cpu": [cpu_seconds(s.proc.pid) for s in services]}
        if now - t0 > timeout:
            raise RuntimeError(f"timed out: {n} of {total_lines} lines counted")
        time.sleep(0.1)


def run_redis(root: Path, args: argparse.Namespace, lines: Sequence[str],
              n_services: int) -> dict[str, Any]:
    """One measurement: a fresh redis-server holding the entries, n_services services in
    one group; the result of :func:`measure` plus the load average at the start, the XADD
    seconds and redis-server's CPU seconds while the services read."""
    root.mkdir(parents=True)
    load = os.getloadavg()[0]
    redis_proc, redis_port = start_redis(root)
    try:
        bc.log(f"{n_services} service(s): adding {len(lines)} entries ...")
        xadd_s = add_entries(redis_port, lines)
        services = start_services(n_services, root / "redis", args.python, redis_port,
                                  args.batch_entries)
        try:
            wait_for_consumers(redis_port, n_services)
            cpu0 = [cpu_seconds(s.proc.pid) for s in services]
            redis_cpu0 = cpu_seconds(redis_proc.pid)
            release_entries(redis_port)
            result = measure(services, len(lines), args.timeout)
            result["redis_cpu"] = cpu_seconds(redis_proc.pid) - redis_cpu0
            result["cpu"] = [c - c0 for c, c0 in zip(result["cpu"], cpu0, strict=True)]
        finally:
            for s in services:
                s.stop()
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    bc.log(f"{n_services} service(s): {len(lines) / result['seconds']:,.0f} entries/s "
           f"(load {load:.2f})")
    return {**result, "load": load, "xadd_s": xadd_s, "services": n_services}


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--text", type=Path, default=None,
                    help="UTF-8 text whose non-empty lines are the entries (repeated; "
                         "default: People's Daily 1998-01 raw text from --cache)")
    ap.add_argument("--batch-entries", type=int, default=1000, help="redis.batch_entries")
    ap.add_argument("--services", type=int, nargs="+", default=[1, 2],
                    help="numbers of services reading the stream as one consumer group "
                         "(shards), each measured in turn")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measure every number of services this many times (medians)")
    ap.add_argument("--no-file", action="store_true",
                    help="leave out the file-source baseline")
    bc.add_cache_python_args(ap)
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    args.python = args.python or bc.default_python()
    if shutil.which("redis-server") is None:
        print("bench_redis: redis-server is not on PATH", file=sys.stderr)
        return 2
    if args.text is None:
        args.text = bc.write_if_changed(args.cache.resolve() / "pd_199801_raw.txt", bc.lines_bytes(
            bc.load_peoples_daily(args.cache.resolve()).lines))
    base = [ln for ln in args.text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    lines = [base[i % len(base)] for i in range(args.entries)]
    han = sum(bc.count_han(ln) for ln in lines)
    nbytes = sum(len(ln.encode()) + 1 for ln in lines)
    info = bc.machine_info(args.python)
    runs: list[dict[str, Any]] = []
    file_result: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        root = Path(tmp)
        for r in range(args.repeat):
            for n in args.services:
                runs.append(run_redis(root / f"run{r}-{n}", args, lines, n))
        if not args.no_file:
            feed = root / "file" / "inbox"
            feed.mkdir(parents=True)
            (feed / "feed.txt").write_text("".join(ln + "\n" for ln in lines),
                                           encoding="utf-8")
            svc = start_service(root / "file", args.python,
                                {"sources": {"globs": ["inbox/*.txt"]}})
            try:
                file_result = measure([svc], len(lines), args.timeout)
            finally:
                svc.stop()
    print(f"Command: `{bc.this_command()}`  \nDate: {info['date']}  \n"
          f"Machine: {bc.machine_line(info)}\n")
    hiredis = subprocess.run([args.python, "-c", "import redis.utils as u; "
                              "print(u.HIREDIS_AVAILABLE)"], capture_output=True, text=True,
                             env=dict(os.environ)).stdout.strip()
    xadd = median([len(lines) / r["xadd_s"] for r in runs])
    print(f"{len(lines):,} entries (one line each, {bc.fmt_bytes(nbytes)}, {han:,} Han "
          f"characters) from {args.text.name}; XADD (pipelined) {xadd:,.0f} entries/s "
          f"(median); redis.batch_entries = {args.batch_entries}; hiredis parser: "
          f"{hiredis}.\n")
    rows = []
    for r in runs:
        n = r["services"]
        rows.append((n, f"{r['load']:.2f}", f"{r['seconds']:.1f}",
                     f"{len(lines) / r['seconds']:,.0f}",
                     f"{han / r['seconds'] / 1e6:.2f}",
                     " / ".join(f"{k:,}" for k in r["per_service"]),
                     " / ".join(f"{c:.1f}" for c in r["cpu"]),
                     f"{len(lines) / sum(r['cpu']):,.0f}",
                     f"{r['redis_cpu']:.1f}", f"{len(lines) / r['redis_cpu']:,.0f}"))
    print(bc.md_table(("services in the group", "load avg at start",
                       "seconds (first to last line)", "entries/s", "M Han chars/s",
                       "lines per service", "CPU s per service",
                       "entries per service CPU s", "redis-server CPU s",
                       "entries per redis CPU s"), rows))
    medians = {n: median([len(lines) / r["seconds"] for r in runs if r["services"] == n])
               for n in args.services}
    print("\nMedian entries/s: " + ", ".join(f"{n} service(s) {v:,.0f}"
                                              for n, v in medians.items()))
    if 1 in medians:
        for n, v in medians.items():
            if n != 1:
                print(f"\n{n} services / 1 service: {v / medians[1]:.2f}x the entries/s.")
    if file_result is not None:
        f_rate = len(lines) / file_result["seconds"]
        print(f"\nFile source, 1 service: {file_result['seconds']:.1f} s, {f_rate:,.0f} "
              f"lines/s, {han / file_result['seconds'] / 1e6:.2f} M Han chars/s, CPU "
              f"{file_result['cpu'][0]:.1f} s; Redis with 1 service (median) / file: "
              f"{medians.get(1, float('nan')) / f_rate:.2f}x the rate.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
