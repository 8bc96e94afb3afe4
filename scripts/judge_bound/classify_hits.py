"""The CC-CEDICT hits of each candidate pool, split into (a) function-word or grammatical
joins and (b) lexical words, and the p@K ceiling left by the (b) hits alone.

Two classifications:

* rule (judge-free, also used to demote candidates in models.py and lexical_target.py):
  (a) if the word contains one of the function characters
  了的是不没很也都就还又到得着过一这那每另该较挺倒并, or is a 2-character verb +
  directional / resultative complement (last character in 完上下去来起住掉), else (b);
* hand: the analyst's labels, word by word (HAND_A below); everything else is (b).

Reads WORK/features_<corpus>_<pool>.pkl (features.py). Prints the hit lists of the pools
default and mc4e0 and a markdown table over all pools given. Standard library only (the
pickles hold numpy arrays, so numpy must be installed to read them).

Run, from the repository root, after features.py (normally through run.py)::

    /tmp/jb/bin/python scripts/judge_bound/classify_hits.py [--pools default mc4e0]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jb_common import CORPORA, KS, add_common_args, load_features, work_dir

RULE_FUNC = set("了的是不没很也都就还又到得着过一这那每另该较挺倒并")
COMPLEMENT_LAST = set("完上下去来起住掉")

# hand labels: (a) = function-word or grammatical join: a function word / degree or
# negation adverb / pronoun / preposition / aspect particle / locative (中 上) / numeral
# joined to a word, a verb + complement (找不到 吃完 爬上), or a discourse phrase
# (话说 老实说 谁知道). Everything not listed is (b): names, terms, nouns, lexicalised
# verbs and adjectives, including compounds that carry a function character lexically
# (到账 到付 单一货币 二十一世纪 每日新闻 求是 破败不堪 负一层 吉之岛).
HAND_A = set("""
一定要 万人 不佳 不动摇 不平凡 不愿 不清 不舍 为例 为己任 以此为 倒是 值得信赖 倾向于 偏高
冒着 几年来 凭什么 分之 别无 别看 到了 又一次 另一 另有 只限于 史上 吃完 向北 向西 告之
在此 均可 坏了 天哪 奉上 如火 如画 孩子们 完了 对美 将会 将至 尤其是 岂不 并不 得了 得很
循着 心目中 忙着 怎么说呢 怎能 急着 想睡 成了 打不通 找不到 抹去 挺好 掉下 插上 无意中 有新意
梦中 每个人 没办法 浮上 煞是 照做 爬上 睡得着 稍等 老实说 自己动手 莫属 试着 话说 请看
谁知道 跌至 跳过 躺下 较好 达不到 这厮 这就 都会 闯过 颇多
""".split())

# pools whose hit lists are printed word by word
LIST_POOLS = ("default", "mc4e0")


def rule_class(w: str) -> str:
    """'a' (function-word / grammatical join) or 'b', by the judge-free rule."""
    if any(ch in RULE_FUNC for ch in w):
        return "a"
    if len(w) == 2 and w[-1] in COMPLEMENT_LAST:
        return "a"
    return "b"


def hand_class(w: str) -> str:
    """'a' or 'b', by the hand labels."""
    return "a" if w in HAND_A else "b"


CLASSIFIERS: dict[str, Callable[[str], str]] = {"rule": rule_class, "hand": hand_class}


def classify(d: dict[str, Any]) -> dict[str, Any]:
    """Hits of one feature table by class, with the ceilings of p@K."""
    hits = [w for w, h in zip(d["words"], d["y"], strict=True) if h]
    res: dict[str, Any] = {"corpus": d["corpus"], "pool": d["run"], "n": len(d["words"]),
                           "hits": hits, "oracle": [min(k, len(hits)) / k for k in KS]}
    for name, cls in CLASSIFIERS.items():
        a = [w for w in hits if cls(w) == "a"]
        b = [w for w in hits if cls(w) == "b"]
        res[name] = {"a": a, "b": b, "ceiling_b": [min(k, len(b)) / k for k in KS]}
    return res


def classify_all(work: Path, pools: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`classify` for every corpus and pool."""
    return [classify(load_features(work, corpus, pool)) for corpus in CORPORA for pool in pools]


def report(results: Sequence[dict[str, Any]]) -> str:
    """Hit lists (pools default and mc4e0) and the markdown table."""
    out = []
    for r in results:
        if r["pool"] not in LIST_POOLS:
            continue
        for name in CLASSIFIERS:
            for k in ("a", "b"):
                ws = r[name][k]
                out.append(f"{r['corpus']} {r['pool']} [{name}] ({k}) {len(ws)}: {' '.join(ws)}")
            out.append("")
    out.append("| corpus | run | pool | hits | rule (a) | rule (b) | rule-(b) ceiling "
               "p@20/50/100 | hand (a) | hand (b) | hand-(b) ceiling p@20/50/100 | oracle "
               "(all hits) p@20/50/100 |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ru, ha = r["rule"], r["hand"]
        cells = [r["corpus"], r["pool"], r["n"], len(r["hits"]), len(ru["a"]), len(ru["b"]),
                 "/".join(f"{x:.2f}" for x in ru["ceiling_b"]), len(ha["a"]), len(ha["b"]),
                 "/".join(f"{x:.2f}" for x in ha["ceiling_b"]),
                 "/".join(f"{x:.2f}" for x in r["oracle"])]
        out.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    args = ap.parse_args(argv)
    print(report(classify_all(work_dir(args), args.pools)))


if __name__ == "__main__":
    main()
