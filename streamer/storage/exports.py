"""Word-list rendering and periodic, crash-safe export files.

Two users share the rendering code here so that a word list looks the same
wherever it is written:

* the batch command (``streamer discover``) renders to stdout or ``-o`` with
  :func:`render`;
* the daemon calls :func:`write_export` on a timer, which writes one
  timestamped file per format (``words-20261125T194306Z.jsonl``) and replaces
  ``latest.<ext>`` so that downstream jobs can always read one stable name.

Every file is replaced atomically (:mod:`streamer.storage.atomic`): a reader
sees either the previous complete file or the new complete file, never a
partly written line, even if the process is killed with SIGKILL or the machine
loses power mid-export.

Formats
    jsonl  one JSON object per word (``Word.to_dict()`` keys), UTF-8, not
           ASCII-escaped. Non-finite floats become ``null`` (NaN is not JSON).
    csv    RFC 4180 via the csv module, header row of field names, LF line ends.
    tsv    header row, tab-separated; tabs, newlines and other line breaks in
           values (example contexts) are replaced by spaces so that one line
           is always one word.
    jieba  ``word freq`` lines that ``jieba.load_userdict`` accepts; freq is
           the all-time count (an int >= 1). Words containing whitespace
           cannot be expressed in that format and are skipped.

Booleans are ``true``/``false`` and missing times are empty in csv/tsv, so the
text formats agree with the JSON one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from streamer.core.results import WORD_FIELDS, Published, Word
from streamer.storage.atomic import fsync_dir, remove_leftover_temps, write_bytes

#: format name -> file extension of exported files.
EXTENSIONS: dict[str, str] = {
    "jsonl": "jsonl",
    "csv": "csv",
    "tsv": "tsv",
    "jieba": "jieba.txt",
}
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)

#: fields of the batch command's jsonl/csv output (its tsv is word + count).
DISCOVER_FIELDS: tuple[str, ...] = (
    "word", "count", "score", "pmi", "left_entropy", "right_entropy", "known",
)

Selection = Literal["all", "new", "top"]
SELECTIONS: tuple[str, ...] = ("all", "new", "top")
#: words kept by selection="top" when top_k is not given.
DEFAULT_TOP_K = 100

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = r"(\d{8}T\d{6}Z)"
#: our temporary files: ".streamer-<pid>-<random>.tmp" (dot-file: globs skip it).
_TEMP_RE = re.compile(r"^\.streamer-(?P<pid>\d+)-[0-9a-f]+\.tmp$")
# Every character str.splitlines() breaks on, plus tab: none may appear in a tsv field.
_TSV_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


# --------------------------------------------------------------------------- values


def json_safe(value: Any) -> Any:
    """A copy of *value* that ``json.dumps(..., allow_nan=False)`` accepts.

    Engine numbers may be numpy scalars or non-finite floats (an entropy of a
    word seen once, a division by a zero rate). ``json.dumps`` writes NaN and
    Infinity by default, which browsers and most JSON parsers reject, so they
    become ``null``; numpy scalars become Python numbers; tuples and sets become
    lists; anything else unknown becomes its ``str``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar / 0-d array
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, Path):
        return str(value)
    return str(value)


#: characters JSON leaves raw but str.splitlines() and other line readers break on.
_LINE_SEPARATORS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                                  "\u2029": "\\u2029"})


def json_line(obj: Any) -> str:
    """One JSON document on exactly one line, CJK text kept readable (not \\u-escaped).

    U+0085, U+2028 and U+2029 are valid raw inside JSON strings but split
    lines for str.splitlines() and many line readers, so they are escaped.
    """
    try:  # fast path: plain finite values need no conversion
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False)
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.translate(_LINE_SEPARATORS)
    return text


