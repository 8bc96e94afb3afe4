"""A cache of parsed known lexicons: jieba's dict.txt is parsed once, not at every run.

Parsing a lexicon file (NFKC over the text, splitting 349k lines of jieba's dict.txt,
packing frequencies and tags, the per-character rates of the ranking) costs ~1.5 s of
CPU, paid by every ``streamer discover`` and by every start and SIGHUP of the service.
Its parsed form (core.lexicon.LexiconColumns) loads in ~0.1 s.

Where: one file per list of lexicon files,

    <dir>/lexicon-<16 hex digits of sha256 of the resolved paths>.npz

with dir = $STREAMER_CACHE_DIR, else $XDG_CACHE_HOME/streamer, else ~/.cache/streamer
(default_cache). STREAMER_NO_CACHE=1 turns the cache off. A file is ~6 MB for jieba's
dict.txt; one list of files has one cache file, rewritten when the lexicon changes, and
the directory keeps at most MAX_FILES of them: after a write, the least recently used
beyond that are deleted (a hit touches its file), so lexicons loaded once from temporary
paths do not pile up.

The file is an uncompressed .npz (numpy's zip of arrays, read without pickle): a JSON
header (format, parser fingerprint, the paths, the sha256 of every file's bytes) and
the columns. It is used only when its header names the same paths with the same
content (the files are hashed at every load: ~10 ms for jieba's 5 MB) and the same
parser (core.lexicon.parser_fingerprint: the parser's code, the Unicode version).
Anything else - another content, a truncated or damaged file (the zip's CRC), an
unreadable one - is a miss: the lexicon is parsed and the file rewritten, atomically
(storage.atomic), so a reader never sees half a file. A directory that cannot be
written (a read-only home) is skipped with a debug log line: the cache only saves time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from streamer.core.lexicon import Lexicon, LexiconColumns, parser_fingerprint
from streamer.storage.atomic import remove_leftover_temps, write_bytes

__all__ = ["ENV_DIR", "ENV_OFF", "FORMAT", "MAX_FILES", "LexiconFileCache", "cache_dir",
           "default_cache"]

log = logging.getLogger("streamer.storage.lexicon_cache")

#: the environment variable naming the cache directory
ENV_DIR = "STREAMER_CACHE_DIR"
#: the environment variable that turns the cache off (any value but "", "0")
ENV_OFF = "STREAMER_NO_CACHE"
#: the "format" of the header; another value is a miss
FORMAT = "streamer-lexicon-cache/1"
#: temporary files of atomic_write in the cache directory (their writer's pid inside)
_TEMP = re.compile(r"\.lexicon-[0-9a-f]{16}\.npz\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
#: cache files kept in the directory (least recently used deleted first): ~6 MB each for
#: a lexicon of jieba's size
MAX_FILES = 16
_ARRAYS = ("words", "entries", "alone_cps", "alone_rates", "final_cps", "final_rates")


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache directory the environment asks for, None when it turns the cache off.

    $STREAMER_CACHE_DIR, else $XDG_CACHE_HOME/streamer (an absolute path only, as the XDG
    base directory specification says), else ~/.cache/streamer; None with
    STREAMER_NO_CACHE set to anything but "" or "0", or without a home directory."""
    if environ.get(ENV_OFF, "") not in ("", "0"):
        return None
    if environ.get(ENV_DIR):
        return Path(environ[ENV_DIR])
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "streamer"
    home = os.path.expanduser("~")
    if home == "~":  # no HOME and no passwd entry
        return None
    return Path(home) / ".cache" / "streamer"


