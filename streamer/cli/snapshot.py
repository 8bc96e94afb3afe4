"""`streamer snapshot`: look inside snapshot files and merge shards.

    streamer snapshot inspect PATH|DIR     header, sizes, counts, offsets, checksum status
    streamer snapshot merge A B... -o OUT  add shards with the same configuration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streamer.cli.main import UsageError
from streamer.storage import snapshot


def register(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="inspect or merge snapshot files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    i = cmds.add_parser("inspect", help="show a snapshot file, or every snapshot in a directory")
    i.add_argument("path", metavar="PATH|DIR")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--no-verify", action="store_true", help="skip reading the payload checksum")
    i.set_defaults(func=inspect)
    m = cmds.add_parser("merge", help="merge shards' snapshots into one")
    m.add_argument("inputs", nargs="+", metavar="SNAPSHOT")
    m.add_argument("-o", "--output", required=True, metavar="OUT")
    m.set_defaults(func=merge)


def inspect(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    verify = not args.no_verify
    try:
        if path.is_dir():
            rows = snapshot.describe(path, verify=verify)
            out = json.dumps(rows, default=str, indent=2) if args.json else \
                snapshot.format_description(rows)
            print(out)
            # 1 when a snapshot the loader would try is damaged (files already set aside
            # and temporary files are listed, but they are not a problem any more)
            return 0 if all(r["status"] == "ok" for r in rows if r["kind"] == "snapshot") \
                else 1
        info = snapshot.inspect_snapshot(path, verify=verify)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    print(json.dumps(info, default=str, indent=2) if args.json else
          snapshot.format_inspection(info))
    ok = info.get("checksum") in ("verified", "not-verified")
    return 0 if ok else 1


def _engine_state(state: dict[str, Any]) -> dict[str, Any]:
    """The engine part of a daemon snapshot, or a bare engine state (discover, merge)."""
    return state["engine"] if isinstance(state.get("engine"), dict) else state


def merge(args: argparse.Namespace) -> int:
    from streamer.core.engine import Engine

    loaded = []
    for p in args.inputs:
        try:
            loaded.append(snapshot.load_file(p))
        except (snapshot.SnapshotError, OSError) as exc:
            raise UsageError(f"{p}: cannot merge: {exc}") from None
    prints = {r.header["fingerprint"] for r in loaded}
    if len(prints) > 1:
        detail = ", ".join(f"{r.path}={r.header['fingerprint']}" for r in loaded)
        raise UsageError("snapshots made with different engine configurations cannot be "
                         f"merged (fingerprints {detail})")
    try:
        engines = [Engine.from_state(_engine_state(r.state)) for r in loaded]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"not an engine snapshot: {exc}") from None
    base = engines[0]
    for other in engines[1:]:
        base.merge(other)
    try:
        out = snapshot.write_file(args.output, base.state_dict(),
                                  fingerprint=base.fingerprint(),
                                  metadata={"source": "merge",
                                            "inputs": [str(r.path) for r in loaded]})
    except OSError as exc:
        raise UsageError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"streamer snapshot merge: {len(loaded)} snapshots -> {out} "
          f"({base.units_ingested} units, {len(base.candidates)} candidates)", file=sys.stderr)
    return 0
