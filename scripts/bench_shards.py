"""Shard services and a merged view against one service: agreement of the lists, and the
view's cost as the number of shards grows.

Usage, from the repository root::

    .venv/bin/python scripts/bench_shards.py --cache /work/bench-cache
    .venv/bin/python scripts/bench_shards.py --cache /work/bench-cache --input FILE --shards 3

1. Agreement (in this process, the engine the services run): the input's lines are dealt
   to N shards in turn (line i to shard i mod N, as a consumer group hands out entries)
   and each shard's engine ingests its lines in ~1 MiB batches, as a service's file
   source hands them over; one engine ingests all of them the same way. Stream time is
   shared, as the wall clock is between machines: a line's time is its character offset
   in the whole input / 1000 chars/s (the services' replay rate), so a batch is counted at
   the time its last line arrives. The shards' states go through state_dict/from_state
   (what a snapshot file holds) and are merged as the view merges them; both sides are
   rescored at the end of the stream with the service's defaults (256MB, half-life 1h,
   jieba's lexicon); with exact counters, without decay. The shards run with the view's
   min_count and with min_count / N (at least 2), the view always with the default.
   Reported: top-K overlap |top K of one ∩ top K merged| / K, the whole lists' shared /
   either, shared words whose count differs, whether the exact n-gram and unigram tables
   are equal; and, as the baseline, the same figures for one service against itself fed
   in batches of a quarter the size (its list depends on its batches too).
2. Cost (real processes): the input dealt to 8 shards, each state written as a daemon
   snapshot; then ``streamer run --shard DIR ...`` over the first 1, 2, 4 and 8 of them:
   the first merge's load + merge seconds (/stats view.merge_seconds), the view's peak
   RSS (VmHWM) and its RSS after the merge.

The report is markdown for docs/benchmarks.md; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_common import (  # noqa: E402
    add_cache_python_args,
    default_python,
    fmt_bytes,
    free_port,
    get_json,
    input_or_reviews,
    log,
    machine_info,
    machine_line,
    md_table,
    this_command,
    write_json_report,
)

from streamer.core.engine import Engine  # noqa: E402
from streamer.core.lexicon import load_known  # noqa: E402
from streamer.service.config import Config  # noqa: E402
from streamer.storage import snapshot  # noqa: E402

CHARS_PER_SECOND = 1000.0
START = 1_704_067_200.0
BATCH_BYTES = 1 << 20


def overlap(a: list[str], b: list[str], k: int) -> float:
    return len(set(a[:k]) & set(b[:k])) / max(min(k, len(a), len(b)), 1)


def batches(lines: list[str], index: list[int],
            offsets: np.ndarray) -> list[tuple[list[str], float]]:
    """The lines of ``index`` in ~1 MiB batches, each with the stream time of its last line."""
    out, cur, size = [], [], 0
    for i in index:
        cur.append(lines[i])
        size += len(lines[i].encode("utf-8")) + 1
        if size >= BATCH_BYTES:
            out.append((cur, START + offsets[i] / CHARS_PER_SECOND))
            cur, size = [], 0
    if cur:
        out.append((cur, START + offsets[index[-1]] / CHARS_PER_SECOND))
    return out


def fed(config: Any, known: Any, lines: list[str], index: list[int],
        offsets: np.ndarray) -> Engine:
    eng = Engine(config, known)
    for chunk, now in batches(lines, index, offsets):
        eng.ingest(chunk, now)
    return eng


def configs(exact: bool) -> tuple[Any, Any]:
    """(the service's [engine] section, its lexicons) for a mode: the defaults with the
    sketch; exact counters without decay (each engine's decay clock has its own epoch and
    rounding carry, so decayed exact tables add up only to within that rounding)."""
    base = Config().engine
    section = dataclasses.replace(base, exact=True, half_life=math.inf) if exact else base
    return section, load_known(list(base.known))


def compare(one: list[Any], other: list[Any], top: list[int]) -> dict[str, Any]:
    a, b = [w.word for w in one], [w.word for w in other]
    ca, cb = {w.word: w.count for w in one}, {w.word: w.count for w in other}
    both, either = ca.keys() & cb.keys(), ca.keys() | cb.keys()
    diff = [abs(ca[w] - cb[w]) / max(ca[w], 1e-9) for w in both if ca[w] != cb[w]]
    return {"words_one": len(a), "words_other": len(b),
            **{f"top{k}": overlap(a, b, k) for k in top},
            "shared_either": len(both) / max(len(either), 1), "other_count": len(diff),
            "shared": len(both), "median_rel_diff": float(np.median(diff)) if diff else 0.0}


def agreement(lines: list[str], n: int, exact: bool, shard_min_count: int,
              top: list[int]) -> dict[str, Any]:
    """One engine over every line against n shard engines (min_count ``shard_min_count``)
    merged and rescored with the service's min_count."""
    section, known = configs(exact)
    config = section.engine_config()
    shard_config = dataclasses.replace(config, min_count=shard_min_count)
    offsets = np.cumsum([len(x) for x in lines])
    end = START + float(offsets[-1]) / CHARS_PER_SECOND
    t0 = time.perf_counter()
    one = fed(config, known, lines, list(range(len(lines))), offsets)
    one_words = one.rescore(end).words
    one_tables = (one.counter.state(), one.unigrams.copy(), one.lines_ingested)
    del one
    merged: Engine | None = None
    for k in range(n):
        shard = fed(shard_config, known, lines, list(range(k, len(lines), n)), offsets)
        # a shard rescores when its own last batch is in (the view aligns the decays)
        last = k + n * ((len(lines) - 1 - k) // n)
        shard.rescore(START + float(offsets[last]) / CHARS_PER_SECOND)
        restored = Engine.from_state(shard.state_dict(), known, config=config)
        del shard
        if merged is None:
            merged = restored
        else:
            merged.merge(restored)
        del restored
    assert merged is not None
    equal = ""
    if exact:
        c = merged.counter.state()
        equal = "yes" if (np.array_equal(c["keys"], one_tables[0]["keys"])
                          and np.array_equal(c["counts"], one_tables[0]["counts"])
                          and np.array_equal(merged.unigrams, one_tables[1])
                          and merged.lines_ingested == one_tables[2]) else "NO"
    row = compare(one_words, merged.rescore(end).words, top)
    return {"what": f"{n} shards merged (shard min_count {shard_min_count})",
            "counter": "exact, no decay" if exact else "sketch, half-life 1h", **row,
            "tables_equal": equal, "seconds": time.perf_counter() - t0}


def batching(lines: list[str], exact: bool, batch_bytes: int, top: list[int]) -> dict[str, Any]:
    """The baseline: one engine against itself fed in batches of another size (what a
    service's batches are depends on how fast its files grow)."""
    global BATCH_BYTES
    section, known = configs(exact)
    config = section.engine_config()
    offsets = np.cumsum([len(x) for x in lines])
    end = START + float(offsets[-1]) / CHARS_PER_SECOND
    words = []
    saved = BATCH_BYTES
    try:
        for size in (saved, batch_bytes):
            BATCH_BYTES = size
            words.append(fed(config, known, lines, list(range(len(lines))), offsets)
                         .rescore(end).words)
    finally:
        BATCH_BYTES = saved
    return {"what": f"one service, batches of {fmt_bytes(batch_bytes)} (baseline)",
            "counter": "exact, no decay" if exact else "sketch, half-life 1h",
            **compare(words[0], words[1], top), "tables_equal": ""}


# --------------------------------------------------------------------------- cost


def write_shards(lines: list[str], n: int, root: Path) -> list[Path]:
    """The input dealt to ``n`` shards; each shard's state as a daemon snapshot."""
    base_cfg = Config().engine
    config = base_cfg.engine_config()
    offsets = np.cumsum([len(x) for x in lines])
    dirs = []
    for k in range(n):
        eng = fed(config, None, lines, list(range(k, len(lines), n)), offsets)
        eng.rescore(START + float(offsets[-1]) / CHARS_PER_SECOND)
        d = root / f"shard{k}"
        state = {"format": "streamer-daemon/1", "engine": eng.state_dict(), "sources": {}}
        path = snapshot.write_snapshot(d, state, fingerprint=config.fingerprint(),
                                       metadata={"lines_ingested": eng.lines_ingested})
        log(f"shard {k}: {eng.lines_ingested} lines, {fmt_bytes(path.stat().st_size)}")
        dirs.append(d)
        del eng
    return dirs


def vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def view_cost(python: str, dirs: list[Path], work: Path) -> dict[str, Any]:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "streamer", "run", "--state-dir", str(work / "state"),
           "--export-dir", str(work / "exports"), "--listen", f"127.0.0.1:{port}",
           "--log-level", "warning", *[a for d in dirs for a in ("--shard", str(d))]]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    with open(work / "view.log", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 600
        stats = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((work / "view.log").read_text()[-3000:])
            try:
                stats = get_json(port, "/stats")
                if stats.get("view", {}).get("merges", 0) >= 1 and stats.get("rescores"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert stats is not None
        return {"shards": len(dirs), "merge_seconds": stats["view"]["merge_seconds"],
                "lines": stats["lines_ingested"], "rss": vm(proc.pid, "VmRSS"),
                "peak_rss": vm(proc.pid, "VmHWM")}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_cache_python_args(ap)
    ap.add_argument("--input", type=Path, help="a text file instead of the reviews corpus")
    ap.add_argument("--shards", type=int, nargs="+", default=[3],
                    help="shard counts of the agreement measurement")
    ap.add_argument("--top", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--cost-shards", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--no-exact", action="store_true", help="skip the exact-counter runs")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    cache = args.cache.resolve()
    path = input_or_reviews(args.input, cache)
    lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    python = args.python or default_python()
    info = machine_info(python)
    rows = []
    view_min = Config().engine.min_count
    for exact in ([False] if args.no_exact else [False, True]):
        log(f"baseline: one service, other batches ({'exact' if exact else 'sketch'})")
        rows.append(batching(lines, exact, BATCH_BYTES // 4, args.top))
        for n in args.shards:
            for smc in sorted({view_min, max(2, round(view_min / n))}, reverse=True):
                log(f"agreement: {n} shards, shard min_count {smc}, "
                    f"{'exact' if exact else 'sketch'}")
                rows.append(agreement(lines, n, exact, smc, args.top))
    costs = []
    if args.cost_shards:
        with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
            dirs = write_shards(lines, max(args.cost_shards), Path(tmp))
            sizes = [snapshot.list_snapshots(d)[-1].stat().st_size for d in dirs]
            for n in args.cost_shards:
                log(f"cost: a view of {n} shard(s)")
                costs.append({**view_cost(python, dirs[:n], Path(tmp) / f"view{n}"),
                              "snapshot_bytes": sum(sizes[:n])})
    print(f"input: {path.name} ({fmt_bytes(os.path.getsize(path))}, {len(lines)} lines); "
          f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(machine_line(info))
    print(this_command())
    print()
    print(md_table(["compared with one service (1 MiB batches)", "counter", "words (one)",
                    "words (other)", *[f"top-{k} overlap" for k in args.top],
                    "whole lists: shared / either", "shared words, other count",
                    "median relative difference", "count tables equal"],
                   [[r["what"], r["counter"], r["words_one"], r["words_other"],
                     *[f"{r[f'top{k}']:.2f}" for k in args.top], f"{r['shared_either']:.4f}",
                     f"{r['other_count']} of {r['shared']}", f"{r['median_rel_diff']:.3f}",
                     r["tables_equal"]] for r in rows]))
    if costs:
        print()
        print(md_table(["shards", "snapshots on disk", "lines", "load + merge s",
                        "RSS after", "peak RSS"],
                       [[c["shards"], fmt_bytes(c["snapshot_bytes"]), c["lines"],
                         f"{c['merge_seconds']:.2f}", fmt_bytes(c["rss"]),
                         fmt_bytes(c["peak_rss"])] for c in costs]))
    if args.json:
        write_json_report(args.json, {"input": str(path), "machine": info,
                                      "agreement": rows, "cost": costs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
