"""Load stages: the plan's bookkeeping, achieved rates per arm and window, the invalid-stage rules, k6's
VUs and the N-arm arrival-rate scenarios. Literal expectations throughout."""

from __future__ import annotations

import pytest

from orchbench.core import stages
from orchbench.core.errors import ConfigError
from orchbench.core.stages import Stage, judge_stage, plan_stages

# --- the plan ----------------------------------------------------------------------------------------


def test_open_loop_plan_ids_labels_and_requests():
    plan = plan_stages(rates=[10, 12.5, 100])
    assert [s.to_dict() for s in plan] == [
        {
            "index": 0,
            "id": "rate-10",
            "label": "10 req/s",
            "mode": "open",
            "rate_per_s": 10.0,
            "workers": None,
        },
        {
            "index": 1,
            "id": "rate-12.5",
            "label": "12.5 req/s",
            "mode": "open",
            "rate_per_s": 12.5,
            "workers": None,
        },
        {
            "index": 2,
            "id": "rate-100",
            "label": "100 req/s",
            "mode": "open",
            "rate_per_s": 100.0,
            "workers": None,
        },
    ]
    assert [s.requested for s in plan] == [10.0, 12.5, 100.0]
    assert stages.stage_by_id(plan, "rate-12.5").index == 1


def test_closed_loop_plan():
    plan = plan_stages(workers=[1, 2, 4])
    assert [(s.index, s.id, s.label, s.requested) for s in plan] == [
        (0, "workers-1", "1 worker", 1.0),
        (1, "workers-2", "2 workers", 2.0),
        (2, "workers-4", "4 workers", 4.0),
    ]
    assert all(s.mode == "closed" and s.rate_per_s is None for s in plan)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either `rates` or `workers`"),
        ({"rates": [10], "workers": [1]}, "either `rates` or `workers`"),
        ({"rates": []}, "at least one stage"),
        ({"rates": [10, 0]}, "rate must be > 0"),
        ({"rates": [-5]}, "rate must be > 0"),
        ({"rates": [10, 10.0]}, "stage 10 req/s appears twice in the load plan (stages 0 and 1)"),
        ({"workers": [0]}, "workers must be a whole number >= 1"),
        ({"workers": [2, 2]}, "stage 2 workers appears twice"),
    ],
)
def test_bad_plans_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_stages(**kwargs)


def test_stage_requires_its_own_kind_of_value():
    with pytest.raises(ConfigError):
        Stage(0, "open", workers=4)
    with pytest.raises(ConfigError):
        Stage(0, "closed", rate_per_s=10.0)


# --- achieved rates ----------------------------------------------------------------------------------


def test_achieved_rate_is_per_arm_over_its_own_window():
    # a paired run at 100 req/s per arm: 2 s warm-up, 6 s measured, 600 requests per arm. The old
    # figure divided by the whole test and both arms (600 / (2 + 6 + 6) = 42.9); per arm it is 100.
    assert stages.achieved_rate(600, 6.0) == 100.0
    assert stages.achieved_rates({"with": 600, "without": 588}, 6.0) == {"with": 100.0, "without": 98.0}
    assert stages.achieved_rates({"a": 300, "b": 150}, {"a": 3.0, "b": 3.0}) == {"a": 100.0, "b": 50.0}
    with pytest.raises(ValueError):
        stages.achieved_rate(10, 0.0)


def test_rate_from_start_times():
    # 11 starts 100 ms apart: 10 intervals over 1 s -> 10 req/s
    starts = [1_000_000_000 + i * 100_000_000 for i in range(11)]
    assert stages.rate_from_starts(starts) == pytest.approx(10.0, abs=1e-12)
    assert stages.rate_from_starts(starts[::-1]) == pytest.approx(10.0, abs=1e-12)
    assert stages.rate_from_starts([5]) is None
    assert stages.rate_from_starts([5, 5]) is None


def test_generator_utilisation():
    assert stages.generator_utilisation(cpu_s=3.0, wall_s=2.0, cores=2) == 0.75
    assert stages.generator_utilisation(cpu_s=1.9, wall_s=1.0, cores=2) == 0.95


