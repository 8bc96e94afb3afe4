"""One command for the judge-bound analysis of docs/benchmarks.md ("Is the target
reachable at all?"): how high new-word p@K can get for rankers that are *allowed to use*
the judge (CC-CEDICT) labels.

Reproduce the table, from the repository root (throwaway environment with scikit-learn:
see scripts/judge_bound/README.md; ``discover`` itself runs in .venv)::

    python -m venv /tmp/jb && /tmp/jb/bin/pip install scikit-learn numpy
    OMP_NUM_THREADS=1 nice -n 10 /tmp/jb/bin/python scripts/judge_bound/run.py

(about 13 minutes of one core, 5.5 of them for the default pools). ``--quick`` (=
``--pools default --seeds 1``, about 1.5 minutes) checks the pipeline: its CV rows differ
a little from the 5-seed figures and the "bigger pools" row is not computed.

Steps: discover_pools.py (``streamer discover --known jieba --new-only`` for each corpus
and pool, into WORK/runs/), features.py (117 judge-free features per candidate,
WORK/features_*.pkl), models.py (12 model settings: cross-corpus, 5-fold CV, in-sample,
...), classify_hits.py (function-word joins among the hits), lexical_target.py (lexical
hits only), overlap_check.py (shared words of the two pools). Prints every report and,
last, the table of docs/benchmarks.md and the figures its text quotes; the whole output
is also written to WORK/report.md.

Options: --pools (default: default mc4e0, the pools of the table), --seeds N (CV
repetitions for every step; default: 5 for models.py and overlap_check.py, 3 for
lexical_target.py, as in the docs), --runs-from DIR (take the discover runs
<corpus>_<pool>.jsonl from DIR instead of running discover), --cache (benchmark data,
default .bench-cache/), --work (intermediate files, default .bench-cache/judge_bound/;
never the repository tree), --python (interpreter for ``-m streamer``, default .venv).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import classify_hits
import features
import lexical_target
import models
import overlap_check
from discover_pools import discover_pools
from jb_common import CORPORA, TABLE_POOLS, add_common_args, bc, load_pair, single_thread, work_dir

PSEP = " / "


def _p(p: Sequence[float] | None) -> str:
    return "n/a" if p is None else PSEP.join(f"{x:.2f}" for x in p)


def docs_table(model_res: dict[str, Any], overlap_res: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md ("Is the target reachable at all?")."""
    default = model_res.get("default")
    mc4e0 = overlap_res.get("mc4e0")

    def from_default(pick: Callable[[dict[str, Any]], Sequence[float]]) \
            -> Callable[[str], Sequence[float] | None]:
        return lambda c: pick(default[c]) if default else None

    rows: list[tuple[str, Callable[[str], Sequence[float] | None]]] = [
        ("discover's order",
         from_default(lambda r: r["rows"]["baseline (discover order)"]["p"])),
        ("fitted on the other corpus, best of 12 model settings (chosen on the test set)",
         from_default(lambda r: r["cross"][r["cross_best"]]["p"])),
        ("5-fold cross-validation within the corpus, best of 12",
         from_default(lambda r: r["cv"][r["cv_best"]]["p"])),
        ("bigger pools (min_count 4, min_entropy 0), other corpus added to training, shared "
         "words removed",
         lambda c: mc4e0[c][overlap_check.VARIANTS[1]]["mean"] if mc4e0 else None),
        ("fitted on the test labels themselves (memorisation, not a ranking)",
         from_default(lambda r: r["rows"]["in-sample fit (train = test), LR C=10"]["p"])),
    ]
    out = ["| ranking (p@20 / p@50 / p@100) | reviews | People's Daily |", "|---|---|---|"]
    out += [f"| {label} | {_p(get('reviews'))} | {_p(get('pd'))} |" for label, get in rows]
    return "\n".join(out)


