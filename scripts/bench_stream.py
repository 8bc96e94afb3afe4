"""Benchmark of the daemon, ``streamer run`` (EVALUATION.md metrics 3 and 4).

Usage, from the repository root::

    .venv/bin/python scripts/bench_stream.py --quick          # 200 MiB stream + detection
    .venv/bin/python scripts/bench_stream.py                  # 1 GiB stream + detection
    .venv/bin/python scripts/bench_stream.py --skip-detect --py-spy 30

Two parts, each against a real daemon process (``python -m streamer run --config X``) on a
temporary directory, started by a minimal measuring interpreter (as in bench_common: the
daemon's peak RSS comes from ``os.wait4``, not inflated by this script's memory):

1. **Sustained ingest** (wall-clock time mode, engine defaults, memory 256MB, rescore /
   snapshot / export intervals as in config/streamer.toml unless overridden). A writer
   process appends People's Daily raw text + the reviews (the benchmark corpora, from the
   cache), repeated, to one file under the watched glob, staying ``--lead`` bytes ahead
   of what the daemon has committed (so the file keeps growing for the whole run and the
   daemon is never starved), up to ``--volume`` (1 GiB; ``--quick``: 200 MiB). Every
   ``--sample`` seconds this script reads ``/stats`` (committed offsets, characters
   ingested, loop lag, rescores) and ``/proc/<pid>/status`` (VmRSS, VmHWM) and
   ``/proc/<pid>/stat`` (CPU time). Han characters consumed are computed exactly from the
   committed byte offset (the writer's stream is a known repetition of the corpus).
   Rescore durations and snapshot pauses come from the daemon's log.
2. **Detection latency** (replay time mode, ``--known`` = jieba's dict.txt). The reviews
   corpus is fed at a fixed rate (``--detect-rate`` characters/s) with made-up words
   injected, from ``--detect-start`` of the corpus on, one word into every
   ``--detect-every``-th line (the words take turns), each at a random position in its
   line. For each word: the line where its true count reaches min_count (we know every
   occurrence we wrote), the rescore that first lists it (the daemon logs the number of
   lines ingested at each rescore, so the text in between is exact), the wall time in
   between (both observed by polling), and in rescore intervals. At the end: how many
   non-injected words are listed as new.

Optionally ``--py-spy SECONDS`` samples the daemon with py-spy during the ingest run (after
the first 100 MiB) and prints where the time goes, per thread.

Standard library only; the report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

MIB = 2**20
GIB = 2**30
# targets (EVALUATION.md)
TARGET_RATE = 2e6          # Han chars/s sustained
TARGET_LAG = 0.100         # s, p99 event-loop lag
TARGET_RESCORE = 1.0       # s
TARGET_RSS_DRIFT = 0.10    # RSS(1 GiB) within 10% of RSS(100 MiB)
RSS_MARK = 100 * MIB       # the "after 100 MB" point

DEFAULT_WORDS = "蓝鲸币,皮皮虾币,雪豹链,咕噜喵,闪电狐"
REPLAY_START = "2024-01-01T00:00:00Z"
REPLAY_CPS = 1000.0
HALF_LIFE = 3600.0  # seconds of stream time: config/streamer.toml's engine.half_life


# --------------------------------------------------------------------------- helpers

def parse_size(text: str) -> int:
    """'200MB' / '1GiB' / '512KB' / '1048576' -> bytes (binary multipliers, as the config)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200MB, 1GiB)")
    mult = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def parse_seconds(text: str) -> float:
    """'10s' / '250ms' / '2' -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 500ms)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def fmt_dur(s: str) -> str:
    return f'"{s}"'


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    if not s:
        return math.nan
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def ms(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 1000:.0f} ms"


def mrate(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x / 1e6:.2f} M/s"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**NOT met**")


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, Any, float]:
    """(status, parsed JSON or text, seconds) of GET http://127.0.0.1:port/path."""
    t0 = time.perf_counter()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body, status = resp.read(), resp.status
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        body, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    dt = time.perf_counter() - t0
    text = body.decode("utf-8", errors="replace")
    return status, (json.loads(text) if "json" in ctype else text), dt


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process from /proc/<pid>/status."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def proc_cpu(pid: int) -> float | None:
    """utime + stime (s) of a process (all its threads) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- the daemon

# The measuring process (see bench_common._MEASURE for why a minimal interpreter): spawns
# the daemon, writes its pid at once (we read /proc/<pid> and signal it directly), reaps
# it with os.wait4 and writes wall time, CPU time and peak RSS.
_WRAPPER = """\
import json, os, sys, time
pidfile, out, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
with open(pidfile + ".tmp", "w") as fh:
    fh.write(str(pid))
os.replace(pidfile + ".tmp", pidfile)
while True:
    try:
        _, status, ru = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
wall = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"code": os.waitstatus_to_exitcode(status), "wall": wall,
               "cpu": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss * 1024}, fh)
