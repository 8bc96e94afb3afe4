"""Known lexicons: the words a user already has (one word per line).

Extra columns are ignored, so jieba's dict.txt (``word freq tag``) and CC-CEDICT-
style word lists load directly. Words are normalised the same way as the input
text (NFKC, ASCII lower-case) so that a full-width or upper-case entry still
matches what the engine discovers.
"""

from __future__ import annotations

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
                for line in fh:
                    parts = line.split(maxsplit=1)
                    if parts and not parts[0].startswith("#"):
                        words.add(normalise(parts[0]))
        return cls(words, names)