def text_figures(model_res: dict[str, Any], hits: Sequence[dict[str, Any]],
                 lexical_res: dict[str, Any]) -> str:
    """The figures of the paragraph under the table (default pools)."""
    if "default" not in model_res:
        return "(pool default not run)"
    cls = {r["corpus"]: r for r in hits if r["pool"] == "default"}
    out = []
    a = {c: f"{len(cls[c]['hand']['a'])} of {len(cls[c]['hits'])}" for c in CORPORA}
    out.append(f"- hits that are function-word or grammatical joins (hand class (a)): "
               f"{a['reviews']} (reviews), {a['pd']} (People's Daily)")
    pd = model_res["default"]["pd"]["rows"]
    out.append("- discover-order p@50 on People's Daily, rule-(a) candidates demoted: "
               f"{pd['baseline (discover order)']['p'][1]:.2f} -> "
               f"{pd['discover order, rule-(a) candidates demoted']['p'][1]:.2f}")
    b, n = len(cls["pd"]["hand"]["b"]), cls["pd"]["n"]
    out.append(f"- lexical hits (hand class (b)) on People's Daily: {b}, {100 * b / n:.1f}% "
               f"of the pool of {n}")
    lex = lexical_res["default"]
    lo, hi = sorted(lex[c]["best_fitted_p50"] for c in CORPORA)
    out.append(f"- best fitted p@50 for the lexical hits (lexical_target.py): {lo:.2f}-{hi:.2f}"
               f" (reviews {lex['reviews']['best_fitted_p50']:.2f}, People's Daily "
               f"{lex['pd']['best_fitted_p50']:.2f})")
    return "\n".join(out)


class Report:
    """Prints sections and keeps them for WORK/report.md."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def __call__(self, text: str) -> None:
        print(text + "\n", flush=True)
        self.parts.append(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, pools=TABLE_POOLS)
    ap.add_argument("--python", default=None,
                    help="interpreter that runs `-m streamer` (default: .venv/bin/python)")
    ap.add_argument("--runs-from", type=Path, default=None,
                    help="take the discover runs <corpus>_<pool>.jsonl from this directory")
    ap.add_argument("--seeds", type=int, default=None,
                    help="CV repetitions for every step (default: 5, lexical_target 3)")
    ap.add_argument("--quick", action="store_true",
                    help="only the default pools, one CV seed")
    args = ap.parse_args(argv)
    if args.quick:
        args.pools = ["default"]
        args.seeds = 1 if args.seeds is None else args.seeds
    single_thread()
    t0 = time.perf_counter()
    work = work_dir(args)
    pools = list(dict.fromkeys(args.pools))

    def seeds(default: int) -> range:
        return range(default if args.seeds is None else args.seeds)

    rep = Report()
    rep(f"# Judge-bound analysis\n\ncommand: {bc.this_command()}\n"
        f"machine: {bc.machine_line(bc.machine_info(args.python))}\n"
        f"scikit-learn {_sklearn_version()}; pools {' '.join(pools)}; work directory {work}")
    data = bc.load_all(args.cache)
    bc.log(f"discover: pools {' '.join(pools)}")
    discover_pools(data, work, pools, python=args.python, runs_from=args.runs_from)
    bc.log("features")
    rep("## Feature tables\n\n" + "\n".join(features.build_all(data, work, pools)))

    model_res: dict[str, Any] = {}
    for pool in pools:
        bc.log(f"models: pool {pool}")
        model_res[pool], text = models.run_pool(work, pool, seeds(models.DEFAULT_SEEDS))
        rep(f"# models.py (CV seeds: {len(seeds(models.DEFAULT_SEEDS))})\n\n{text}")
    hits = classify_hits.classify_all(work, pools)
    rep("# classify_hits.py\n\n" + classify_hits.report(hits))
    lexical_res: dict[str, Any] = {}
    for pool in pools:
        bc.log(f"lexical target: pool {pool}")
        lexical_res[pool] = lexical_target.analyse(load_pair(work, pool),
                                                   seeds(lexical_target.DEFAULT_SEEDS))
        rep(f"# lexical_target.py (CV seeds: {len(seeds(lexical_target.DEFAULT_SEEDS))})\n\n"
            + lexical_target.report(pool, lexical_res[pool]))
    overlap_res: dict[str, Any] = {}
    for pool in pools:
        if pool == "default":
            continue   # the table uses the bigger pools
        bc.log(f"overlap check: pool {pool}")
        overlap_res[pool] = overlap_check.analyse(load_pair(work, pool),
                                                  seeds(overlap_check.DEFAULT_SEEDS))
        rep(f"# overlap_check.py (CV seeds: {len(seeds(overlap_check.DEFAULT_SEEDS))})\n\n"
            + overlap_check.report(pool, overlap_res[pool]))

    rep("# Table of docs/benchmarks.md (\"Is the target reachable at all?\")\n\n"
        + docs_table(model_res, overlap_res)
        + "\n\nFigures quoted in the text under it (default pools):\n\n"
        + text_figures(model_res, hits, lexical_res)
        + f"\n\n(wall time {time.perf_counter() - t0:.0f} s)")
    (work / "report.md").write_text("\n\n".join(rep.parts) + "\n", encoding="utf-8")
    bc.log(f"wrote {work / 'report.md'}")
    return 0


def _sklearn_version() -> str:
    import sklearn
    return sklearn.__version__


if __name__ == "__main__":
    sys.exit(main())
