"""Step 2 of the judge-bound analysis: a feature table per candidate pool.

For each scored (2+ Han characters) non-jieba candidate of a discover run
(WORK/runs/<corpus>_<pool>.jsonl, made by discover_pools.py), 117 features that do not
use the judge: discover's own fields (count, pmi, entropies, score, rank); corpus
statistics of the word's prefix, suffix, first and last character; candidate-pool
statistics of those characters; jieba's dict.txt (frequency and part of speech of the
first/last character, the best segmentation of the word by jieba's unigram language
model and its gain as one token, the longest jieba word inside it, jieba words containing
it); a hand list of function characters. The label is CC-CEDICT membership (the judge of
EVALUATION.md metric 2), used only as ``y``.

Writes WORK/features_<corpus>_<pool>.pkl: a dict with 'words' (discover's order), 'X'
(n x 117 float array), 'names' (feature names), 'y' (CC-CEDICT membership, 0/1),
'pool_all' (lines of discover's output), 'pool_scored_new' (n).

All data (corpus text, jieba's dict.txt, the CC-CEDICT headwords) are read through
scripts/bench_common.py (``bc.load_all``). Needs numpy.

Run, from the repository root, after discover_pools.py (normally through run.py)::

    /tmp/jb/bin/python scripts/judge_bound/features.py [--pools default mc4e0]
"""

from __future__ import annotations

import argparse
import math
import pickle
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jb_common import CORPORA, add_common_args, bc, features_path, run_path, work_dir

# a hand list of function / grammatical characters (knowledge, not the judge)
FUNC_CHARS = set("了的是不没很也都就还又到得着过一这那每另该较挺倒并在和与及或把被给让"
                 "从对向于以而且但却吗呢吧啊呀哦嘛么我你他她它们个些其此之有要会能可太最更"
                 "非再才只已将所为")


def load_jieba(text: str) -> tuple[dict[str, int], dict[str, str]]:
    """Frequency and part of speech of every word of jieba's dict.txt (``word freq pos``)."""
    freq: dict[str, int] = {}
    pos: dict[str, str] = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 2:
            freq[p[0]] = int(p[1])
            pos[p[0]] = p[2] if len(p) > 2 else "x"
    return freq, pos


class JiebaLM:
    """jieba's unigram LM: log P(w) = log(freq / total); best segmentation by DP,
    the same model as jieba.Tokenizer.calc (unknown single characters get freq 1)."""

    def __init__(self, freq: dict[str, int]) -> None:
        self.freq = freq
        self.total = sum(freq.values())
        self.logtotal = math.log(self.total)
        self.maxlen = max(len(w) for w in freq)

    def lp(self, w: str) -> float:
        return math.log(self.freq.get(w) or 1) - self.logtotal

    def best(self, s: str, allow_whole: bool = False,
             multi_only: bool = False) -> tuple[float, list[str]] | None:
        """Best segmentation of s by jieba's unigram LM. allow_whole=False: s itself may
        not be a token (all candidates are non-jieba anyway). multi_only: every piece must
        be a jieba word of 2+ chars (returns None if impossible)."""
        n = len(s)
        best: list[tuple[float, list[str]] | None] = [None] * (n + 1)
        best[0] = (0.0, [])
        for i in range(n):
            here = best[i]
            if here is None:
                continue
            for j in range(i + 1, min(n, i + self.maxlen) + 1):
                piece = s[i:j]
                if not allow_whole and i == 0 and j == n:
                    continue
                in_dict = piece in self.freq
                if multi_only:
                    if not in_dict or len(piece) < 2:
                        continue
                elif not in_dict and len(piece) > 1:
                    continue
                sc = here[0] + self.lp(piece)
                prev = best[j]
                if prev is None or sc > prev[0]:
                    best[j] = (sc, here[1] + [piece])
        return best[n]


