"""Snapshot files: round trips, the documented byte layout, retention, corruption fallback,
fingerprints, leftovers of killed writers (a real SIGKILL loop) and inspection.

Everything uses real files under tmp_path; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import queue
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, OrderedDict, namedtuple
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import streamer
from streamer.storage.snapshot import (
    ALIGN,
    FORMAT_VERSION,
    MAGIC,
    FingerprintMismatch,
    NotASnapshot,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotVersionError,
    describe,
    format_description,
    format_inspection,
    inspect_snapshot,
    list_snapshots,
    load_file,
    load_latest,
    write_snapshot,
)

FP = "fingerprint-under-test"
Point = namedtuple("Point", "x y")


class Color(IntEnum):
    RED = 1
    BLUE = 2
HELPER = Path(__file__).with_name("snapshot_writer_helper.py")


# --------------------------------------------------------------------------- helpers


def assert_same(expected: Any, got: Any, where: str = "state") -> None:
    """``got`` is what loading ``expected`` must give back (numpy scalars -> Python
    scalars, subclasses -> base types, arrays C-ordered, writable and owning memory)."""
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        assert got.tobytes() == expected.tobytes(), where
        assert got.flags.writeable and got.flags.c_contiguous and got.flags.owndata, where
    elif isinstance(expected, dict):
        assert isinstance(got, dict), where
        assert list(got) == [k.item() if isinstance(k, np.generic) else k for k in expected]
        for k, v in expected.items():
            assert_same(v, got[k], f"{where}[{k!r}]")
    elif isinstance(expected, list | tuple):
        kind = tuple if isinstance(expected, tuple) else list
        assert type(got) is kind and len(got) == len(expected), where
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            assert_same(e, g, f"{where}[{i}]")
    elif isinstance(expected, np.generic):
        assert type(got) is type(expected.item()) and got == expected.item(), where
    elif isinstance(expected, float) and math.isnan(expected):
        assert type(got) is float and math.isnan(got), where
    else:
        base = next(b for b in (bool, int, float, str, bytes, type(None))
                    if isinstance(expected, b))
        assert type(got) is base and got == expected, where


def small_state(iteration: int) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "table": np.full((4, 2**16), iteration, dtype=np.uint32),
        "words": ["新词", "发现", f"w{iteration}"],
        "nested": {"counts": np.arange(10, dtype=np.int64) * iteration, "n": iteration},
    }


def layout(path: Path) -> tuple[dict[str, Any], int]:
    """(header, payload offset) parsed straight from the documented byte layout."""
    data = path.read_bytes()
    magic, length, crc = struct.unpack(">8sII", data[:16])
    assert magic == MAGIC
    raw = data[16 : 16 + length]
    assert zlib.crc32(raw) == crc
    return msgpack.unpackb(raw, raw=False), 16 + length


def layout_header_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    (length,) = struct.unpack(">I", data[8:12])
    return data[16 : 16 + length]


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def two_snapshots(directory: Path) -> tuple[Path, Path]:
    older = write_snapshot(directory, small_state(1), fingerprint=FP)
    newer = write_snapshot(directory, small_state(2), fingerprint=FP)
    return older, newer


# --------------------------------------------------------------------------- round trips


def test_round_trip_arrays_of_many_dtypes_and_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    big = rng.integers(0, 2**32, size=(5, 2**20), dtype=np.uint32)  # 20 MiB
    state = {
        "big": big,
        "sketch": {
            "tables": [rng.integers(0, 2**32, size=(3, 1000), dtype=np.uint32),
                       rng.integers(0, 2**16, size=(3, 777), dtype=np.uint16)],
            "depth": 3,
        },
        "float64": rng.standard_normal((7, 3)),
        "float32_nan": np.array([1.5, np.nan, -np.inf, -0.0], dtype=np.float32),
        "float16": np.arange(5, dtype=np.float16),
        "int8": np.array([-128, 0, 127], dtype=np.int8),
        "int64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        "uint64": np.array([2**64 - 1], dtype=np.uint64),
        "bool": rng.random(13) > 0.5,
        "complex": np.array([1 + 2j, -3j], dtype=np.complex128),
        "big_endian": np.arange(6, dtype=">u4").reshape(2, 3),
        "datetime": np.array(["2024-05-09T07:00:00"], dtype="datetime64[s]"),
        "unicode": np.array(["新词", "b"]),
        "empty": np.zeros(0, dtype=np.uint32),
        "empty_2d": np.zeros((3, 0), dtype=np.float64),
        "zero_dim": np.array(42, dtype=np.int32),
        "three_d": np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        "strided": np.arange(100, dtype=np.int32)[::7],
        "readonly": np.frombuffer(b"\x01\x02\x03\x04", dtype=np.uint8),
    }
    path = write_snapshot(tmp_path, state, fingerprint=FP, metadata={"sources": {"a": 12}})
    result = load_latest(tmp_path, fingerprint=FP)
    assert result is not None and result.path == path
    assert_same(state, result.state)
    # Loaded arrays can be updated in place (the engine keeps counting into them).
    result.state["big"][0, 0] += 1
    result.state["readonly"][0] = 9

    header = result.header
    assert header["format_version"] == FORMAT_VERSION == 2
    assert header["fingerprint"] == FP
    assert header["metadata"] == {"sources": {"a": 12}}
    assert header["streamer_version"] == streamer.__version__
    assert abs(header["created"] - time.time()) < 60
    # Raw bytes, not lists: the payload is the array bytes plus alignment and a small
    # tree, compressed on disk.
    array_bytes = sum(a.nbytes for a in state.values() if isinstance(a, np.ndarray))
    array_bytes += sum(a.nbytes for a in state["sketch"]["tables"])
    assert array_bytes <= header["raw_length"] <= array_bytes + 25 * ALIGN + 4096
    assert header["compression"] == "zstd"
    assert path.stat().st_size == 16 + len(layout_header_bytes(path)) + header["payload_length"]


def test_round_trip_scalars_containers_and_keys(tmp_path: Path) -> None:
    state = {
        "none": None,
        "bools": [True, False],
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**128 + 5,
                 -(2**200), 255, -256],
        "rng": np.random.default_rng(5).bit_generator.state,  # 128-bit ints inside
        "floats": [0.0, -0.0, 1e308, float("inf"), float("nan")],
        "text": "互联网时代的社会语言学 🙂",
        "bytes": b"\x00\xff raw",
        "tuple": (1, "two", (3.0, [np.arange(2)]), ()),
        "tuple_keys": {("新", "词"): 5, (1, (2, None)): 6, (): 7},
        7: "int key",
        "subclasses": {
            "counter": Counter("新词新"),
            "ordered": OrderedDict(b=1, a=2),
            "enum": [Color.RED, Color.BLUE],
            "named": Point(1, 2),
            "str": np.str_("numpy str"),
        },
        "int_keys": {1: "a", -5: "b", 2**40: "c"},
        "numpy_scalars": [np.int64(5), np.uint32(7), np.float32(0.5), np.bool_(True)],
        np.int64(8): "numpy int key",
        "deep": {"a": {"b": {"c": {"d": [{"e": np.arange(3)}, [np.ones(2)]]}}}},
        "empty": {"list": [], "dict": {}, "str": "", "bytes": b""},
    }
    metadata = {"positions": {"a.txt": (3, 2**70)}, "n": np.int64(4), 1: [None, b"x"]}
    write_snapshot(tmp_path, state, fingerprint=FP, metadata=metadata)
    result = load_latest(tmp_path)
    assert result is not None
    assert_same(state, result.state)
    assert_same(metadata, result.header["metadata"])
    with pytest.raises(TypeError):  # arrays belong in the state, not the header
        write_snapshot(tmp_path, {}, fingerprint=FP, metadata={"a": np.zeros(2)})


def test_file_layout_is_the_documented_one(tmp_path: Path) -> None:
    arrays = [np.arange(5, dtype=np.uint32), np.ones((2, 3), dtype=">f8")]
    path = write_snapshot(tmp_path, {"x": arrays[0], "y": {"z": arrays[1]}, "n": 1},
                          fingerprint=FP)
    data = path.read_bytes()
    header, payload_start = layout(path)
    assert set(header) == {"format_version", "created", "streamer_version", "fingerprint",
                           "metadata", "checksum_algorithm", "compression", "tree_length",
                           "raw_length", "payload_length", "checksum"}
    payload = data[payload_start:]
    assert len(payload) == header["payload_length"]
    assert header["checksum_algorithm"] == "sha256"
    # the checksum covers the bytes on disk, i.e. the compressed payload
    assert hashlib.sha256(payload).hexdigest() == header["checksum"]
    assert header["compression"] == "zstd"
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload)).read()
    assert len(raw) == header["raw_length"]
    tree = msgpack.unpackb(raw[: header["tree_length"]], raw=False)
    descriptors = [msgpack.unpackb(tree["x"].data), msgpack.unpackb(tree["y"]["z"].data)]
    assert tree["x"].code == tree["y"]["z"].code == 1
    data_start = -(-header["tree_length"] // ALIGN) * ALIGN
    for arr, (dtype, shape, offset, nbytes) in zip(arrays, descriptors, strict=True):
        assert (dtype, shape, nbytes) == (arr.dtype.str, list(arr.shape), arr.nbytes)
        start = data_start + offset
        assert start % ALIGN == 0
        assert raw[start : start + nbytes] == arr.tobytes()
    assert len(raw) == data_start + descriptors[-1][2] + descriptors[-1][3]


def test_snapshots_of_format_version_1_still_load(tmp_path: Path) -> None:
    """tests/data/snapshot-v1.snap was written by the version 1 writer (uncompressed
    payload, arrays aligned to file offsets)."""
    fixture = Path(__file__).parents[1] / "data" / "snapshot-v1.snap"
    copy = tmp_path / "snapshot-20261203T071911.494509Z-000001.snap"
    copy.write_bytes(fixture.read_bytes())
    result = load_latest(tmp_path, fingerprint="fixture-v1")
    assert result is not None and result.header["format_version"] == 1
    state = result.state
    assert state["table"].tobytes() == np.arange(4000, dtype=np.uint32).tobytes()
    assert state["zeros"].shape == (5000,) and not state["zeros"].any()
    assert state["words"] == ["新词", "互联网"]
    assert state["tuple_keys"] == {("新", "词"): 5}
    assert state["big"] == 2**100 + 7
    assert state["nested"]["counts"].tolist() == list(range(10))
    info = inspect_snapshot(copy)
    assert info["status"] == "ok" and info["checksum"] == "verified"
    assert info["compression"] == "none" and info["raw_size"] == info["payload_size"]
    assert "bytes uncompressed" in format_inspection(info)
    # a damaged version 1 file is still told apart from a good one
    flip_bit(copy, copy.stat().st_size - 100)
    with pytest.raises(SnapshotCorrupt, match="checksum"):
        load_file(copy)


def _rechecksummed(path: Path, payload: bytes) -> None:
    """Replace the payload and write a header whose checksum and CRC match it: damage
    a checksum cannot see, as a bug in a writer or in the codec would make."""
    header, start = layout(path)
    raw = layout_header_bytes(path)
    new = raw.replace(header["checksum"].encode(), hashlib.sha256(payload).hexdigest().encode())
    key = msgpack.packb("payload_length") + b"\xcf"
    at = new.index(key) + len(key)
    new = new[:at] + len(payload).to_bytes(8, "big") + new[at + 8 :]
    path.write_bytes(MAGIC + struct.pack(">II", len(new), zlib.crc32(new)) + new + payload)


def test_undecompressable_payload_with_a_matching_checksum(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, small_state(3), fingerprint=FP)
    header, start = layout(path)
    payload = bytearray(path.read_bytes()[start:])
    payload[: 4] = b"\0\0\0\0"  # the zstd frame's magic number
    _rechecksummed(path, bytes(payload))
    with pytest.raises(SnapshotCorrupt, match="cannot decompress the payload"):
        load_file(path)

    path = write_snapshot(tmp_path, small_state(4), fingerprint=FP)
    header, start = layout(path)
    # a complete frame that holds less than raw_length promises
    short = zstandard.ZstdCompressor().compress(b"\x80")
    _rechecksummed(path, short)
    with pytest.raises(SnapshotCorrupt, match="truncated"):
        load_file(path)

    path = write_snapshot(tmp_path, small_state(5), fingerprint=FP)
    header, start = layout(path)
    longer = path.read_bytes()[start:] + zstandard.ZstdCompressor().compress(b"x" * 10)
    _rechecksummed(path, longer)
    with pytest.raises(SnapshotCorrupt, match="more data than its header says"):
        load_file(path)


def test_mostly_zero_state_is_stored_compressed(tmp_path: Path) -> None:
    sketch = np.zeros((4, 2**22), dtype=np.uint32)  # 64 MiB, like an unfilled sketch
    sketch[:, :: 997] = np.arange(4 * len(range(0, 2**22, 997)), dtype=np.uint32).reshape(4, -1)
    path = write_snapshot(tmp_path, {"sketch": sketch}, fingerprint=FP)
    assert path.stat().st_size < sketch.nbytes // 10
    info = inspect_snapshot(path)
    assert info["compression"] == "zstd" and info["raw_size"] > sketch.nbytes
    assert info["payload_size"] == info["payload_on_disk"] < info["raw_size"] // 10
    text = format_inspection(info)
    assert f"{info['payload_size']:,} bytes zstd" in text
    assert f"{info['raw_size']:,} bytes raw" in text
    result = load_file(path)
    assert result.state["sketch"].tobytes() == sketch.tobytes()


@pytest.mark.parametrize(
    "bad_value",
    [
        {1, 2},
        np.array([object()], dtype=object),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        [{"deep": {frozenset(): 1}}],
        {"nested": [(1, {2})]},
        np.datetime64("2024-01-01"),
        object(),
    ],
    ids=["set", "object-array", "structured", "frozenset-key", "set-in-tuple", "datetime64",
         "object"],
)
def test_unstorable_values_raise_and_change_nothing(tmp_path: Path, bad_value: Any) -> None:
    good = write_snapshot(tmp_path, small_state(1), fingerprint=FP)
    with pytest.raises(TypeError):
        write_snapshot(tmp_path, {"ok": 1, "bad": bad_value}, fingerprint=FP)
    assert sorted(os.listdir(tmp_path)) == [good.name]


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=12), st.binary(max_size=12),
)
arrays = hnp.arrays(
    dtype=st.sampled_from(["u1", "i2", "<u4", ">i4", "i8", "f4", "f8", "c8", "?"]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
)
keys = st.recursive(
    st.one_of(st.text(max_size=8), st.integers(-(2**40), 2**40), st.binary(max_size=4)),
    lambda children: st.tuples(children, children),
    max_leaves=3,
)
trees = st.recursive(
    st.one_of(scalars, arrays),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.lists(children, max_size=3).map(tuple),
                               st.dictionaries(keys, children, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.dictionaries(keys, trees, max_size=5))
def test_round_trip_property(state: dict[Any, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write_snapshot(directory, state, fingerprint=FP)
        assert_same(state, load_file(path).state)
        assert inspect_snapshot(path)["checksum"] == "verified"


# --------------------------------------------------------------------------- retention


def test_retention_keeps_the_newest_k(tmp_path: Path) -> None:
    paths = [write_snapshot(tmp_path, small_state(i), fingerprint=FP) for i in range(5)]
    assert paths == sorted(paths, key=lambda p: p.name)
    assert list_snapshots(tmp_path) == paths[-2:]
    more = [write_snapshot(tmp_path, small_state(i), fingerprint=FP, keep=3) for i in range(4)]
    assert list_snapshots(tmp_path) == more[-3:]
    write_snapshot(tmp_path, small_state(9), fingerprint=FP, keep=1)
    assert len(list_snapshots(tmp_path)) == 1
    with pytest.raises(ValueError):
        write_snapshot(tmp_path, small_state(9), fingerprint=FP, keep=0)


def test_retention_never_deletes_bad_files_and_skips_broken_ones(tmp_path: Path) -> None:
    oldest = write_snapshot(tmp_path, small_state(1), fingerprint=FP, keep=5)
    middle = write_snapshot(tmp_path, small_state(2), fingerprint=FP, keep=5)
    aside = tmp_path / (oldest.name + ".bad-checksum")
    aside.write_bytes(b"kept for post-mortem")
    with open(middle, "r+b") as f:  # a broken file must not count as one of the `keep`
        f.truncate(middle.stat().st_size // 2)
    newest = write_snapshot(tmp_path, small_state(3), fingerprint=FP, keep=2)
    assert list_snapshots(tmp_path) == [oldest, newest]
    assert (tmp_path / (middle.name + ".bad-truncated")).exists()
    for i in range(4):
        write_snapshot(tmp_path, small_state(4 + i), fingerprint=FP)
    assert aside.read_bytes() == b"kept for post-mortem"
    assert (tmp_path / (middle.name + ".bad-truncated")).exists()


def test_names_stay_in_creation_order_when_the_clock_steps_back(tmp_path: Path) -> None:
    first = write_snapshot(tmp_path, small_state(1), fingerprint=FP)
    future = first.with_name("snapshot-29991231T235959.999999Z-000007.snap")
    first.rename(future)  # as if written while the clock was far ahead
    newer = write_snapshot(tmp_path, small_state(2), fingerprint=FP)
    assert newer.name == "snapshot-29991231T235959.999999Z-000008.snap"
    assert list_snapshots(tmp_path) == [future, newer]
    result = load_latest(tmp_path)
    assert result is not None and result.state["iteration"] == 2


# --------------------------------------------------------------------------- corruption


def _truncate_to(n: int | None) -> Any:
    def corrupt(path: Path) -> None:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(n if n is not None and n >= 0 else size + (n or 0))
    return corrupt


def _truncate_inside_header(path: Path) -> None:
    _truncate_to(16 + layout(path)[1] // 4)(path)


def _truncate_mid_payload(path: Path) -> None:
    header, start = layout(path)
    _truncate_to(start + header["payload_length"] // 2)(path)


def _flip_in_array_data(path: Path) -> None:
    header, start = layout(path)
    flip_bit(path, start + header["payload_length"] // 2)


def _flip_in_tree(path: Path) -> None:
    header, start = layout(path)
    flip_bit(path, start + header["tree_length"] - 2)


def _flip_in_header(path: Path) -> None:
    flip_bit(path, 20)


def _foreign_random(path: Path) -> None:
    path.write_bytes(random.Random(3).randbytes(5000))


def _foreign_text(path: Path) -> None:
    path.write_text("this is a text file that happens to be named like a snapshot\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _future_version(path: Path) -> None:
    header, start = layout(path)
    payload = path.read_bytes()[start:]
    header["format_version"] = FORMAT_VERSION + 1
    raw = msgpack.packb(header)
    path.write_bytes(MAGIC + struct.pack(">II", len(raw), zlib.crc32(raw)) + raw + payload)


def _trailing_data(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"\0" * 10)


CORRUPTIONS = {
    # name: (damage, reason in the new name, exception load_file raises, words in the log)
    "truncated-in-magic": (_truncate_to(5), "truncated", SnapshotCorrupt, "truncated"),
    "truncated-prefix": (_truncate_to(12), "truncated", SnapshotCorrupt, "truncated"),
    "truncated-header": (_truncate_inside_header, "truncated", SnapshotCorrupt, "truncated"),
    "truncated-payload": (_truncate_mid_payload, "truncated", SnapshotCorrupt, "truncated"),
    "last-byte-missing": (_truncate_to(-1), "truncated", SnapshotCorrupt, "truncated"),
    "bit-flip-array-data": (_flip_in_array_data, "checksum", SnapshotCorrupt, "checksum"),
    "bit-flip-tree": (_flip_in_tree, "checksum", SnapshotCorrupt, "checksum"),
    "bit-flip-header": (_flip_in_header, "corrupt", SnapshotCorrupt, "header checksum"),
    "trailing-data": (_trailing_data, "corrupt", SnapshotCorrupt, "trailing data"),
    "empty": (_empty, "empty", NotASnapshot, "empty"),
    "random-bytes": (_foreign_random, "foreign", NotASnapshot, "not a snapshot"),
    "text-file": (_foreign_text, "foreign", NotASnapshot, "not a snapshot"),
    "future-version": (_future_version, "version", SnapshotVersionError, "newer"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_damaged_newest_is_set_aside_and_previous_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    damage, reason, exception, words = CORRUPTIONS[kind]
    older, newer = two_snapshots(tmp_path)
    damage(newer)
    with pytest.raises(exception) as excinfo:
        load_file(newer)
    assert isinstance(excinfo.value, SnapshotError) and excinfo.value.reason == reason
    assert words in str(excinfo.value) and str(newer) in str(excinfo.value)
    damaged_bytes = newer.read_bytes()

    caplog.set_level(logging.INFO, logger="streamer.storage.snapshot")
    result = load_latest(tmp_path, fingerprint=FP)
    assert result is not None and result.path == older
    assert_same(small_state(1), result.state)
    aside = tmp_path / f"{newer.name}.bad-{reason}"
    assert aside.read_bytes() == damaged_bytes  # renamed, never rewritten or deleted
    assert not newer.exists()
    warnings = [r for r in caplog.records
                if r.name == "streamer.storage.snapshot" and r.levelno == logging.WARNING]
    assert any(newer.name in r.getMessage() and words in r.getMessage() for r in warnings)

    info = inspect_snapshot(aside)
    assert info["status"] == reason
    format_inspection(info)  # renders whatever could be read


def test_all_damaged_returns_none_and_says_starting_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older, newer = two_snapshots(tmp_path)
    _empty(newer)
    _flip_in_array_data(older)
    caplog.set_level(logging.INFO, logger="streamer.storage.snapshot")
    assert load_latest(tmp_path, fingerprint=FP) is None
    assert "starting empty" in caplog.text
    assert sorted(os.listdir(tmp_path)) == sorted(
        [older.name + ".bad-checksum", newer.name + ".bad-empty"])
    # A later write starts afresh next to the set-aside files.
    write_snapshot(tmp_path, small_state(3), fingerprint=FP)
    result = load_latest(tmp_path)
    assert result is not None and result.state["iteration"] == 3


def test_missing_or_empty_directory_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.storage.snapshot")
    assert load_latest(tmp_path / "nope") is None
    assert load_latest(tmp_path) is None
    assert caplog.text.count("starting empty") == 2


def test_set_aside_never_overwrites_an_earlier_bad_file(tmp_path: Path) -> None:
    older, newer = two_snapshots(tmp_path)
    earlier = tmp_path / f"{newer.name}.bad-empty"
    earlier.write_bytes(b"an earlier casualty")
    _empty(newer)
    result = load_latest(tmp_path)
    assert result is not None and result.path == older
    assert earlier.read_bytes() == b"an earlier casualty"
    assert (tmp_path / f"{newer.name}.bad-empty-2").exists()


def test_fingerprint_mismatch_raises_and_leaves_the_file(tmp_path: Path) -> None:
    older, newer = two_snapshots(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(FingerprintMismatch) as excinfo:
        load_latest(tmp_path, fingerprint="another-configuration")
    e = excinfo.value
    assert (e.expected, e.found, e.path) == ("another-configuration", FP, newer)
    assert "another-configuration" in str(e) and FP in str(e)
    assert sorted(os.listdir(tmp_path)) == before
    with pytest.raises(FingerprintMismatch):
        load_file(older, fingerprint="another-configuration")
    result = load_latest(tmp_path)  # no fingerprint: no check
    assert result is not None and result.path == newer


# --------------------------------------------------------------------------- killed writers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_temp_files_are_ignored_then_cleaned_up(tmp_path: Path) -> None:
    good = write_snapshot(tmp_path, small_state(1), fingerprint=FP)
    content = good.read_bytes()
    name = "snapshot-29991231T235959.999999Z-000009.snap"  # would sort newest
    dead = tmp_path / f".tmp-{name}.{_dead_pid()}"
    mine = tmp_path / f".tmp-{name}.{os.getpid()}"
    live = tmp_path / f".tmp-{name}.{os.getppid()}"  # another running process
    for temp in (dead, mine, live):
        temp.write_bytes(content[: len(content) // 2])
    result = load_latest(tmp_path)
    assert result is not None and result.path == good
    assert dead.exists() and mine.exists() and live.exists()
    assert {r["kind"] for r in describe(tmp_path)} == {"snapshot", "temporary"}

    write_snapshot(tmp_path, small_state(2), fingerprint=FP)
    assert not dead.exists() and not mine.exists()
    assert live.exists()  # may still be written by its owner


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def test_sigkill_during_writes_never_loses_the_last_complete_snapshot(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    rng = random.Random(20240509)
    keep = 2
    last_reported: tuple[int, str] | None = None
    temp_files_left = 0
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(directory), "24", str(keep)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        pump.start()
        try:
            while True:  # at least one complete write in this run
                line = lines.get(timeout=60)
                assert line is not None, proc.stderr.read() if proc.stderr else ""
                if line.startswith("wrote"):
                    _, iteration, name = line.split()
                    last_reported = (int(iteration), name)
                    break
            if round_ % 2:  # aim at the middle of a write
                deadline = time.monotonic() + 10
                while not any(n.startswith(".tmp-") for n in os.listdir(directory)):
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                time.sleep(rng.uniform(0, 0.02))
            else:
                time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            pump.join(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, stderr
        while (line := lines.get_nowait()) is not None:
            if line.startswith("wrote"):
                _, iteration, name = line.split()
                last_reported = (int(iteration), name)
        assert last_reported is not None

        names = os.listdir(directory)
        assert not [n for n in names if ".bad-" in n], names
        temps = [n for n in names if n.startswith(".tmp-")]
        assert len(temps) <= 1, names  # older leftovers were cleaned by the next writer
        temp_files_left += len(temps)

        result = load_latest(directory, fingerprint="writer-helper")
        assert result is not None
        iteration = result.state["iteration"]
        # The kill may land after the rename but before the helper printed it.
        assert last_reported[0] <= iteration <= last_reported[0] + 1
        assert (result.state["table"] == iteration).all()
        assert result.state["table"].nbytes == 24 * 2**20
        assert (result.state["nested"]["small"] == np.arange(7) + iteration).all()
        assert result.header["metadata"] == {"iteration": iteration}
        # The last reported snapshot is still there, and every file under a final name
        # is complete: consecutive iterations ending at the newest one.
        assert (directory / last_reported[1]).exists()
        iterations = [load_file(p).state["iteration"] for p in list_snapshots(directory)]
        assert iterations == list(range(iteration - len(iterations) + 1, iteration + 1))
        assert 1 <= len(iterations) <= keep + 1

    assert temp_files_left >= 1, "no kill landed in the middle of a write"
    write_snapshot(directory, small_state(0), fingerprint="writer-helper")
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]


# --------------------------------------------------------------------------- inspection


def test_inspect_good_snapshot(tmp_path: Path) -> None:
    state = small_state(3) | {"long": "x" * 500, "blob": b"abc", "pi": 3.25, "flag": None}
    path = write_snapshot(tmp_path, state, fingerprint=FP, metadata={"positions": {"a": 1}})
    info = inspect_snapshot(path)
    assert info["status"] == "ok" and info["error"] is None
    assert info["checksum"] == "verified"
    assert info["file_size"] == path.stat().st_size
    assert info["payload_size"] == info["payload_on_disk"] == layout(path)[0]["payload_length"]
    assert info["header"]["fingerprint"] == FP
    assert info["header"]["metadata"] == {"positions": {"a": 1}}
    assert info["arrays"] == 2
    assert info["array_bytes"] == 4 * 2**16 * 4 + 10 * 8
    s = info["state"]
    assert s["table"] == {"type": "ndarray", "dtype": "uint32", "shape": [4, 65536],
                          "bytes": 4 * 2**16 * 4}
    assert s["words"] == {"type": "list", "length": 3, "bytes": 0}
    assert s["iteration"] == {"type": "int", "value": 3}
    assert s["nested"]["type"] == "dict" and s["nested"]["bytes"] == 80
    assert s["nested"]["items"]["counts"]["shape"] == [10]
    assert s["long"]["length"] == 500 and len(s["long"]["value"]) == 80
    assert s["blob"] == {"type": "bytes", "length": 3}
    text = format_inspection(info)
    for needle in ("verified", FP, "table", "uint32", "4x65536", "positions", "nested"):
        assert needle in text
    assert inspect_snapshot(path, verify=False)["checksum"] == "not-verified"


def test_inspect_damaged_snapshots(tmp_path: Path) -> None:
    older, newer = two_snapshots(tmp_path)
    _flip_in_array_data(newer)
    info = inspect_snapshot(newer)
    assert (info["status"], info["checksum"]) == ("checksum", "mismatch")
    assert info["state"]["table"]["dtype"] == "uint32"  # the tree is still readable
    assert "mismatch" in format_inspection(info)

    _truncate_mid_payload(older)
    info = inspect_snapshot(older)
    assert (info["status"], info["checksum"]) == ("truncated", "truncated")
    assert info["header"]["fingerprint"] == FP
    assert info["payload_on_disk"] < info["payload_size"]
    assert "truncated" in format_inspection(info)

    _foreign_text(older)
    info = inspect_snapshot(older)
    assert (info["status"], info["header"], info["checksum"]) == ("foreign", None,
                                                                  "unavailable")
    assert "foreign" in format_inspection(info)


def test_describe_lists_snapshots_bad_and_temporary_files(tmp_path: Path) -> None:
    older, newer = two_snapshots(tmp_path)
    (tmp_path / f"{older.name}.bad-checksum").write_bytes(b"x")
    (tmp_path / f".tmp-{newer.name}.{_dead_pid()}").write_bytes(b"partial")
    (tmp_path / "unrelated.txt").write_text("not ours")
    _flip_in_array_data(older)
    rows = describe(tmp_path)
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == 4
    assert by_name[older.name]["status"] == "checksum" and not by_name[older.name]["newest"]
    assert by_name[newer.name]["status"] == "ok" and by_name[newer.name]["newest"]
    assert by_name[newer.name]["fingerprint"] == FP
    assert by_name[f"{older.name}.bad-checksum"]["status"] == "set-aside:checksum"
    assert [r["kind"] for r in rows].count("temporary") == 1
    text = format_description(rows)
    assert newer.name in text and "set-aside:checksum" in text
    assert format_description(describe(tmp_path / "missing")) == "no snapshots"


# ----------------------------------------------------------------- another writer's directory


def test_reading_another_writers_directory_changes_nothing_there(tmp_path: Path) -> None:
    """read_newest / newest_header / newest_signature (the merged view reading a shard's
    state.dir): a damaged newest snapshot is passed over for the one before it and named,
    never renamed; a temporary file is not a snapshot; another fingerprint raises."""
    from streamer.storage.snapshot import newest_header, newest_signature, read_newest

    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_newest(empty, fingerprint=FP) == (None, [])
    assert newest_signature(empty) is None and newest_header(empty) is None
    assert newest_signature(tmp_path / "missing") is None

    older, newer = two_snapshots(tmp_path / "shard")
    (tmp_path / "shard" / f".tmp-{newer.name}.99999").write_bytes(b"half a file")
    result, skipped = read_newest(tmp_path / "shard", fingerprint=FP)
    assert result is not None and result.path == newer and skipped == []
    assert result.state["iteration"] == 2
    st = newer.stat()
    assert newest_signature(tmp_path / "shard") == (newer.name, st.st_mtime_ns, st.st_size)

    flip_bit(newer, newer.stat().st_size - 100)
    before = sorted(p.name for p in (tmp_path / "shard").iterdir())
    result, skipped = read_newest(tmp_path / "shard", fingerprint=FP)
    assert result is not None and result.path == older and result.state["iteration"] == 1
    assert len(skipped) == 1 and skipped[0].startswith(newer.name + ": ")
    assert sorted(p.name for p in (tmp_path / "shard").iterdir()) == before
    assert newest_header(tmp_path / "shard")[0] == newer  # its header is intact

    with pytest.raises(FingerprintMismatch):
        read_newest(tmp_path / "shard", fingerprint="another-engine")
