"""Speed and memory benchmark of ``streamer discover`` (EVALUATION.md metrics 3 and 4).

Usage, from the repository root::

    .venv/bin/python scripts/bench_speed.py                     # 50 MiB and 200 MiB inputs
    .venv/bin/python scripts/bench_speed.py --sizes 50 --repeat 3

* Inputs: People's Daily raw text + the reviews (the quality benchmark's corpora),
  concatenated and repeated (whole copies, then whole lines of one more copy) to just over
  SIZE MiB; written once to the cache directory (``speed_input_<SIZE>MiB.txt``).
* streamer: ``python -m streamer discover --no-progress -o /dev/null FILE`` at default
  settings (plus ``--extra-args``), run as a child process: wall time from process start
  to exit, peak RSS from ``os.wait4``, rate = Han characters of the input / wall time.
* Baseline, in the same run: a plain-Python exact ``collections.Counter`` of n-grams of
  orders 1..4 per clause of Han characters, in a child process of its own (so its peak RSS
  is its own). To keep the run short it counts a prefix (``--counter-mib``, default 10 MiB)
  of the smallest input; its rate is Han characters of that prefix / time spent reading,
  splitting and counting. The report says so, and gives the ratio streamer / Counter.
* The known lexicon (jieba's dict.txt, the default) is read through the cache of parsed
  lexicons (streamer.storage.lexicon_cache, where the environment puts it), warmed by one
  untimed load before the timed runs: what every run but the first after installing or
  changing a lexicon pays. ``--cold-lexicon`` times the first run instead (the children
  get STREAMER_NO_CACHE=1 and parse the file every time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

MIB = 2**20
TARGET_RATE = 3e6        # Han chars/s, end to end
TARGET_RATIO = 10.0      # x the plain-Python Counter
TARGET_RSS = 400 * 10**6  # bytes ("under 400 MB")


def build_input(data: bc.BenchData, size_mib: int) -> tuple[Path, int, int]:
    """(path, bytes, Han chars) of the corpora repeated to just over ``size_mib`` MiB.

    Whole copies of PD raw text + reviews, then the first lines of one more copy, up to
    the first line end at or past the target size.
    """
    base = data.pd_file.read_bytes() + data.reviews_file.read_bytes()
    target = size_mib * MIB
    copies, rest = divmod(target, len(base))
    tail = b""
    if rest:
        end = base.find(b"\n", rest - 1)
        tail = base[: end + 1] if end >= 0 else base
    size = copies * len(base) + len(tail)
    han = copies * bc.count_han(base.decode("utf-8")) + bc.count_han(tail.decode("utf-8"))
    path = data.cache / f"speed_input_{size_mib}MiB.txt"
    if not (path.exists() and path.stat().st_size == size):
        bc.log(f"writing {path} ({copies} copies of {len(base):,} bytes + {len(tail):,})")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for _ in range(copies):
                fh.write(base)
            fh.write(tail)
        tmp.replace(path)
    return path, size, han


# --------------------------------------------------------------------------- the baseline

HAN_RUN = re.compile(f"[{bc.HAN_CLASS}]+")


def counter_child(path: Path, prefix_bytes: int) -> int:
    """Child-process body: exact n-gram Counter of orders 1..4 over a prefix of ``path``.

    Straightforward plain Python: per clause (run of Han characters), for n in 1..4,
    counter.update(all slices of length n). Prints a JSON line with the figures.
    """
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        raw = fh.read(prefix_bytes)
    text = raw[: raw.rfind(b"\n") + 1].decode("utf-8")   # whole lines only
    counter: Counter[str] = Counter()
    han = 0
    for line in text.splitlines():
        for s in HAN_RUN.findall(line):
            han += len(s)
            for n in range(1, 5):
                counter.update(s[i:i + n] for i in range(len(s) - n + 1))
    seconds = time.perf_counter() - t0
    print(json.dumps({"bytes": len(text.encode("utf-8")), "han_chars": han,
                      "seconds": seconds, "distinct_ngrams": len(counter)}))
    return 0


# --------------------------------------------------------------------------- main

#: loads the default lexicon through the cache of the environment, which writes it when
#: missing or stale; prints where it is to stderr
WARM_LEXICON = (
    "import sys; from streamer.core.lexicon import DEFAULT_KNOWN, load_known, resolve_known; "
    "from streamer.storage.lexicon_cache import default_cache; c = default_cache(); "
    "load_known(DEFAULT_KNOWN, cache=c); "
    "print(c.file_for([resolve_known(k) for k in DEFAULT_KNOWN]) if c else "
    "'off (STREAMER_NO_CACHE)', file=sys.stderr)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="End-to-end speed and peak RSS of `streamer discover` on the benchmark "
                    "corpora repeated to 50 and 200 MiB, against a plain-Python n-gram "
                    "Counter, as a markdown report for docs/benchmarks.md.")
    bc.add_cache_python_args(ap)
    ap.add_argument("--sizes", default="50,200",
                    help="comma-separated input sizes in MiB (default 50,200)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of discover per input; the fastest is reported (default 1)")
    ap.add_argument("--extra-args", default="",
                    help='extra options for discover, e.g. "--memory 128MB"')
    ap.add_argument("--counter-mib", type=float, default=10.0,
                    help="prefix of the smallest input counted by the plain-Python Counter "
                         "(MiB, default 10; 0 skips the baseline)")
    ap.add_argument("--cold-lexicon", action="store_true",
                    help="no cache of parsed lexicons: every run parses the known lexicon, "
                         "as the first run after installing it does")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--counter-child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prefix-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.counter_child:
        return counter_child(args.counter_child, args.prefix_bytes)

    python = args.python or bc.default_python()
    sizes = sorted(int(x) for x in args.sizes.split(",") if x.strip())
    extra = shlex.split(args.extra_args)
    data = bc.load_all(args.cache)
    report: dict = {"command": bc.this_command(), "machine": bc.machine_info(python),
                    "streamer": [], "counter": None}
    failed = False

    inputs = [build_input(data, s) for s in sizes]
    env = dict(os.environ)
    if args.cold_lexicon:
        env["STREAMER_NO_CACHE"] = "1"
        report["lexicon"] = "cold: parsed by every run (STREAMER_NO_CACHE=1)"
    else:
        warm = [python, "-c", WARM_LEXICON]
        bc.log(f"[lexicon cache] {bc.display_cmd(warm)}")
        m = bc.run_measured(warm, env=env)
        if m.returncode != 0:
            bc.log(f"warming the lexicon cache failed:\n{m.stderr[-2000:]}")
            return 1
        report["lexicon"] = ("warm: read from the cache of parsed lexicons "
                             f"({m.stderr.strip()}), loaded once untimed before the runs")
    for (path, nbytes, han), size in zip(inputs, sizes, strict=True):
        cmd = [python, "-m", "streamer", "discover", "--no-progress", "-o", "/dev/null",
               *extra, str(path)]
        runs = []
        for i in range(args.repeat):
            bc.log(f"[{size} MiB, run {i + 1}/{args.repeat}] {bc.display_cmd(cmd)}")
            m = bc.run_measured(cmd, env=env)
            if m.returncode != 0:
                tail = "\n".join(m.stderr.strip().splitlines()[-15:])
                bc.log(f"discover failed with exit {m.returncode}:\n{tail}")
                failed = True
                break
            bc.log(f"  {m.wall:.2f} s wall, {m.cpu:.2f} s CPU, "
                   f"peak RSS {bc.fmt_bytes(m.max_rss)}")
            runs.append(m)
        row = {"size_mib": size, "bytes": nbytes, "han_chars": han,
               "command": bc.display_cmd(cmd), "ok": bool(runs) and len(runs) == args.repeat}
        if runs:
            best = min(runs, key=lambda r: r.wall)
            row.update(wall=best.wall, cpu=best.cpu, walls=[r.wall for r in runs],
                       median_wall=statistics.median(r.wall for r in runs),
                       max_rss=max(r.max_rss for r in runs), rate=han / best.wall)
        report["streamer"].append(row)

    if args.counter_mib > 0:
        path, _nbytes, _han = inputs[0]
        prefix = int(args.counter_mib * MIB)
        cmd = [python, str(Path(__file__).resolve()), "--counter-child", str(path),
               "--prefix-bytes", str(prefix)]
        bc.log(f"[Counter baseline] {bc.display_cmd(cmd)}")
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            m = bc.run_measured(cmd, stdout_path=out.name)
            result = Path(out.name).read_text().strip()
        if m.returncode != 0:
            bc.log(f"Counter baseline failed with exit {m.returncode}:\n{m.stderr[-2000:]}")
            failed = True
        else:
            c = json.loads(result)
            c.update(input=path.name, command=bc.display_cmd(cmd), wall=m.wall, cpu=m.cpu,
                     max_rss=m.max_rss, rate=c["han_chars"] / c["seconds"])
            bc.log(f"  {c['seconds']:.2f} s counting, peak RSS {bc.fmt_bytes(m.max_rss)}")
            report["counter"] = c

    print(render(report))
    if args.json:
        bc.write_json_report(args.json, report)
    return 1 if failed else 0


def render(report: dict) -> str:
    m = report["machine"]
    out = ["### Speed and memory: `streamer discover`", "",
           f"- command: `{report['command']}`",
           f"- date: {m['date']}",
           f"- machine: {bc.machine_line(m)}",
           "- input: People's Daily 1998-01 raw text + product reviews, concatenated and "
           "repeated to the size shown; rate = Han characters of the input / wall time "
           "from process start to exit; CPU = user + system time of the process (per CPU-s "
           "= Han characters / CPU time, a figure less sensitive to a busy machine); peak "
           "RSS from os.wait4 in a minimal measuring process",
           f"- known lexicon (default, jieba): {report.get('lexicon', '?')}", ""]
    rows = []
    for r in report["streamer"]:
        if "wall" in r:
            walls = (f"{r['wall']:.2f} s" if len(r["walls"]) == 1 else
                     f"{r['wall']:.2f} s (median {r['median_wall']:.2f} of {len(r['walls'])})")
            rows.append([f"{r['bytes'] / MIB:.1f} MiB", f"{r['han_chars'] / 1e6:.1f} M",
                         walls, f"{r['cpu']:.2f} s", f"{r['rate'] / 1e6:.2f} M/s",
                         f"{r['han_chars'] / r['cpu'] / 1e6:.2f} M/s",
                         bc.fmt_bytes(r["max_rss"]), f"`{r['command']}`"])
        else:
            rows.append([f"{r['bytes'] / MIB:.1f} MiB", f"{r['han_chars'] / 1e6:.1f} M",
                         "failed", "-", "-", "-", "-", f"`{r['command']}`"])
    c = report["counter"]
    if c:
        rows.append([f"{c['bytes'] / MIB:.1f} MiB prefix of {c['input']}",
                     f"{c['han_chars'] / 1e6:.1f} M", f"{c['seconds']:.2f} s (counting)",
                     f"{c['cpu']:.2f} s", f"{c['rate'] / 1e6:.2f} M/s",
                     f"{c['han_chars'] / c['cpu'] / 1e6:.2f} M/s", bc.fmt_bytes(c["max_rss"]),
                     f"plain-Python Counter, orders 1..4: `{c['command']}`"])
    out.append(bc.md_table(["input", "Han chars", "wall time", "CPU", "Han chars/s",
                            "per CPU-s", "peak RSS", "command"], rows))
    out.append("")
    ok = [r for r in report["streamer"] if "wall" in r]
    notes = []
    if ok:
        first = ok[0]
        notes.append(f"streamer on {first['size_mib']} MiB: {first['rate'] / 1e6:.2f} M Han "
                     f"chars/s (target >= {TARGET_RATE / 1e6:.0f} M/s)")
        if c:
            for r in ok:
                ratio = r["rate"] / c["rate"]
                cpu_ratio = (r["han_chars"] / r["cpu"]) / (c["han_chars"] / c["cpu"])
                notes.append(f"streamer on {r['size_mib']} MiB / plain-Python Counter: "
                             f"{ratio:.1f}x by wall time, {cpu_ratio:.1f}x by CPU time "
                             f"(target >= {TARGET_RATIO:.0f}x)")
            notes.append(f"the Counter was timed on a {c['bytes'] / MIB:.0f} MiB prefix of "
                         f"the same input to keep the run short, "
                         f"{c['distinct_ngrams']:,} distinct n-grams")
        peak = max(r["max_rss"] for r in ok)
        notes.append(f"peak RSS: {', '.join(bc.fmt_bytes(r['max_rss']) for r in ok)} "
                     f"(target < {TARGET_RSS / 1e6:.0f} MB = {bc.fmt_bytes(TARGET_RSS)} "
                     f"whatever the input size: "
                     f"{'met' if peak < TARGET_RSS else 'NOT met'})")
        if len(ok) >= 2:
            notes.append(f"RSS {ok[-1]['size_mib']} MiB / {ok[0]['size_mib']} MiB: "
                         f"{ok[-1]['max_rss'] / ok[0]['max_rss']:.2f}")
    elif c:
        notes.append(f"plain-Python Counter: {c['rate'] / 1e6:.2f} M Han chars/s on a "
                     f"{c['bytes'] / MIB:.0f} MiB prefix (streamer runs failed)")
    busy = [r for r in [*ok, c] if r and r["cpu"] < 0.8 * r["wall"]]
    if busy:
        notes.append("CPU time well below wall time: the machine was busy with other work "
                     "during this run, so the rates are pessimistic; re-run on an idle "
                     "machine for the record")
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
