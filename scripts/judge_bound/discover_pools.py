"""Step 1 of the judge-bound analysis: the candidate pools, from ``streamer discover``.

For each corpus (reviews, People's Daily) and each pool, runs::

    .venv/bin/python -m streamer discover --no-progress --format jsonl -o WORK/runs/C_P.jsonl \\
        --known CACHE/jieba/dict.txt --new-only [POOL OPTIONS] CACHE/<corpus raw text>

with the pool options default: none; mc4: --min-count 4; e0: --min-entropy 0; mc4e0:
--min-count 4 --min-entropy 0. The corpora and jieba's dict.txt come from
scripts/bench_common.py (``bc.load_all``), which downloads them into the cache on first
use. ``discover`` runs in the project's environment (``--python``, default .venv/bin/python),
so this script itself needs only the standard library.

``--runs-from DIR`` copies existing ``C_P.jsonl`` runs from DIR instead of running
discover (to redo the analysis on the exact pools of an earlier revision).

Run, from the repository root (normally through run.py)::

    .venv/bin/python scripts/judge_bound/discover_pools.py [--pools default mc4e0]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from jb_common import CORPORA, POOLS, REPO, add_common_args, bc, run_path, work_dir


def corpus_files(data: bc.BenchData) -> dict[str, Path]:
    """The raw text file of each corpus (what discover reads and features.py counts in)."""
    return {"reviews": data.reviews_file, "pd": data.pd_file}


def discover_pools(data: bc.BenchData, work: Path, pools: Sequence[str], *,
                   python: str | None = None, runs_from: Path | None = None) -> None:
    """Write WORK/runs/<corpus>_<pool>.jsonl for every corpus and pool."""
    files = corpus_files(data)
    for corpus in CORPORA:
        for pool in pools:
            out = run_path(work, corpus, pool)
            out.parent.mkdir(parents=True, exist_ok=True)
            if runs_from is not None:
                src = runs_from / out.name
                shutil.copyfile(src, out)
                bc.log(f"pool {corpus} {pool}: copied {src}")
                continue
            args = ["--known", str(data.known_file), "--new-only", *POOLS[pool]]
            cmd = bc.discover_cmd([files[corpus]], args, fmt="jsonl", output=out,
                                  python=python)
            bc.log(f"pool {corpus} {pool}: {bc.display_cmd(cmd)}")
            subprocess.run(cmd, check=True, cwd=REPO, stdin=subprocess.DEVNULL)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--python", default=None,
                    help="interpreter that runs `-m streamer` (default: .venv/bin/python)")
    ap.add_argument("--runs-from", type=Path, default=None,
                    help="copy the runs C_P.jsonl from this directory instead of running "
                         "discover")
    args = ap.parse_args(argv)
    work = work_dir(args)
    discover_pools(bc.load_all(args.cache), work, args.pools, python=args.python,
                   runs_from=args.runs_from)


if __name__ == "__main__":
    main()
