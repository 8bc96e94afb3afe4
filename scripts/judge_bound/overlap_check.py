"""Overlap of the two corpora's candidate pools, and what it does to the best honest
setting.

Words in both pools let a judge-fitted model memorise CC-CEDICT labels across corpora.
This counts the shared words (and shared hits), then ranks each corpus by 5-fold CV with
the other corpus's pool added to every training fold (HGB lr=0.05 leaves=15 of
models.py), once with the whole other pool and once with the shared words removed from
it, per seed (default 5) with mean and standard deviation; and cross-corpus with the
shared words removed from training. docs/benchmarks.md quotes the mean of "shared words
removed" on the pools mc4e0 ("bigger pools ..., other corpus added to training, shared
words removed").

Reads WORK/features_<corpus>_<pool>.pkl (features.py). Needs scikit-learn and numpy.

Run, from the repository root, after features.py (normally through run.py)::

    OMP_NUM_THREADS=1 nice -n 10 /tmp/jb/bin/python scripts/judge_bound/overlap_check.py \\
        [--pools mc4e0] [--seeds 5]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from jb_common import CORPORA, bc, other, pstr, run_seeded
from models import fit_predict, models, rank_metrics
from sklearn.model_selection import StratifiedKFold

DEFAULT_SEEDS = 5
MODEL = "HGB lr=0.05 leaves=15"
VARIANTS = ("other corpus, all", "other corpus, shared words removed")


def hits_of(d: dict[str, Any]) -> set[str]:
    return {w for w, h in zip(d["words"], d["y"], strict=True) if h}


def analyse(D: dict[str, dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Shared words and the CV / cross-corpus p@K with and without them in training."""
    warnings.filterwarnings("ignore")
    shared = set(D["reviews"]["words"]) & set(D["pd"]["words"])
    judge_hits = hits_of(D["reviews"]) | hits_of(D["pd"])
    res: dict[str, Any] = {"shared": len(shared), "shared_hits": len(shared & judge_hits)}
    make = models()[MODEL]
    for c in CORPORA:
        d, o = D[c], D[other(c)]
        rc: dict[str, Any] = {"hits": int(d["y"].sum()),
                              "hits_shared": len(shared & hits_of(d))}
        keep = np.array([w not in shared for w in o["words"]])
        for label, Xo, yo in ((VARIANTS[0], o["X"], o["y"]),
                              (VARIANTS[1], o["X"][keep], o["y"][keep])):
            bc.log(f"  overlap check {c} {d['run']}: CV + {label}")
            per_seed = []
            for seed in seeds:
                oof = np.zeros(len(d["y"]))
                skf = StratifiedKFold(5, shuffle=True, random_state=seed)
                for tr, te in skf.split(d["X"], d["y"]):
                    oof[te] = fit_predict(make, np.vstack([d["X"][tr], Xo]),
                                          np.concatenate([d["y"][tr], yo]), d["X"][te])
                per_seed.append(rank_metrics(oof, d["y"])["p"])
            a = np.array(per_seed)
            rc[label] = {"per_seed": per_seed, "mean": list(a.mean(0)), "sd": list(a.std(0))}
        rc["cross_shared_removed"] = rank_metrics(
            fit_predict(make, o["X"][keep], o["y"][keep], d["X"]), d["y"])["p"]
        res[c] = rc
    return res


def report(pool: str, res: dict[str, Any]) -> str:
    out = [f"{pool}: shared words {res['shared']}, of which CEDICT hits {res['shared_hits']}"]
    for c in CORPORA:
        out.append(f"  {c}: hits {res[c]['hits']}, hits also in the other pool "
                   f"{res[c]['hits_shared']}")
    for c in CORPORA:
        for label in VARIANTS:
            v = res[c][label]
            out.append(f"  {c}, CV + {label}: p@20/50/100 per seed "
                       + "  ".join(pstr(p) for p in v["per_seed"])
                       + f"  | mean {pstr(v['mean'])} sd {pstr(v['sd'])}")
        out.append(f"  {c}, cross-corpus HGB, shared words removed from training: "
                   f"{pstr(res[c]['cross_shared_removed'])}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    run_seeded(argv, __doc__.splitlines()[0], analyse, report, pools=("mc4e0",),
               default_seeds=DEFAULT_SEEDS)


if __name__ == "__main__":
    main()