def default_cache() -> LexiconFileCache | None:
    """The cache of ``cache_dir()``, or None when the environment turns it off."""
    directory = cache_dir()
    return None if directory is None else LexiconFileCache(directory)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class LexiconFileCache:
    """Parsed lexicons in files of one directory (core.lexicon.LexiconCache).

    ``get`` hashes the files and remembers the digests, so that ``put`` stores the
    lexicon under the content it was parsed from even if a file changes meanwhile (the
    next ``get`` then misses). ``put`` writes only after a ``get`` of the same paths that
    hashed them (load_known's order): files that are not regular are never cached."""

    def __init__(self, directory: str | os.PathLike[str], max_files: int = MAX_FILES) -> None:
        if max_files < 1:
            raise ValueError(f"max_files must be at least 1, not {max_files}")
        self.directory = Path(directory)
        self.max_files = max_files
        self._digests: dict[tuple[str, ...], list[str]] = {}

    def file_for(self, paths: Sequence[Path]) -> Path:
        """The cache file of this list of lexicon files."""
        names = self._names(paths)
        key = hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / f"lexicon-{key[:16]}.npz"

    @staticmethod
    def _names(paths: Sequence[Path]) -> tuple[str, ...]:
        return tuple(os.path.abspath(p) for p in paths)

    def _header(self, paths: Sequence[Path], digests: list[str]) -> dict[str, object]:
        return {"format": FORMAT, "parser": parser_fingerprint(),
                "paths": list(self._names(paths)), "sha256": digests}

    def get(self, paths: Sequence[Path]) -> Lexicon | None:
        """The cached Lexicon of these files as they are now, or None (a miss). Only
        regular files are cached: hashing a pipe (``--known <(...)``) would consume what
        the parser must read."""
        names = self._names(paths)
        try:
            if not all(stat.S_ISREG(os.stat(p).st_mode) for p in paths):
                log.debug("lexicon cache: not used for %s (not all regular files)", names)
                return None
            digests = [_digest(Path(p)) for p in paths]
        except OSError as exc:  # Lexicon.load reports it, naming the file
            log.debug("lexicon cache: cannot hash %s: %s", names, exc)
            return None
        self._digests[names] = digests
        target = self.file_for(paths)
        try:
            with np.load(target, allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode("utf-8"))
                expected = self._header(paths, digests)
                if any(header.get(key) != value for key, value in expected.items()):
                    log.debug("lexicon cache: %s is for other files or another parser",
                              target)
                    return None
                arrays = {name: npz[name] for name in _ARRAYS}
            cols = LexiconColumns(
                words=arrays["words"], entries=arrays["entries"],
                tag_names=tuple(str(t) for t in header["tag_names"]),
                has_freq=bool(header["has_freq"]), alone_cps=arrays["alone_cps"],
                alone_rates=arrays["alone_rates"], final_cps=arrays["final_cps"],
                final_rates=arrays["final_rates"])
            lexicon = Lexicon.from_columns(cols, sources=[str(p) for p in paths])
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - any damage is a miss, parsed again
            log.debug("lexicon cache: ignoring %s: %s: %s", target, type(exc).__name__, exc)
            return None
        log.debug("lexicon cache: %d words from %s", len(lexicon), target)
        del self._digests[names]  # a hit: nothing to put
        try:
            os.utime(target)  # used now: the last to be pruned
        except OSError:
            pass
        return lexicon

    def put(self, paths: Sequence[Path], lexicon: Lexicon) -> None:
        """Store ``lexicon``, just parsed from ``paths``; skipped (debug log) when the
        directory cannot be written or the lexicon has no columns."""
        names = self._names(paths)
        target = self.file_for(paths)
        digests = self._digests.pop(names, None)
        if digests is None:  # no get() before, or get() found a file that is not regular
            log.debug("lexicon cache: not writing %s (no digest of %s)", target, names)
            return
        try:
            cols = lexicon.columns()
            header = {**self._header(paths, digests), "tag_names": list(cols.tag_names),
                      "has_freq": cols.has_freq}
            buf = io.BytesIO()
            np.savez(buf, header=np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8),
                     **{name: getattr(cols, name) for name in _ARRAYS})
            self.directory.mkdir(parents=True, exist_ok=True)
            remove_leftover_temps(self.directory, _TEMP, own_pid_is_stale=False)
            write_bytes(target, buf.getvalue(), sync_dir=False)
        except (OSError, ValueError) as exc:
            log.debug("lexicon cache: not writing %s: %s", target, exc)
            return
        log.debug("lexicon cache: wrote %s (%d words)", target, len(lexicon))
        self._prune(keep=target)

    def _prune(self, keep: Path) -> None:
        """Delete the least recently used cache files beyond max_files (never ``keep``)."""
        try:
            files = []
            for path in self.directory.glob("lexicon-*.npz"):
                try:
                    files.append((path.stat().st_mtime_ns, path))
                except FileNotFoundError:  # pruned by another process meanwhile
                    continue
        except OSError:
            return
        files.sort(reverse=True)
        for _, path in files[self.max_files:]:
            if path == keep:
                continue
            try:
                path.unlink()
                log.debug("lexicon cache: removed %s (least recently used)", path)
            except OSError:
                continue