# --- the invalid-stage rules -------------------------------------------------------------------------

STAGE = plan_stages(rates=[100])[0]


def test_an_honest_stage_is_valid():
    v = judge_stage(STAGE, {"with": 99.5, "without": 100.2}, 0, 0.40, arms=["with", "without"])
    assert v.valid
    assert v.reasons == ()
    assert v.to_dict() == {
        "stage": "rate-100",
        "valid": True,
        "reasons": [],
        "requested_per_s": 100.0,
        "achieved_per_s": {"with": 99.5, "without": 100.2},
        "shortfall": {"with": 0.005, "without": 0.0},
        "dropped_iterations": 0,
        "generator_utilisation": 0.4,
    }


def test_exactly_two_percent_below_is_still_valid():
    assert judge_stage(STAGE, {"with": 98.0, "without": 98.0}).valid


def test_a_starved_generator_is_flagged():
    # the generator got 80 % of its requests out and ran its two cores at 98 %
    requests = {"with": 480, "without": 474}
    v = judge_stage(
        STAGE,
        stages.achieved_rates(requests, 6.0),
        dropped_iterations=0,
        generator_cpu_fraction=stages.generator_utilisation(cpu_s=11.76, wall_s=6.0, cores=2),
        arms=["with", "without"],
    )
    assert not v.valid
    assert v.reasons == (
        "arm 'with' achieved 80.00 req/s, 20.0 % below the requested 100 req/s (allowed: 2 %)",
        "arm 'without' achieved 79.00 req/s, 21.0 % below the requested 100 req/s (allowed: 2 %)",
        "the load generator was saturated: 98 % of its cores' CPU (limit: 90 %)",
    )
    assert v.shortfall == pytest.approx({"with": 0.20, "without": 0.21})


def test_dropped_iterations_are_flagged_even_at_the_right_rate():
    v = judge_stage(STAGE, {"with": 100.0, "without": 100.0}, dropped_iterations=3)
    assert not v.valid
    assert v.reasons == (
        "k6 dropped 3 iterations (no free VU at the scheduled time: those requests were never measured)",
    )
    one = judge_stage(STAGE, {"with": 100.0}, dropped_iterations=1)
    assert one.reasons == (
        "k6 dropped 1 iteration (no free VU at the scheduled time: those requests were never measured)",
    )


def test_a_saturated_generator_alone_is_flagged():
    v = judge_stage(STAGE, {"with": 100.0, "without": 100.0}, generator_cpu_fraction=0.93)
    assert v.reasons == ("the load generator was saturated: 93 % of its cores' CPU (limit: 90 %)",)
    assert judge_stage(STAGE, {"with": 100.0}, generator_cpu_fraction=0.89).valid


def test_a_missing_arm_is_flagged():
    v = judge_stage(STAGE, {"with": 100.0}, arms=["with", "without"])
    assert v.reasons == ("arm 'without' has no achieved rate (no measured requests)",)
    assert judge_stage(STAGE, {}).reasons == ("no achieved rate was measured",)


def test_closed_loop_stage_has_no_rate_rule():
    stage = plan_stages(workers=[4])[0]
    assert judge_stage(stage).valid
    assert judge_stage(stage, generator_cpu_fraction=0.99).reasons == (
        "the load generator was saturated: 99 % of its cores' CPU (limit: 90 %)",
    )


# --- k6: VUs and scenarios ---------------------------------------------------------------------------


def test_preallocated_vus():
    # Little's law: 100 req/s x 12 ms = 1.2 in flight; x2 headroom = 2.4 -> 3, + 2 extra
    assert stages.preallocated_vus(100, 0.012) == 5
    assert stages.preallocated_vus(1000, 0.050) == 102  # 50 in flight x 2 + 2
    assert stages.preallocated_vus(1, 0.001) == 3  # at least 1, + 2
    assert stages.preallocated_vus(500, 0.010, headroom=1.0, extra=0) == 5
    with pytest.raises(ConfigError):
        stages.preallocated_vus(100, 0.01, headroom=0.5)


