"""Crash benchmark: SIGKILL the service many times at random moments, compare with one run.

Usage, from the repository root::

    .venv/bin/python scripts/bench_crash.py                       # 50 kills, both counters
    .venv/bin/python scripts/bench_crash.py --kills 100 --seed 7 --files 60
    .venv/bin/python scripts/bench_crash.py --counter sketch --memory 16MB

The procedure is the one of tests/test_recovery.py (imported from there, so the test and
the benchmark cannot drift apart): a fixed corpus of ``--files`` complete files (30-90
lines each) is renamed into the watched directory in name order; a reference service reads
it without interruption; a second service is started ``--kills`` times and SIGKILLed at a
random moment each time (40% anywhere from the spawn on - interpreter start, snapshot
load, ingestion, snapshot write -, 40% after it has ingested a new batch, plus 0-0.4 s,
20% as soon as a snapshot write has begun), while the corpus files keep arriving; a
last start reads the rest and stops with SIGTERM.
The two final snapshots are compared table by table, bytewise (replay time, no decay; see
docs/recovery.md for why the batch sequence, and so every table, is the same).

Prints a markdown table per counter kind, the kills' landing statistics, the command, the
date and the machine. Exit status 1 if any compared table differs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import bench_common as bc  # noqa: E402
import test_recovery as tr  # noqa: E402

#: Compared parts of the engine state (state_dict keys), one table row each.
PARTS = {
    "lines, chars, units ingested": ("lines_ingested", "chars_ingested", "units_ingested",
                                     "total_units", "units_cut"),
    "n-gram counter": ("counter",),
    "unigram and cut-alone tables": ("unigrams", "alone"),
    "candidates (keys, texts, counts, first/last seen)": ("candidates",),
    "neighbour tables": ("neighbours",),
}


def compare(result: dict) -> list[tuple[str, bool, str]]:
    ref, got = result["reference"], result["crashed"]
    rows = []
    for label, keys in PARTS.items():
        diffs = [d for k in keys
                 for d in tr.state_differences(ref[k], got[k], k, tr.TIMING_DEPENDENT)]
        rows.append((label, not diffs, "; ".join(diffs)[:120]))
    ref_words, got_words = result["published"]
    rows.append(("published list (final rescore)", ref_words == got_words,
                 f"{len(got_words)} words"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="SIGKILLs (default 50)")
    ap.add_argument("--seed", type=int, default=20240505, help="corpus and kill RNG seed")
    ap.add_argument("--files", type=int, default=72,
                    help="corpus size in files of 30-90 lines (default 72, ~4300 lines)")
    ap.add_argument("--counter", choices=("exact", "sketch", "both"), default="both")
    ap.add_argument("--memory", default="16MB", help="memory budget of the sketch run")
    ap.add_argument("--keep", metavar="DIR", help="work here and keep the directories")
    args = ap.parse_args()
    if args.kills < 1 or args.files < 1:
        ap.error("--kills and --files must be positive")

    info = bc.machine_info(sys.executable)
    kinds = [("exact", True, "8MB"), ("sketch", False, args.memory)]
    kinds = [k for k in kinds if args.counter in (k[0], "both")]
    ok = True
    out = ["# Crash benchmark (scripts/bench_crash.py)", ""]
    for name, exact, memory in kinds:
        bc.log(f"{name}: {args.kills} kills over {args.files} files ...")
        if args.keep:
            work = contextlib.nullcontext(str(Path(args.keep) / f"{name}-{int(time.time())}"))
        else:
            work = tempfile.TemporaryDirectory(prefix="bench-crash-")
        with work as tmp:
            t0 = time.monotonic()
            result = tr.crash_experiment(Path(tmp), kills=args.kills, seed=args.seed,
                                         files=args.files, exact=exact, memory=memory)
            wall = time.monotonic() - t0
        rows = compare(result)
        ok = ok and all(same for _, same, _ in rows)
        recs = result["records"]
        restored = result["restored"]  # lines each run restored (None: nothing logged)
        # a kill whose next run restored fewer lines than the killed run had ingested:
        # work that had to be read and counted again
        redone = sum(1 for rec, nxt in zip(recs, restored[1:], strict=False)
                     if rec["lines_seen"] is not None and (nxt or 0) < rec["lines_seen"])
        out += [
            f"## {name} counter" + (f", memory {memory}" if not exact else ", memory 8MB"),
            "",
            bc.md_table(["kills", "lines", "files", "wall time"],
                        [[result["kills"], result["corpus_lines"], result["files"],
                          f"{wall:.1f} s"]]),
            "",
            bc.md_table(["compared with the uninterrupted run", "identical", "note"],
                        [[label, "yes" if same else "**NO**", note or ""]
                         for label, same, note in rows]),
            "",
            "Where the kills landed: "
            f"{sum(r['mode'] == 'anytime' for r in recs)} at a random time after the spawn "
            f"({sum(not r['serving'] for r in recs)} of them during start-up, before the "
            "service answered HTTP), "
            f"{sum(r['mode'] == 'ingesting' for r in recs)} after a new batch was ingested "
            f"({redone} of them lost ingested lines that the next run read again), "
            f"{sum(r['mode'] == 'writing' for r in recs)} as soon as a snapshot write began; "
            f"{sum(r['during_write'] for r in recs)} kills in all left the temporary file "
            "of an unfinished snapshot write; snapshots set aside as damaged: "
            f"{len(result['set_aside'])}.",
            "",
        ]
    out += [
        f"Command: `{bc.this_command()}`",
        "",
        f"Date: {info['date']}. Machine: {bc.machine_line(info)}.",
    ]
    print("\n".join(out))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
