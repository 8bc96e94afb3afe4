"""``streamer top``: the current best words in a terminal table.

Reads either a running daemon (GET /words on its HTTP API) or an export
directory (its latest.jsonl), so it works on a machine that only receives the
exported files. ``--watch S`` redraws every S seconds until Ctrl-C (exit 0).

Errors (unreachable URL, missing directory, unparseable answer) print one line
on stderr and exit with status 2. In watch mode, once a first table has been
shown, a failed refresh is shown in place of the table and retried instead:
a daemon restart should not end the session watching it.

Only the standard library is used for HTTP (urllib), so the command works in a
minimal install and never depends on the event loop.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from streamer.storage.exports import read_jsonl_words

DEFAULT_URL = "http://127.0.0.1:8377"
HTTP_TIMEOUT = 10.0
#: widest word shown before it is cut with an ellipsis (terminal columns).
MAX_WORD_WIDTH = 24
#: orders of the list, as GET /words?sort= takes them: all but "word" best (largest) first;
#: emergence ranks by evidence that a word is rising now (scoring.trend)
SORTS = ("score", "count", "emergence", "first_seen", "word")
_CLEAR = "\x1b[H\x1b[2J"


class TopError(Exception):
    """A failure worth one line on stderr and exit status 2."""


@dataclass(frozen=True)
class WordList:
    """Words to show and where they came from."""

    words: list[dict[str, Any]]
    source: str
    as_of: str | None  # rescore or export time, ISO 8601
    total: int | None  # words available before the limit


# --------------------------------------------------------------------------- reading


def fetch_url(base: str, n: int, *, new_only: bool = False, sort: str = "score",
              timeout: float = HTTP_TIMEOUT) -> WordList:
    """The first *n* words from a daemon's GET /words."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TopError(f"not an http(s) URL: {base!r}")
    query = {"limit": str(n)}
    if new_only:
        query["new"] = "true"
    if sort != "score":
        query["sort"] = sort
    url = base.rstrip("/") + "/words?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = json.loads(exc.read().decode("utf-8")).get("error", "")
        except Exception:  # best effort: the status line is enough
            pass
        raise TopError(f"{url}: HTTP {exc.code} {exc.reason}"
                       + (f": {detail}" if detail else "")) from None
    except urllib.error.URLError as exc:
        raise TopError(f"cannot reach {base}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise TopError(f"cannot reach {base}: {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        words = data["words"]
        if not isinstance(words, list):
            raise TypeError("words is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise TopError(f"{url}: not a streamer /words answer ({exc})") from None
    return WordList(words=words, source=base, as_of=data.get("rescored_at"),
                    total=data.get("total"))


def sort_words(words: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """Words in the order GET /words?sort= gives: "word" alphabetically, any other field
    largest first with missing or non-numeric values last (stable: ties keep rank order)."""
    if sort == "word":
        return sorted(words, key=lambda w: str(w.get("word", "")))

    def key(w: dict[str, Any]) -> tuple[bool, Any]:
        v = w.get(sort)
        if sort == "first_seen":  # ISO 8601 UTC strings of one format sort as times
            return (isinstance(v, str) and v != "", v if isinstance(v, str) else "")
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return (False, 0.0)
        return (math.isfinite(f), f if math.isfinite(f) else 0.0)

    return sorted(words, key=key, reverse=True)


def read_export_dir(directory: Path, n: int, *, new_only: bool = False,
                    sort: str = "score") -> WordList:
    """The first *n* words of ``latest.jsonl`` in an export directory, in ``sort`` order
    (the file is best first by score)."""
    if not directory.is_dir():
        raise TopError(f"export directory not found: {directory}")
    path = directory / "latest.jsonl"
    if not path.is_file():
        raise TopError(f"no latest.jsonl in {directory} (has the daemon exported jsonl yet?)")
    try:
        words = read_jsonl_words(path)
        mtime = path.stat().st_mtime
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TopError(f"cannot read {path}: {exc}") from None
    for rank, w in enumerate(words, 1):
        w.setdefault("rank", rank)
    if new_only:
        words = [w for w in words if w.get("new")]
    if sort != "score":
        words = sort_words(words, sort)
    as_of = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    return WordList(words=words[:n], source=str(path), as_of=as_of, total=len(words))


# --------------------------------------------------------------------------- table


def char_width(ch: str) -> int:
    """Terminal columns of one character: CJK wide/fullwidth 2, combining 0, else 1."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def clip(text: str, width: int) -> str:
    """Cut *text* to at most *width* columns, marking the cut with an ellipsis."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, width: int, align: str = "<") -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if align == ">" else text + gap


def _safe(text: Any) -> str:
    """No control characters reach the terminal (stream text is untrusted)."""
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in str(text))


def _num(value: Any, digits: int) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if v != v or v in (float("inf"), float("-inf")):
        return "-"
    return str(int(v)) if v.is_integer() and digits <= 1 else f"{v:.{digits}f}"


def _time(value: Any) -> str:
    if not value:
        return "-"
    return str(value).replace("T", " ").removesuffix("Z")


COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", ">"), ("word", "<"), ("score", ">"), ("count", ">"), ("emergence", ">"),
    ("first seen (UTC)", "<"), ("new", "<"),
)


def format_table(words: Sequence[dict[str, Any]]) -> list[str]:
    """Aligned rows (header first) of rank, word, score, count, emergence, first seen, new."""
    rows = [[name for name, _ in COLUMNS]]
    for i, w in enumerate(words, 1):
        rows.append([
            str(w.get("rank") or i),
            clip(_safe(w.get("word", "")), MAX_WORD_WIDTH),
            _num(w.get("score"), 3),
            _num(w.get("count"), 1),
            _num(w.get("emergence"), 2),
            _time(w.get("first_seen")),
            "new" if w.get("new") else "",
        ])
    widths = [max(display_width(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return ["  ".join(pad(cell, widths[c], COLUMNS[c][1]) for c, cell in enumerate(row)).rstrip()
            for row in rows]


def render_word_list(snap: WordList) -> str:
    shown = len(snap.words)
    total = f" of {snap.total}" if isinstance(snap.total, int) else ""
    head = f"streamer top · {snap.source} · as of {_time(snap.as_of)} · {shown}{total} words"
    if not snap.words:
        return head + "\n(no words yet)\n"
    return head + "\n\n" + "\n".join(format_table(snap.words)) + "\n"


# --------------------------------------------------------------------------- command


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= v <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``top`` subcommand (called by streamer.cli.main)."""
    p = subparsers.add_parser(
        "top", help="show the current top words of a daemon or an export directory",
        description="Show the current best words, from a running daemon's HTTP API "
                    "or from latest.jsonl in an export directory.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--url", help=f"daemon base URL (default {DEFAULT_URL})")
    src.add_argument("--export-dir", type=Path, metavar="DIR",
                     help="read DIR/latest.jsonl instead of asking a daemon")
    p.add_argument("-n", type=_positive_int, default=20, metavar="K",
                   help="words to show (default 20)")
    p.add_argument("--new", action="store_true", help="only words flagged new")
    p.add_argument("--sort", choices=SORTS, default="score",
                   help="order of the list (default score); emergence: rising now, "
                        "new to the stream first (see the README's Trending)")
    p.add_argument("--watch", type=_positive_float, metavar="S",
                   help="refresh every S seconds until Ctrl-C")
    p.set_defaults(func=run)


def _word_list(args: argparse.Namespace) -> WordList:
    if args.export_dir is not None:
        return read_export_dir(args.export_dir, args.n, new_only=args.new, sort=args.sort)
    return fetch_url(args.url or DEFAULT_URL, args.n, new_only=args.new, sort=args.sort)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of ``streamer top``; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        try:
            text = render_word_list(_word_list(args))
        except TopError as exc:
            print(f"streamer top: error: {exc}", file=err)
            return 2
        if not args.watch:
            out.write(text)
            out.flush()
            return 0
        clear = _CLEAR if out.isatty() else "\n"
        while True:
            stamp = time.strftime("%H:%M:%S")
            out.write(f"{clear}{text}\n(refreshing every {args.watch:g} s, last {stamp}; "
                      "Ctrl-C to quit)\n")
            out.flush()
            time.sleep(args.watch)
            try:
                text = render_word_list(_word_list(args))
            except TopError as exc:
                text = f"streamer top: error: {exc} (retrying)\n"
    except KeyboardInterrupt:
        return 0