def _text_value(value: Any) -> str:
    """Render one field for csv/tsv: '' for missing, true/false, integral floats as ints."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _tsv_value(value: Any) -> str:
    return _TSV_BREAKS.sub(" ", _text_value(value))


def _check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    unknown = [f for f in fields if f not in WORD_FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(WORD_FIELDS)}")
    if not fields:
        raise ValueError("at least one field is needed")
    return tuple(fields)


def jieba_freq(word: Word) -> int:
    """The frequency written to a jieba user dictionary: all-time count, at least 1."""
    n = word.total_count if word.total_count else word.count
    try:
        return max(1, int(round(float(n))))
    except (TypeError, ValueError, OverflowError):
        return 1


def jieba_ok(word: str) -> bool:
    """Whether *word* can be a jieba userdict entry (``word [freq] [tag]``, space-separated)."""
    return bool(word) and not any(ch.isspace() for ch in word)


# --------------------------------------------------------------------------- render


def render(
    words: Iterable[Word],
    fmt: str,
    fields: Sequence[str] = WORD_FIELDS,
    stream: TextIO | None = None,
    header: bool = True,
) -> int:
    """Write *words* to *stream* in *fmt*; return the number of words written.

    ``fields`` picks and orders the columns (jsonl keys) from WORD_FIELDS; the
    jieba format ignores it and *header*. The batch command uses
    ``render(words, "tsv", ("word", "count"), out, header=False)`` for its
    default ``word<TAB>count`` output and ``DISCOVER_FIELDS`` for jsonl/csv.

    Open file streams with ``newline=""`` (csv convention): this function writes
    ``\\n`` line ends itself and must not be translated.
    """
    if stream is None:
        raise ValueError("render() needs a stream")
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    n = 0
    if fmt == "jieba":
        for w in words:
            if jieba_ok(w.word):
                stream.write(f"{w.word} {jieba_freq(w)}\n")
                n += 1
        return n
    cols = _check_fields(fields)
    if fmt == "jsonl":
        for w in words:
            d = w.to_dict()
            stream.write(json_line({k: d[k] for k in cols}))
            stream.write("\n")
            n += 1
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        if header:
            writer.writerow(cols)
        for w in words:
            d = w.to_dict()
            writer.writerow([_text_value(d[k]) for k in cols])
            n += 1
    else:  # tsv
        if header:
            stream.write("\t".join(cols) + "\n")
        for w in words:
            d = w.to_dict()
            stream.write("\t".join(_tsv_value(d[k]) for k in cols) + "\n")
            n += 1
    return n


def render_text(words: Iterable[Word], fmt: str, fields: Sequence[str] = WORD_FIELDS,
                header: bool = True) -> str:
    """:func:`render` into a string."""
    buf = io.StringIO(newline="")
    render(words, fmt, fields, buf, header=header)
    return buf.getvalue()


def select_words(published: Published, selection: str = "all",
                 top_k: int | None = None) -> list[Word]:
    """The words an export contains, best first.

    all  every published word;  new  only words flagged new;
    top  the first *top_k* (default DEFAULT_TOP_K) words.
    *top_k*, when given, also caps "all" and "new".
    """
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; choose from {', '.join(SELECTIONS)}")
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be >= 1")
    if selection == "top" and top_k is None:
        top_k = DEFAULT_TOP_K
    return published.select(new=True if selection == "new" else None, limit=top_k)


# --------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace *path* with *data* atomically (:func:`streamer.storage.atomic.atomic_write`)
    through a temporary ``.streamer-<pid>-<random>.tmp`` in the same directory.

    If the process is killed mid-write the temporary file stays behind and the next
    export in that directory deletes it (see :func:`remove_stale_temp_files`).
    """
    write_bytes(path, data, temp_name=f".streamer-{os.getpid()}-{secrets.token_hex(6)}.tmp",
                sync_dir=sync_dir)


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temporary files left by killed writers (their pid is gone).

    Only names matching ``.streamer-<pid>-<hex>.tmp`` are considered, so no
    user file is ever touched; files of live processes are left alone, this
    process's included: the daemon's threads may be exporting concurrently.
    """
    return remove_leftover_temps(directory, _TEMP_RE, own_pid_is_stale=False)


# --------------------------------------------------------------------------- exports


def export_name(fmt: str, when: float) -> str:
    """``words-YYYYmmddTHHMMSSZ.<ext>`` for a UTC wall-clock time."""
    stamp = datetime.fromtimestamp(when, UTC).strftime(TIMESTAMP_FORMAT)
    return f"words-{stamp}.{EXTENSIONS[fmt]}"


def timestamped_exports(directory: Path, fmt: str) -> list[tuple[float, Path]]:
    """(export time, path) of this format's timestamped files, oldest first.

    Only exact ``words-<timestamp>.<ext>`` names count: latest.* and any other
    file in the directory are never listed (and so never deleted).
    """
    pattern = re.compile(rf"^words-{_TIMESTAMP_RE}\.{re.escape(EXTENSIONS[fmt])}$")
    out = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            t = datetime.strptime(m.group(1), TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
        out.append((t, Path(entry.path)))
    out.sort()
    return out


def apply_retention(directory: Path, fmt: str, *, now: float | None = None,
                    retention_files: int | None = None,
                    retention_days: float | None = None,
                    keep: Path | None = None) -> list[Path]:
    """Delete this format's old timestamped exports; return what was deleted.

    Keeps the newest *retention_files* files and deletes files whose timestamp
    is more than *retention_days* before *now*. Either limit may be None (off).
    Age comes from the timestamp in the name, not mtime, so copying or touching
    the files does not change what is kept. *keep* (the export just written) is
    never deleted, even if the clock went backwards or retention_days is 0.
    """
    if retention_files is not None and retention_files < 1:
        raise ValueError("retention_files must be >= 1 (the export just written is kept)")
    if retention_days is not None and not retention_days >= 0:
        raise ValueError("retention_days must be >= 0")
    now = time.time() if now is None else now
    files = timestamped_exports(Path(directory), fmt)
    doomed: dict[Path, None] = {}
    if retention_files is not None and len(files) > retention_files:
        for _, p in files[: len(files) - retention_files]:
            doomed[p] = None
    if retention_days is not None:
        cutoff = now - retention_days * 86400.0
        for t, p in files:
            if t < cutoff:
                doomed[p] = None
    deleted = []
    for p in doomed:
        if keep is not None and p.name == Path(keep).name:
            continue
        try:
            p.unlink()
            deleted.append(p)
        except FileNotFoundError:
            pass
    return deleted


def write_export(
    directory: str | os.PathLike[str],
    published: Published,
    *,
    formats: Sequence[str] = ("jsonl",),
    selection: Selection | str = "all",
    top_k: int | None = None,
    now: float | None = None,
    retention_files: int | None = None,
    retention_days: float | None = None,
) -> list[Path]:
    """Export *published* once; return the timestamped files written.

    For each format: write ``words-<UTC now>.<ext>``, then replace
    ``latest.<ext>`` with the same content, both atomically; then apply
    retention to that format's timestamped files. Two exports within the same
    second replace the earlier timestamped file (still atomically).

    The directory is created if missing. Raises ValueError for a bad format,
    selection or retention setting (before anything is written) and OSError
    for I/O failures; a failed export leaves the previous files intact.

    Synchronous and fsync-heavy: the daemon should run it in a worker thread.
    """
    for fmt in formats:
        if fmt not in EXTENSIONS:
            raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if retention_files is not None and retention_files < 1:
        raise ValueError("retention_files must be >= 1")
    if retention_days is not None and not retention_days >= 0:
        raise ValueError("retention_days must be >= 0")
    words = select_words(published, selection, top_k)
    now = time.time() if now is None else now
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    written = []
    for fmt in dict.fromkeys(formats):
        data = render_text(words, fmt).encode("utf-8")
        path = directory / export_name(fmt, now)
        atomic_write_bytes(path, data, sync_dir=False)
        atomic_write_bytes(directory / f"latest.{EXTENSIONS[fmt]}", data, sync_dir=False)
        written.append(path)
        apply_retention(directory, fmt, now=now, retention_files=retention_files,
                        retention_days=retention_days, keep=path)
    fsync_dir(directory)
    return written


def read_jsonl_words(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a jsonl export back into dicts (used by ``streamer top --export-dir``)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            out.append(obj)
    return out
