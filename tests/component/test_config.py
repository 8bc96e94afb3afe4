"""Configuration: the shipped file, every kind of bad value, and command-line overrides.

A bad configuration must stop `streamer run` before it touches any state, with exit status 2
and one line naming the dotted key and the file: a few cases run the real command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.service import config as cfgmod
from streamer.service.config import (
    Config,
    ConfigError,
    add_override_arguments,
    apply_overrides,
    load,
    parse_duration,
    parse_listen,
    parse_size,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "streamer.toml"


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- shipped file


def test_shipped_file_loads_and_equals_builtin_defaults() -> None:
    cfg = load(SHIPPED)
    for section, values in Config().to_dict().items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, (
                f"config/streamer.toml: {section}.{key} = {getattr(getattr(cfg, section), key)}"
                f" but the built-in default (the engine's, for [engine]) is {value}: "
                "update the shipped file")
    assert cfg.sources.globs == ("inbox/*.txt",)
    assert cfg.engine.memory == 256 * 2**20
    assert cfg.engine.min_pmi == (2.0, 4.0, 6.0)
    assert cfg.engine.half_life == 3600.0
    assert cfg.intervals.rescore == 10.0
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8377)
    assert cfg.origin == str(SHIPPED)


def test_engine_defaults_match_the_engine_contract() -> None:
    """The file's [engine] must shape the state like `streamer discover`'s defaults, or a
    state saved by discover would be refused by the daemon (fingerprint mismatch)."""
    engine = pytest.importorskip("streamer.core.engine")
    ours = engine.EngineConfig(**Config().engine.engine_kwargs())
    theirs = engine.EngineConfig()
    assert ours.fingerprint() == theirs.fingerprint()
    for name in ("order", "min_count", "min_pmi", "bound_share", "min_entropy", "units",
                 "memory", "depth", "seed", "exact", "capacity"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")).to_dict() == Config().to_dict()


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(("text", "expected"), [
    (0, 0), (1024, 1024), ("256MB", 256 * 2**20), ("256MiB", 256 * 2**20), ("1GiB", 2**30),
    ("1 GB", 2**30), ("512k", 512 * 1024), ("100", 100), ("1.5MB", int(1.5 * 2**20)),
])
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MB", "12XB", "-1MB", -5, True, 1.5, [1]])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(("text", "expected"), [
    (10, 10.0), (2.5, 2.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("250ms", 0.25), ("1d", 86400.0), ("0.5", 0.5), ("2 m", 120.0),
])
def test_parse_duration(text: object, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "10x", "s", "-1s", -1, True, float("inf"), "1h-5m"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8377", ("127.0.0.1", 8377)), ("[::1]:80", ("::1", 80)),
    ("localhost:0", ("localhost", 0)), ("0.0.0.0:65535", ("0.0.0.0", 65535)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("bad", ["8377", "host", "1.2.3.4:70000", "300.1.1.1:80", "[zz]:80",
                                 ":80", "a b:80", "-x:80"])
def test_parse_listen_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(bad)


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("text", "key", "words"), [
    # unknown keys and sections
    ("[engine]\nordr = 3\n", "engine.ordr", "unknown key"),
    ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
    ("colour = 'blue'\n", "colour", "unknown key"),
    # wrong types
    ("[engine]\nmin_count = 'eight'\n", "engine.min_count", "integer"),
    ("[engine]\nmin_count = 8.5\n", "engine.min_count", "integer"),
    ("[sources]\nstdin = 'yes'\n", "sources.stdin", "true or false"),
    ("[sources]\nglobs = 'inbox/*.txt'\n", "sources.globs", "list"),
    ("[sources]\nglobs = [1]\n", "sources.globs", "item 0"),
    ("engine = 3\n", "engine", "table"),
    ("[engine]\nexact = 1\n", "engine.exact", "true or false"),
    # impossible values
    ("[engine]\nmin_count = -3\n", "engine.min_count", ">= 1"),
    ("[engine]\norder = 1\n", "engine.order", ">= 2"),
    ("[engine]\norder = 50\n", "engine.order", "<="),
    ("[engine]\nmin_pmi = [2.0, 1.0, 6.0]\n", "engine.min_pmi", "increase"),
    ("[engine]\nmin_pmi = []\n", "engine.min_pmi", "1 to 3 values"),
    ("[engine]\norder = 3\nmin_pmi = [2.0, 4.0, 6.0]\n", "engine.min_pmi", "1 to 2 values"),
    ("[engine]\nmemory = '1KB'\n", "engine.memory", "at least"),
    ("[engine]\nmemory = 'lots'\n", "engine.memory", "size"),
    ("[engine]\nmin_entropy = -1\n", "engine.min_entropy", ">="),
    ("[engine]\nbound_share = 2\n", "engine.bound_share", "from 0 to 1"),
    ("[engine]\nbound_share = \"high\"\n", "engine.bound_share", "number"),
    ("[engine]\nunits = 'latin'\n", "engine.units", "'mixed', 'han'"),
    ("[engine]\nhalf_life = -5\n", "engine.half_life", "negative"),
    ("[view]\nshards = 'a/state'\n", "view.shards", "list"),
    ("[view]\nshards = ['a/state', 3]\n", "view.shards", "item 1"),
    ("[view]\ninterval = 0\n", "view.interval", "positive"),
    ("[view]\nshards = ['a']\n[http]\ningest_enabled = true\ningest_token = 't'\n",
     "view.shards", "ingest_enabled = false"),
    ("[view]\nshards = ['st/']\n[state]\ndir = 'st'\n", "view.shards", "own state.dir"),
    ("[engine]\ndepth = 0\n", "engine.depth", "1, 2, 4, 8 or 16"),
    ("[engine]\ndepth = 3\n", "engine.depth", "1, 2, 4, 8 or 16"),
    ("[engine]\nmemory = '100TB'\n", "engine.memory", "physical memory"),
    ("[engine]\nseed = -1\n", "engine.seed", ">= 0"),
    ("[intervals]\nrescore = -1\n", "intervals.rescore", "negative"),
    ("[intervals]\nsnapshot = '-5s'\n", "intervals.snapshot", "duration"),
    ("[intervals]\nexport = 0\n", "intervals.export", "positive"),
    ("[intervals]\nrescore = '10 parsecs'\n", "intervals.rescore", "duration"),
    ("[time]\nmode = 'sundial'\n", "time.mode", "'wall', 'replay'"),
    ("[time]\nchars_per_second = 0\n", "time.chars_per_second", "> 0"),
    ("[http]\nlisten = 'localhost'\n", "http.listen", "HOST:PORT"),
    ("[http]\nlisten = '127.0.0.1:99999'\n", "http.listen", "port"),
    ("[http]\nlisten = '0.0.0.0:8377'\ningest_enabled = true\n", "http.ingest_token",
     "must be set"),
    # a token on loopback too: any page in a local browser can POST text/plain there
    ("[http]\nlisten = '127.0.0.1:8377'\ningest_enabled = true\n", "http.ingest_token",
     "loopback address too"),
    ("[http]\nheader_timeout = 0\n", "http.header_timeout", "positive"),
    ("[http]\nidle_timeout = 'soon'\n", "http.idle_timeout", "duration"),
    ("[http]\nmax_connections = 0\n", "http.max_connections", ">= 1"),
    ("[http]\nreserved_fds = -1\n", "http.reserved_fds", ">= 0"),
    ("[http]\nallowed_hosts = ['bad host']\n", "http.allowed_hosts", "host name"),
    ("[http]\nallowed_hosts = 'example.org'\n", "http.allowed_hosts", "list"),
    ("[state]\nkeep = 0\n", "state.keep", ">= 1"),
    ("[export]\nformats = ['xml']\n", "export.formats", "jsonl"),
    ("[export]\nselection = 'best'\n", "export.selection", "'all'"),
    ("[export]\ntop_k = -1\n", "export.top_k", ">= 1"),
    ("[log]\nlevel = 'loud'\n", "log.level", "'debug'"),
    ("[sources]\nmax_line_bytes = 10\n", "sources.max_line_bytes", "at least"),
])
def test_bad_value_names_key_and_file(tmp_path: Path, text: str, key: str, words: str) -> None:
    msg = error_of(tmp_path, text)
    assert f": {key}: " in msg, msg
    assert words in msg, msg


def test_malformed_toml_gives_line_and_column(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "[engine]\norder = 4\nmin_count = = 3\n")
    assert "invalid TOML" in msg and "line 3" in msg and "column" in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(p)


def test_good_values_are_converted(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, """
[sources]
globs = ["a/*.log", "/abs/b.txt"]
max_line_bytes = "64KB"
scan_interval = "250ms"
[engine]
order = 5
memory = "1GiB"
capacity = 5000
known = ["dict.txt"]
half_life = "30m"
[time]
mode = "replay"
chars_per_second = 50
start = 1970-01-02T00:00:00Z
[intervals]
rescore = 0.5
[export]
formats = ["csv", "jsonl", "csv"]
top_k = 20
[http]
listen = "[::1]:0"
ingest_enabled = true
ingest_token = "t"
header_timeout = "2s"
idle_timeout = "1m"
max_connections = 64
reserved_fds = 0
allowed_hosts = ["Example.ORG.", "[::1]", "*"]
"""))
    assert cfg.sources.globs == ("a/*.log", "/abs/b.txt")
    assert cfg.sources.max_line_bytes == 65536
    assert cfg.sources.scan_interval == 0.25
    assert cfg.engine.order == 5
    assert cfg.engine.min_pmi == (2.0, 4.0, 6.0, 8.0)  # derived: +2 per further order
    assert cfg.engine.memory == 2**30
    assert cfg.engine.capacity == 5000
    assert cfg.engine.known == ("dict.txt",)
    assert cfg.engine.half_life == 1800.0
    assert cfg.time.mode == "replay" and cfg.time.chars_per_second == 50.0
    assert cfg.time.start == 86400.0
    assert cfg.intervals.rescore == 0.5
    assert cfg.export.formats == ("csv", "jsonl")
    assert cfg.export.top_k == 20
    assert (cfg.http.host, cfg.http.port) == ("::1", 0)
    assert cfg.http.ingest_enabled and cfg.http.ingest_token == "t"
    assert (cfg.http.header_timeout, cfg.http.idle_timeout) == (2.0, 60.0)
    assert (cfg.http.max_connections, cfg.http.reserved_fds) == (64, 0)
    assert cfg.http.allowed_hosts == ("example.org", "::1", "*")


# --------------------------------------------------------------------------- overrides


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_override_arguments(p)
    return p.parse_args(argv)


def test_overrides_apply() -> None:
    base = load(SHIPPED)
    cfg = apply_overrides(base, parse([
        "--source", "x/*.txt", "--source", "y.log", "--stdin", "--state-dir", "st",
        "--export-dir", "ex", "--listen", "127.0.0.1:9000", "--rescore-interval", "0.5",
        "--snapshot-interval", "2m", "--export-interval", "30", "--min-count", "3",
        "--known", "k1.txt", "--known", "k2.txt", "--from-end", "--log-level", "DEBUG",
    ]))
    assert cfg.sources.globs == ("x/*.txt", "y.log")
    assert cfg.sources.stdin is True
    assert cfg.sources.from_beginning is False
    assert cfg.state.dir == "st" and cfg.export.dir == "ex"
    assert cfg.http.listen == "127.0.0.1:9000" and cfg.http.enabled
    assert cfg.intervals.rescore == 0.5
    assert cfg.intervals.snapshot == 120.0
    assert cfg.intervals.export == 30.0
    assert cfg.engine.min_count == 3
    assert cfg.engine.known == ("k1.txt", "k2.txt")
    assert cfg.log.level == "debug"
    # untouched values stay as in the file
    assert cfg.engine.memory == base.engine.memory
    assert cfg.state.keep == base.state.keep


def test_half_life_zero_means_no_decay(tmp_path: Path) -> None:
    import math

    cfg = load(write(tmp_path, "[engine]\nhalf_life = 0\n", "ok.toml"))
    assert math.isinf(cfg.engine.half_life)
    assert math.isinf(cfg.engine.engine_config().half_life)


def test_shard_flags_make_a_view() -> None:
    cfg = apply_overrides(Config(), parse(["--shard", "a/state", "--shard", "b/state",
                                           "--shard", "a/state"]))
    assert cfg.view.shards == ("a/state", "b/state")
    assert cfg.where("view.shards") == "command line: --shard"
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), parse(["--shard", "state"]))
    assert "command line: --shard: state is this service's own state.dir" in str(info.value)
    for extra in (["--source", "x/*.txt"], ["--stdin"]):
        with pytest.raises(ConfigError) as info:
            apply_overrides(Config(), parse(["--shard", "a/state", *extra]))
        assert f"a merged view reads no sources: drop {extra[0]}" in str(info.value)


def test_no_overrides_is_identity() -> None:
    base = load(SHIPPED)
    assert apply_overrides(base, parse([])) == base


def test_known_lexicon_default_replacement_and_off(tmp_path: Path) -> None:
    shipped = load(SHIPPED)
    assert shipped.engine.known == ("jieba",) == Config().engine.known
    # flags replace the file's list; --no-known empties it; [] in the file turns it off
    assert apply_overrides(shipped, parse(["--known", "mine.txt"])).engine.known == (
        "mine.txt",)
    assert apply_overrides(shipped, parse(["--known", "jieba", "--known", "mine.txt"])
                           ).engine.known == ("jieba", "mine.txt")
    off = apply_overrides(shipped, parse(["--no-known"]))
    assert off.engine.known == () and off.where("engine.known") == "command line: --no-known"
    assert load(write(tmp_path, "[engine]\nknown = []\n")).engine.known == ()
    with pytest.raises(SystemExit):
        parse(["--known", "x.txt", "--no-known"])


def test_no_http_and_from_beginning() -> None:
    base = cfgmod.from_dict({"sources": {"from_beginning": False}}, "t.toml")
    cfg = apply_overrides(base, parse(["--no-http", "--from-beginning"]))
    assert cfg.http.enabled is False
    assert cfg.sources.from_beginning is True


@pytest.mark.parametrize(("argv", "flag"), [
    (["--rescore-interval", "-1"], "--rescore-interval"),
    (["--snapshot-interval", "soon"], "--snapshot-interval"),
    (["--min-count", "0"], "--min-count"),
    (["--min-count", "many"], "--min-count"),
    (["--listen", "nowhere"], "--listen"),
    (["--log-level", "chatty"], "--log-level"),
])
def test_bad_override_names_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), parse(argv))
    assert f"command line: {flag}: " in str(info.value)


# --------------------------------------------------------------------------- the real command


def run_streamer(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "streamer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("text", "key"), [
    ("[engine]\nmin_count = -3\n", "engine.min_count"),
    ("[engine]\nmin_pmi = [6.0, 4.0, 2.0]\n", "engine.min_pmi"),
    ("[http]\nlisten = 'not-an-address'\n", "http.listen"),
    ("[intervals]\nrescore = '-10s'\n", "intervals.rescore"),
    ("[sources]\nbogus = 1\n", "sources.bogus"),
    ("[time]\nmode = 'fast'\n", "time.mode"),
    # values only the engine can judge: one validator (EngineConfig), reported under the key
    ("[engine]\ndepth = 3\n", "engine.depth"),
    ("[engine]\nmemory = '100TB'\n", "engine.memory"),
    ("[engine]\norder = 3\nmin_pmi = [2.0, 4.0, 6.0]\n", "engine.min_pmi"),
])
def test_run_with_bad_config_exits_2_naming_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    proc = run_streamer(["run", "--config", str(path), "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert key in lines[0] and str(path) in lines[0], lines[0]
    # nothing was created: validation happens before any state or inbox is touched
    assert sorted(os.listdir(tmp_path)) == ["bad.toml"]


def test_run_with_malformed_toml_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine\norder = 4\n")
    proc = run_streamer(["run", "--config", str(path), "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "line 1" in proc.stderr, proc.stderr


def test_run_with_impossible_min_count_flag_names_the_flag(tmp_path: Path) -> None:
    proc = run_streamer(["run", "--config", str(SHIPPED), "--min-count", "0", "--no-http"],
                        cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("streamer run: error: command line: --min-count: "), proc.stderr


def test_run_with_bad_flag_exits_2(tmp_path: Path) -> None:
    proc = run_streamer(["run", "--config", str(SHIPPED), "--rescore-interval", "-1",
                         "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "--rescore-interval" in proc.stderr, proc.stderr


def test_run_with_missing_config_exits_2(tmp_path: Path) -> None:
    proc = run_streamer(["run", "--config", str(tmp_path / "missing.toml")], cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.toml" in proc.stderr and "not found" in proc.stderr


def test_run_with_missing_lexicon_names_key_or_flag(tmp_path: Path) -> None:
    path = write(tmp_path, '[engine]\nknown = ["no-such-dict.txt"]\n', "k.toml")
    proc = run_streamer(["run", "--config", str(path), "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}: engine.known: " in proc.stderr and "no-such-dict.txt" in proc.stderr
    proc = run_streamer(["run", "--config", str(SHIPPED), "--known", "other.txt", "--no-http"],
                        cwd=tmp_path)
    assert proc.returncode == 2
    assert "command line: --known: " in proc.stderr and "other.txt" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["k.toml"]  # nothing created


def test_run_with_unknown_lexicon_name_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[engine]\nknown = ["jieba", "jeiba"]\n', "k.toml")
    proc = run_streamer(["run", "--config", str(path), "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"streamer run: error: {path}: engine.known: jeiba: no such file, and not a lexicon name "
        "(names: jieba)"], proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["k.toml"]
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    path = write(tmp_path, '[engine]\nknown = ["latin1.txt"]\n', "k.toml")
    proc = run_streamer(["run", "--config", str(path), "--no-http"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"streamer run: error: {path}: engine.known: latin1.txt: not UTF-8 (byte 3: "
        "invalid continuation byte)"], proc.stderr


def test_where_names_the_flag_that_set_a_value() -> None:
    cfg = apply_overrides(load(SHIPPED), parse(["--state-dir", "x"]))
    assert cfg.where("state.dir") == "command line: --state-dir"
    assert cfg.where("export.dir") == f"{SHIPPED}: export.dir"
