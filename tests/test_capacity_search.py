"""The capacity search's planning (orchbench.core.capacity_search), pure: each rule of `propose` with
literal expectations, the rounds a search makes on synthetic latency curves (through the same
capacity rules the run uses, orchbench.core.stage_analysis.capacities), and its stop conditions."""

from __future__ import annotations

import pytest

from orchbench.core import capacity_search as cs
from orchbench.core.errors import ConfigError
from orchbench.core.spec import load_spec
from orchbench.core.spec_stages import StageSearch
from orchbench.core.stage_analysis import capacities
from tests.helpers import ROOT

SWEEP = ROOT / "specs" / "sweep.yaml"


def _search(**kw) -> StageSearch:
    return StageSearch(**{"resolution_per_s": 2.0, **kw})


@pytest.mark.parametrize(
    ("kw", "good", "bad", "measured", "expected", "reason"),
    [
        ({}, 20.0, 30.0, {20.0, 30.0}, 25.0, "refining [20, 30) req/s"),
        ({}, 25.0, 30.0, {20.0, 25.0, 30.0}, 28.0, "refining [25, 30) req/s"),  # 27.5 -> 28 (half to even)
        ({}, 25.0, 28.0, {25.0, 28.0}, 26.0, "refining [25, 28) req/s"),  # 26.5 -> 26
        ({}, 27.0, 29.0, {27.0, 29.0}, None, "bracketed within 2 req/s"),
        ({"resolution_per_s": 1.0, "grain_per_s": 2.0}, 24.0, 26.0, {24.0, 26.0}, None, "(the rate grain)"),
        ({}, 20.0, 30.0, {20.0, 25.0, 30.0}, None, "(25 req/s measured, left out)"),
        ({"max_per_s": 50.0}, 35.0, None, {30.0, 35.0}, 40.0, "climbing: no rate up to 35 req/s"),
        ({"max_per_s": 38.0}, 35.0, None, {30.0, 35.0}, 38.0, "climbing"),
        ({"max_per_s": 50.0, "climb_per_s": 10.0}, 35.0, None, {35.0}, 45.0, "climbing"),
        ({"max_per_s": 35.0}, 35.0, None, {35.0}, None, "up to the maximum 35 req/s broke the SLO (a lower"),
        ({}, 35.0, None, {35.0}, None, "(a lower bound: no max_per_s)"),
        ({}, None, 10.0, {10.0}, 5.0, "descending: the lowest rate measured, 10 req/s"),
        ({}, None, 1.0, {1.0}, None, "breaks the SLO (at the rate grain)"),
        ({}, None, None, set(), None, "no stage with a result"),
    ],
)
def test_propose_rules(kw, good, bad, measured, expected, reason):
    p = cs.propose(_search(**kw), 5.0, good, bad, measured, "rest", "nginx")
    assert p.next_per_s == expected
    assert reason in p.reason
    assert (p.last_good_per_s, p.first_bad_per_s) == (good, bad)


def test_climb_step_is_the_sweeps_last_step():
    assert cs.climb_step([5, 10, 20, 25, 30, 35]) == 5
    assert cs.climb_step([10, 40]) == 30
    assert cs.climb_step([8]) == 8


def _spec(**search):
    spec = load_spec(SWEEP)
    return spec.with_overrides({"load.stages.search": {"resolution_per_s": 1.0, **search}})


def _p99(arm: str, rate: float) -> float:
    """Synthetic latency curves: flat, then climbing past each arm's capacity (p99 = the SLO's 50 ms
    at 27.5 req/s for the baseline, 22.5 for the orchestrator, 26.5 for nginx)."""
    knee = {"direct": 27.5, "orchestrator": 22.5, "nginx": 26.5}[arm]
    return 20.0 if rate < knee - 5 else 20.0 + 30.0 * (rate - (knee - 5)) / 5


def _summary(spec, rates) -> dict:
    """summary.json's per-transport stages and capacity, as the compare step would write them for
    the synthetic curves (one valid stage per rate)."""
    out = {}
    for transport in spec.transports:
        stage_results = [
            {
                "stage": f"rate-{r:g}",
                "stage_kind": "rate",
                "stage_value": r,
                "arms": {
                    arm: {
                        "requested_rps": r,
                        "achieved_rps": r,
                        "error_rate": 0.0,
                        "valid": True,
                        "p99_ms": _p99(arm, r),
                        "dropped_iterations": 0,
                        "generator_cpu_util": 0.1,
                        "invalid_reasons": "",
                    }
                    for arm in spec.arm_names()
                },
            }
            for r in sorted(rates)
        ]
        out[transport] = {"stages": stage_results, "capacity": capacities(spec, transport, stage_results)}
    return out


