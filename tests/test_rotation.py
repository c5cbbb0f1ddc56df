"""orchbench.core.loadtools.rotation: the cycle k6 walks when delays are injected."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.rotation import CYCLES, balanced_rotation, lexicographic_cycle, max_gap

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "rotation_search.py"
_spec = importlib.util.spec_from_file_location("rotation_search", _PATH)
assert _spec and _spec.loader
rotation_search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rotation_search)


def follows(cycle: list[int]) -> list[tuple[int, int]]:
    """Every (arm, the arm after it) of a cycle walked over and over."""
    return [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]


@pytest.mark.parametrize("k", range(1, 13))
def test_every_arm_follows_every_arm_itself_included_exactly_once(k: int) -> None:
    cycle = balanced_rotation(k)
    assert len(cycle) == k * k and cycle[0] == 0  # the block's first arm opens
    assert sorted(follows(cycle)) == sorted(itertools.product(range(k), repeat=2))
    assert all(cycle.count(a) == k for a in range(k))  # 1/k of the requests each


def test_the_table_holds_the_gaps_it_records_and_they_beat_the_lexicographic_cycle() -> None:
    assert sorted(CYCLES) == list(range(1, 9))
    for k, (digits, gap) in CYCLES.items():
        cycle = [int(c) for c in digits]
        assert max_gap(cycle) == gap
        assert gap <= max_gap(lexicographic_cycle(k))
    # five arms (orchbench calibrate --delays 0.5,1,2): 8 requests at most between two of an arm's
    assert (CYCLES[5][1], max_gap(lexicographic_cycle(5))) == (8, 18)
    assert balanced_rotation(9) == lexicographic_cycle(9)  # beyond the table


def test_the_lexicographic_cycle_and_the_gap_on_literal_cases() -> None:
    assert lexicographic_cycle(3) == [0, 0, 1, 0, 2, 1, 1, 2, 2]
    assert max_gap([0, 0, 1, 0, 2, 1, 1, 2, 2]) == 6  # arm 0: from index 3 round to index 0
    assert max_gap([0, 1]) == 2 and max_gap([0]) == 1


def test_the_search_script_gives_the_table_for_small_k() -> None:
    for k in range(1, 5):
        found = rotation_search.search(k)
        assert "".join(map(str, found)) == CYCLES[k][0]


def test_no_arms_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one arm"):
        balanced_rotation(0)
