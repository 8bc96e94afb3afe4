"""The issue's reading of the target: function-word joins pushed down, so only lexical
CC-CEDICT words can fill the top K.

Label y_b = CC-CEDICT hit and not hand class (a) (classify_hits.HAND_A). Rankers fitted
to y_b (judge-using; LR C=0.1, HGB lr=0.05 leaves=15, RF 200 leaf=3 of models.py), with
the judge-free rule-(a) candidates demoted below everything; p@K counts (b) hits only.
For each: cross-corpus (fit on the other corpus), 5-fold CV (pooled out-of-fold ranking,
averaged over seeds, default 3) and in-sample (train = test). docs/benchmarks.md quotes
the best cross-corpus or CV p@50 of the default pools ("best fitted p@50 for them").

Reads WORK/features_<corpus>_<pool>.pkl (features.py). Needs scikit-learn and numpy.

Run, from the repository root, after features.py (normally through run.py)::

    OMP_NUM_THREADS=1 nice -n 10 /tmp/jb/bin/python scripts/judge_bound/lexical_target.py \\
        [--pools default mc4e0] [--seeds 3]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from classify_hits import HAND_A, rule_class
from jb_common import CORPORA, bc, other, pstr, run_seeded
from models import FIXED, fit_predict, models, p_at, rank_metrics
from sklearn.model_selection import StratifiedKFold

DEFAULT_SEEDS = 3


def analyse(D: dict[str, dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Per corpus: (b) hits, oracle, discover order demoted, and per model cross-corpus,
    CV and in-sample p@K (``D``: corpus -> features of one pool)."""
    warnings.filterwarnings("ignore")
    yb = {c: np.array([h and w not in HAND_A for w, h in zip(d["words"], d["y"], strict=True)],
                      dtype=int) for c, d in D.items()}
    M = models()
    res: dict[str, Any] = {}
    for c in CORPORA:
        d, o = D[c], D[other(c)]
        y = yb[c]
        dem = np.array([rule_class(w) == "a" for w in d["words"]], dtype=float)
        base = -np.arange(len(y), dtype=float) / len(y)
        rc: dict[str, Any] = {
            "n": int(len(y)), "hits_b": int(y.sum()), "hits_b_demoted": int((y * dem).sum()),
            "oracle": p_at(np.sort(y)[::-1]),
            "discover_demoted": rank_metrics(base - 2 * dem, y)["p"], "models": {}}
        for name in FIXED:
            bc.log(f"  lexical target {c} {d['run']}: {name}")
            cross = rank_metrics(fit_predict(M[name], o["X"], yb[other(c)], d["X"]) - 2 * dem,
                                 y)["p"]
            ms = []
            for seed in seeds:
                oof = np.zeros(len(y))
                skf = StratifiedKFold(5, shuffle=True, random_state=seed)
                for tr, te in skf.split(d["X"], y):
                    oof[te] = fit_predict(M[name], d["X"][tr], y[tr], d["X"][te])
                ms.append(rank_metrics(oof - 2 * dem, y)["p"])
            ins = rank_metrics(fit_predict(M[name], d["X"], y, d["X"]) - 2 * dem, y)["p"]
            rc["models"][name] = {"cross": cross, "cv": list(np.mean(ms, 0)), "in_sample": ins}
        rc["best_fitted_p50"] = max(max(m["cross"][1], m["cv"][1])
                                    for m in rc["models"].values())
        res[c] = rc
    return res


def report(pool: str, res: dict[str, Any]) -> str:
    out = []
    for c, rc in res.items():
        out.append(f"{pool} {c}: pool {rc['n']}, (b) hits {rc['hits_b']}, (b) hits among "
                   f"rule-(a) candidates {rc['hits_b_demoted']}; oracle p@20/50/100 "
                   f"{pstr(rc['oracle'])}")
        out.append(f"  discover order, rule-(a) demoted: {pstr(rc['discover_demoted'])}")
        for name, m in rc["models"].items():
            out.append(f"  {name:22s} cross-corpus {pstr(m['cross'])} | CV OOF {pstr(m['cv'])}"
                       f" | in-sample {pstr(m['in_sample'])}")
        out.append(f"  best fitted p@50 (cross-corpus or CV): {rc['best_fitted_p50']:.2f}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    run_seeded(argv, __doc__.splitlines()[0], analyse, report,
               default_seeds=DEFAULT_SEEDS)


if __name__ == "__main__":
    main()