"""

_PORT_RE = re.compile(r"HTTP API on http://[^:/]+:(\d+)/")


class DaemonProcess:
    """One ``streamer run`` under the measuring wrapper, with its directory and log."""

    def __init__(self, root: Path, config: str, python: str) -> None:
        self.root = root
        self.config = root / "streamer.toml"
        self.config.write_text(config, encoding="utf-8")
        self.log_path = root / "daemon.log"
        self.pidfile = root / "daemon.pid"
        self.result = root / "daemon.rusage.json"
        self.cmd = [python, "-m", "streamer", "run", "--config", str(self.config)]
        self.wrapper: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.port = 0
        self.rusage: dict[str, Any] = {}

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log_path, "wb") as err:
            self.wrapper = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WRAPPER, str(self.pidfile),
                 str(self.result), *self.cmd],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd=self.root, env={**os.environ, "PYTHONPATH": str(bc.REPO)},
                start_new_session=True)  # our Ctrl-C is handled by us, not sent to it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.wrapper.poll() is not None:
                raise RuntimeError(f"the daemon exited at start:\n{self.log_tail()}")
            if not self.pid and self.pidfile.exists():
                self.pid = int(self.pidfile.read_text())
            m = _PORT_RE.search(self.log())
            if self.pid and m:
                self.port = int(m.group(1))
                if "running: sources" in self.log():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not start within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log().strip().splitlines()[-n:])

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any, float]:
        return http_get(self.port, path, timeout)

    def stats(self) -> tuple[dict[str, Any], float]:
        status, body, dt = self.get("/stats")
        if status != 200:
            raise RuntimeError(f"/stats answered {status}: {body}")
        return body, dt

    def alive(self) -> bool:
        return self.wrapper is not None and self.wrapper.poll() is None

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGTERM, wait for the exit; returns the wrapper's figures (code, wall, cpu,
        maxrss) plus the shutdown duration."""
        if self.wrapper is None:
            return {}
        t0 = time.perf_counter()
        if self.wrapper.poll() is None and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        try:
            self.wrapper.wait(timeout)
        except subprocess.TimeoutExpired:
            bc.log(f"the daemon (pid {self.pid}) did not stop within {timeout:.0f} s; "
                   "killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wrapper.wait(30)
        if self.result.exists():
            self.rusage = json.loads(self.result.read_text())
        self.rusage["shutdown_s"] = time.perf_counter() - t0
        return self.rusage


_RESCORE_RE = re.compile(
    r"^(\S+) INFO streamer\.[\w.]+: rescore \(([^)]*)\): (\d+) words, (\d+) new, in "
    r"([0-9.]+) s \(engine ([0-9.]+) s\); (\d+) lines, (\d+) units ingested", re.M)
_SNAPSHOT_RE = re.compile(
    r"^(\S+) INFO streamer\.[\w.]+: snapshot written \(([^)]*)\): \S+, (.+?) in "
    r"([0-9.]+) s; ingestion paused ([0-9.]+) s", re.M)


@dataclass
class Rescore:
    reason: str
    words: int
    new: int
    seconds: float
    engine_seconds: float
    lines: int
    units: int


def parse_rescores(log_text: str) -> list[Rescore]:
    return [Rescore(m.group(2), int(m.group(3)), int(m.group(4)), float(m.group(5)),
                    float(m.group(6)), int(m.group(7)), int(m.group(8)))
            for m in _RESCORE_RE.finditer(log_text)]


def parse_snapshots(log_text: str) -> list[dict[str, Any]]:
    return [{"reason": m.group(2), "size": m.group(3), "seconds": float(m.group(4)),
             "pause": float(m.group(5))} for m in _SNAPSHOT_RE.finditer(log_text)]


_EVENT_RE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) INFO streamer\.[\w.]+: (rescore|snapshot written|"
    r"export written)\b(?:.*? in ([0-9.]+) s)?", re.M)


def log_events(log_text: str) -> list[tuple[str, float, float]]:
    """(kind, start, end) wall-clock intervals of rescores (with the latest.jsonl write
    that follows), snapshots (capture + write) and exports, from the log. Log stamps have
    1 s resolution, so every interval is widened by 1 s on both sides."""
    out = []
    for m in _EVENT_RE.finditer(log_text):
        end = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC).timestamp()
        dur = float(m.group(3) or 0.0)
        out.append((m.group(2).split()[0], end - dur - 1.0, end + 2.0))
    return out


def problems_in_log(log_text: str) -> list[str]:
    return [ln for ln in log_text.splitlines()
            if " ERROR " in ln or " WARNING " in ln or "Traceback" in ln][:10]


def daemon_config(root: Path, *, mode: str, rescore: str | None, snapshot: str | None,
                  export: str | None, known: Path | None, memory: str) -> str:
    """The daemon's TOML: only what differs from config/streamer.toml (its defaults)."""
    lines = ["# written by scripts/bench_stream.py; everything else is the shipped default",
             "[sources]", f"globs = [{json.dumps(str(root / 'inbox' / '*.txt'))}]",
             "from_beginning = true", "",
             "[engine]", f'memory = "{memory}"']
    # the shipped default is ["jieba"]; a run without a lexicon says so
    lines.append(f"known = [{json.dumps(str(known))}]" if known is not None else "known = []")
    lines += ["", "[time]", f'mode = "{mode}"']
    if mode == "replay":
        lines += [f"chars_per_second = {REPLAY_CPS}", f"start = {REPLAY_START}"]
    iv = {k: v for k, v in (("rescore", rescore), ("snapshot", snapshot),
                            ("export", export)) if v}
    if iv:
        lines += ["", "[intervals]", *(f"{k} = {fmt_dur(v)}" for k, v in iv.items())]
    lines += ["", "[state]", f"dir = {json.dumps(str(root / 'state'))}",
              "", "[export]", f"dir = {json.dumps(str(root / 'exports'))}",
              "", "[http]", 'listen = "127.0.0.1:0"', ""]
    return "\n".join(lines)


def committed_bytes(stats: dict[str, Any]) -> int:
    """Bytes the engine has consumed: the sum of the sources' committed offsets.

    (``bytes_ingested`` in /stats sums the *read* offsets, which run up to
    queue_batches x batch_bytes ahead of what the engine has counted.)"""
    return sum(int(s.get("committed_offset") or 0) for s in stats.get("sources") or ())


# --------------------------------------------------------------------------- writer child

def writer_child(args: argparse.Namespace) -> int:
    """Child process: append to ``--writer-out``.

    flow mode (``--writer-port``): cycle the bytes of the ``--writer-in`` files, in
    chunks of whole lines, keeping at most ``--writer-lead`` bytes ahead of the daemon's
    committed offsets, until ``--writer-volume`` bytes (ending at a line end) are written.
    rate mode (``--writer-rate``): write the lines of ``--writer-in`` once, at most that
    many characters (excluding newlines) per second of wall time.
    """
    out_path = Path(args.writer_out)
    inputs = [Path(p) for p in args.writer_in]
    with open(out_path, "ab", buffering=0) as out:
        if args.writer_rate:
            lines = b"".join(p.read_bytes() for p in inputs).decode("utf-8").splitlines()
            t0 = time.perf_counter()
            done = 0
            i = 0
            while i < len(lines):
                allowed = args.writer_rate * (time.perf_counter() - t0)
                j = i
                buf = []
                while j < len(lines) and done + len(lines[j]) <= allowed + 1:
                    done += len(lines[j])
                    buf.append(lines[j])
                    j += 1
                if j > i:
                    out.write(("\n".join(buf) + "\n").encode("utf-8"))
                    i = j
                else:
                    time.sleep(0.02)
            return 0
        base = b"".join(p.read_bytes() for p in inputs)
        chunk = 4 * MIB
        chunks = []
        pos = 0
        while pos < len(base):
            end = base.find(b"\n", min(pos + chunk, len(base)) - 1)
            end = len(base) if end < 0 else end + 1
            chunks.append(base[pos:end])
            pos = end
        written = 0
        k = 0
        committed = 0
        while written < args.writer_volume:
            if written - committed >= args.writer_lead:
                try:
                    status, body, _ = http_get(args.writer_port, "/stats", timeout=30)
                except OSError:
                    time.sleep(0.2)
                    continue
                if status == 200:
                    committed = committed_bytes(body)
                if written - committed >= args.writer_lead:
                    time.sleep(0.05)
                continue
            data = chunks[k % len(chunks)]
            rest = args.writer_volume - written
            if len(data) > rest:
                end = data.find(b"\n", rest - 1)
                data = data if end < 0 else data[: end + 1]
            out.write(data)
            written += len(data)
            k += 1
    return 0


