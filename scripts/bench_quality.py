"""Quality benchmark of ``streamer discover`` (EVALUATION.md metrics 1 and 2).

Usage, from the repository root::

    .venv/bin/python scripts/bench_quality.py                # streamer discover (sketch)
    .venv/bin/python scripts/bench_quality.py --reference    # plain-Python exact reference
    .venv/bin/python scripts/bench_quality.py --extra-args "--min-entropy 0.5"

1. Vocabulary precision / recall on People's Daily 1998-01 at min_count 8 and 32, default
   settings otherwise (sketch counting: no ``--exact``).
   precision = share of discovered words that are gold word types of the corpus;
   recall    = share of gold word types with gold count >= min_count that were discovered.
2. New-word precision@K, judged (K = 20, 50, 100) on the reviews and on People's Daily:
   the ranked output of ``discover --known jieba/dict.txt --new-only`` (default settings,
   min_count 8), first K words of two or more characters (Latin lower-cased, as the labels
   are), share labelled 1 in the judged labels (``--labels``, default
   ../shared/eval/labels-dev.json, then docs/labels/*.json of this repository). A word no
   label file has is unlabelled and counts as a miss; the report gives p@K with the dev
   labels alone and with all label files, how many of the first 50 are unlabelled, and
   lists them. ``--unlabelled-dir DIR`` writes them, with three contexts each from the
   corpus, to DIR/unlabelled-<corpus>.tsv (word<TAB>context1<TAB>context2<TAB>context3)
   for labelling.

Vocabulary: only words of two or more characters, all Han, are scored (on both sides:
discovered words and gold types). The report is a markdown table for docs/benchmarks.md;
``--json PATH`` also writes every figure as JSON.

``--reference`` replaces the CLI by :class:`Reference`, a small exact-count implementation
of the method in plain Python (DESIGN.md section 2). It is the "exact counts, plain Python"
row of EVALUATION.md and a check of the metric code; it understands the discover options
``--order --min-pmi --min-entropy --units --min-count`` given through ``--extra-args``.
Its defaults: order 4, min_pmi 2,4,6, units mixed, min_count 8 for the new-word runs, and
min_entropy 0 (no freedom filter, like the method as published; discover's default is 1.0:
``--extra-args "--min-entropy 1"`` reproduces that). It ranks by count.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

KS = (20, 50, 100)
SHOW_TOP = 50

# --------------------------------------------------------------------------- reference


@dataclass
class RefResult:
    words: list[tuple[str, int]]    # candidates, best (highest count) first
    cohesive: int                   # |G|
    pieces: int                     # distinct pieces after cutting
    seconds: float


class Reference:
    """The method of DESIGN.md section 2 with exact counts, in plain Python.

    * Text is NFKC-normalised (full-width digits/letters fold to ASCII) and cut into
      clauses: maximal runs of units. A unit is one Han character, or (units="mixed") a
      case-folded run of ASCII letters/digits. Everything else ends a clause.
    * Inside the reference each unit is one character of a str: ASCII runs are replaced by
      private-use code points, so n-grams of units are plain string slices.
    * Counts of all n-grams of orders 1..order per clause are exact (collections.Counter);
      N_total = number of units.
    * G = n-grams with n >= 2, count >= min_count and min-split PMI (natural log)
      >= min_pmi[n] (2, 4, 6 for n = 2, 3, 4; +2 per further order).
    * Cutting: the boundary between adjacent units is removed when an n-gram of G covers
      both; pieces are counted; candidates are pieces of >= 2 units with count >= min_count.
    * Back-check: candidates of 3..order units must be in G, longer ones must have every
      order-unit window in G.
    * Optional freedom filter: min(left, right) neighbour entropy (nats) of the candidate's
      occurrences as a piece >= min_entropy; a clause edge counts as one neighbour symbol.
    * Ranking: count, descending (then the word, for a stable order).
    """

    PUA_START = 0xF0000  # planes 15-16: 131,068 code points for distinct ASCII runs

    def __init__(self, lines: Iterable[str], order: int = 4, units: str = "mixed") -> None:
        if units not in ("han", "mixed"):
            raise ValueError("units must be 'han' or 'mixed'")
        t0 = time.perf_counter()
        self.order = order
        self.units = units
        self._code: dict[str, str] = {}
        self._decode: dict[str, str] = {}
        han = bc.HAN_CLASS
        unit = f"[{han}]|[a-z0-9]+" if units == "mixed" else f"[{han}]"
        self._clause_re = re.compile(f"(?:{unit})+")
        self._ascii_re = re.compile("[a-z0-9]+")
        self.clauses: list[str] = []
        for line in lines:
            text = unicodedata.normalize("NFKC", line)
            if units == "mixed":
                text = text.lower()
            for clause in self._clause_re.findall(text):
                if units == "mixed":
                    clause = self._ascii_re.sub(self._encode, clause)
                self.clauses.append(clause)
        self.counts: Counter[str] = Counter()
        for s in self.clauses:
            for n in range(1, order + 1):
                self.counts.update(s[i:i + n] for i in range(len(s) - n + 1))
        self.total = sum(len(s) for s in self.clauses)
        self.count_seconds = time.perf_counter() - t0

    def _encode(self, m: re.Match[str]) -> str:
        run = m.group()
        code = self._code.get(run)
        if code is None:
            cp = self.PUA_START + len(self._code)
            if cp > 0x10FFFD:
                raise OverflowError("too many distinct ASCII runs for the reference")
            code = chr(cp)
            self._code[run] = code
            self._decode[code] = run
        return code

    def decode(self, s: str) -> str:
        if not self._decode:
            return s
        return "".join(self._decode.get(ch, ch) for ch in s)

    def threshold(self, n: int, min_pmi: Sequence[float]) -> float:
        i = n - 2
        if i < len(min_pmi):
            return min_pmi[i]
        return min_pmi[-1] + 2.0 * (i - len(min_pmi) + 1)

    def cohesive(self, min_count: int, min_pmi: Sequence[float]) -> set[str]:
        counts, total = self.counts, self.total
        g = set()
        for w, c in counts.items():
            n = len(w)
            if n < 2 or c < min_count:
                continue
            th = self.threshold(n, min_pmi)
            if all(math.log(total * c / (counts[w[:k]] * counts[w[k:]])) >= th
                   for k in range(1, n)):
                g.add(w)
        return g

    def cut(self, s: str, g: set[str]) -> list[str]:
        """Pieces of clause ``s``: units stay joined when a member of G covers both."""
        size = len(s)
        joined = [False] * max(size - 1, 0)
        for i in range(size - 1):
            # the longest member of G starting at i covers every boundary a shorter one does
            for n in range(min(self.order, size - i), 1, -1):
                if s[i:i + n] in g:
                    for j in range(i, i + n - 1):
                        joined[j] = True
                    break
        pieces, start = [], 0
        for i, join in enumerate(joined):
            if not join:
                pieces.append(s[start:i + 1])
                start = i + 1
        pieces.append(s[start:])
        return pieces

    def back_check(self, w: str, g: set[str]) -> bool:
        n = len(w)
        if n == 2:
            return True
        if n <= self.order:
            return w in g
        k = self.order
        return all(w[i:i + k] in g for i in range(n - k + 1))

    def discover(self, min_count: int = 8, min_pmi: Sequence[float] = (2.0, 4.0, 6.0),
                 min_entropy: float = 0.0) -> RefResult:
        t0 = time.perf_counter()
        g = self.cohesive(min_count, min_pmi)
        cut_clauses = [self.cut(s, g) for s in self.clauses]
        piece_counts: Counter[str] = Counter()
        for pieces in cut_clauses:
            piece_counts.update(pieces)
        cands = {w: c for w, c in piece_counts.items()
                 if len(w) >= 2 and c >= min_count and self.back_check(w, g)}
        if min_entropy > 0:
            left: dict[str, Counter[str]] = {w: Counter() for w in cands}
            right: dict[str, Counter[str]] = {w: Counter() for w in cands}
            for pieces in cut_clauses:
                last = len(pieces) - 1
                for i, p in enumerate(pieces):
                    if p in cands:
                        left[p][pieces[i - 1][-1] if i > 0 else ""] += 1
                        right[p][pieces[i + 1][0] if i < last else ""] += 1
            cands = {w: c for w, c in cands.items()
                     if min(entropy(left[w]), entropy(right[w])) >= min_entropy}
        ranked = sorted(cands.items(), key=lambda wc: (-wc[1], wc[0]))
        words = [(self.decode(w), c) for w, c in ranked]
        return RefResult(words, len(g), len(piece_counts), time.perf_counter() - t0)


def entropy(counter: Counter[str]) -> float:
    total = sum(counter.values())
    return -sum(c / total * math.log(c / total) for c in counter.values()) if total else 0.0


def reference_options(extra: Sequence[str]) -> argparse.Namespace:
    """The discover options the reference understands, parsed from --extra-args."""
    p = argparse.ArgumentParser(prog="reference", add_help=False)
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--min-pmi", default="2,4,6")
    p.add_argument("--min-entropy", type=float, default=0.0)
    p.add_argument("--units", choices=("han", "mixed"), default="mixed")
    p.add_argument("--min-count", type=int, default=None)
    # accepted for symmetry with discover, no effect on exact plain-Python counting
    p.add_argument("--exact", action="store_true")
    p.add_argument("--memory", default=None)
    ns, unknown = p.parse_known_args(list(extra))
    if unknown:
        raise SystemExit(f"--reference does not understand: {' '.join(unknown)}")
    ns.min_pmi = tuple(float(x) for x in ns.min_pmi.split(","))
    return ns


# --------------------------------------------------------------------------- metrics


def vocabulary(words: Iterable[str], pd: bc.PeoplesDaily, min_count: int) -> dict:
    found = {w for w in words if bc.is_scored(w)}
    gold_all = set(pd.gold)
    target = pd.gold_types(min_count)
    hits = found & gold_all
    return {
        "min_count": min_count,
        "discovered": len(found),
        "discovered_in_gold": len(hits),
        "precision": len(hits) / len(found) if found else 0.0,
        "gold_types": len(target),
        "gold_found": len(target & found),
        "recall": len(target & found) / len(target) if target else 0.0,
    }


def judged_words(words: Iterable[str]) -> list[str]:
    """The words the judged lists score: two or more characters (Latin lower-cased)."""
    return [w.lower() for w in words if len(w) >= 2]


def precision_at(words: Sequence[str], labels: dict[str, int],
                 ks: Sequence[int] = KS) -> dict:
    """p@K: share of the first K words labelled 1 (unlabelled words count as misses, the
    denominator is always K)."""
    return {str(k): sum(labels.get(w, 0) for w in words[:k]) / k for k in ks}


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    label: str                       # the command (CLI) or a description (reference)
    words: list[tuple[str, int]]
    seconds: float
    max_rss: int | None = None


class Runner:
    """Produces ranked word lists, from the CLI or from the reference."""

    def __init__(self, args: argparse.Namespace, data: bc.BenchData) -> None:
        self.args = args
        self.data = data
        self.extra = shlex.split(args.extra_args or "")
        self._refs: dict[str, Reference] = {}
        self._ref_results: dict[tuple[str, int], RefResult] = {}
        if args.reference:
            self.ref_opts = reference_options(self.extra)

    def corpus_file(self, corpus: str) -> Path:
        if corpus == "manpages":
            assert self.args.held_out is not None
            return self.args.held_out
        return self.data.pd_file if corpus == "pd" else self.data.reviews_file

    def corpus_lines(self, corpus: str) -> list[str]:
        if corpus == "manpages":
            return self.corpus_file(corpus).read_text(encoding="utf-8").splitlines()
        return self.data.pd.lines if corpus == "pd" else self.data.reviews

    def run(self, corpus: str, min_count: int | None, known: bool) -> Run:
        """Ranked output on ``corpus``; with ``known``: --known jieba --new-only."""
        if self.args.reference:
            return self._run_reference(corpus, min_count, known)
        args = list(self.extra)
        if min_count is not None:
            args += ["--min-count", str(min_count)]
        if known:
            args += ["--known", str(self.data.known_file), "--new-only"]
        else:
            args += ["--no-known"]  # discover's default lexicon is jieba's
        label = bc.display_cmd(bc.discover_cmd([self.corpus_file(corpus)], args,
                                               python=self.args.python))
        bc.log(f"running {label}")
        r = bc.run_discover([self.corpus_file(corpus)], args, python=self.args.python)
        return Run(label, r.words, r.measured.wall, r.measured.max_rss)

    def _run_reference(self, corpus: str, min_count: int | None, known: bool) -> Run:
        o = self.ref_opts
        mc = min_count if min_count is not None else (o.min_count or 8)
        if corpus not in self._refs:
            lines = self.corpus_lines(corpus)
            bc.log(f"reference: counting {corpus} (order {o.order}, units {o.units})")
            self._refs[corpus] = Reference(lines, order=o.order, units=o.units)
        ref = self._refs[corpus]
        if (corpus, mc) not in self._ref_results:
            self._ref_results[corpus, mc] = ref.discover(mc, o.min_pmi, o.min_entropy)
        res = self._ref_results[corpus, mc]
        words = res.words
        if known:
            words = [(w, c) for w, c in words if w not in self.data.known]
        label = (f"reference {corpus} order={o.order} units={o.units} min_count={mc} "
                 f"min_pmi={','.join(f'{x:g}' for x in o.min_pmi)} "
                 f"min_entropy={o.min_entropy:g}{' known=jieba' if known else ''}")
        bc.log(f"{label}: |G|={res.cohesive} pieces={res.pieces} words={len(words)} "
               f"({ref.count_seconds:.1f}s counting, {res.seconds:.1f}s discovery)")
        return Run(label, words, ref.count_seconds + res.seconds)


CORPUS_NAMES = {"reviews": "reviews", "pd": "People's Daily",
                "manpages": "manpages (held out)"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Vocabulary precision/recall and new-word precision@K of "
                    "`streamer discover` (or of the plain-Python reference), as a "
                    "markdown report for docs/benchmarks.md.")
    bc.add_cache_python_args(ap)
    ap.add_argument("--min-count", default="8,32",
                    help="comma-separated min_count values for the vocabulary runs "
                         "(default 8,32)")
    ap.add_argument("--new-min-count", type=int, default=None,
                    help="min_count for the new-word runs (default: discover's own default; "
                         "8 for --reference)")
    ap.add_argument("--extra-args", default="",
                    help='extra options for every discover run, e.g. "--min-entropy 0.5"')
    ap.add_argument("--reference", action="store_true",
                    help="run the plain-Python exact-count reference instead of the CLI")
    ap.add_argument("--skip", default="",
                    help="comma-separated parts to skip: vocab, new")
    ap.add_argument("--show", type=int, default=SHOW_TOP,
                    help=f"how many new words to list per corpus (default {SHOW_TOP})")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--labels", type=Path, action="append", default=None,
                    help=f"judged label files, {{corpus: {{word: 0|1}}}} (repeatable; default "
                         f"{bc.DEV_LABELS} then {bc.PROJECT_LABELS}/*.json); the first is the "
                         f"dev set, reported alone too")
    ap.add_argument("--no-held-out", action="store_true",
                    help="skip the held-out corpus of another domain (Linux manual pages, "
                         "Debian's manpages-zh, fetched with apt-get download)")
    ap.add_argument("--unlabelled-dir", type=Path, default=None,
                    help="write the unlabelled words of the top 50, with contexts, to "
                         "DIR/unlabelled-<corpus>.tsv")
    args = ap.parse_args(argv)
    if args.labels is None:
        args.labels = bc.default_label_files()
    for path in args.labels:
        if not path.is_file():
            ap.error(f"--labels {path}: no such file")
    if args.unlabelled_dir is not None and not args.unlabelled_dir.is_dir():
        ap.error(f"--unlabelled-dir {args.unlabelled_dir}: no such directory")

    data = bc.load_all(args.cache)
    args.held_out = None if args.no_held_out else bc.load_manpages(args.cache.resolve())
    runner = Runner(args, data)
    try:
        report = measure(args, runner, data)
    except bc.DiscoverFailed as exc:
        bc.log(f"streamer discover failed: {exc}")
        return 1
    print(render(report, data, args.show))
    if args.json:
        bc.write_json_report(args.json, report)
    return 0


def measure(args: argparse.Namespace, runner: Runner, data: bc.BenchData) -> dict:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.reference:
        what = "plain-Python reference (exact counts)"
    else:
        counting = "exact counts" if "--exact" in runner.extra else "sketch counting"
        what = f"`streamer discover` ({counting})"
    if args.extra_args:
        what += f", extra options `{args.extra_args}`"
    report: dict = {"what": what, "command": bc.this_command(),
                    "machine": bc.machine_info(args.python), "vocabulary": [],
                    "new_words": []}

    # 1. vocabulary on People's Daily
    if "vocab" not in skip:
        for mc in (int(x) for x in args.min_count.split(",") if x.strip()):
            run = runner.run("pd", mc, known=False)
            m = vocabulary((w for w, _ in run.words), data.pd, mc)
            m.update(command=run.label, seconds=run.seconds, max_rss=run.max_rss)
            report["vocabulary"].append(m)

    # 2. new words, judged by the labels
    if "new" not in skip:
        dev = bc.load_labels(args.labels[:1])
        every = bc.load_labels(args.labels)
        report["labels"] = [str(p) for p in args.labels]
        corpora = ["reviews", "pd"] + (["manpages"] if args.held_out is not None else [])
        if args.held_out is not None:
            lines = runner.corpus_lines("manpages")
            report["held_out"] = {"name": bc.MANPAGES_DEB, "lines": len(lines),
                                  "chars": sum(map(len, lines)),
                                  "han": sum(map(bc.count_han, lines))}
        for corpus in corpora:
            a = runner.run(corpus, args.new_min_count, known=True)
            listed = judged_words(w for w, _ in a.words)
            counts = {w.lower(): c for w, c in a.words}
            labelled = every.get(corpus, {})
            unlabelled = [w for w in listed[:SHOW_TOP] if w not in labelled]
            if args.unlabelled_dir is not None:
                bc.write_unlabelled(args.unlabelled_dir / f"unlabelled-{corpus}.tsv",
                                    unlabelled, runner.corpus_lines(corpus))
            report["new_words"].append({
                "corpus": corpus,
                "command": a.label,
                "seconds": a.seconds,
                "max_rss": a.max_rss,
                "new_words": len(listed),
                "known_leaked": sum(w in data.known for w in listed),
                # the dev labels judge reviews and People's Daily only
                "p_at_dev": precision_at(listed, dev[corpus]) if corpus in dev else None,
                "p_at": precision_at(listed, labelled),
                "unlabelled_top50": unlabelled,
                "top": [{"word": w, "count": counts.get(w), "label": labelled.get(w)}
                        for w in listed[:max(args.show, max(KS))]],
            })
    return report


def render(report: dict, data: bc.BenchData, show: int) -> str:
    m = report["machine"]
    out = [f"### Quality: {report['what']}", "",
           f"- command: `{report['command']}`",
           f"- date: {m['date']}",
           f"- machine: {bc.machine_line(m)}",
           f"- data: People's Daily 1998-01 ({len(data.pd.lines):,} paragraphs, "
           f"{sum(map(len, data.pd.lines)):,} chars), reviews ({len(data.reviews):,} lines, "
           f"{sum(map(len, data.reviews)):,} chars), known = jieba dict.txt "
           f"({len(data.known):,} words)"]
    if report.get("held_out"):
        h = report["held_out"]
        out.append(f"- held-out domain: Linux manual pages, zh_CN pages of Debian's "
                   f"{h['name']} ({h['lines']:,} paragraphs, {h['chars']:,} chars, "
                   f"{h['han']:,} Han), new-word lists only; no dev labels exist for it")
    out.append("")
    if report["vocabulary"]:
        out += ["**Vocabulary, People's Daily** (precision: discovered words that are gold "
                "types; recall: gold types with gold count >= min_count that were "
                "discovered)", ""]
        rows = []
        for v in report["vocabulary"]:
            rss = bc.fmt_bytes(v["max_rss"]) if v["max_rss"] else "-"
            rows.append([v["min_count"], f"{v['precision']:.3f}", f"{v['recall']:.3f}",
                         f"{v['discovered_in_gold']:,} / {v['discovered']:,}",
                         f"{v['gold_found']:,} / {v['gold_types']:,}",
                         f"{v['seconds']:.1f} s", rss, f"`{v['command']}`"])
        out.append(bc.md_table(["min_count", "precision", "recall", "in gold / discovered",
                                "found / gold types", "time", "peak RSS", "command"], rows))
        out.append("")
    if report["new_words"]:
        names = ", ".join(Path(p).name for p in report["labels"])
        out += [f"**New words, judged** (ranked output of `--known jieba/dict.txt --new-only`, "
                f"words of >= 2 characters; p@K = share of the first K labelled 1, an "
                f"unlabelled word counts as a miss; labels: {names})", ""]
        rows = []
        for n in report["new_words"]:
            d, p = n["p_at_dev"], n["p_at"]
            rows.append([CORPUS_NAMES[n["corpus"]], f"{n['new_words']:,}",
                         " / ".join(f"{d[str(k)]:.2f}" for k in KS) if d else "-",
                         " / ".join(f"{p[str(k)]:.2f}" for k in KS),
                         len(n["unlabelled_top50"]), n["known_leaked"],
                         f"{n['seconds']:.1f} s", f"`{n['command']}`"])
        out.append(bc.md_table(
            ["corpus", "new words", "p@20/50/100, dev labels", "p@20/50/100, all labels",
             f"unlabelled in top {SHOW_TOP}", "known words leaked", "time", "command"], rows))
        out.append("")
        mark = {1: "**", 0: "~~", None: ""}
        for n in report["new_words"]:
            top = n["top"][:show]
            words = " · ".join(f"{mark[t['label']]}{t['word']}{mark[t['label']]}" for t in top)
            out += [f"Top {len(top)} new words, {CORPUS_NAMES[n['corpus']]} (**bold** = "
                    f"labelled a word, ~~struck~~ = labelled not a word, plain = unlabelled): "
                    f"{words}", "",
                    f"Unlabelled in the top {SHOW_TOP}: "
                    f"{' · '.join(n['unlabelled_top50']) or '-'}", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
