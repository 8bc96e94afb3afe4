"""Command-line entry point: one subcommand per module that owns it.

Each subcommand module exposes ``register(subparsers) -> None`` which adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit
status). Usage errors exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from streamer import __version__

#: subcommand -> module that owns it, in help order
SUBCOMMANDS = {"discover": "discover", "run": "run", "snapshot": "snapshot", "top": "top"}


class UsageError(Exception):
    """A bad option value or input path: exit status 2, one line on stderr."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, import just that subcommand's module (fast start:
    `discover` need not import the HTTP server)."""
    parser = _Parser(
        prog="streamer",
        description="Discover new words in text, in batch or as a live service.",
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)
    names = [SUBCOMMANDS[only]] if only in SUBCOMMANDS else list(SUBCOMMANDS.values())
    for name in names:
        try:
            module = importlib.import_module(f"streamer.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"streamer.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
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
    except BrokenPipeError:
        # the reader went away (`streamer top ... | head`): stop quietly, and point stdout
        # at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
