"""Writes snapshots in a loop until killed; used by test_snapshot's SIGKILL test.

    python snapshot_writer_helper.py DIRECTORY MEBIBYTES KEEP

Like a restarted daemon it first loads the newest snapshot and continues counting from
its ``iteration``. Every state is self-checking: all values of ``table`` equal the
iteration. After each completed write it prints ``wrote <iteration> <file name>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.storage.snapshot import load_latest, write_snapshot  # noqa: E402

FINGERPRINT = "writer-helper"


def main() -> None:
    directory, mebibytes, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    latest = load_latest(directory, fingerprint=FINGERPRINT)
    iteration = 0 if latest is None else latest.state["iteration"] + 1
    table = np.empty(mebibytes * 2**20 // 4, dtype=np.uint32)
    print("ready", flush=True)
    while True:
        table.fill(iteration)
        state = {
            "iteration": iteration,
            "table": table,
            "nested": {"small": np.arange(7, dtype=np.int64) + iteration,
                       "text": f"iteration {iteration}"},
        }
        path = write_snapshot(directory, state, fingerprint=FINGERPRINT,
                              metadata={"iteration": iteration}, keep=keep)
        print(f"wrote {iteration} {path.name}", flush=True)
        iteration += 1


if __name__ == "__main__":
    main()
