"""Command-line entry point: one subcommand per module that owns it.

Each subcommand module exposes ``register(subparsers) -> None`` which adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit
status). Usage errors exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from streamer import __version__

#: module that owns each subcommand, in help order
SUBCOMMANDS = ("discover", "daemon", "snapshot_cli", "top")


class UsageError(Exception):
    """A bad option value or input path: exit status 2, one line on stderr."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Discover new words in text, in batch or as a live service.",
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"streamer.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"streamer.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"streamer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