def _run_search(spec):
    """The search's own driver, each round "measured" on the synthetic curves."""
    seen: list[float] = [s.rate_per_s for s in spec.stage_plan()]

    def measure(number, rates, so_far):
        assert so_far == seen + rates  # every rate measured so far, this round's included
        seen[:] = so_far
        return _summary(spec, so_far)

    record, summary = cs.run_search(spec, _summary(spec, seen), measure)
    return record, summary, seen


def test_search_on_synthetic_curves_brackets_every_arm_within_the_resolution():
    spec = _spec()
    record, summary, rates = _run_search(spec)
    assert len(rates) == 12
    # the sweep 5..35, then bisection: direct and nginx [25, 30) -> 28, the orchestrator [20, 25) -> 22;
    # every arm is measured at every rate of a round and learns from it
    assert [r["rates_per_s"] for r in record.rounds] == [
        [5.0, 10.0, 20.0, 25.0, 30.0, 35.0],
        [22.0, 28.0],
        [24.0, 26.0],
        [23.0, 27.0],
    ]
    caps = summary["rest"]["capacity"]["arms"]
    assert {a: (c["capacity_rps"], c["first_bad_rps"]) for a, c in caps.items()} == {
        "direct": (27.0, 28.0),
        "orchestrator": (22.0, 23.0),
        "nginx": (26.0, 27.0),
    }
    assert caps["orchestrator"]["cost_rps"] == 5.0 and caps["nginx"]["cost_rps"] == 1.0
    assert record.stopped.startswith("every arm on every transport is done")
    assert "rest/direct: bracketed within 1 req/s" in record.stopped
    # round 2 names who asked for each rate
    asked = {(p["arm"], p["next_per_s"]) for p in record.rounds[1]["proposed_by"] if p["transport"] == "rest"}
    assert asked == {("direct", 28.0), ("orchestrator", 22.0), ("nginx", 28.0)}
    assert [r["workflow_dir"] for r in record.rounds] == [
        ".",
        "search/round-2",
        "search/round-3",
        "search/round-4",
    ]
    final = record.to_dict()
    assert final["line"] == "capacity search: 4 round(s), 12 rate(s) measured; stopped: " + record.stopped
    assert all(p["next_per_s"] is None for p in final["final"])


def test_max_rounds_stops_the_search_and_says_who_still_moves():
    spec = _spec(max_rounds=1)
    record, _, _ = _run_search(spec)
    assert len(record.rounds) == 2
    assert record.stopped.startswith("max_rounds (1) refinement rounds run; still moving: rest/direct")


def test_the_stage_limit_stops_the_search():
    spec = _spec()
    rates = [s.rate_per_s for s in spec.stage_plan()]
    record = cs.SearchRecord(spec.load.stages.search)
    record.add_round(1, rates, [], ".", 0)
    todo, _ = cs.next_round(spec, _summary(spec, rates), record, 49, 5.0)
    assert todo == [] and record.stopped == "the next round would pass 50 stages in all"


def test_round_and_merged_specs():
    spec = _spec()
    r2 = cs.round_spec(spec, [22.0, 27.0], 2)
    assert [s.rate_per_s for s in r2.stage_plan()] == [22.0, 27.0]
    assert r2.load.stages.search is None and r2.order_seed == spec.order_seed + 2
    assert "search" not in r2.to_json_dict()["load"]["stages"]
    assert spec.floor and not r2.floor  # the sweep's floor is the run's
    merged = cs.merged_spec(spec, [35.0, 5.0, 22.0, 5.0])
    assert [s.id for s in merged.stage_plan()] == ["rate-5", "rate-22", "rate-35"]


def test_a_search_needs_an_slo_and_a_rate_sweep():
    spec = _spec().with_overrides({"slo": None})
    with pytest.raises(ConfigError, match="needs an `slo`"):
        cs.check(spec)
    with pytest.raises(ConfigError, match="refines a sweep of rates"):
        load_spec(SWEEP).with_overrides(
            {"load.stages": {"workers": [1, 2], "search": {"resolution_per_s": 1.0}}, "slo": None}
        )
