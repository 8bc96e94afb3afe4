"""StdinSource (streamer.input.stdin): over a pipe, and over a child process's real stdin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from source_harness import DEADLINE, numbered, text, wait_until

from streamer.input.positions import StdinPosition
from streamer.input.stdin import StdinSource


async def test_stdin_source_over_a_pipe(start) -> None:
    r, w = os.pipe()
    lines = numbered("s", 50_000)  # more than a pipe buffer: the writer blocks at times
    payload = (text(lines) + "末行").encode()

    def writer() -> None:
        view = memoryview(payload)
        half = payload.index("末".encode()) + 1  # split inside a character
        os.write(w, view[:half])
        for i in range(half, len(payload), 4096):
            os.write(w, view[i : i + 4096])
        os.close(w)

    h = start(lambda q: StdinSource(q, stream=r, poll_interval=0.05, batch_lines=500))
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        await asyncio.wait_for(h.run_task, DEADLINE)  # returns at end of input
        await wait_until(lambda: len(h.lines) == len(lines) + 1, "all stdin lines")
    finally:
        thread.join()
        os.close(r)
    assert h.lines == [*lines, "末行"]
    assert h.batches[-1].position == StdinPosition(len(payload))
    assert h.source.committed_positions() == [{"source": "stdin", "offset": len(payload)}]
    [st_] = h.source.status()
    assert st_["state"] == "eof" and st_["replaced_bytes"] == 0


async def test_stdin_stop_while_idle(start) -> None:
    r, w = os.pipe()
    try:
        h = start(lambda q: StdinSource(q, stream=r, poll_interval=0.05))
        os.write(w, "半行".encode()[:4])
        os.write(w, "半行".encode()[4:] + b"\n")
        await h.wait_lines(1)
        await h.stop()
        assert h.lines == ["半行"]
        assert h.source.status()[0]["state"] == "stopped"
    finally:
        os.close(r)
        os.close(w)


def test_stdin_source_reads_real_stdin() -> None:
    script = (
        "import asyncio, json\n"
        "from streamer.input.stdin import StdinSource\n"
        "async def main():\n"
        "    q = asyncio.Queue(4)\n"
        "    src = StdinSource(q, max_line_bytes=8)\n"
        "    task = asyncio.create_task(src.run())\n"
        "    out = []\n"
        "    while not (task.done() and q.empty()):\n"
        "        try:\n"
        "            out += (await asyncio.wait_for(q.get(), 0.1)).lines\n"
        "        except TimeoutError:\n"
        "            pass\n"
        "    print(json.dumps(out, ensure_ascii=False))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=b"a\r\nbb\n\xff" + "新词发现新词\n".encode(),
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=30,
    )
    assert result.returncode == 0, result.stderr.decode()
    # max_line_bytes=8: the 19-byte line is cut at character boundaries.
    assert json.loads(result.stdout) == ["a", "bb", "\ufffd新词", "发现", "新词"]
