"""The partitioned discover run (service.cluster) without a cluster: its task functions
called in this process, in the order the scheduler would chain them, on real files.

What the Dask run relies on: byte ranges yield the lines the whole-file reader yields; the
summed count phase of the partitions is one process's, bit for bit with exact counters;
the merged cut pass gives the one-process ranked list.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import background

from streamer.cli.discover import discover
from streamer.core.engine import Engine, EngineConfig
from streamer.core.sketch import ExactCounter, counter_from_state
from streamer.input.batch_reader import ReadStats, decode_block, iter_raw_blocks
from streamer.input.ranges import ByteRange, iter_range_blocks, split_ranges
from streamer.service.cluster import Counts, add_counts, count_run, cut_run, merge_states

EXACT = EngineConfig(memory=16 * 2**20, exact=True, min_count=5, examples=0, prefault=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("cluster")
    rng = random.Random(7)
    paths = []
    for i, n in enumerate((900, 1, 0, 700)):
        lines = background(rng, n, inject=("蓝鲸币", "绿萝熊"))
        if i == 0:  # a line of several blocks and lines shorter than one
            lines.insert(300, "".join(background(rng, 400)))
        path = root / f"part{i}.txt"
        body = "\n".join(lines) + ("\n" if i != 3 else "")  # the last has no final newline
        path.write_text(body, encoding="utf-8")
        paths.append(str(path))
    return paths


def decoded(blocks: list[tuple[bytes, int]]) -> list[str]:
    """The lines (and line pieces) that blocks decode to."""
    out = []
    for raw, complete in blocks:
        d = decode_block(raw, complete)
        out.extend(d.text.split("\n"))
    return out


@pytest.mark.parametrize("block", [64, 1000, 1 << 19])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
def test_ranges_read_as_the_whole_file(files: list[str], block: int, parts: int) -> None:
    whole_stats, range_stats = ReadStats(), ReadStats()
    whole = []
    for p in files:
        with open(p, "rb") as fh:
            whole.extend(iter_raw_blocks(fh, whole_stats, block))
    runs = split_ranges(files, parts)
    assert len(runs) == parts
    pieces = [b for run in runs for r in run for b in iter_range_blocks(r, range_stats, block)]
    assert decoded(pieces) == decoded(whole)
    assert range_stats.bytes == whole_stats.bytes
    assert range_stats.long_lines_cut == whole_stats.long_lines_cut
    # every byte in exactly one range, in order, each cut at a line start
    flat = [r for run in runs for r in run]
    for a, b in zip(flat, flat[1:], strict=False):
        assert (a.path, a.end) == (b.path, b.start) or b.start == 0
    for r in flat:
        if r.start:
            with open(r.path, "rb") as fh:
                fh.seek(r.start - 1)
                assert fh.read(1) == b"\n"


def test_split_ranges_rejects_no_parts(files: list[str]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_ranges(files, 0)


def one_process_counts(files: list[str], config: EngineConfig) -> Engine:
    engine = Engine(config)
    for p in files:
        with open(p, "rb") as fh:
            for raw in iter_raw_blocks(fh, ReadStats()):
                engine.count_batch(engine.encode_batch([decode_block(*raw).text]))
    return engine


def summed(files: list[str], config: EngineConfig, parts: int) -> tuple[Counts, list]:
    runs = split_ranges(files, parts)
    counts = [count_run(config, run) for run in runs]
    while len(counts) > 1:  # the tree, as service.cluster._tree chains it
        nxt = [add_counts(counts[i], counts[i + 1]) for i in range(0, len(counts) - 1, 2)]
        counts = nxt + ([counts[-1]] if len(counts) % 2 else [])
    return counts[0], runs


@pytest.mark.parametrize("parts", [2, 5])
def test_summed_exact_counts_are_one_process_counts(files: list[str], parts: int) -> None:
    one = one_process_counts(files, EXACT)
    total, _ = summed(files, EXACT, parts)
    mine = one.counter.state()
    assert total.counter["kind"] == "exact"
    assert np.array_equal(total.counter["keys"], mine["keys"])
    assert np.array_equal(total.counter["counts"], mine["counts"])
    assert total.counter["total"] == mine["total"]
    assert np.array_equal(total.unigrams, one.unigrams)
    assert total.total_units == one.total_units
    assert sum(total.units) == one.units_ingested
    assert total.chars == one.chars_ingested


def test_summed_sketches_never_undercount(files: list[str]) -> None:
    """Conservative update is not linear: the summed sketch is not one process's, but
    it stays an upper bound of every true count (and equals it with one partition)."""
    sketch = dataclasses.replace(EXACT, exact=False)
    truth = one_process_counts(files, EXACT).counter
    assert isinstance(truth, ExactCounter)
    total, _ = summed(files, sketch, 5)
    est = counter_from_state(total.counter).query(truth.keys)
    assert (est >= truth.counts).all()
    runs = split_ranges(files, 2)
    first, second = (count_run(sketch, run) for run in runs)
    before = first.counter["table"].copy()
    add_counts(first, second)
    assert np.array_equal(first.counter["table"], before)  # a task's input is not written
    single, _ = summed(files, sketch, 1)
    alone = one_process_counts(files, sketch).counter.state()
    assert np.array_equal(single.counter["table"], alone["table"])


def test_merged_cut_pass_gives_the_one_process_list(files: list[str]) -> None:
    expected, stats = discover(files, EXACT)
    total, runs = summed(files, EXACT, 4)
    offsets = np.concatenate([[0], np.cumsum(total.units)[:-1]]).tolist()
    now = expected.published.stream_time
    states = [cut_run(EXACT, total, run, off, now)
              for run, off in zip(runs, offsets, strict=True)]
    while len(states) > 1:
        nxt = [merge_states(states[i], states[i + 1], EXACT)
               for i in range(0, len(states) - 1, 2)]
        states = nxt + ([states[-1]] if len(states) % 2 else [])
    engine = Engine.from_state(states[0], config=EXACT)
    engine.counter = counter_from_state(total.counter)
    engine.unigrams, engine.total_units = total.unigrams, total.total_units
    engine.rescore(now)
    got = [dataclasses.replace(w, first_seen=0.0, last_seen=0.0) for w in engine.published.words]
    want = [dataclasses.replace(w, first_seen=0.0, last_seen=0.0)
            for w in expected.published.words]
    assert {"蓝鲸币", "绿萝熊"} <= {w.word for w in want}
    assert got == want
    assert engine.units_cut == expected.units_cut
    assert total.stats.lines == stats.lines


def test_range_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        list(iter_range_blocks(ByteRange(str(tmp_path / "gone.txt"), 0, 10), ReadStats()))
    assert err.value.filename == str(tmp_path / "gone.txt")
