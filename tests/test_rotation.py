"""orchbench.core.loadtools.rotation: the cycle k6 walks when delays are injected."""

from __future__ import annotations

import collections
import importlib.util
import itertools
from pathlib import Path

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.rotation import WALKS, balanced_rotation, de_bruijn_walk, max_gap

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "rotation_search.py"
_spec = importlib.util.spec_from_file_location("rotation_search", _PATH)
assert _spec and _spec.loader
rotation_search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rotation_search)


def before(cycle: list[int], places: int) -> list[tuple[int, int]]:
    """Every (arm `places` requests before, arm) of a cycle walked over and over."""
    n = len(cycle)
    return [(cycle[(i - places) % n], cycle[i]) for i in range(n)]


def triples(cycle: list[int]) -> list[tuple[int, int, int]]:
    n = len(cycle)
    return [(cycle[(i - 2) % n], cycle[(i - 1) % n], cycle[i]) for i in range(n)]


@pytest.mark.parametrize("k", range(1, 11))
def test_every_arm_follows_every_ordered_pair_itself_included_exactly_once(k: int) -> None:
    cycle = balanced_rotation(k)
    assert len(cycle) == k**3 and cycle[0] == 0  # the block's first arm opens
    assert sorted(triples(cycle)) == sorted(itertools.product(range(k), repeat=3))
    assert all(cycle.count(a) == k * k for a in range(k))  # 1/k of the requests each
    # so one and two places back every arm sees every arm equally often: k times per cycle
    for places in (1, 2):
        assert set(collections.Counter(before(cycle, places)).values()) == {k}


def test_the_holds_one_and_two_places_back_are_the_same_for_every_arm() -> None:
    """The point of the cycle (benchmarks/carryover.py): with calibration's five arms and holds, the
    mean hold 1 and 2 requests before an arm's requests is the same for every arm; 3 back it is not
    (the cycle does not promise it)."""
    hold = [0.0, 2.0, 2.5, 3.0, 4.0]
    cycle = balanced_rotation(5)
    for places in (1, 2):
        means = {
            arm: sum(hold[b] for b, a in before(cycle, places) if a == arm) / cycle.count(arm)
            for arm in range(5)
        }
        assert max(means.values()) - min(means.values()) == pytest.approx(0.0, abs=1e-12)
    three = {arm: sum(hold[b] for b, a in before(cycle, 3) if a == arm) for arm in range(5)}
    assert len(set(three.values())) > 1


def test_the_table_holds_the_gaps_it_records() -> None:
    assert sorted(WALKS) == list(range(1, 9))
    for k, (seed, gap) in WALKS.items():
        assert max_gap(de_bruijn_walk(k, seed)) == gap
        assert gap <= max_gap(de_bruijn_walk(k, 0))
    # five arms (orchbench calibrate --delays 0.5,1,2): 14 requests at most between two of an arm's
    assert WALKS[5][1] == 14
    assert balanced_rotation(9) == de_bruijn_walk(9, 0)  # beyond the table


def test_the_gap_on_literal_cases() -> None:
    assert max_gap([0, 0, 1, 0, 2, 1, 1, 2, 2]) == 6  # arm 0: from index 3 round to index 0
    assert max_gap([0, 1]) == 2 and max_gap([0]) == 1
    assert de_bruijn_walk(1, 0) == [0]
    assert sorted(triples(de_bruijn_walk(2, 5))) == sorted(itertools.product(range(2), repeat=3))


def test_the_search_script_gives_the_table_for_small_k() -> None:
    for k in range(1, 4):
        assert rotation_search.search(k) == WALKS[k]


def test_no_arms_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one arm"):
        balanced_rotation(0)