def start_writer(out: Path, inputs: Sequence[Path], *, port: int = 0, volume: int = 0,
                 lead: int = 0, rate: float = 0.0) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--writer-out", str(out),
           "--writer-in", *map(str, inputs)]
    if rate:
        cmd += ["--writer-rate", str(rate)]
    else:
        cmd += ["--writer-port", str(port), "--writer-volume", str(volume),
                "--writer-lead", str(lead)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def stop_process(p: subprocess.Popen[bytes] | None) -> None:
    if p is not None and p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- stream map

class StreamMap:
    """Han characters / characters in the first X bytes of ``base`` repeated (X at a
    line end, as committed offsets are)."""

    def __init__(self, base: bytes) -> None:
        self.size = len(base)
        self.ends: list[int] = []
        self.han: list[int] = [0]
        self.chars: list[int] = [0]
        pos = 0
        for line in base.split(b"\n")[:-1]:
            text = line.decode("utf-8")
            pos += len(line) + 1
            self.ends.append(pos)
            self.han.append(self.han[-1] + bc.count_han(text))
            self.chars.append(self.chars[-1] + len(text))

    def _at(self, table: list[int], offset: int) -> int:
        q, r = divmod(offset, self.size)
        return q * table[-1] + table[bisect.bisect_right(self.ends, r)]

    def han_at(self, offset: int) -> int:
        return self._at(self.han, offset)

    def chars_at(self, offset: int) -> int:
        return self._at(self.chars, offset)


# --------------------------------------------------------------------------- part 1

@dataclass
class Sample:
    t: float             # s since the writer started
    wall: float          # time.time() when the /stats request was sent
    committed: int       # bytes consumed by the engine
    han: int             # Han characters in those bytes
    chars: int           # chars_ingested (daemon)
    read: int            # bytes_ingested (daemon: read offsets)
    lines: int
    rescores: int
    lag_p99: float
    lag_max: float
    queue: int
    rss: int
    hwm: int
    cpu: float | None
    stats_latency: float
    snapshots: int


@dataclass
class IngestResult:
    volume: int = 0
    written_han: int = 0
    samples: list[Sample] = field(default_factory=list)
    rescores: list[Rescore] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    rusage: dict[str, Any] = field(default_factory=dict)
    metrics_lag: dict[str, float] = field(default_factory=dict)
    config: str = ""
    cmd: str = ""
    problems: list[str] = field(default_factory=list)
    events: list[tuple[str, float, float]] = field(default_factory=list)
    completed: bool = False
    error: str = ""
    sys_busy: float | None = None     # share of all CPUs busy during the run
    load_end: str = ""
    profile: dict[str, Any] | None = None


def find_py_spy(python: str) -> str | None:
    cand = Path(python).parent / "py-spy"
    if cand.exists():
        return str(cand)
    return shutil.which("py-spy")


def run_ingest(args: argparse.Namespace, data: bc.BenchData, python: str,
               workdir: Path) -> IngestResult:
    res = IngestResult()
    root = workdir / "ingest"
    (root / "inbox").mkdir(parents=True)
    target = root / "inbox" / "stream.txt"
    target.touch()
    inputs = [data.pd_file, data.reviews_file]
    smap = StreamMap(b"".join(p.read_bytes() for p in inputs))
    cfg = daemon_config(root, mode="wall", rescore=args.rescore_interval,
                        snapshot=args.snapshot_interval, export=args.export_interval,
                        known=None, memory=args.memory)
    res.config = cfg
    d = DaemonProcess(root, cfg, python)
    res.cmd = bc.display_cmd(d.cmd)
    bc.log(f"[ingest] starting {res.cmd} in {root}")
    d.start()
    writer = None
    spy = None
    spy_out = root / "py-spy.txt"
    try:
        writer = start_writer(target, inputs, port=d.port, volume=args.volume, lead=args.lead)
        t0 = time.perf_counter()
        busy0, total0 = system_cpu()
        deadline = t0 + args.timeout
        last_log = t0
        volume_written = None
        while True:
            now = time.perf_counter()
            if not d.alive():
                raise RuntimeError(f"the daemon died:\n{d.log_tail()}")
            wall = time.time()
            st, lat = d.stats()
            mem = proc_status(d.pid)
            committed = committed_bytes(st)
            s = Sample(t=now - t0, wall=wall, committed=committed, han=smap.han_at(committed),
                       chars=int(st["chars_ingested"]), read=int(st.get("bytes_ingested") or 0),
                       lines=int(st["lines_ingested"]), rescores=int(st["rescores"]),
                       lag_p99=float(st["loop_lag_p99_s"]),
                       lag_max=float(st["loop_lag_max_s"]), queue=int(st["queue_depth"]),
                       rss=mem.get("VmRSS", 0), hwm=mem.get("VmHWM", 0),
                       cpu=proc_cpu(d.pid), stats_latency=lat,
                       snapshots=int(st.get("snapshots") or 0))
            res.samples.append(s)
            if writer.poll() is not None and volume_written is None:
                if writer.returncode != 0:
                    raise RuntimeError(f"the writer failed with exit {writer.returncode}")
                volume_written = target.stat().st_size
            if volume_written is not None and committed >= volume_written:
                res.completed = True
                break
            if (spy is None and args.py_spy > 0 and committed >= RSS_MARK):
                exe = find_py_spy(python)
                if exe is None:
                    bc.log("py-spy not found (pip install py-spy into the venv); no profile")
                    args.py_spy = 0
                else:
                    bc.log(f"[ingest] py-spy: sampling the daemon for {args.py_spy:.0f} s")
                    with open(root / "py-spy.log", "wb") as spy_log:
                        spy = subprocess.Popen(
                            [exe, "record", "--pid", str(d.pid), "--duration",
                             str(int(args.py_spy)), "--rate", "100", "--format", "raw",
                             "--threads", "--nonblocking", "--output", str(spy_out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=spy_log)
            if now > deadline:
                res.error = (f"stopped after --timeout {args.timeout:.0f} s with "
                             f"{bc.fmt_bytes(committed)} of {bc.fmt_bytes(args.volume)} consumed")
                bc.log(f"[ingest] {res.error}")
                break
            if now - last_log >= 10:
                last_log = now
                bc.log(f"[ingest] {s.t:6.0f} s: {committed / MIB:7.0f} MiB consumed, "
                       f"{s.han / max(s.t, 1e-9) / 1e6:.2f} M Han/s so far, "
                       f"RSS {bc.fmt_bytes(s.rss)}, lag p99 {ms(s.lag_p99)}, "
                       f"{s.rescores} rescores, queue {s.queue}, load {loadavg()}")
            time.sleep(max(0.0, args.sample - (time.perf_counter() - now)))
        busy1, total1 = system_cpu()
        res.sys_busy = (busy1 - busy0) / max(1, total1 - total0)
        res.load_end = loadavg()
        with contextlib.suppress(Exception):
            status, text, _ = d.get("/metrics")
            if status == 200:
                for line in str(text).splitlines():
                    if line.startswith("streamer_loop_lag_seconds{"):
                        q = re.search(r'quantile="([^"]+)"', line)
                        res.metrics_lag[q.group(1) if q else "?"] = float(line.split()[-1])
        if spy is not None and spy.poll() is None:
            # the stream is done before the profile: py-spy writes what it has on SIGINT
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    finally:
        stop_process(writer)
        res.rusage = d.stop()
    log_text = d.log()
    res.rescores = parse_rescores(log_text)
    res.snapshots = parse_snapshots(log_text)
    res.problems = problems_in_log(log_text)
    res.events = log_events(log_text)
    res.volume = res.samples[-1].committed if res.samples else 0
    res.written_han = res.samples[-1].han if res.samples else 0
    if spy_out.exists():
        res.profile = summarise_py_spy(spy_out.read_text(encoding="utf-8", errors="replace"))
    if args.keep:
        bc.log(f"[ingest] kept {root} (daemon.log, streamer.toml, py-spy.txt)")
    return res


def summarise_py_spy(raw: str) -> dict[str, Any]:
    """Self and inclusive sample counts per function, per thread, from py-spy raw output.

    Lines are ``process;thread (tid);frame;...;frame COUNT`` with frames
    ``function (file:line)``, outermost first."""
    self_: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # drop the process frame; the thread frame names the thread
        frames = [f for f in frames if not f.startswith("process ")]
        body = [re.sub(r":\d+\)$", ")", f) for f in frames if not f.startswith("thread ")]
        if not body:
            continue
        tname = thread_kind(body)
        totals[tname] += n
        self_[tname][body[-1]] += n
        for f in set(body):
            incl[tname][f] += n
    return {"totals": dict(totals),
            "self": {k: v.most_common(12) for k, v in self_.items()},
            "inclusive": {k: v.most_common(25) for k, v in incl.items()}}


def thread_kind(frames: list[str]) -> str:
    """Name a thread by what its stack does (py-spy names threads by id only)."""
    text = ";".join(frames)
    if "_ingest_job" in text or "_rescore_job" in text or "_capture_job" in text:
        return "engine worker"
    if "run_forever" in text or "_run_once" in text or "asyncio.run" in text:
        return "event loop"
    if "_write_job" in text or "write_snapshot" in text:
        return "snapshot writer"
    if "_write_latest" in text or "write_export" in text:
        return "latest.jsonl / export writer (to_thread)"
    if "_fill" in text or "_check_all" in text or "sources.py" in text:
        return "source reader (to_thread)"
    return "other"


# --------------------------------------------------------------------------- part 2

@dataclass
class Injected:
    word: str
    lines: list[int]               # indices of the lines carrying it
    crossing_line: int | None      # the line whose occurrence brings the recent count to
    crossing_chars: int | None     # min_count, and the characters ingested through it
    total_crossing_line: int | None = None  # the line where the all-time count gets there
    seen_at: float | None = None   # wall s (since start) when chars_ingested passed it
    listed_at: float | None = None  # wall s when first seen published
    listed_rescore: int | None = None  # rescore number (1-based) that listed it
    record: dict[str, Any] | None = None  # its /words/<word> answer when listed
    final: dict[str, Any] | None = None   # its record at the end


@dataclass
class DetectResult:
    words: list[Injected] = field(default_factory=list)
    lines: int = 0
    chars: int = 0
    start_line: int = 0
    every: int = 0
    min_count: int = 0
    rate: float = 0.0
    rescore_interval: float = 0.0
    rescores: list[Rescore] = field(default_factory=list)
    wall: float = 0.0
    new_total: int | None = None
    words_total: int | None = None
    new_others: list[dict[str, Any]] = field(default_factory=list)
    others_in_known: int = 0
    known: str = "none"
    config: str = ""
    cmd: str = ""
    problems: list[str] = field(default_factory=list)
    error: str = ""
    lag_p99_max: float = 0.0


def build_injected(reviews: list[str], words: list[str], start: float, every: int,
                   seed: int) -> tuple[list[str], dict[str, list[int]]]:
    """Reviews with the words injected: from line start*len on, every `every`-th line
    carries one word (round robin), inserted at a random character position."""
    rng = random.Random(seed)
    out = list(reviews)
    where: dict[str, list[int]] = {w: [] for w in words}
    first = int(start * len(out))
    k = 0
    for i in range(first, len(out), every):
        w = words[k % len(words)]
        k += 1
        line = out[i]
        pos = rng.randrange(len(line) + 1)
        out[i] = line[:pos] + w + line[pos:]
        where[w].append(i)
    return out, where


def recent_crossing(occ: Sequence[int], counts: Sequence[int], cum: Sequence[int],
                    min_count: int) -> tuple[int | None, int | None]:
    """Lines where a word's recent count, and its all-time count, reach min_count.

    The recent count is what the daemon's min_count applies to: occurrences decayed
    with the half-life in stream time, an occurrence in line i happening at
    cum[i + 1] / REPLAY_CPS seconds (the daemon's replay clock)."""
    recent, total, prev = 0.0, 0, None
    crossing = total_crossing = None
    for i, c in zip(occ, counts, strict=True):
        t = cum[i + 1] / REPLAY_CPS
        recent = c + (recent * 0.5 ** ((t - prev) / HALF_LIFE) if prev is not None else 0.0)
        prev = t
        total += c
        if total_crossing is None and total >= min_count:
            total_crossing = i
        if recent >= min_count:
            crossing = i
            break
    return crossing, total_crossing


def run_detect(args: argparse.Namespace, data: bc.BenchData, python: str,
               workdir: Path) -> DetectResult:
    res = DetectResult()
    words = [w.strip() for w in args.detect_words.split(",") if w.strip()]
    present = [w for w in words if any(w in line for line in data.reviews)]
    if present:
        bc.log(f"[detect] warning: already in the reviews corpus: {', '.join(present)}")
    in_known = [w for w in words if w in data.known]
    if in_known:
        bc.log(f"[detect] warning: in the known lexicon: {', '.join(in_known)}")
    lines, where = build_injected(data.reviews, words, args.detect_start, args.detect_every,
                                  args.seed)
    res.lines, res.every = len(lines), args.detect_every
    res.start_line = int(args.detect_start * len(lines))
    res.min_count = args.min_count
    res.rate = args.detect_rate
    res.rescore_interval = parse_seconds(args.detect_rescore)
    cum = [0]
    for line in lines:
        cum.append(cum[-1] + len(line))
    res.chars = cum[-1]
    for w in words:
        occ = [i for i in range(len(lines)) if w in lines[i]]
        crossing, total_crossing = recent_crossing(occ, [lines[i].count(w) for i in occ],
                                                   cum, args.min_count)
        res.words.append(Injected(w, where[w], crossing,
                                  cum[crossing + 1] if crossing is not None else None,
                                  total_crossing))
    root = workdir / "detect"
    (root / "inbox").mkdir(parents=True)
    corpus = root / "corpus.txt"
    corpus.write_bytes(bc.lines_bytes(lines))
    known = None if args.no_known else data.known_file
    res.known = "none" if known is None else bc.display_cmd([str(known)])
    cfg = daemon_config(root, mode="replay", rescore=args.detect_rescore,
                        snapshot=args.snapshot_interval, export=args.export_interval,
                        known=known, memory=args.memory)
    if args.min_count != 8:
        cfg = cfg.replace("[engine]\n", f"[engine]\nmin_count = {args.min_count}\n")
    res.config = cfg
    d = DaemonProcess(root, cfg, python)
    res.cmd = bc.display_cmd(d.cmd)
    bc.log(f"[detect] starting {res.cmd} in {root}; {len(lines):,} lines, {res.chars:,} "
           f"chars at {args.detect_rate:,.0f} chars/s; rescore every {args.detect_rescore}")
    d.start()
    writer = None
    try:
        writer = start_writer(root / "inbox" / "reviews.txt", [corpus], rate=args.detect_rate)
        t0 = time.perf_counter()
        deadline = t0 + args.timeout
        last_rescores = 0
        all_in_at: int | None = None   # rescore count when the last line was ingested
        last_log = t0
        while True:
            now = time.perf_counter()
            if not d.alive():
                raise RuntimeError(f"the daemon died:\n{d.log_tail()}")
            st, _ = d.stats()
            chars = int(st["chars_ingested"])
            res.lag_p99_max = max(res.lag_p99_max, float(st["loop_lag_p99_s"]))
            for w in res.words:
                if w.seen_at is None and w.crossing_chars is not None \
                        and chars >= w.crossing_chars:
                    w.seen_at = now - t0
            rescores = int(st["rescores"])
            if all_in_at is None and chars >= res.chars:
                all_in_at = rescores
            if rescores != last_rescores:
                last_rescores = rescores
                for w in res.words:
                    if w.listed_at is not None:
                        continue
                    status, body, _ = d.get("/words/" + urllib.parse.quote(w.word))
                    if status == 200 and body.get("published"):
                        w.listed_at = now - t0
                        w.listed_rescore = rescores
                        w.record = body
                # stop after the first rescore that ran with every line in the engine
                if all_in_at is not None and rescores > all_in_at:
                    break
            if now - last_log >= 10:
                last_log = now
                bc.log(f"[detect] {now - t0:5.0f} s: {chars:,} / {res.chars:,} chars, "
                       f"{rescores} rescores, listed "
                       f"{sum(w.listed_at is not None for w in res.words)}/{len(res.words)}")
            if now > deadline:
                res.error = f"stopped after --timeout {args.timeout:.0f} s"
                break
            time.sleep(0.05)
        res.wall = time.perf_counter() - t0
        for w in res.words:
            status, body, _ = d.get("/words/" + urllib.parse.quote(w.word))
            w.final = body if status == 200 else None
        status, body, _ = d.get("/words?new=true&limit=10000")
        if status == 200:
            res.new_total = int(body["total"])
            injected = set(words)
            others = [r for r in body["words"] if r["word"] not in injected
                      and not any(w in r["word"] or r["word"] in w for w in injected)]
            res.new_others = others
        status, body, _ = d.get("/words?limit=1")
        if status == 200:
            res.words_total = int(body["total"])
    finally:
        stop_process(writer)
        d.stop()
    log_text = d.log()
    res.rescores = parse_rescores(log_text)
    res.problems = problems_in_log(log_text)
    # the rescore that listed each word: its line count from the log is exact
    for w in res.words:
        if w.listed_rescore is not None and w.listed_rescore > len(res.rescores):
            w.listed_rescore = None
    res._cum = cum  # type: ignore[attr-defined]
    return res


# --------------------------------------------------------------------------- report

def render_ingest(r: IngestResult, args: argparse.Namespace) -> list[str]:
    out = ["#### 1. Sustained ingest (wall-clock time, default engine settings)", ""]
    out.append(f"- daemon: `{r.cmd}` with a generated configuration: one watched file, "
               f"memory {args.memory}, rescore / snapshot / export intervals "
               f"{args.rescore_interval or 'default (10s)'} / "
               f"{args.snapshot_interval or 'default (60s)'} / "
               f"{args.export_interval or 'default (60s)'}, time mode wall, HTTP on a free "
               "loopback port; everything else as in config/streamer.toml")
    out.append(f"- writer: a separate process appends People's Daily raw text + reviews "
               f"(repeated) to the watched file in line-aligned chunks of 4 MiB, at most "
               f"{bc.fmt_bytes(args.lead)} ahead of the daemon's committed offset, until "
               f"{bc.fmt_bytes(args.volume)}; samples of /stats and /proc every "
               f"{args.sample:g} s")
    if r.error:
        out += [f"- **incomplete**: {r.error}"]
    s = r.samples
    if len(s) < 2:
        out += ["", "no samples"]
        return out
    first = next((x for x in s if x.committed > 0), s[-1])
    end = s[-1]
    mark = next((x for x in s if x.committed >= RSS_MARK), None)
    t_start = 0.0
    overall = end.han / (end.t - t_start) if end.t > t_start else math.nan
    chars_rate = end.chars / end.t if end.t else math.nan
    steady = ((end.han - mark.han) / (end.t - mark.t)
              if mark is not None and end.t > mark.t else math.nan)
    # rates in windows of ~10 s
    wins: list[float] = []
    j = 0
    for i in range(1, len(s)):
        if s[i].t - s[j].t >= 10:
            wins.append((s[i].han - s[j].han) / (s[i].t - s[j].t))
            j = i
    cpu_rate = None
    cpu_share = None
    if first.cpu is not None and end.cpu is not None and end.t > 0:
        cpu0 = s[0].cpu or 0.0
        cpu_share = (end.cpu - cpu0) / end.t
        cpu_rate = end.han / (end.cpu - cpu0) if end.cpu > cpu0 else None
    lag99 = max(x.lag_p99 for x in s)
    lagmax = max(x.lag_max for x in s)
    timer = [x for x in r.rescores if x.reason == "timer"]
    rs = [x.seconds for x in timer]
    eng = [x.engine_seconds for x in timer]
    snaps = [x for x in r.snapshots if x["reason"] == "timer"]
    rss_mark = mark.rss if mark else None
    rss_end = end.rss
    ratio = rss_end / rss_mark if rss_mark else None
    end_label = bc.fmt_bytes(end.committed)
    rows = [
        ["streamed and consumed", f"{bc.fmt_bytes(end.committed)}: {end.han / 1e6:.1f} M Han "
         f"chars, {end.chars / 1e6:.1f} M chars, {end.lines:,} lines", "", ""],
        ["wall time (writer start to last byte consumed)", f"{end.t:.1f} s", "", ""],
        ["Han chars/s, whole run", mrate(overall), f">= {TARGET_RATE / 1e6:.0f} M/s",
         verdict(overall >= TARGET_RATE)],
        ["Han chars/s, after the first 100 MiB", mrate(steady), "", ""],
        ["Han chars/s in ~10 s windows: slowest / median / fastest",
         " / ".join(mrate(f(wins)) for f in (min, statistics.median, max)) if wins else "-",
         "", ""],
        ["all chars/s (chars_ingested), whole run", mrate(chars_rate), "", ""],
        ["daemon CPU (all threads) / wall", f"{cpu_share:.2f} cores" if cpu_share else "-",
         "", ""],
        ["Han chars per daemon CPU-second", mrate(cpu_rate), "", ""],
        ["event-loop lag p99 (worst 60 s window seen in /stats)", ms(lag99),
         f"< {TARGET_LAG * 1000:.0f} ms", verdict(lag99 < TARGET_LAG)],
        ["event-loop lag p99 / max at the end (/metrics)",
         f"{ms(r.metrics_lag.get('0.99'))} / {ms(r.metrics_lag.get('1'))}", "", ""],
        ["event-loop lag, largest single sample", ms(lagmax), "", ""],
        ["/stats answer time seen by this script: p50 / p99 / max",
         " / ".join(ms(f(v)) for f, v in ((statistics.median, [x.stats_latency for x in s]),
                                           (lambda v: pct(v, 99), [x.stats_latency for x in s]),
                                           (max, [x.stats_latency for x in s]))), "", ""],
        ["rescores during ingest (timer): count; median / p90 / max",
         f"{len(rs)}; {ms(statistics.median(rs))} / {ms(pct(rs, 90))} / {ms(max(rs))}"
         if rs else "none", f"<= {TARGET_RESCORE:.0f} s",
         verdict(max(rs) <= TARGET_RESCORE) if rs else "-"],
        ["  of which in the engine: median / max",
         f"{ms(statistics.median(eng))} / {ms(max(eng))}" if eng else "-", "", ""],
        ["snapshots during ingest: count; ingestion pause max; write time max",
         f"{len(snaps)}; {ms(max(x['pause'] for x in snaps))}; "
         f"{max(x['seconds'] for x in snaps):.2f} s" if snaps else "none", "", ""],
        ["RSS after 100 MiB consumed (VmRSS)", bc.fmt_bytes(rss_mark) if rss_mark else "-",
         "", ""],
        [f"RSS after {end_label} consumed (VmRSS)", bc.fmt_bytes(rss_end), "", ""],
        [f"RSS({end_label}) / RSS(100 MiB)", f"{ratio:.3f}" if ratio else "-",
         f"within {TARGET_RSS_DRIFT:.0%}" + ("" if end.committed >= GIB else
                                              " (at 1 GiB; this run is shorter)"),
         verdict(abs(ratio - 1) <= TARGET_RSS_DRIFT) if ratio else "-"],
        ["RSS high-water mark (VmHWM) / peak RSS from os.wait4",
         f"{bc.fmt_bytes(end.hwm)} / "
         f"{bc.fmt_bytes(r.rusage['maxrss']) if r.rusage.get('maxrss') else '-'}", "", ""],
        ["shutdown (SIGTERM to exit) / exit status",
         f"{r.rusage.get('shutdown_s', math.nan):.1f} s / {r.rusage.get('code', '-')}", "", ""],
    ]
    out += ["", bc.md_table(["figure", "value", "target", ""], rows), ""]
    # timeline
    out.append("Timeline (one row per ~10% of the volume; rates over the row's interval):")
    out.append("")
    trows = []
    step = max(r.volume / 10, 1)
    nxt = step
    prev = s[0]
    for x in s:
        if x.committed >= nxt or x is end:
            dt = x.t - prev.t
            rate = (x.han - prev.han) / dt if dt > 0 else math.nan
            cpu = ((x.cpu - prev.cpu) / dt if dt > 0 and x.cpu is not None
                   and prev.cpu is not None else None)
            trows.append([f"{x.committed / MIB:.0f}", f"{x.t:.1f}", mrate(rate),
                          f"{cpu:.2f}" if cpu is not None else "-", bc.fmt_bytes(x.rss),
                          ms(x.lag_p99), x.rescores, x.snapshots, x.queue,
                          f"{(x.read - x.committed) / MIB:.0f}"])
            prev = x
            while nxt <= x.committed:
                nxt += step
    out.append(bc.md_table(["MiB consumed", "t (s)", "Han chars/s", "daemon cores",
                            "VmRSS", "lag p99 (60 s)", "rescores", "snapshots",
                            "queue depth", "read ahead (MiB)"], trows))
    out.append("")
    notes = []
    slow = [x for x in s if x.stats_latency > TARGET_LAG]
    if slow:
        kinds: Counter[str] = Counter()
        for x in slow:
            hit = sorted({k for k, a, b in r.events if a <= x.wall <= b})
            kinds[" + ".join(hit) if hit else "none of these"] += 1
        notes.append(f"{len(slow)} of {len(s)} /stats answers took over "
                     f"{TARGET_LAG * 1000:.0f} ms (the event loop was held up); they fell "
                     "during (from the log, +-1 s): " + ", ".join(
                         f"{k} {v}" for k, v in kinds.most_common()))
    tail = [x.rss for x in s if x.committed >= 0.8 * end.committed]
    if tail:
        notes.append(f"VmRSS over the last 20% of the volume: {bc.fmt_bytes(min(tail))} .. "
                     f"{bc.fmt_bytes(max(tail))} (a snapshot holds a private copy of the "
                     "state while it is written)")
    if r.sys_busy is not None:
        notes.append(f"all CPUs were {r.sys_busy:.0%} busy during the run (this daemon "
                     f"included: {cpu_share or 0:.2f} of {os.cpu_count()} cores); load "
                     f"average at the end {r.load_end}")
    if r.problems:
        notes.append("warnings/errors in the daemon log: " + " | ".join(
            p.split(": ", 1)[-1][:160] for p in r.problems[:5]))
    out += [f"- {n}" for n in notes]
    if r.profile:
        out += ["", *render_profile(r.profile, args)]
    return out


def render_profile(p: dict[str, Any], args: argparse.Namespace) -> list[str]:
    out = [f"Profile (py-spy, up to {args.py_spy:.0f} s at 100 Hz, non-blocking, started after "
           "100 MiB; samples of threads not idle, by thread; frames without line numbers):",
           ""]
    totals = p["totals"]
    grand = sum(totals.values()) or 1
    out.append(bc.md_table(["thread", "samples", "share"],
                           [[k, v, f"{v / grand:.0%}"] for k, v in
                            sorted(totals.items(), key=lambda kv: -kv[1])]))
    for thread in sorted(totals, key=lambda k: -totals[k]):
        n = totals[thread]
        if n < 0.05 * grand:
            continue
        out += ["", f"{thread}: self time (top frames)", ""]
        out.append(bc.md_table(["function (file)", "self", "share of thread"],
                               [[f, c, f"{c / n:.0%}"] for f, c in p["self"][thread]]))
        out += ["", f"{thread}: inclusive time (streamer functions)", ""]
        rows = [[f, c, f"{c / n:.0%}"] for f, c in p["inclusive"][thread]
                if "streamer/" in f or "(streamer" in f or ".py" not in f][:15]
        out.append(bc.md_table(["function (file)", "inclusive", "share of thread"], rows))
    return out


def render_detect(r: DetectResult, args: argparse.Namespace) -> list[str]:
    cum = getattr(r, "_cum", None)
    out = ["#### 2. Detection latency (replay time, reviews corpus)", ""]
    out.append(f"- daemon: `{r.cmd}` with time mode replay ({REPLAY_CPS:g} chars = 1 s of "
               f"stream time from {REPLAY_START}), rescore every {args.detect_rescore} "
               f"(wall clock), known lexicon {r.known}, min_count {r.min_count}, "
               f"memory {args.memory}, other settings default (half-life 1h)")
    out.append(f"- input: the {r.lines:,} reviews ({r.chars / 1e6:.2f} M chars with the "
               f"injections), written to the watched file at {r.rate:,.0f} chars/s (one "
               f"rescore interval = {r.rate * r.rescore_interval:,.0f} chars = "
               f"{r.rate * r.rescore_interval / REPLAY_CPS:,.0f} s of stream time); from line "
               f"{r.start_line:,} ({args.detect_start:.0%} of the corpus) on, every "
               f"{r.every}th line carries one made-up word (the {len(r.words)} words take "
               f"turns: each word 1 in {r.every * len(r.words)} lines) at a random "
               f"position (seed {args.seed})")
    out.append("- crossing: the line whose occurrence brings the word's recent count (its "
               "occurrences decayed with the 1 h half-life of stream time, the count "
               "min_count applies to) to min_count; the line where its all-time count got "
               "there is given too. Listed: the first rescore whose published list holds the word. "
               "The text between them is exact (the daemon logs the lines it had ingested "
               "at each rescore); the wall time between them is observed by polling /stats "
               "every 50 ms. 'rescores' counts the rescores that ran after the crossing line "
               "was ingested, up to and including the one that listed the word: 1 = listed "
               "by the first rescore after crossing, i.e. within one rescore interval")
    if r.error:
        out.append(f"- **incomplete**: {r.error}")
    rows = []
    within: list[bool] = []
    extra: list[int] = []
    for w in r.words:
        occ = len(w.lines)
        cross = ("never" if w.crossing_line is None else
                 f"line {w.crossing_line + 1:,} (char {w.crossing_chars:,})")
        if w.total_crossing_line is not None:
            cross += f"; all-time: line {w.total_crossing_line + 1:,}"
        if w.listed_rescore is None or w.crossing_line is None:
            rows.append([w.word, occ, cross, "not listed", "-", "-", "-", "-", "-",
                         final_desc(w.final)])
            if w.crossing_line is not None:
                within.append(False)
            continue
        lr = r.rescores[w.listed_rescore - 1]
        chars_at = cum[lr.lines] if cum else 0
        k = sum(1 for x in r.rescores[: w.listed_rescore] if x.lines >= w.crossing_line + 1)
        within.append(k <= 1)
        seen_then = sum(1 for i in w.lines if i < lr.lines)
        extra.append(seen_then - r.min_count)
        rec = w.record or {}
        cnt, hl, hr = rec.get("count"), rec.get("left_entropy"), rec.get("right_entropy")
        fig = (f"{cnt:.1f} / {hl:.2f} / {hr:.2f}"
               if all(isinstance(v, int | float) for v in (cnt, hl, hr)) else "-")
        wall = (f"{w.listed_at - w.seen_at:.2f} s "
                f"({(w.listed_at - w.seen_at) / r.rescore_interval:.2f})"
                if w.listed_at is not None and w.seen_at is not None else "-")
        gap = chars_at - w.crossing_chars
        rows.append([
            w.word, occ, cross, f"rescore {w.listed_rescore} (at line {lr.lines:,})",
            seen_then, fig,
            f"{gap:,} ({gap / REPLAY_CPS:,.0f} s)",
            k, wall, final_desc(w.final)])
    out += ["", bc.md_table(["word", "injected lines", "recent count reaches min_count at",
                             "first listed by", "true count then",
                             "listed count / left H / right H",
                             "text (stream time) from crossing to listing",
                             "rescores after crossing",
                             "wall time (rescore intervals) from crossing to listing",
                             "at the end"], rows), ""]
    notes = []
    if within:
        notes.append(f"listed by the first rescore after the recent count reached min_count "
                     f"(within one rescore interval): {sum(within)}/{len(within)} (target: all)")
    if extra:
        notes.append("occurrences beyond min_count when first listed: "
                     + ", ".join(f"+{e}" for e in extra))
    if r.new_total is not None:
        injected_new = r.new_total - len(r.new_others)
        notes.append(f"at the end: {r.words_total:,} words published, {r.new_total:,} flagged "
                     f"new, of which {len(r.new_others):,} are not injected words "
                     f"({injected_new} are injected words or contain one)")
        shown = ", ".join(x["word"] for x in r.new_others[:30])
        notes.append(f"best-ranked non-injected new words: {shown}")
    rs = [x.seconds for x in r.rescores if x.reason == "timer" and x.lines > 0]
    notes.append(f"wall time {r.wall:.0f} s; {len(r.rescores)} rescores in the log"
                 + (f" (median {ms(statistics.median(rs))}, max {ms(max(rs))})" if rs else "")
                 + f"; worst loop lag p99 seen {ms(r.lag_p99_max)}")
    if r.problems:
        notes.append("warnings/errors in the daemon log: " + " | ".join(
            p.split(": ", 1)[-1][:160] for p in r.problems[:5]))
    out += [f"- {n}" for n in notes]
    return out


def final_desc(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "not listed"
    if not rec.get("published"):
        return "not listed"
    return (f"rank {rec.get('rank')}, count {rec.get('count'):.0f}, total "
            f"{rec.get('total_count'):.0f}, new={rec.get('new')}"
            if isinstance(rec.get("count"), int | float) else f"rank {rec.get('rank')}")


# --------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark of the daemon (`streamer run`): sustained ingest rate from a "
                    "growing file with rescoring running, event-loop lag, rescore time, RSS "
                    "after 100 MiB and after the whole volume; and detection latency of "
                    "injected words in replay mode. Prints a markdown report for "
                    "docs/benchmarks.md.")
    bc.add_cache_python_args(ap)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the daemons' directories and the streamed file go (default: "
                         "a new temporary directory; the stream needs --volume of disk)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (logs, configs, streamed file)")
    g = ap.add_argument_group("sustained ingest")
    g.add_argument("--volume", type=parse_size, default=GIB,
                   help="bytes to stream (default 1GiB)")
    g.add_argument("--quick", action="store_true", help="stream 200MiB instead")
    g.add_argument("--lead", type=parse_size, default=32 * MIB,
                   help="how far the writer may run ahead of the daemon (default 32MiB)")
    g.add_argument("--memory", default="256MB", help='engine memory budget (default "256MB")')
    g.add_argument("--rescore-interval", default=None,
                   help="[intervals] rescore for the ingest run (default: the shipped 10s)")
    g.add_argument("--snapshot-interval", default=None,
                   help="[intervals] snapshot (default: the shipped 60s)")
    g.add_argument("--export-interval", default=None,
                   help="[intervals] export (default: the shipped 60s)")
    g.add_argument("--sample", type=float, default=0.5,
                   help="seconds between samples of /stats and /proc (default 0.5)")
    g.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                   help="profile the daemon with py-spy for this long after 100 MiB "
                        "(default 0: off; needs py-spy in the venv or on PATH)")
    g.add_argument("--skip-ingest", action="store_true", help="skip part 1")
    g = ap.add_argument_group("detection latency")
    g.add_argument("--detect-words", default=DEFAULT_WORDS,
                   help=f"comma-separated made-up words (default {DEFAULT_WORDS})")
    g.add_argument("--detect-start", type=float, default=0.3,
                   help="fraction of the corpus after which words are injected (default 0.3)")
    g.add_argument("--detect-every", type=int, default=200,
                   help="one injected word every N lines (default 200)")
    g.add_argument("--detect-rate", type=float, default=50_000,
                   help="characters/s written to the daemon (default 50000)")
    g.add_argument("--detect-rescore", default="2s",
                   help="rescore interval of the detection run (default 2s)")
    g.add_argument("--min-count", type=int, default=8,
                   help="engine min_count of the detection run (default 8, the shipped one)")
    g.add_argument("--no-known", action="store_true",
                   help="no known lexicon (default: jieba's dict.txt from the cache)")
    g.add_argument("--seed", type=int, default=1, help="injection positions (default 1)")
    g.add_argument("--skip-detect", action="store_true", help="skip part 2")
    ap.add_argument("--timeout", type=float, default=3600,
                    help="give up a part after this many seconds (default 3600)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    # writer child (internal)
    ap.add_argument("--writer-out", help=argparse.SUPPRESS)
    ap.add_argument("--writer-in", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--writer-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--writer-volume", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--writer-lead", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--writer-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.writer_out:
        return writer_child(args)
    if args.quick:
        args.volume = 200 * MIB

    python = args.python or bc.default_python()
    machine = bc.machine_info(python)
    data = bc.load_all(args.cache)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-stream-"))
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if not args.skip_ingest and free < args.volume + GIB:
        bc.log(f"only {bc.fmt_bytes(free)} free in {workdir}; need about "
               f"{bc.fmt_bytes(args.volume + GIB)}")
        return 2
    ingest = detect = None
    failed = False

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        if not args.skip_ingest:
            try:
                ingest = run_ingest(args, data, python, workdir)
                failed |= not ingest.completed
            except RuntimeError as exc:
                bc.log(f"[ingest] failed: {exc}")
                failed = True
        if not args.skip_detect:
            try:
                detect = run_detect(args, data, python, workdir)
                failed |= bool(detect.error)
            except RuntimeError as exc:
                bc.log(f"[detect] failed: {exc}")
                failed = True
    finally:
        if args.keep or args.workdir:
            bc.log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    out = ["### Daemon: sustained ingest and detection latency (`streamer run`)", "",
           f"- command: `{bc.this_command()}`",
           f"- date: {machine['date']}",
           f"- machine: {bc.machine_line(machine)}; load average at the end {loadavg()}"]
    load1 = max(float(machine["load"].split()[0]), os.getloadavg()[0])
    ncpu = int(machine["nproc"])
    if load1 > 0.5 * ncpu:
        out.append(f"- the machine was busy (load average {machine['load']} at the start, "
                   f"{loadavg()} at the end, on "
                   f"{ncpu} CPUs): other work competed for the CPUs, so rates, lag and rescore "
                   "times are pessimistic compared with an idle machine of this kind")
    out.append("")
    if ingest is not None:
        out += render_ingest(ingest, args) + [""]
    if detect is not None:
        out += render_detect(detect, args) + [""]
    print("\n".join(out).rstrip() + "\n")
    if args.json:
        blob = {"machine": machine, "command": bc.this_command()}
        if ingest is not None:
            blob["ingest"] = {k: v for k, v in ingest.__dict__.items() if k != "samples"}
            blob["ingest"]["samples"] = [x.__dict__ for x in ingest.samples]
            blob["ingest"]["rescores"] = [x.__dict__ for x in ingest.rescores]
        if detect is not None:
            blob["detect"] = {k: v for k, v in detect.__dict__.items() if k != "_cum"}
            blob["detect"]["words"] = [x.__dict__ for x in detect.words]
            blob["detect"]["rescores"] = [x.__dict__ for x in detect.rescores]
        bc.write_json_report(args.json, blob, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
