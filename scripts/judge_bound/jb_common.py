"""Shared pieces of the judge-bound analysis (scripts/judge_bound/): options, paths, pools.

Not a script: imported by the other modules of this directory (which Python puts on
``sys.path`` when one of them is run). It makes ``scripts/bench_common.py`` importable as
``bc``, through which all benchmark data are read (``bc.load_all(cache)``).

Every intermediate file (discover runs, feature tables, model results) goes to the work
directory (``--work``, default ``judge_bound/`` in the cache directory, i.e.
``.bench-cache/judge_bound/``); a work directory inside the repository tree, other than
under ``.bench-cache/``, is refused.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_common as bc  # noqa: E402

REPO = bc.REPO
CORPORA = ("reviews", "pd")
# the candidate pools: `discover --known jieba/dict.txt --new-only` with these options
POOLS: dict[str, tuple[str, ...]] = {
    "default": (),
    "mc4": ("--min-count", "4"),
    "e0": ("--min-entropy", "0"),
    "mc4e0": ("--min-count", "4", "--min-entropy", "0"),
}
# the pools the table of docs/benchmarks.md is made from
TABLE_POOLS = ("default", "mc4e0")
KS = (20, 50, 100)


def other(corpus: str) -> str:
    """The other corpus of the pair (reviews <-> pd)."""
    return "pd" if corpus == "reviews" else "reviews"


def add_common_args(ap: argparse.ArgumentParser, pools: Sequence[str] = TABLE_POOLS) -> None:
    """The --cache, --work and --pools options of every script here."""
    ap.add_argument("--cache", type=Path, default=bc.DEFAULT_CACHE,
                    help="benchmark data cache (default: .bench-cache/ at the repo root)")
    ap.add_argument("--work", type=Path, default=None,
                    help="directory for intermediate files (default: CACHE/judge_bound/)")
    ap.add_argument("--pools", nargs="+", choices=list(POOLS), default=list(pools),
                    help=f"candidate pools (default: {' '.join(pools)})")


def work_dir(args: argparse.Namespace) -> Path:
    """The work directory of ``args`` (created); refuses one inside the repository tree."""
    work = (args.work if args.work is not None else args.cache / "judge_bound").resolve()
    repo = REPO.resolve()
    if work.is_relative_to(repo) and not work.is_relative_to(repo / ".bench-cache"):
        raise SystemExit(f"--work {work}: inside the repository tree; use a directory "
                         "under .bench-cache/ or outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    return work


def run_path(work: Path, corpus: str, pool: str) -> Path:
    """The discover output (jsonl) of one corpus and pool."""
    return work / "runs" / f"{corpus}_{pool}.jsonl"


def features_path(work: Path, corpus: str, pool: str) -> Path:
    """The feature table (pickle, see features.py) of one corpus and pool."""
    return work / f"features_{corpus}_{pool}.pkl"


def load_features(work: Path, corpus: str, pool: str) -> dict[str, Any]:
    """The feature table written by features.py."""
    path = features_path(work, corpus, pool)
    if not path.exists():
        raise SystemExit(f"{path} missing: run features.py (or run.py) for pool {pool}")
    with open(path, "rb") as fh:
        return pickle.load(fh)


def load_pair(work: Path, pool: str) -> dict[str, dict[str, Any]]:
    """The feature tables of both corpora for one pool, keyed by corpus."""
    return {c: load_features(work, c, pool) for c in CORPORA}


def single_thread() -> None:
    """One thread for BLAS and OpenMP (scikit-learn's HistGradientBoosting), as measured."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return
    threadpool_limits(1)


def pstr(p: Sequence[float], sep: str = "/") -> str:
    """p@20/50/100 as ``0.15/0.16/0.17``."""
    return sep.join(f"{x:.2f}" for x in p)


def run_seeded(argv: Sequence[str] | None, description: str,
               analyse: Any, report: Any, pools: Sequence[str] = TABLE_POOLS,
               default_seeds: int = 5) -> None:
    """The command line shared by the seeded analyses: parse the common options and
    --seeds, then print report(pool, analyse(features of both corpora, seeds)) for
    each pool."""
    ap = argparse.ArgumentParser(description=description)
    add_common_args(ap, pools=pools)
    ap.add_argument("--seeds", type=int, default=default_seeds,
                    help=f"CV repetitions (default {default_seeds})")
    args = ap.parse_args(argv)
    single_thread()
    work = work_dir(args)
    for pool in args.pools:
        print(report(pool, analyse(load_pair(work, pool), range(args.seeds))), flush=True)