def jieba_sub_index(freq: dict[str, int]) -> dict[str, Counter[str]]:
    """Counts over jieba words: first/last characters of 2+-char words ('start', 'end'),
    and proper substrings of 2..6 characters ('sub'), as prefix ('prefix'), as suffix
    ('suffix')."""
    sub: dict[str, Counter[str]] = {k: Counter() for k in
                                    ("sub", "prefix", "suffix", "start", "end")}
    for w in freq:
        if len(w) >= 2:
            sub["start"][w[0]] += 1
            sub["end"][w[-1]] += 1
        seen = set()
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + 6) + 1):
                s = w[i:j]
                if s != w and s not in seen:
                    seen.add(s)
                    sub["sub"][s] += 1
                    if i == 0:
                        sub["prefix"][s] += 1
                    if j == len(w):
                        sub["suffix"][s] += 1
    return sub


POS_CHAR = ("u", "d", "p", "c", "r", "m", "q", "y", "v", "a", "n", "f", "none")
POS_PIECE = ("u", "d", "p", "c", "r", "m", "q", "y", "v", "a", "n", "nr", "ns", "nz", "vn",
             "f", "none")


def build(corpus: str, pool: str, rows: list[dict[str, Any]], text: str, known: set[str],
          judge: set[str], freq: dict[str, int], pos: dict[str, str], lm: JiebaLM,
          sub_index: dict[str, Counter[str]]) -> dict[str, Any]:
    """The feature table of one discover run (``rows``: its jsonl records, ranked)."""
    n_chars = sum(1 for ch in text if bc.HAN_RE.match(ch))
    chars = Counter(ch for ch in text if bc.HAN_RE.match(ch))
    cand = [r for r in rows if bc.is_scored(r["word"]) and r["word"] not in known]
    words = [r["word"] for r in cand]
    # candidate-set statistics (no judge)
    first_ct = Counter(w[0] for w in words)
    last_ct = Counter(w[-1] for w in words)
    any_ct = Counter(ch for w in words for ch in set(w))
    wset = set(words)
    feats: list[dict[str, float]] = []
    for r in cand:
        w = r["word"]
        f: dict[str, float] = {}
        c = r["count"]
        f["log_count"] = math.log(c)
        f["pmi"] = r["pmi"]
        f["left_entropy"] = r["left_entropy"]
        f["right_entropy"] = r["right_entropy"]
        f["min_entropy"] = min(r["left_entropy"], r["right_entropy"])
        f["max_entropy"] = max(r["left_entropy"], r["right_entropy"])
        f["length"] = len(w)
        f["score"] = r["score"]
        f["discover_rank"] = -float(len(feats))  # higher = earlier in discover's output
        # substring counts in the corpus (non-overlapping str.count is fine for Han n-grams)
        pre, suf = w[:-1], w[1:]
        cpre = text.count(pre) if len(pre) > 1 else chars[pre]
        csuf = text.count(suf) if len(suf) > 1 else chars[suf]
        f["log_p_word_given_prefix"] = math.log(c / max(cpre, 1))
        f["log_p_word_given_suffix"] = math.log(c / max(csuf, 1))
        f["log_count_prefix"] = math.log(max(cpre, 1))
        f["log_count_suffix"] = math.log(max(csuf, 1))
        f["prefix_in_jieba"] = float(pre in freq and len(pre) > 1)
        f["suffix_in_jieba"] = float(suf in freq and len(suf) > 1)
        f["prefix_is_candidate"] = float(pre in wset)
        f["suffix_is_candidate"] = float(suf in wset)
        f["n_candidates_containing"] = float(sum(1 for x in wset if w in x and x != w)) \
            if len(w) <= 3 else 0.0
        for tag, ch in (("first", w[0]), ("last", w[-1])):
            f[f"{tag}_log_corpus_freq"] = math.log(chars[ch] + 1)
            f[f"{tag}_log_p_word_given_char"] = math.log(c / max(chars[ch], 1))
            f[f"{tag}_n_cand_start"] = math.log1p(first_ct[ch])
            f[f"{tag}_n_cand_end"] = math.log1p(last_ct[ch])
            f[f"{tag}_n_cand_any"] = math.log1p(any_ct[ch])
            f[f"{tag}_is_jieba_word"] = float(ch in freq)
            f[f"{tag}_log_jieba_freq"] = math.log1p(freq.get(ch, 0))
            f[f"{tag}_n_jieba_words_with_char_here"] = math.log1p(
                sub_index["start" if tag == "first" else "end"].get(ch, 0))
            f[f"{tag}_is_func_char"] = float(ch in FUNC_CHARS)
            p = pos.get(ch, "none")
            for t in POS_CHAR:
                f[f"{tag}_char_pos_{t}"] = float(p == t or (t == "n" and p in ("ng", "nr", "ns")))
        f["n_func_chars"] = float(sum(ch in FUNC_CHARS for ch in w))
        f["func_frac"] = f["n_func_chars"] / len(w)
        # jieba segmentation
        b = lm.best(w)
        assert b is not None  # single characters are always allowed
        m = lm.best(w, multi_only=True)
        pieces = b[1]
        f["seg_n_pieces"] = float(len(pieces))
        f["seg_n_single"] = float(sum(len(x) == 1 for x in pieces))
        f["seg_all_multi"] = float(all(len(x) > 1 for x in pieces))
        f["splits_into_multi_jieba_words"] = float(m is not None)
        f["seg_logprob"] = b[0]
        f["seg_logprob_per_char"] = b[0] / len(w)
        # "one token" probability of the word, from its corpus frequency, on jieba's scale
        f["one_token_logprob_corpus"] = math.log(c / n_chars)
        f["lm_gain_one_token"] = f["one_token_logprob_corpus"] - b[0]
        f["seg_max_piece_len"] = float(max(len(x) for x in pieces))
        f["seg_first_piece_len"] = float(len(pieces[0]))
        f["seg_last_piece_len"] = float(len(pieces[-1]))
        f["seg_min_piece_logfreq"] = min(math.log1p(freq.get(x, 0)) for x in pieces)
        f["seg_max_piece_logfreq"] = max(math.log1p(freq.get(x, 0)) for x in pieces)
        for tag, piece in (("firstpiece", pieces[0]), ("lastpiece", pieces[-1])):
            p = pos.get(piece, "none")
            for t in POS_PIECE:
                f[f"{tag}_pos_{t}"] = float(p == t)
        # longest jieba word (2+ chars) inside w, and whether w is inside a jieba word
        longest = 0
        for i in range(len(w)):
            for j in range(i + 2, len(w) + 1):
                if w[i:j] != w and w[i:j] in freq:
                    longest = max(longest, j - i)
        f["longest_jieba_sub"] = float(longest)
        f["longest_jieba_sub_frac"] = longest / len(w)
        f["log_n_jieba_words_containing"] = math.log1p(sub_index["sub"].get(w, 0))
        f["log_n_jieba_words_prefixed"] = math.log1p(sub_index["prefix"].get(w, 0))
        f["log_n_jieba_words_suffixed"] = math.log1p(sub_index["suffix"].get(w, 0))
        f["is_reduplication"] = float(len(set(w)) < len(w))
        feats.append(f)
    names = list(feats[0])
    X = np.array([[f[k] for k in names] for f in feats], dtype=float)
    y = np.array([w in judge for w in words], dtype=int)
    return {"corpus": corpus, "run": pool, "words": words, "X": X, "names": names, "y": y,
            "pool_all": len(rows), "pool_scored_new": len(words)}


