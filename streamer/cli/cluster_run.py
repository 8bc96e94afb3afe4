"""`streamer discover --workers N | --scheduler tcp://HOST:PORT`: option checks and error
messages around service.cluster (the partitioned run itself)."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable

from streamer.cli.main import UsageError
from streamer.core.engine import Engine, EngineConfig
from streamer.core.lexicon import Lexicon
from streamer.input.batch_reader import ReadStats


def discover_distributed(args: argparse.Namespace, config: EngineConfig,
                         known: Lexicon | Callable[[], Lexicon | None] | None,
                         ) -> tuple[Engine, ReadStats]:
    """Run discover on Dask; a usage error (exit 2) for a bad option, Dask missing or a
    scheduler that cannot be reached; exit 1 when the cluster fails during the run."""
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler is not None:
        if "://" not in args.scheduler:
            raise UsageError(f"--scheduler takes an address like tcp://HOST:PORT, "
                             f"not {args.scheduler!r}")
        for f in args.files:
            # a remote worker reads the inputs by path: a spool of standard input or of a
            # pipe would be on this machine only
            if f == "-" or not _regular(f):
                name = "standard input (-)" if f == "-" else f"{f} (not a regular file)"
                raise UsageError(f"--scheduler: {name} cannot be read by remote workers; "
                                 "save it to a file they can read")
    from streamer.service.cluster import (
        ClusterError,
        DaskMissing,
        SchedulerUnreachable,
        discover_on_cluster,
    )

    flag = "--workers" if args.workers is not None else "--scheduler"
    try:
        return discover_on_cluster(args.files, config, known, workers=args.workers,
                                   scheduler=args.scheduler)
    except DaskMissing:
        raise UsageError(f"{flag} needs Dask: pip install 'streamer[dask]'") from None
    except SchedulerUnreachable as exc:
        raise UsageError(f"--scheduler: {exc}") from None
    except ClusterError as exc:
        print(f"streamer discover: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
