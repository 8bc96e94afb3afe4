"""`streamer discover --workers N` and `--scheduler tcp://HOST:PORT` end to end: a real
`python -m streamer discover` subprocess on a real Dask cluster (worker processes on this
machine), against the one-process run of the same command.

Kept small and bounded: a corpus of a few hundred KB, 2 worker processes of 1 thread each,
and every cluster closed at the end of its test (checked for the one the command starts).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import background, free_port, streamer_env

pytest.importorskip("distributed")

PLANTED = ("蓝鲸币", "绿萝熊", "紫云糕")
TIMEOUT = 600  # seconds; a cluster starts in seconds, far slower on a loaded machine


def discover_cmd(args: list[str], cwd: Path, stdin: bytes = b"",
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", "discover", "--no-progress",
                           *args], cwd=cwd, env=env or streamer_env(), input=stdin,
                          capture_output=True, timeout=TIMEOUT, start_new_session=True)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stderr.decode()


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr.decode()
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def processes_in_session(sid: int) -> list[str]:
    """Command lines of live processes in session ``sid`` (the command ran as its leader)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == sid:
                    cmd = Path(f"/proc/{name}/cmdline").read_bytes()
                    found.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
    return found


def session_ends(sid: int, deadline: float = 60.0) -> list[str]:
    """Wait until no process of session ``sid`` is left (multiprocessing's resource
    tracker leaves a moment after its parent); what is left at the deadline."""
    end = time.monotonic() + deadline
    while (left := processes_in_session(sid)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two files, ~200 KB each, the planted words among random common words."""
    root = tmp_path_factory.mktemp("cluster-corpus")
    rng = random.Random(3)
    paths = []
    for name in ("a.txt", "b.txt"):
        path = root / name
        path.write_text("\n".join(background(rng, 1800, inject=PLANTED)) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def test_workers_2_equals_one_process(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """--exact: the same bytes in the output file, the same summary line; standard input
    (spooled for the workers) as the second input."""
    a, b = corpus
    common = [str(a), "-", "--exact", "--format", "jsonl", "--min-count", "5"]
    one = discover_cmd([*common, "-o", str(tmp_path / "one.jsonl")], tmp_path,
                       stdin=b.read_bytes())
    two = subprocess.Popen([sys.executable, "-m", "streamer", "discover", "--no-progress",
                            *common, "-o", str(tmp_path / "two.jsonl"), "--workers", "2"],
                           cwd=tmp_path, env=streamer_env(), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    _, err = two.communicate(b.read_bytes(), timeout=TIMEOUT)
    assert two.returncode == 0, err.decode()
    assert err.decode() == ok(one)
    listed = (tmp_path / "one.jsonl").read_bytes()
    assert set(PLANTED) <= {line.split('"')[3] for line in listed.decode().splitlines()}
    assert (tmp_path / "two.jsonl").read_bytes() == listed
    # the LocalCluster the command started is gone with it: no worker outlives it
    assert session_ends(two.pid) == []


@pytest.fixture()
def scheduler() -> Iterator[str]:
    """A Dask cluster that is not the command's: 2 worker processes, closed afterwards."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def test_scheduler_equals_one_process(corpus: tuple[Path, Path], tmp_path: Path,
                                      scheduler: str) -> None:
    a, b = corpus
    common = [str(a), str(b), "--exact", "--min-count", "5"]
    one = discover_cmd([*common, "-o", str(tmp_path / "one.tsv")], tmp_path)
    remote = discover_cmd([*common, "-o", str(tmp_path / "two.tsv"), "--scheduler",
                           scheduler], tmp_path)
    assert ok(remote) == ok(one)
    assert (tmp_path / "two.tsv").read_bytes() == (tmp_path / "one.tsv").read_bytes()


def test_workers_without_dask_says_to_install_the_extra(corpus: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """Dask not importable (as where the extra is not installed): exit 2, one line."""
    code = ("import sys; sys.modules['distributed'] = sys.modules['dask'] = None; "
            "from streamer.cli.main import main; "
            f"raise SystemExit(main(['discover', {str(corpus[0])!r}, '--workers', '2']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=streamer_env(),
                          capture_output=True, timeout=TIMEOUT)
    line = one_error_line(proc)
    assert "--workers needs Dask" in line
    assert "pip install 'streamer[dask]'" in line


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with argument"),
    (["--scheduler", "127.0.0.1:8786"], "--scheduler takes an address like tcp://HOST:PORT"),
])
def test_bad_cluster_options(corpus: tuple[Path, Path], tmp_path: Path, args: list[str],
                             message: str) -> None:
    assert message in one_error_line(discover_cmd([str(corpus[0]), *args], tmp_path))


def test_scheduler_cannot_read_standard_input(tmp_path: Path) -> None:
    line = one_error_line(discover_cmd(["-", "--scheduler", "tcp://127.0.0.1:1"], tmp_path,
                                       stdin="蓝鲸币\n".encode()))
    assert "standard input (-) cannot be read by remote workers" in line


def test_unreachable_scheduler(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    env = streamer_env()
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "2s"  # Dask's own connect timeout
    address = f"tcp://127.0.0.1:{free_port()}"
    line = one_error_line(discover_cmd([str(corpus[0]), "--scheduler", address], tmp_path,
                                       env=env))
    assert f"--scheduler: cannot reach the Dask scheduler at {address}" in line
