"""The candidate table and the fixed-width storage it composes: texts (inline and
overflow), the example pool and its reclaiming, the once-listed registry; each through a
real snapshot file.

Nothing is mocked: tables and engines are built, filled and written to disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.candidates import CandidateTable
from streamer.core.engine import Engine, EngineConfig
from streamer.core.examples import EXAMPLE_BYTES, EXAMPLES
from streamer.core.listed import ListedRegistry
from streamer.core.ngrams import mix, span_keys
from streamer.core.rows import fit_utf8
from streamer.core.texts import OVERFLOW_OVERHEAD, TEXT_BYTES
from streamer.core.units import encode_words
from streamer.storage import snapshot

#: 20 Han characters, 60 bytes of UTF-8: longer than the inline width
LONG_WORD = "中华人民共和国全国人民代表大会常务委员会"
#: a character of 4 bytes (CJK extension B) in a long text
ASTRAL = "𠀀𠀁𠀂𠀃𠀄𠀅𠀆𠀇𠀈𠀉𠀊𠀋𠀌"
#: small exact engine; low thresholds, so a word seen in 30 lines is cohesive throughout
CFG = EngineConfig(min_count=4, exact=True, memory=8 * 2**20, min_entropy=0.0,
                   min_pmi=(0.5, 0.5, 0.5))


def through_file(tmp_path: Path, name: str, state: dict) -> dict:
    path = snapshot.write_file(tmp_path / name, state, fingerprint="test")
    return snapshot.load_file(path, fingerprint="test").state


def word_keys(words: list[str]) -> np.ndarray:
    enc, offsets = encode_words(words)
    return span_keys(mix(enc.ids), offsets[:-1], offsets[1:])


def contexts(word: str, n: int = 30) -> list[str]:
    """``word`` in n lines, each time between two characters seen once or twice."""
    side = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥山水火木金土日月星"
    return [f"{side[i % len(side)]}{word}{side[(7 * i + 3) % len(side)]}" for i in range(n)]


def add_example(table: CandidateTable, slot: int, context: str, keep: int = EXAMPLES) -> None:
    table.add_examples(np.array([slot], np.int64), [context], keep)


# --------------------------------------------------------------------------- texts


def test_texts_longer_than_the_inline_width_round_trip(tmp_path: Path) -> None:
    assert len(LONG_WORD.encode()) > TEXT_BYTES and len(ASTRAL.encode()) > TEXT_BYTES
    texts = ["新词", LONG_WORD, "iphone手机", ASTRAL, "好" * (TEXT_BYTES // 3)]
    table = CandidateTable(1024)
    slots = table.admit(np.arange(1, 6, dtype=np.uint64) * 7919, texts, now=5.0)
    assert (slots >= 0).all()
    assert table.texts(slots) == texts
    assert [table.text_of(s) for s in slots.tolist()] == texts
    assert len(table.text.overflow) == 2  # only the two long ones
    back = CandidateTable.from_state(through_file(tmp_path, "t.snap", table.state()))
    assert back.texts(slots) == texts
    assert back.text.overflow == table.text.overflow and back.nbytes == table.nbytes
    # eviction gives the overflow back
    before = table.nbytes
    table.remove(slots[1:2])
    assert len(table.text.overflow) == 1
    assert table.nbytes == before - len(LONG_WORD.encode()) - OVERFLOW_OVERHEAD
    assert table.text_of(int(slots[1])) == ""
    assert table.texts(slots[[0, 2, 3, 4]]) == [texts[0], texts[2], texts[3], texts[4]]


def test_packed_state_round_trips_texts_with_a_zero_byte(tmp_path: Path) -> None:
    """The snapshot packs texts by dropping zero padding; a text holding U+0000 (the
    engine never makes one) still round-trips, and a context holding one is shown with
    a space."""
    table = CandidateTable(64, example_pool=8)
    texts = ["a\0b", "新词", ""]
    slots = table.admit(np.array([1, 2, 3], dtype=np.uint64), texts, now=0.0)
    add_example(table, int(slots[1]), "这个\0新词")
    back = CandidateTable.from_state(through_file(tmp_path, "z.snap", table.state()))
    assert back.texts(slots) == texts
    assert back.examples_of(int(slots[1])) == ["这个 新词"]


def test_the_overflow_is_bounded_and_long_pieces_beyond_it_are_not_tracked() -> None:
    table = CandidateTable(1024)
    cost = 3 * 30 + OVERFLOW_OVERHEAD
    fits = table.text.overflow_limit // cost
    words = [f"{i:05d}" + "长" * 28 for i in range(fits + 5)]  # 89 bytes each
    slots = table.admit(np.arange(1, len(words) + 1, dtype=np.uint64), words, now=0.0)
    assert (slots[:fits] >= 0).all() and (slots[fits:] == -1).all()
    assert table.text.long_dropped == 5
    assert table.nbytes - CandidateTable(1024).nbytes <= table.text.overflow_limit
    # short texts are still admitted
    short = table.admit(np.array([10**6], dtype=np.uint64), ["短词"], now=0.0)
    assert short[0] >= 0 and table.text_of(int(short[0])) == "短词"


def test_engine_tracks_and_lists_a_word_longer_than_the_inline_width(tmp_path: Path) -> None:
    lines = contexts(LONG_WORD)
    eng = Engine(CFG)
    eng.ingest(lines, now=100.0)
    slot = int(eng.candidates.lookup(word_keys([LONG_WORD]))[0])
    assert slot >= 0 and eng.candidates.text_of(slot) == LONG_WORD
    pub = eng.rescore(now=100.0)
    assert LONG_WORD in [w.word for w in pub.words]
    back = Engine.from_state(through_file(tmp_path, "e.snap", eng.state_dict()))
    assert back.candidates.text_of(slot) == LONG_WORD
    assert [w.word for w in back.rescore(now=100.0).words] == [w.word for w in pub.words]


# --------------------------------------------------------------------------- examples


def test_contexts_are_cut_at_a_character_boundary() -> None:
    for text in ("中" * 100, "a" + "中" * 100, "ab" + "中" * 100, "x" + ASTRAL * 10):
        b = fit_utf8(text, EXAMPLE_BYTES)
        assert len(b) <= EXAMPLE_BYTES
        cut = b.decode("utf-8")  # never a broken character
        assert text.startswith(cut)
        assert len(text[:len(cut) + 1].encode()) > EXAMPLE_BYTES  # nothing more fits
    table = CandidateTable(64, example_pool=8)
    slots = table.admit(np.array([1], dtype=np.uint64), ["新词"], now=0.0)
    context = "今天" + "大家都在讨论新词" * 10
    add_example(table, int(slots[0]), context)
    (stored,) = table.examples_of(int(slots[0]))
    assert context.startswith(stored) and len(stored.encode()) == 126  # 42 characters


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("a中é𠀀ß，\u3000"), max_size=120),
       limit=st.integers(0, 200))
def test_fit_utf8_is_the_longest_whole_character_prefix(text: str, limit: int) -> None:
    b = fit_utf8(text, limit)
    cut = b.decode("utf-8")
    assert len(b) <= limit and text.startswith(cut)
    assert cut == text or len(text[:len(cut) + 1].encode()) > limit


def test_examples_keep_the_newest_and_skip_repeats(tmp_path: Path) -> None:
    table = CandidateTable(64, example_pool=8)
    slot = int(table.admit(np.array([1], dtype=np.uint64), ["新词"], now=0.0)[0])
    for c in ["第一个新词", "第二个新词", "第二个新词", "第三个新词", "第四个新词"]:
        add_example(table, slot, c)
    assert table.examples_of(slot) == ["第二个新词", "第三个新词", "第四个新词"]
    assert table.newest_examples(np.array([slot, 5])) == ["第四个新词", ""]
    back = CandidateTable.from_state(through_file(tmp_path, "x.snap", table.state()))
    assert back.examples_of(slot) == table.examples_of(slot)
    add_example(table, slot, "第五个新词", keep=1)
    assert table.examples_of(slot) == ["第五个新词"]


def test_full_pool_reclaims_the_lowest_recent_and_keeps_listed_words_examples() -> None:
    capacity, pool = 256, 16
    table = CandidateTable(capacity, example_pool=pool)
    slots = table.admit(np.arange(1, capacity + 1, dtype=np.uint64),
                        [f"词{i}" for i in range(capacity)], now=0.0)
    table.recent[slots] = np.arange(capacity, dtype=np.float64) + 1.0
    listed = slots[:4]  # the lowest recent counts of all: only protection saves them
    for k in range(EXAMPLES + 2):
        table.add_examples(listed, [f"词{i}的第{k}个例子" for i in range(4)], protect=listed)
    # every other piece asks for an example, a few at a time: the pool fills, reclaims
    others = slots[4:]
    for a in range(0, len(others), 5):
        part = others[a:a + 5]
        table.add_examples(part, [f"例子{int(s)}" for s in part.tolist()], protect=listed)
        held = int((table.pool.owner >= 0).sum())
        assert held <= pool and held + table.pool._n_free == pool
    for i, s in enumerate(listed.tolist()):
        assert table.examples_of(s) == [f"词{i}的第{k}个例子" for k in (2, 3, 4)]
    assert table.pool.sampled[slots].all()  # reclaimed slots do not ask again unless listed
    holders = np.flatnonzero(table.pool.owner >= 0)
    assert len(holders) > 4
    # the entries held (besides the listed words') are those of the latest askers
    owners = set(table.pool.owner[holders].tolist()) - set(listed.tolist())
    assert int(others[-1]) in owners
    # a slot's entry is consistent both ways
    for e in holders.tolist():
        assert table.pool.entry[table.pool.owner[e]] == e
    # eviction gives entries back
    table.remove(listed)
    assert int((table.pool.owner >= 0).sum()) == len(holders) - 4
    assert table.examples_of(int(listed[0])) == []


def test_engine_examples_are_strings_and_discover_has_no_pool(tmp_path: Path) -> None:
    lines = contexts("皮皮虾")
    eng = Engine(CFG)
    eng.ingest(lines, now=0.0)
    eng.rescore(now=0.0)
    eng.ingest(lines[::-1], now=1.0)
    ex = eng.examples("皮皮虾")
    assert 1 <= len(ex) <= EXAMPLES and all("皮皮虾" in e for e in ex)
    assert eng.examples("没有的词") == []
    quiet = Engine(dataclasses.replace(CFG, examples=0))
    quiet.ingest(lines, now=0.0)
    assert quiet.candidates.pool.entries == 0 and quiet.examples("皮皮虾") == []
    # a discover state restored by the daemon gets a pool
    back = Engine.from_state(through_file(tmp_path, "q.snap", quiet.state_dict()),
                             config=CFG)
    assert back.candidates.pool.entries > 0
    back.ingest(lines, now=2.0)
    assert back.examples("皮皮虾")


# --------------------------------------------------------------------------- registry


def test_registry_is_bounded_and_forgets_the_earliest_half() -> None:
    reg = ListedRegistry(8)
    reg.add(np.arange(10, 18, dtype=np.uint64), np.arange(8, dtype=np.float64))
    assert len(reg) == 8
    reg.add(np.array([11, 12], dtype=np.uint64), np.array([-5.0, 50.0]))  # earlier time wins
    assert reg.get(np.array([11, 12, 99], dtype=np.uint64))[:2].tolist() == [-5.0, 2.0]
    assert np.isnan(reg.get(np.array([99], dtype=np.uint64))[0])
    reg.add(np.array([5], dtype=np.uint64), np.array([100.0]))  # 9 > 8: keep the newest 4
    assert len(reg) == 4
    assert reg.keys.tolist() == [5, 15, 16, 17] and reg.times.tolist() == [100.0, 5, 6, 7]
    for _ in range(50):
        reg.add(np.random.default_rng(0).integers(0, 2**63, 7, dtype=np.uint64),
                np.random.default_rng(1).random(7))
        assert len(reg) <= reg.capacity
        assert (np.diff(reg.keys.astype(np.float64)) > 0).all()


def test_registry_bounded_in_the_engine_and_survives_a_snapshot(tmp_path: Path) -> None:
    words = ["皮皮虾", "蓝鲸币", "雪豹链", "咕噜喵"]
    lines = [line for w in words for line in contexts(w)]
    eng = Engine(dataclasses.replace(CFG, half_life=3600.0))
    eng.ingest(lines, now=1000.0)
    first = {w.word: (w.first_seen, w.new) for w in eng.rescore(now=1000.0).words}
    assert set(words) <= set(first) and all(first[w] == (1000.0, True) for w in words)
    assert len(eng.listed) == len(first)
    # fill the registry far past its capacity: it stays within it
    cap = eng.listed.capacity
    assert cap == eng.candidates.capacity
    rng = np.random.default_rng(3)
    for k in range(5):
        eng.listed.add(rng.integers(0, 2**63, cap // 2 + 7, dtype=np.uint64),
                           np.full(cap // 2 + 7, float(k)))
        assert len(eng.listed) <= cap
    # the words listed at time 1000 are the newest entries: kept
    kept = eng.listed.get(word_keys(words))
    assert kept.tolist() == [1000.0] * 4
    state = through_file(tmp_path, "r.snap", eng.state_dict())
    back = Engine.from_state(state)
    assert back.listed.keys.tolist() == eng.listed.keys.tolist()
    assert back.listed.times.tolist() == eng.listed.times.tolist()
    assert back.stats()["discovered_words"] == len(eng.listed)
    # after a restart the words keep their first listing: same first_seen and flags
    a = {w.word: (w.first_seen, w.new) for w in eng.rescore(now=2000.0).words}
    b = {w.word: (w.first_seen, w.new) for w in back.rescore(now=2000.0).words}
    assert a == b and all(a[w] == (1000.0, True) for w in words)


def test_merge_combines_texts_examples_and_registries(tmp_path: Path) -> None:
    one, two = Engine(CFG), Engine(CFG)
    one.ingest(contexts(LONG_WORD), now=10.0)
    two.ingest(contexts("皮皮虾"), now=20.0)
    one.rescore(now=10.0)
    two.rescore(now=20.0)
    one.merge(Engine.from_state(through_file(tmp_path, "two.snap", two.state_dict())))
    assert one.examples("皮皮虾") == two.examples("皮皮虾") != []
    assert one.examples(LONG_WORD)
    got = one.listed.get(word_keys([LONG_WORD, "皮皮虾"]))
    assert got.tolist() == [10.0, 20.0]
    words = [w.word for w in one.rescore(now=30.0).words]
    assert LONG_WORD in words and "皮皮虾" in words


def test_state_keeps_the_snapshot_layout() -> None:
    """Snapshots written before the table was split into its parts still load: the
    state has the same keys, nesting and dtypes."""
    table = CandidateTable(64, example_pool=8)
    slots = table.admit(np.array([1, 2], dtype=np.uint64), ["新词", LONG_WORD], now=0.0)
    add_example(table, int(slots[0]), "这个新词")
    st = table.state()
    assert list(st) == ["capacity", "keys", "total", "recent", "slow", "first_seen",
                        "last_seen", "used", "text", "overflow", "long_dropped", "evicted",
                        "free", "examples"]
    assert list(st["text"]) == ["lengths", "bytes"]
    assert list(st["overflow"]) == ["slots", "lengths", "bytes"]
    assert list(st["examples"]) == ["sampled", "entry", "owner", "lengths", "bytes", "free"]
    dtypes = {k: st[k].dtype.str for k in ("keys", "total", "recent", "used", "free")}
    assert dtypes == {"keys": "<u8", "total": "<i8", "recent": "<f8", "used": "|b1",
                      "free": "<i4"}
    assert st["text"]["lengths"].dtype == np.uint8 and st["overflow"]["slots"].dtype == np.int64
    ex = st["examples"]
    assert (ex["entry"].dtype, ex["owner"].dtype, ex["lengths"].shape) == \
        (np.int32, np.int32, (8, EXAMPLES))


@pytest.mark.parametrize("capacity", [1024, 4096])
def test_tables_are_resident_from_the_start(capacity: int) -> None:
    """Every per-slot array is allocated at construction: filling the table allocates
    no per-slot Python objects (nbytes does not change while slots fill)."""
    table = CandidateTable(capacity)
    before = table.nbytes
    table.admit(np.arange(1, capacity // 2, dtype=np.uint64),
                [f"词{i}" for i in range(1, capacity // 2)], now=0.0)
    assert table.nbytes == before
    assert all(isinstance(v, np.ndarray | int | dict) for v in table.state().values())
