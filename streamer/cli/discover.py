"""`streamer discover`: one-shot discovery over files, the engine's batch mode.

Two passes over the input: the first counts n-grams, the second cuts every clause
with the final counts and counts pieces and neighbours. Standard input is spooled
to a temporary file during the first pass so it can be read twice. Memory is the
engine's budget plus one block of text (batch_reader.BLOCK) in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import stat
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from streamer.cli.main import UsageError
from streamer.core.engine import CutBatch, EncodedBatch, Engine, EngineConfig
from streamer.core.engine_config import SettingError
from streamer.core.lexicon import (
    DEFAULT_KNOWN,
    NAMED_LEXICONS,
    Lexicon,
    LexiconError,
    load_known,
    resolve_known,
)
from streamer.core.results import Word
from streamer.core.segmentation import min_pmi_for
from streamer.input.batch_reader import (
    Decoded,
    ReadStats,
    decode_block,
    decode_text,
    iter_raw_blocks,
)
from streamer.storage.atomic import atomic_write
from streamer.storage.lexicon_cache import default_cache

T = TypeVar("T")
FORMATS = ("tsv", "jsonl", "csv", "jieba")
BATCH_FIELDS = ("word", "count", "score", "pmi", "left_entropy", "right_entropy", "known")
DEFAULTS = EngineConfig()

def parse_pmi(text: str) -> tuple[float, ...]:
    """'2,4,6' -> (2.0, 4.0, 6.0): thresholds for orders 2, 3, 4 (nats)."""
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--min-pmi takes comma-separated numbers, not {text!r}") from None
    if not vals:
        raise ValueError("--min-pmi needs at least one number")
    return vals


def register(sub: Any) -> None:
    p = sub.add_parser(
        "discover", help="discover words in files (batch)",
        description="Discover new words in text files. Prints word<TAB>count, best first.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="input files; - for stdin")
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    p.add_argument("--format", choices=FORMATS, default="tsv",
                   help="tsv: word<TAB>count; jsonl/csv: all score fields; "
                        "jieba: 'word count' lines for jieba.load_userdict")
    p.add_argument("--order", type=int, default=DEFAULTS.order, help="longest n-gram, units")
    p.add_argument("--min-count", type=int, default=DEFAULTS.min_count,
                   help="minimum count of a word and of a cohesive n-gram")
    p.add_argument("--min-pmi", default=",".join(f"{x:g}" for x in DEFAULTS.thresholds()),
                   help="pmi thresholds for orders 2,3,4,... in nats (missing orders continue "
                        "+2 per order)")
    p.add_argument("--bound-share", type=float, default=DEFAULTS.bound_share,
                   help="with a known lexicon, keep a piece of 3..order units whose weak "
                        "splits have their rarer side inside it in at least this share of "
                        "its uses (0 = off)")
    p.add_argument("--min-entropy", type=float, default=DEFAULTS.min_entropy,
                   help="minimum left and right neighbour entropy, nats")
    known = p.add_mutually_exclusive_group()
    known.add_argument("--known", action="append", default=argparse.SUPPRESS,
                       metavar="PATH|NAME",
                       help="known lexicon: a file, one word per line (extra columns "
                            "ignored), or a name: " + ", ".join(NAMED_LEXICONS) + ". "
                            "Repeatable; the values given replace the default "
                            f"(default: {' '.join(DEFAULT_KNOWN)})")
    known.add_argument("--no-known", action="store_true",
                       help="no known lexicon: every word found counts as new")
    p.add_argument("--new-only", action="store_true", help="omit words in the known lexicons")
    p.add_argument("--top", type=int, metavar="K", help="only the best K words")
    p.add_argument("--exact", action="store_true",
                   help="exact n-gram counts (memory grows with the input)")
    p.add_argument("--memory", default="256MB",
                   help="memory budget for counting state (sketch and tables)")
    p.add_argument("--units", choices=("han", "mixed"), default=DEFAULTS.units,
                   help="mixed: Han characters and ASCII letter/digit runs; han: Han only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--save-state", metavar="PATH",
                   help="also write the engine state as a snapshot (seeds `streamer run`)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="count in N worker processes on this machine (a Dask "
                            "LocalCluster; needs streamer[dask]); each holds --memory")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="count on an existing Dask cluster (needs streamer[dask]; the "
                            "input paths must be readable on every worker)")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> EngineConfig:
    # imported here: the service's configuration module costs ~35 ms of start-up, and
    # discover needs only this one parser from it
    from streamer.service.config import parse_size

    try:
        try:
            memory = parse_size(args.memory)
        except ValueError as exc:
            raise ValueError(f"--memory {exc}") from None
        min_pmi = tuple(min_pmi_for(max(args.order, 2), parse_pmi(args.min_pmi)))
        if args.top is not None and args.top < 1:
            raise ValueError("--top must be at least 1")
        # no example contexts: the batch formats do not carry them, and a context
        # for each of hundreds of thousands of candidates is memory for nothing
        return EngineConfig(order=args.order, min_count=args.min_count, min_pmi=min_pmi,
                            bound_share=args.bound_share, min_entropy=args.min_entropy,
                            units=args.units, memory=memory, exact=args.exact, examples=0,
                            prefault=False, background_updates=True)
    except SettingError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')} {exc.problem}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_inputs(files: list[str]) -> None:
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be given only once")
    for f in files:
        if f == "-":
            continue
        path = Path(f)
        if not path.exists():
            raise UsageError(f"{f}: no such file")
        if path.is_dir():
            raise UsageError(f"{f}: is a directory")
        if not path.is_file():
            continue  # a pipe or device: opening it here could block or consume it
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise UsageError(f"{f}: cannot read: {exc.strerror}") from None


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class _Progress:
    """tqdm over the bytes of both passes, with characters/s; only when stderr is a
    terminal (and not with --no-progress)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = None
        self.chars = 0
        self.started = time.perf_counter()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="discover",
                            file=sys.stderr, dynamic_ncols=True)

    def update(self, done_bytes: int, chars: int, desc: str) -> None:
        """``done_bytes``: bytes read so far over both passes; ``chars``: this block's."""
        if self.bar is not None:
            self.chars += chars
            rate = self.chars / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_description(desc, refresh=False)
            self.bar.set_postfix_str(f"{rate / 1e6:.2f}M chars/s", refresh=False)
            self.bar.update(done_bytes - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _passes(files: list[str], spool_dir: str) -> tuple[list[str], Iterator[BinaryIO]]:
    """Paths for the second pass, and the binary streams of the first pass."""
    paths: list[str] = []

    def first() -> Iterator[BinaryIO]:
        for i, f in enumerate(files):
            if f == "-" or not _regular(f):
                # stdin, pipes, FIFOs, devices: read once, so spool for the second pass
                spool = os.path.join(spool_dir, f"spool-{i}")
                paths.append(spool)
                with open(spool, "wb") as out:
                    if f == "-":
                        yield _Tee(sys.stdin.buffer, out)  # type: ignore[misc]
                    else:
                        with open(f, "rb") as src:
                            yield _Tee(src, out)  # type: ignore[misc]
            else:
                paths.append(f)
                with open(f, "rb") as fh:
                    yield fh

    return paths, first()


class _Tee:
    """A read-only stream that copies what it reads to another file (stdin spool)."""

    def __init__(self, src: BinaryIO, copy: IO[bytes]) -> None:
        self.src, self.copy = src, copy

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.copy.write(data)
        return data


def discover(files: list[str], config: EngineConfig,
             known: Lexicon | Callable[[], Lexicon | None] | None = None,
             progress: bool = False) -> tuple[Engine, ReadStats]:
    """Run both passes over the files; returns the engine (rescored) and reader stats.

    *known* may be a function that loads the lexicon: it is called after the passes, when
    the blocks in flight are gone, so that the lexicon (jieba's: ~43 MiB of Python strings)
    is not resident while they run (loaded before them, it raised the peak RSS of a 50 MiB
    input to 396 MiB; docs/benchmarks.md)."""
    total = None
    if all(_regular(f) for f in files if f != "-") and "-" not in files:
        total = 2 * sum(os.path.getsize(f) for f in files)
    bar = _Progress(total, progress)
    started = time.time()  # first_seen/last_seen of a batch run: when it ran
    engine = Engine(config, None if callable(known) else known)
    stats = ReadStats()
    with tempfile.TemporaryDirectory(prefix="streamer-") as tmp, \
            ThreadPoolExecutor(max_workers=THREADS) as pool:
        paths, streams = _passes(files, tmp)
        first = (raw for name, stream in zip(files, streams, strict=False)
                 for raw in _blocks_named(name, stream, stats))

        def encode_block(raw: tuple[bytes, int]) -> tuple[EncodedBatch, Decoded]:
            d = decode_block(*raw)
            return engine.encode_batch([d.text]), d

        # pass 1: blocks are decoded and encoded ahead in worker threads; counting
        # stays in this thread, in input order (the counters have a single writer),
        # and the sketch updates run behind it in one more thread, in the same order
        # (background_updates): this thread only hands work on, and the update (the
        # largest cost of the pass) and the encoding share the two cores
        for p, d in _ahead(pool, encode_block, first):
            d.count_into(stats)
            engine.count_batch(p)
            bar.update(stats.bytes, p.n_chars, "counting")
        second = ReadStats()
        blocks = (raw for path in paths for raw in _read_path(path, second))

        def cut(raw: tuple[bytes, int]) -> CutBatch:
            return engine.cut_batch(engine.encode_batch([decode_text(*raw)], count=False))

        # pass 2: the counters are now read-only, so whole blocks are cut in worker
        # threads; recording pieces stays in this thread, in input order
        for c in _ahead(pool, cut, blocks):
            engine.record_cut(c, started)
            bar.update(stats.bytes + second.bytes, c.n_chars, "cutting")
    bar.close()
    engine.lines_ingested = stats.lines
    if callable(known):
        engine.set_known(known())
    engine.rescore(started)
    return engine, stats


THREADS = 2  # the target machine has 2 cores; numpy releases the GIL in the heavy steps


def _blocks_named(name: str, stream: BinaryIO,
                  stats: ReadStats) -> Iterator[tuple[bytes, int]]:
    with _naming("<stdin>" if name == "-" else name):
        yield from iter_raw_blocks(stream, stats)


def _read_path(path: str, stats: ReadStats) -> Iterator[tuple[bytes, int]]:
    with _naming(path), open(path, "rb") as fh:
        yield from iter_raw_blocks(fh, stats)


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Give a read error the name of the file it happened in."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[Any], T], items: Iterable[Any],
           depth: int = 2 * THREADS) -> Iterator[T]:
    """fn over items in the pool, results in input order, at most ``depth`` in flight
    (so memory stays at a few blocks whatever the input size). Two blocks a worker
    keep both cores busy for a few MB each; docs/decisions.md has the measurements."""
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    _check_inputs(args.files)
    values = [] if args.no_known else getattr(args, "known", list(DEFAULT_KNOWN))
    try:
        paths = [resolve_known(v) for v in values]
        for path in paths:  # a directory or an unreadable file fails now, not after counting
            with path.open("rb"):
                pass
    except LexiconError as exc:
        raise UsageError(f"--known {exc}") from None
    except OSError as exc:
        raise UsageError(f"--known: {exc}") from None

    def known() -> Lexicon | None:
        try:
            return load_known(paths, cache=default_cache()) if paths else None
        except LexiconError as exc:
            raise UsageError(f"--known {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--known: {exc}") from None

    if args.output:
        out_dir = Path(args.output).resolve().parent
        if not out_dir.is_dir():
            raise UsageError(f"{args.output}: directory {out_dir} does not exist")
        if Path(args.output).is_dir():
            raise UsageError(f"-o {args.output}: is a directory")
    try:
        if args.workers is not None or args.scheduler is not None:
            from streamer.cli.cluster_run import discover_distributed

            engine, stats = discover_distributed(args, config, known)
        else:
            engine, stats = discover(args.files, config, known, progress=not args.no_progress)
    except MemoryError:
        raise UsageError(f"--memory {args.memory}: cannot allocate that much memory") from None
    except OSError as exc:
        name = exc.filename or "input"
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    words = list(engine.published.words)
    if args.new_only:
        words = [w for w in words if not w.known]
    if args.top is not None:
        words = words[: args.top]
    if args.output:
        _write_atomic(Path(args.output), words, args.format)
    else:
        write_words(sys.stdout, words, args.format)
        sys.stdout.flush()
    if args.save_state:
        from streamer.storage import snapshot

        snapshot.write_file(Path(args.save_state), engine.state_dict(),
                            fingerprint=engine.fingerprint(),
                            metadata={"source": "discover", "files": args.files})
    msg = (f"streamer discover: {stats.lines} lines, {engine.chars_ingested} characters, "
           f"{len(words)} words")
    if stats.replaced:
        msg += f"; {stats.replaced} undecodable bytes replaced with U+FFFD"
    if stats.nul:
        msg += f"; {stats.nul} NUL bytes treated as breaks"
    if stats.long_lines_cut:
        msg += f"; {stats.long_lines_cut} over-long lines cut"
    print(msg, file=sys.stderr)
    return 0


def write_words(stream: IO[str], words: list[Word], fmt: str) -> None:
    """Render words in one of FORMATS (batch fields)."""
    from streamer.storage.exports import render

    if fmt == "tsv":
        for w in words:
            stream.write(f"{w.word}\t{w.total_count}\n")
        return
    render(words, fmt, BATCH_FIELDS, stream, header=True)


def _write_atomic(path: Path, words: list[Word], fmt: str) -> None:
    """Atomic replacement for a regular file (never a half-written word list);
    in place for anything else (-o /dev/null, a pipe): renaming over a device
    node would replace the device."""
    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8", newline="") as fh:
            write_words(fh, words, fmt)
        return
    with atomic_write(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            write_words(text, words, fmt)
        finally:
            text.detach()  # flushes; the file stays open for atomic_write to sync and close
