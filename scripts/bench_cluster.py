"""`discover --workers N` against the one-process run: agreement of the ranked lists and time.

Usage, from the repository root (needs the dask extra: ``pip install -e '.[dask]'``)::

    .venv/bin/python scripts/bench_cluster.py --cache /work/bench-cache
    .venv/bin/python scripts/bench_cluster.py --cache /work/bench-cache --input FILE --no-exact

Runs ``streamer discover`` on the reviews corpus (or ``--input``) four ways: one process
and ``--workers N``, each with the default count-min sketch and with ``--exact``. Reports:

* top-K overlap = |top K of one process  ∩  top K of N workers| / K, with sketches (the
  summed conservative-update sketches overestimate more than one sketch: service/cluster.py)
  and with exact counters (must be 1, and the files byte for byte equal); the same for
  the whole lists (shared words / words in either), and how many shared words were given
  another count;
* each sketch list's top-K overlap with the exact list of the same run, for scale;
* wall and CPU seconds of each run (CPU and peak RSS are the command's process tree as
  os.wait4 reports them: the RSS is the largest single process, not the sum of workers).

The report is a markdown table for docs/benchmarks.md; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import tempfile
from pathlib import Path

from bench_common import (
    add_cache_python_args,
    discover_cmd,
    fmt_bytes,
    input_or_reviews,
    log,
    machine_info,
    machine_line,
    md_table,
    parse_tsv,
    run_measured,
    this_command,
    write_json_report,
)


def overlap(a: list[str], b: list[str], k: int) -> float:
    return len(set(a[:k]) & set(b[:k])) / max(min(k, len(a), len(b)), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_cache_python_args(ap)
    ap.add_argument("--input", type=Path, help="a text file instead of the reviews corpus")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--top", type=int, default=100, help="K of the top-K overlap")
    ap.add_argument("--no-exact", action="store_true", help="skip the --exact runs")
    ap.add_argument("--extra-args", default="", help="more discover options, quoted")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    cache = args.cache.resolve()
    path = input_or_reviews(args.input, cache)
    extra = shlex.split(args.extra_args)
    modes = [("sketch", [])] + ([] if args.no_exact else [("exact", ["--exact"])])
    runs: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for mode, flags in modes:
            for workers in (1, args.workers):
                out = Path(tmp) / f"{mode}-{workers}.tsv"
                more = [] if workers == 1 else ["--workers", str(workers)]
                cmd = discover_cmd([path], [*flags, *more, *extra], output=out,
                                   python=args.python)
                log(f"running {shlex.join(cmd)}")
                m = run_measured(cmd)
                if m.returncode != 0:
                    print(m.stderr, file=sys.stderr)
                    return 1
                data = out.read_bytes()
                listed = parse_tsv(data.decode("utf-8"))
                runs[(mode, workers)] = {
                    "words": [w for w, _ in listed], "counts": dict(listed),
                    "sha256": hashlib.sha256(data).hexdigest(), "wall": m.wall,
                    "cpu": m.cpu, "max_rss": m.max_rss,
                }
    k, n = args.top, args.workers
    rows = []
    for mode, _ in modes:
        one, many = runs[(mode, 1)], runs[(mode, n)]
        vs_exact = ""
        if ("exact", 1) in runs and mode == "sketch":
            ex = runs[("exact", 1)]["words"]
            vs_exact = (f"{overlap(one['words'], ex, k):.2f} / "
                        f"{overlap(many['words'], ex, k):.2f}")
        both = one["counts"].keys() & many["counts"].keys()
        either = one["counts"].keys() | many["counts"].keys()
        recount = sum(one["counts"][w] != many["counts"][w] for w in both)
        rows.append([mode, len(one["words"]), len(many["words"]),
                     f"{overlap(one['words'], many['words'], k):.2f}",
                     f"{len(both) / max(len(either), 1):.4f}", recount,
                     "yes" if one["sha256"] == many["sha256"] else "no", vs_exact,
                     f"{one['wall']:.1f} / {many['wall']:.1f}",
                     f"{one['cpu']:.1f} / {many['cpu']:.1f}",
                     f"{fmt_bytes(one['max_rss'])} / {fmt_bytes(many['max_rss'])}"])
    info = machine_info(args.python)
    print(f"input: {path.name} ({fmt_bytes(os.path.getsize(path))}); workers: {n}; "
          f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(machine_line(info))
    print(this_command())
    print()
    print(md_table(["counter", "words (1)", f"words ({n})", f"top-{k} overlap 1 vs {n}",
                    "whole lists: shared / either", "shared words, other count", "same file",
                    f"top-{k} overlap with exact (1 / {n})", "wall s (1 / n)",
                    "CPU s (1 / n)", "peak RSS (1 / n)"], rows))
    if args.json:
        write_json_report(args.json, {"input": str(path), "workers": n, "top": k,
                                      "machine": info, "runs": {
                                          f"{m}-{w}": {kk: v for kk, v in r.items()
                                                       if kk not in ("words", "counts")}
                                          for (m, w), r in runs.items()},
                                      "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