def test_durations_and_rates_for_k6():
    assert [stages.k6_duration(x) for x in (5, 1.5, 0.005, 0.0533333, 0)] == [
        "5s",
        "1500ms",
        "5ms",
        "53333us",
        "0s",
    ]
    assert stages.k6_rate(100) == (100, "1s")
    assert stages.k6_rate(12.5) == (12500, "1000s")


def test_arrival_rate_scenarios_give_every_arm_the_full_rate():
    sc = stages.arrival_rate_scenarios(
        STAGE, ["with", "without"], duration_s=6, warmup_s=2, timeout_s=20, expected_latency_s=0.012
    )
    common = {
        "executor": "constant-arrival-rate",
        "rate": 100,
        "timeUnit": "1s",
        "preAllocatedVUs": 5,
        "maxVUs": 5,
    }
    assert sc == {
        "warmup-with": {
            **common,
            "env": {"ORCHBENCH_ARM": "with"},
            "tags": {"arm": "with", "stage": "rate-100"},
            "duration": "2s",
            "gracefulStop": "0s",
            "exec": "warmup",
        },
        "measure-with": {
            **common,
            "env": {"ORCHBENCH_ARM": "with"},
            "tags": {"arm": "with", "stage": "rate-100"},
            "duration": "6s",
            "gracefulStop": "21s",
            "exec": "measure",
            "startTime": "2s",
        },
        "warmup-without": {
            **common,
            "env": {"ORCHBENCH_ARM": "without"},
            "tags": {"arm": "without", "stage": "rate-100"},
            "duration": "2s",
            "gracefulStop": "0s",
            "exec": "warmup",
            "startTime": "5ms",  # half of an arm's 10 ms inter-arrival: the arms alternate
        },
        "measure-without": {
            **common,
            "env": {"ORCHBENCH_ARM": "without"},
            "tags": {"arm": "without", "stage": "rate-100"},
            "duration": "6s",
            "gracefulStop": "21s",
            "exec": "measure",
            "startTime": "2005ms",
        },
    }
    # the nested dicts are not shared between scenarios
    sc["measure-with"]["tags"]["x"] = "y"
    assert "x" not in sc["warmup-with"]["tags"]


def test_arrival_rate_scenarios_three_arms_two_generators_no_warmup():
    stage = plan_stages(rates=[12.5])[0]
    sc = stages.arrival_rate_scenarios(
        stage, ["a", "b", "c"], duration_s=6, warmup_s=0, timeout_s=20, expected_latency_s=0.5, generators=2
    )
    assert list(sc) == ["measure-a", "measure-b", "measure-c"]
    # each generator: 6.25 req/s of every arm = 6250 per 1000 s; VUs 6.25 x 0.5 x 2 = 6.25 -> 7, + 2
    assert {(v["rate"], v["timeUnit"], v["preAllocatedVUs"], v["maxVUs"]) for v in sc.values()} == {
        (6250, "1000s", 9, 9)
    }
    # stagger: 1 / (3 arms x 6.25 req/s) = 53.333 ms
    assert [v.get("startTime") for v in sc.values()] == [None, "53333us", "106667us"]


@pytest.mark.parametrize(
    ("arms", "kwargs", "message"),
    [
        ([], {}, "at least one arm"),
        (["a", "a"], {}, "arm names repeat"),
        (["with arm"], {}, "k6 scenario names allow"),
        (["a"], {"generators": 0}, "generators must be"),
        (["a"], {"duration_s": 0.5}, "at least 1 s"),
        (["a"], {"warmup_s": 0.5}, "warm-up of 0 or at least 1 s"),
    ],
)
def test_arrival_rate_scenarios_refuse(arms, kwargs, message):
    args = {"duration_s": 6, "warmup_s": 2, "timeout_s": 20, "expected_latency_s": 0.01, **kwargs}
    with pytest.raises(ConfigError, match=message):
        stages.arrival_rate_scenarios(STAGE, arms, **args)


def test_arrival_rate_scenarios_are_open_loop_only():
    with pytest.raises(ConfigError, match="open-loop stages"):
        stages.arrival_rate_scenarios(
            plan_stages(workers=[2])[0],
            ["a"],
            duration_s=6,
            warmup_s=0,
            timeout_s=20,
            expected_latency_s=0.01,
        )
