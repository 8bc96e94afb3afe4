"""Step 3 of the judge-bound analysis: the new-word p@K reachable by rankers that are
fitted to the judge (CC-CEDICT), on the feature tables of features.py.

For one pool and each corpus (reviews, People's Daily):

* baseline: discover's own order; oracle: all hits first;
* cross-corpus: fit on the other corpus's pool, rank this corpus's whole pool (3 fixed
  settings, and the best of the 12 settings *chosen on the test corpus*: optimistic);
* 5-fold CV: stratified 5-fold, repeated over seeds (default 5); the out-of-fold
  probabilities rank the whole pool (pooled OOF ranking), averaged over seeds; also
  per-fold p@K of each fold's own ranking (with the fold's oracle);
* 5-fold CV with the other corpus added to every training fold (3 fixed settings);
* in-sample fit (train = test): memorisation, the capacity of the model class;
* the same rankings with the judge-free rule-(a) candidates (classify_hits.rule_class)
  demoted below everything;
* single-feature rankings (ascending and descending; ties broken by discover's order).

Models (scikit-learn, single thread): logistic regression (standardised features, L2,
C in 0.01 0.1 1 10, balanced or not), HistGradientBoosting (3 settings), RandomForest.
p@K: share of CC-CEDICT words among the first K (K = 20, 50, 100); AP, ROC AUC.

Reads WORK/features_<corpus>_<pool>.pkl; writes WORK/models_<pool>.json and prints the
report (markdown). Needs scikit-learn and numpy (a throwaway environment: see README.md).

Run, from the repository root, after features.py (normally through run.py)::

    OMP_NUM_THREADS=1 nice -n 10 /tmp/jb/bin/python scripts/judge_bound/models.py \\
        [--pools default mc4e0] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from classify_hits import rule_class
from jb_common import (
    CORPORA,
    KS,
    add_common_args,
    bc,
    load_pair,
    other,
    pstr,
    single_thread,
    work_dir,
)
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_SEEDS = 5
Maker = Callable[[], Any]
Metrics = dict[str, Any]   # {"p": [p@20, p@50, p@100], "ap": float, "auc": float}


def models() -> dict[str, Maker]:
    """The 12 model settings, name -> factory of an unfitted classifier."""
    m: dict[str, Maker] = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        for bal in (None, "balanced"):
            m[f"LR C={c:g}{' bal' if bal else ''}"] = lambda c=c, bal=bal: make_pipeline(
                StandardScaler(), LogisticRegression(C=c, class_weight=bal, max_iter=5000))
    for lr, leaves in ((0.05, 7), (0.05, 15), (0.1, 31)):
        m[f"HGB lr={lr} leaves={leaves}"] = lambda lr=lr, leaves=leaves: \
            HistGradientBoostingClassifier(learning_rate=lr, max_leaf_nodes=leaves,
                                           max_iter=200, min_samples_leaf=10,
                                           l2_regularization=1.0, random_state=0)
    m["RF 200 leaf=3"] = lambda: RandomForestClassifier(
        n_estimators=200, min_samples_leaf=3, max_features="sqrt", n_jobs=1, random_state=0)
    return m


FIXED = ("LR C=0.1", "HGB lr=0.05 leaves=15", "RF 200 leaf=3")


def p_at(order_y: np.ndarray) -> list[float]:
    """p@K of labels already in ranked order."""
    return [float(order_y[:k].sum()) / k for k in KS]


def rank_metrics(score: np.ndarray, y: np.ndarray,
                 tiebreak: np.ndarray | None = None) -> Metrics:
    """p@K of ranking by score desc (ties: tiebreak desc, i.e. discover order), AP, AUC."""
    if tiebreak is None:
        tiebreak = -np.arange(len(y), dtype=float)
    order = np.lexsort((-tiebreak, -score))
    return {"p": p_at(y[order]), "ap": float(average_precision_score(y, score)),
            "auc": float(roc_auc_score(y, score))}


def mean_metrics(ms: Sequence[Metrics]) -> Metrics:
    """Average of metrics over seeds."""
    return {"p": list(np.mean([m["p"] for m in ms], 0)),
            "ap": float(np.mean([m["ap"] for m in ms])),
            "auc": float(np.mean([m["auc"] for m in ms]))}


def fit_predict(make: Maker, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
    """Probability of the positive class for Xte, from a model fitted on (Xtr, ytr)."""
    mdl = make()
    mdl.fit(Xtr, ytr)
    return mdl.predict_proba(Xte)[:, 1]


def fmt(m: Metrics) -> str:
    return (f"{m['p'][0]:.2f} / {m['p'][1]:.2f} / {m['p'][2]:.2f} | {m['ap']:.3f} | "
            f"{m['auc']:.3f}")


def analyse_corpus(d: dict[str, Any], o: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """All rankings of one corpus's pool ``d`` (``o``: the other corpus's pool)."""
    M = models()
    X, y = d["X"], d["y"]
    demote = np.array([rule_class(w) == "a" for w in d["words"]], dtype=float)
    r: dict[str, Metrics] = {}
    r["baseline (discover order)"] = rank_metrics(-np.arange(len(y), dtype=float), y)
    r["oracle (all hits first)"] = {"p": p_at(np.sort(y)[::-1]), "ap": 1.0, "auc": 1.0}
    # cross-corpus
    cross: dict[str, Metrics] = {}
    cross_pred: dict[str, np.ndarray] = {}
    for name, make in M.items():
        bc.log(f"  {d['corpus']} {d['run']}: cross-corpus {name}")
        cross_pred[name] = fit_predict(make, o["X"], o["y"], X)
        cross[name] = rank_metrics(cross_pred[name], y)
    for name in FIXED:
        r[f"cross-corpus, {name}"] = cross[name]
    cross_best = max(cross, key=lambda k: cross[k]["p"][1])
    r[f"cross-corpus, best of {len(M)} settings on test p@50 ({cross_best})"] = cross[cross_best]
    # CV within corpus, pooled OOF ranking, averaged over seeds
    cv_pool: dict[str, Metrics] = {}
    cv_fold: dict[str, dict[str, list[float]]] = {}
    cv_dem: dict[str, Metrics] = {}
    for name, make in M.items():
        bc.log(f"  {d['corpus']} {d['run']}: 5-fold CV x {len(seeds)} seeds, {name}")
        ms, folds, dem = [], [], []
        for seed in seeds:
            oof = np.zeros(len(y))
            skf = StratifiedKFold(5, shuffle=True, random_state=seed)
            for tr, te in skf.split(X, y):
                oof[te] = fit_predict(make, X[tr], y[tr], X[te])
                fm = rank_metrics(oof[te], y[te], -te.astype(float))
                folds.append(fm["p"] + p_at(np.sort(y[te])[::-1]))
            ms.append(rank_metrics(oof, y))
            dem.append(rank_metrics(oof - 2 * demote, y))
        cv_dem[name] = mean_metrics(dem)
        cv_pool[name] = mean_metrics(ms)
        f = np.mean(folds, 0)
        cv_fold[name] = {"p": list(f[:3]), "oracle": list(f[3:])}
    for name in FIXED:
        r[f"5-fold CV (OOF pooled), {name}"] = cv_pool[name]
    cv_best = max(cv_pool, key=lambda k: cv_pool[k]["p"][1])
    r[f"5-fold CV (OOF pooled), best of {len(M)} settings ({cv_best})"] = cv_pool[cv_best]
    # CV with the other corpus added to every training fold
    for name in FIXED:
        bc.log(f"  {d['corpus']} {d['run']}: 5-fold CV + other corpus, {name}")
        ms = []
        for seed in seeds:
            oof = np.zeros(len(y))
            skf = StratifiedKFold(5, shuffle=True, random_state=seed)
            for tr, te in skf.split(X, y):
                Xtr = np.vstack([X[tr], o["X"]])
                ytr = np.concatenate([y[tr], o["y"]])
                oof[te] = fit_predict(M[name], Xtr, ytr, X[te])
            ms.append(rank_metrics(oof, y))
        r[f"5-fold CV, train += other corpus, {name}"] = mean_metrics(ms)
    # in-sample (train = test): capacity ceiling
    for name in ("LR C=1", "LR C=10", "HGB lr=0.05 leaves=15"):
        r[f"in-sample fit (train = test), {name}"] = rank_metrics(
            fit_predict(M[name], X, y, X), y)
    # rule-(a) demotion (judge-free): candidates with a function char go to the bottom
    base_score = -np.arange(len(y), dtype=float) / len(y)
    r["discover order, rule-(a) candidates demoted"] = rank_metrics(base_score - 2 * demote, y)
    for name in FIXED:
        r[f"cross-corpus {name}, rule-(a) demoted"] = rank_metrics(
            cross_pred[name] - 2 * demote, y)
    for name in FIXED:
        r[f"5-fold CV (OOF pooled) {name}, rule-(a) demoted"] = cv_dem[name]
    # single features
    single = []
    for j, fname in enumerate(d["names"]):
        for sign, lab in ((1, "desc"), (-1, "asc")):
            single.append((fname, lab, rank_metrics(sign * X[:, j], y),
                           rank_metrics(sign * o["X"][:, j], o["y"])))
    return {"rows": r, "cross": cross, "cross_best": cross_best, "cv": cv_pool,
            "cv_best": cv_best, "cv_fold": cv_fold, "n": int(len(y)), "hits": int(y.sum()),
            "demoted": int(demote.sum()), "demoted_hits": int((demote * y).sum()),
            "single": single, "seeds": list(seeds)}


def analyse_pool(D: dict[str, dict[str, Any]], seeds: Sequence[int],
                 corpora: Sequence[str] = CORPORA) -> dict[str, Any]:
    """:func:`analyse_corpus` for each corpus of one pool (``D``: corpus -> features)."""
    warnings.filterwarnings("ignore")
    return {c: analyse_corpus(D[c], D[other(c)], seeds) for c in corpora}


def report(D: dict[str, dict[str, Any]], pool: str, res: dict[str, Any]) -> str:
    """The markdown report of :func:`analyse_pool`."""
    out = [f"## run = {pool}", ""]
    for c, d in D.items():
        y = d["y"]
        out.append(f"{c}: pool {len(y)}, hits {int(y.sum())} ({y.mean():.3f})")
    M = list(models())
    for c, rc in res.items():
        out += ["", f"### {c} ({pool}): pool {rc['n']}, hits {rc['hits']}; rule-(a) candidates "
                f"{rc['demoted']} of which hits {rc['demoted_hits']}", ""]
        out.append("| ranking | p@20 / p@50 / p@100 | AP | AUC |\n|---|---|---|---|")
        out += [f"| {k} | {fmt(m)} |" for k, m in rc["rows"].items()]
        out += ["", "per-fold p@20/50/100 (fold's own ranking; fold oracle in brackets):"]
        for name in FIXED:
            f = rc["cv_fold"][name]
            out.append(f"  {name}: {pstr(f['p'])} [oracle {pstr(f['oracle'])}]")
        out += ["", "all settings, cross-corpus p@20/50/100 | CV OOF p@20/50/100:"]
        for name in M:
            a, b = rc["cross"][name], rc["cv"][name]
            out.append(f"  {name:24s} {pstr(a['p'])} AUC {a['auc']:.3f} | {pstr(b['p'])} "
                       f"AUC {b['auc']:.3f}")
        sf = sorted(rc["single"], key=lambda t: (-t[2]["p"][1], -t[2]["p"][0]))
        out += ["", f"single features on {c}, top 15 by p@50 (same direction on the other "
                "corpus):", "| feature | dir | p@20/50/100 | AUC | other corpus p@20/50/100 |",
                "|---|---|---|---|---|"]
        out += [f"| {fname} | {lab} | {pstr(m['p'])} | {m['auc']:.3f} | {pstr(mo['p'])} |"
                for fname, lab, m, mo in sf[:15]]
    return "\n".join(out)


def run_pool(work: Path, pool: str, seeds: Sequence[int],
             corpora: Sequence[str] = CORPORA) -> tuple[dict[str, Any], str]:
    """Analyse one pool, write WORK/models_<pool>.json; returns (results, report)."""
    D = load_pair(work, pool)
    res = analyse_pool(D, seeds, corpora)
    with open(work / f"models_{pool}.json", "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    return res, report(D, pool, res)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                    help=f"CV repetitions (default {DEFAULT_SEEDS})")
    ap.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA),
                    help="corpora to rank (default: both)")
    args = ap.parse_args(argv)
    single_thread()
    work = work_dir(args)
    for pool in args.pools:
        print(run_pool(work, pool, range(args.seeds), args.corpora)[1], flush=True)


if __name__ == "__main__":
    main()
