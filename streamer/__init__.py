"""streamer: incremental new-word discovery over live text streams.

Layers, lowest first (tests/unit/test_layers.py keeps imports pointing down):

    core     pure, synchronous engine: units, counting, cutting, scoring   (numpy)
    input    bytes -> lines: the batch reader and the tailing sources
    storage  files we write: exports and snapshots
    service  configuration, the daemon, the HTTP API
    cli      the `streamer` command

The names users need are importable from here: ``from streamer import Engine``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use: `import streamer` (and the CLI's start) need not load numpy.
_EXPORTS = {
    "Engine": "streamer.core.engine",
    "EngineConfig": "streamer.core.engine",
    "Lexicon": "streamer.core.lexicon",
    "load_known": "streamer.core.lexicon",
    "Published": "streamer.core.results",
    "Word": "streamer.core.results",
    "discover": "streamer.cli.discover",
}

__all__ = ["Engine", "EngineConfig", "Lexicon", "Published", "Word", "__version__", "discover",
           "load_known"]

if TYPE_CHECKING:
    from streamer.cli.discover import discover
    from streamer.core.engine import Engine, EngineConfig
    from streamer.core.lexicon import Lexicon, load_known
    from streamer.core.results import Published, Word


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
