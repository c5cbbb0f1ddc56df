"""Capacity per arm: the stepwise search on synthetic latency curves (it brackets the knee within one
step), the cost of the hop with its uncertainty, and the knee (Kneedle). Literal expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchbench.core.capacity import (
    Capacity,
    SearchPlan,
    Slo,
    capacity,
    capacity_cost,
    judge_step,
    knee,
    next_rate,
    search,
)
from orchbench.core.errors import ConfigError


def hockey_stick(knee_at: float, slope_after: float = 0.5):
    """p99 (ms) flat-ish (10 + 0.002 r) up to the knee, then climbing `slope_after` ms per req/s."""

    def measure(rate: float) -> tuple[float, float]:
        return 10 + 0.002 * rate + slope_after * max(0.0, rate - knee_at), 0.0

    return measure


def mm1(rate: float) -> tuple[float, float]:
    """An M/M/1 server of 1000 req/s: p99 = ln(100) / (mu - r); past saturation everything fails."""
    if rate >= 1000:
        return math.inf, 1.0
    return 1000 * math.log(100) / (1000 - rate), 0.0


def test_stepwise_search_brackets_the_knee_within_one_step():
    c = search(hockey_stick(640), Slo(p99_ms=15), SearchPlan(start_per_s=100, step_per_s=50, max_per_s=2000))
    assert [(s.rate_per_s, s.good) for s in c.steps] == [
        (100.0, True),
        (150.0, True),
        (200.0, True),
        (250.0, True),
        (300.0, True),
        (350.0, True),
        (400.0, True),
        (450.0, True),
        (500.0, True),
        (550.0, True),
        (600.0, True),
        (650.0, False),
    ]
    assert (c.last_good_per_s, c.first_bad_per_s) == (600.0, 650.0)
    assert c.estimate_per_s == 600.0
    assert c.uncertainty_per_s == 50.0
    assert c.reason == "bracketed within 50 req/s"
    assert c.last_good_per_s is not None and c.first_bad_per_s is not None
    assert c.last_good_per_s <= 640 < c.first_bad_per_s  # the knee is inside the bracket
    assert c.steps[-1].reason == "p99 16.3 ms > 15 ms"


@pytest.mark.parametrize("knee_at", [333, 640, 901, 1475])
def test_stepwise_search_brackets_any_knee(knee_at):
    # a steep knee and an SLO just above the flat part: the bracket holds the knee, one step wide
    c = search(hockey_stick(knee_at, 5.0), Slo(p99_ms=14), SearchPlan(100, 50, 3000))
    assert c.uncertainty_per_s == 50
    assert c.last_good_per_s is not None and c.first_bad_per_s is not None
    assert c.last_good_per_s <= knee_at < c.first_bad_per_s


def test_geometric_climb_then_bisection_on_an_mm1_curve():
    c = search(
        mm1, Slo(p99_ms=50, max_error_rate=0.01), SearchPlan(50, 50, 1600, growth=2, resolution_per_s=25)
    )
    assert [s.rate_per_s for s in c.steps] == [50, 100, 200, 400, 800, 1600, 1200, 1000, 900, 950, 925]
    assert [s.good for s in c.steps] == [True] * 5 + [False, False, False, True, False, False]
    assert c.steps[5].reason == "p99 inf ms > 50 ms; error rate 1 > 0.01"
    # true capacity: 1000 - 1000 ln(100) / 50 = 907.9 req/s
    assert (c.last_good_per_s, c.first_bad_per_s) == (900.0, 925.0)
    assert c.to_dict()["bracket_per_s"] == [900.0, 925.0]


def test_next_rate_proposes_step_by_step():
    slo, plan = Slo(15), SearchPlan(100, 50, 300)
    p = next_rate({}, slo, plan)
    assert (p.next_per_s, p.reason) == (100.0, "start")
    p = next_rate({100: (11.0, 0.0)}, slo, plan)
    assert (p.next_per_s, p.last_good_per_s, p.first_bad_per_s, p.reason) == (150.0, 100.0, None, "climbing")
    p = next_rate({100: (11.0, 0.0), 150: (12.0, 0.0), 200: (13.0, 0.0), 250: (14.0, 0.0)}, slo, plan)
    assert p.next_per_s == 300.0
    done = next_rate({r: (11.0, 0.0) for r in (100, 150, 200, 250, 300)}, slo, plan)
    assert done.done
    assert done.reason == "no rate up to the maximum 300 req/s broke the SLO (capacity >= it)"
    assert (done.last_good_per_s, done.first_bad_per_s) == (300.0, None)


def test_an_error_rate_over_the_bound_is_bad_however_fast():
    assert judge_step(400, 5.0, 0.02, Slo(15, max_error_rate=0.01)).reason == "error rate 0.02 > 0.01"
    assert judge_step(400, 5.0, 0.0, Slo(15, max_error_rate=0.01)).good
    c = capacity({100: (5.0, 0.0), 150: (5.0, 0.0), 200: (5.0, 0.5)}, Slo(15), SearchPlan(100, 50, 500))
    assert (c.last_good_per_s, c.first_bad_per_s) == (150.0, 200.0)


def test_the_first_rate_already_bad():
    c = capacity({100: (40.0, 0.0)}, Slo(15), SearchPlan(100, 50, 500))
    assert (c.last_good_per_s, c.first_bad_per_s) == (None, 100.0)
    assert c.reason == "the lowest rate measured, 100 req/s, already breaks the SLO"
    assert c.uncertainty_per_s is None


def test_a_good_rate_above_a_bad_one_is_recorded_not_taken():
    results = {100: (11.0, 0.0), 150: (16.0, 0.0), 200: (14.0, 0.0)}
    c = capacity(results, Slo(15), SearchPlan(100, 50, 500))
    assert (c.last_good_per_s, c.first_bad_per_s, c.non_monotonic) == (100.0, 150.0, (200.0,))


def test_capacity_cost_with_its_uncertainty():
    base = Capacity(600.0, 650.0)
    arm = Capacity(500.0, 550.0)
    cost = capacity_cost(base, arm)
    assert (cost.estimate_per_s, cost.low_per_s, cost.high_per_s) == (100.0, 50.0, 150.0)
    assert cost.to_dict() == {
        "cost_per_s": 100.0,
        "range_per_s": [50.0, 150.0],
        "fraction": 0.166667,
        "baseline_capacity_per_s": 600.0,
        "arm_capacity_per_s": 500.0,
    }
    # a baseline that never broke the SLO: the cost's upper side is open
    open_ = capacity_cost(Capacity(2000.0, None), arm)
    assert (open_.estimate_per_s, open_.low_per_s, open_.high_per_s) == (1500.0, 1450.0, None)
    # from two searches on synthetic curves: the hop moves the knee from 900 to 700
    b = search(hockey_stick(901, 5.0), Slo(14), SearchPlan(100, 50, 3000))
    a = search(hockey_stick(701, 5.0), Slo(14), SearchPlan(100, 50, 3000))
    c = capacity_cost(b, a)
    assert (c.estimate_per_s, c.low_per_s, c.high_per_s) == (200.0, 150.0, 250.0)


def test_knee_of_a_hockey_stick_and_of_mm1():
    rates = np.arange(100, 1001, 100, dtype=float)
    k = knee(rates, [hockey_stick(600)(r)[0] for r in rates])
    assert k is not None
    assert (k.rate_per_s, k.latency_ms) == (600.0, pytest.approx(11.2))
    rates = np.arange(50, 1000, 50, dtype=float)
    k = knee(rates, [mm1(r)[0] for r in rates])
    assert k is not None and k.rate_per_s == 800.0


def test_knee_sorts_and_averages_repeated_rates():
    rates = [300, 100, 200, 600, 500, 400, 600]
    lat = [10.6, 10.2, 10.4, 60.0, 11.0, 10.8, 62.0]
    k = knee(rates, lat)
    assert k is not None and k.rate_per_s == 500.0


def test_no_knee_on_a_line_or_too_few_points():
    assert knee([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) is None
    assert knee([1, 2], [1, 5]) is None
    with pytest.raises(ValueError):
        knee([1, 2, 3], [1, 2])


def test_bad_plans_are_refused():
    with pytest.raises(ConfigError):
        SearchPlan(100, 0, 500)
    with pytest.raises(ConfigError):
        SearchPlan(600, 50, 500)
    with pytest.raises(ConfigError):
        SearchPlan(100, 50, 500, growth=0.5)
    with pytest.raises(ConfigError):
        Slo(p99_ms=0)
    with pytest.raises(ConfigError):
        Slo(p99_ms=10, max_error_rate=1.0)
