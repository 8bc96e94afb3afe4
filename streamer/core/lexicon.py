"""Known lexicons: the words a user already has (one word per line).

Extra columns are ignored, so jieba's dict.txt (``word freq tag``) and CC-CEDICT-
style word lists load directly. Words are normalised the same way as the input
text (NFKC, ASCII lower-case) so that a full-width or upper-case entry still
matches what the engine discovers.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from streamer.core.units import normalise


class Lexicon:
    """A set of known words, loaded from files."""

    def __init__(self, words: Iterable[str] = (), sources: Iterable[str] = ()) -> None:
        self.words: frozenset[str] = frozenset(words)
        self.sources: tuple[str, ...] = tuple(sources)

    def __contains__(self, word: object) -> bool:
        return word in self.words

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> Lexicon:
        """Read every file; raises OSError/UnicodeDecodeError naming the file."""
        words: set[str] = set()
        names = []
        for p in paths:
            path = Path(p)
            names.append(str(path))
            with path.open(encoding="utf-8-sig", errors="strict") as fh:
                words.update(first_columns(fh.read()))
        return cls(words, names)


# --------------------------------------------------------------------------- reading


#: The first whitespace-separated field of every line that has one and does not start
#: with "#". ``\s*`` may run over blank lines; what it captures is still the first field
#: of a line.
_FIRST_FIELD = re.compile(r"^\s*([^\s#]\S*)", re.MULTILINE)
_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def first_columns(text: str) -> list[str]:
    """The normalised first field of every non-comment line of a lexicon file's text.

    One regular-expression pass instead of a split per line. When the text is already
    NFKC (jieba's dict.txt is: a quick check), ASCII upper case is folded on the whole
    text's UTF-8 bytes before the fields are cut, so each word is made once; otherwise the
    fields are normalised in one call on their newline-joined text (NFKC never composes
    across a newline, so that equals normalising each field). jieba's 349k lines: ~0.3 s
    instead of ~1.2 s for a split and a normalise call per line (docs/benchmarks.md).
    """
    if unicodedata.is_normalized("NFKC", text):
        return _FIRST_FIELD.findall(
            text.encode("utf-8").translate(_ASCII_LOWER).decode("utf-8"))
    fields = _FIRST_FIELD.findall(text)
    return normalise("\n".join(fields)).split("\n") if fields else []


# --------------------------------------------------------------------------- names


#: Lexicons that ``known`` (config) and ``--known`` (command line) accept by name instead
#: of a path: name -> (installed package, file inside it). jieba's dict.txt is the lexicon
#: users of Chinese word segmentation already load: 349k words, each with a frequency and
#: a part-of-speech tag. jieba is a dependency of streamer, so the name always resolves.
NAMED_LEXICONS: dict[str, tuple[str, str]] = {"jieba": ("jieba", "dict.txt")}

#: The known lexicons of the shipped configuration and of `streamer discover`: without
#: one, every common word (酒店, 服务, 喜欢) would be listed as new.
DEFAULT_KNOWN: tuple[str, ...] = ("jieba",)


class LexiconError(ValueError):
    """A known-lexicon value that is neither a lexicon name nor an existing path, or a
    lexicon file that is not UTF-8. The message is one line naming the value or file."""


def resolve_known(value: str | Path) -> Path:
    """The file a known-lexicon value stands for.

    A value equal to a name in NAMED_LEXICONS (``jieba``) is that file inside the installed
    package (found without importing the package); names are checked first, so the result
    does not depend on the working directory (``./jieba`` is a file called jieba). Any other
    value is a path and must exist. Raises LexiconError, whose message is one line that
    names the value and the lexicon names.
    """
    text = str(value)
    if text in NAMED_LEXICONS:
        package, member = NAMED_LEXICONS[text]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise LexiconError(f"{text}: the {package} package is not installed "
                               f"(pip install {package})")
        for location in spec.submodule_search_locations:
            path = Path(location) / member
            if path.is_file():
                return path
        raise LexiconError(f"{text}: the installed {package} package has no {member}")
    path = Path(text)
    if not path.exists():
        raise LexiconError(f"{text}: no such file, and not a lexicon name "
                           f"(names: {', '.join(NAMED_LEXICONS)})")
    return path


def load_known(values: Iterable[str | Path]) -> Lexicon:
    """Lexicon.load of the files that names and paths stand for (resolve_known); raises
    LexiconError (also for a file that is not UTF-8), or OSError naming the file.

    Memory freed to glibc's heap is handed back to the OS before and after reading, as the
    daemon does after a rescore: Python allocates the words in arenas of its own, so free
    heap pages left by earlier numpy temporaries (~50 MB after discover's passes) would
    stay resident under them, and reading jieba's dict.txt leaves ~15 MB of freed parsing
    buffers beside the ~43 MB the words keep (docs/benchmarks.md)."""
    paths = [resolve_known(v) for v in values]
    _release_freed_heap()
    try:
        lexicon = Lexicon.load(paths)
    except UnicodeDecodeError:
        for path in paths:  # which file: the error itself does not say
            try:
                path.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise LexiconError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})"
                                   ) from None
        raise
    _release_freed_heap()
    return lexicon


def _release_freed_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