def build_all(data: bc.BenchData, work: Path, pools: Sequence[str]) -> list[str]:
    """Write WORK/features_<corpus>_<pool>.pkl for every corpus and pool; summary lines."""
    freq, pos = load_jieba(data.known_file.read_text(encoding="utf-8"))
    lm = JiebaLM(freq)
    sub = jieba_sub_index(freq)
    texts = {"reviews": data.reviews_file.read_text(encoding="utf-8"),
             "pd": data.pd_file.read_text(encoding="utf-8")}
    lines = []
    for corpus in CORPORA:
        for pool in pools:
            rows = bc.parse_jsonl(run_path(work, corpus, pool).read_text(encoding="utf-8"))
            d = build(corpus, pool, rows, texts[corpus], data.known, data.judge, freq, pos,
                      lm, sub)
            with open(features_path(work, corpus, pool), "wb") as fh:
                pickle.dump(d, fh)
            line = (f"{corpus} {pool}: output {d['pool_all']}, scored non-jieba "
                    f"{d['pool_scored_new']}, CEDICT hits {int(d['y'].sum())}, "
                    f"{len(d['names'])} features")
            bc.log(line)
            lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    args = ap.parse_args(argv)
    build_all(bc.load_all(args.cache), work_dir(args), args.pools)


if __name__ == "__main__":
    main()
