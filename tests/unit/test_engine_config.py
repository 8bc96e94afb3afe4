"""EngineConfig is the one validator of engine values: every front end reports its errors."""

from __future__ import annotations

import pytest

from streamer.core.engine_config import EngineConfig, SettingError


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"order": 1}, "order", ">= 2"),
    ({"order": 9}, "order", "<= 8"),
    ({"min_count": 0}, "min_count", ">= 1"),
    ({"min_pmi": ()}, "min_pmi", "1 to 3 values"),
    ({"min_pmi": (2.0, 4.0, 6.0, 8.0)}, "min_pmi", "1 to 3 values"),
    ({"min_pmi": (4.0, 2.0)}, "min_pmi", "increase"),
    ({"min_pmi": (2.0, float("nan"))}, "min_pmi", "finite"),
    ({"min_entropy": -0.1}, "min_entropy", ">= 0"),
    ({"bound_share": 1.5}, "bound_share", "from 0 to 1"),
    ({"bound_share": -0.1}, "bound_share", "from 0 to 1"),
    ({"bound_share": True}, "bound_share", "from 0 to 1"),
    ({"units": "latin"}, "units", "'mixed', 'han'"),
    ({"memory": 1024}, "memory", "at least 4MB"),
    ({"memory": 2**60}, "memory", "physical memory"),
    ({"depth": 3}, "depth", "1, 2, 4, 8 or 16"),
    ({"seed": -1}, "seed", ">= 0"),
    ({"half_life": 0.0}, "half_life", "positive"),
    ({"capacity": 0}, "capacity", ">= 1"),
    ({"max_words": 0}, "max_words", ">= 1"),
    ({"examples": -1}, "examples", ">= 0"),
])
def test_impossible_value_names_its_field(kwargs: dict, field: str, words: str) -> None:
    with pytest.raises(SettingError) as info:
        EngineConfig(**kwargs)
    assert info.value.field == field
    assert words in info.value.problem, info.value.problem
    assert repr(kwargs[field]) in info.value.problem  # the offending value is shown


def test_thresholds_continue_two_nats_per_order() -> None:
    assert EngineConfig(order=5).min_pmi == (2.0, 4.0, 6.0, 8.0)
    assert EngineConfig(order=5, min_pmi=(1.0, 3.0)).min_pmi == (1.0, 3.0, 5.0, 7.0)
    assert EngineConfig(min_pmi=(1.0, 1.0, 1.0)).min_pmi == (1.0, 1.0, 1.0)
