"""`streamer run`: parse the flags, load the configuration, start the service.

Everything that can fail because of the configuration fails here, before the event loop
starts, with status 2 and one line naming the file and the key.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from streamer.core.memory import tune_malloc
from streamer.service import config as configmod
from streamer.service.config import ConfigError
from streamer.service.daemon import Daemon, StartupError, setup_logging

log = logging.getLogger(__name__)



def register(subparsers: Any) -> None:
    """Add `streamer run` (streamer.cli.main calls this)."""
    p = subparsers.add_parser(
        "run",
        help="run the service: tail files/stdin, publish new words, snapshot, export",
        description=(
            "Tail text sources and keep publishing discovered words. Configuration comes "
            "from a TOML file (config/streamer.toml documents every key and is the default); "
            "the flags below override it. Relative paths are taken from the working "
            "directory. SIGTERM/SIGINT stop it cleanly (final snapshot and export); SIGHUP "
            "reloads the known lexicons."
        ),
    )
    p.add_argument("--config", metavar="PATH",
                   help="TOML configuration (default: built-in defaults = config/streamer.toml)")
    configmod.add_override_arguments(p)
    p.add_argument("--reset-state", action="store_true",
                   help="move existing snapshots aside and start empty (needed after changing "
                        "engine settings that shape the state)")
    p.add_argument("--state-from", metavar="PATH",
                   help="seed an empty state directory from this snapshot file (e.g. from "
                        "`streamer discover --save-state`); refused if the state directory "
                        "holds snapshots, unless --reset-state moves them aside")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point of `streamer run`: validate everything first, then serve until a signal."""
    try:
        cfg = configmod.apply_overrides(configmod.load(args.config), args)
    except ConfigError as exc:
        print(f"streamer run: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level)
    daemon = Daemon(cfg, reset_state=bool(getattr(args, "reset_state", False)),
                    state_from=getattr(args, "state_from", None))
    # Until the event loop takes the signals over, a stop request simply ends the start-up
    # (loading a large snapshot takes seconds; nothing has been ingested yet to save).
    previous = {sig: signal.signal(sig, _stop_during_startup)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        tune_malloc()
        daemon.start_up()
        return asyncio.run(daemon.run())
    except StartupError as exc:
        print(f"streamer run: error: {exc}", file=sys.stderr)
        return 2
    except _StoppedDuringStartup as exc:
        log.info("%s during start-up: exiting before anything was ingested", exc)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        daemon.close()


class _StoppedDuringStartup(Exception):
    pass


def _stop_during_startup(signum: int, frame: Any) -> None:
    raise _StoppedDuringStartup(signal.Signals(signum).name)
