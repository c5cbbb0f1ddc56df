"""The spec's load plan (`load.stages`, `load.generators`) and `slo`: validation in one line, the
plan they give, and specs without them dumping (and so compiling) exactly as before."""

from __future__ import annotations

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.spec import load_spec, parse_spec
from pipelines.benchmark import _load_tasks, compile_dict
from tests.helpers import ROOT

ARMS = [{"name": "direct", "baseline": True, "hop": "model"}, {"name": "orch", "hop": "orchestrator"}]


def _spec(load: dict, **extra):
    return parse_spec({"name": "x", "arms": ARMS, "load": {"tool": "k6", **load}, **extra})


def test_rates_give_open_loop_stages_in_order():
    s = _spec({"stages": {"rates": [10, 12.5, 100]}})
    assert [(st.id, st.mode, st.requested) for st in s.stage_plan()] == [
        ("rate-10", "open", 10.0),
        ("rate-12.5", "open", 12.5),
        ("rate-100", "open", 100.0),
    ]
    assert s.load.generators == 1


def test_workers_give_closed_loop_stages():
    s = _spec({"stages": {"workers": [1, 4]}})
    assert [(st.id, st.label) for st in s.stage_plan()] == [
        ("workers-1", "1 worker"),
        ("workers-4", "4 workers"),
    ]


def test_a_spec_without_stages_dumps_as_before():
    s = load_spec(ROOT / "specs" / "default.yaml")
    dumped = s.to_json_dict()
    assert "stages" not in dumped["load"] and "generators" not in dumped["load"] and "slo" not in dumped
    assert s.stage_plan() == []


def test_stage_spec_survives_the_workflow_parameter_round_trip():
    s = _spec({"stages": {"rates": [5, 10]}, "generators": 2}, slo={"p99_ms": 40})
    again = parse_spec(s.to_json_dict())
    assert again.stage_plan() == s.stage_plan()
    assert again.load.generators == 2 and again.slo is not None and again.slo.p99_ms == 40


@pytest.mark.parametrize(
    ("load", "extra", "message"),
    [
        ({"stages": {}}, {}, "load.stages gives either rates or workers"),
        ({"stages": {"rates": [10], "workers": [1]}}, {}, "either rates or workers"),
        ({"stages": {"rates": []}}, {}, "at least one stage"),
        ({"stages": {"rates": [10, 10]}}, {}, "appears twice"),
        ({"stages": {"rates": [0]}}, {}, "each rate must be in (0, 100000]"),
        ({"stages": {"workers": [0]}}, {}, "whole number in 1..256"),
        ({"stages": {"rates": [10]}, "mode": "open", "rate": 10}, {}, "load.stages replaces load.mode"),
        ({"stages": {"rates": [10]}, "workers": 4}, {}, "load.stages replaces load.workers"),
        ({"generators": 2}, {}, "load.generators applies to open-loop stages"),
        ({"stages": {"workers": [1]}, "generators": 2}, {}, "load.generators applies to open-loop stages"),
        ({"stages": {"rates": [10]}, "generators": 2, "interleave": "block"}, {}, "needs k6 with interleave"),
        ({"stages": {"rates": [10]}, "generators": 0}, {}, "load.generators: Input should be greater"),
        ({}, {"slo": {"p99_ms": 50}}, "slo: capacity is a rate"),
        ({"stages": {"workers": [1]}}, {"slo": {"p99_ms": 50}}, "slo: capacity is a rate"),
        ({"stages": {"rates": [10]}}, {"slo": {"p99_ms": 0}}, "slo.p99_ms: Input should be greater than 0"),
        ({"stages": {"rates": [10]}}, {"slo": {"p99_ms": 5, "max_error_rate": 1}}, "slo.max_error_rate"),
    ],
)
def test_bad_plans_one_clear_line(load, extra, message):
    with pytest.raises(ConfigError) as info:
        _spec(load, **extra)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_stage_tasks_per_stage_block_and_generator():
    s = _spec({"stages": {"rates": [12.5, 20]}, "generators": 2}, blocks=2, transports=["rest"])
    tasks = _load_tasks(s)
    assert [t.name for t in tasks] == [
        "load-rest-rate-12p5-b0-g0",
        "load-rest-rate-12p5-b0-g1",
        "load-rest-rate-12p5-b1-g0",
        "load-rest-rate-12p5-b1-g1",
        "load-rest-rate-20-b0-g0",
        "load-rest-rate-20-b0-g1",
        "load-rest-rate-20-b1-g0",
        "load-rest-rate-20-b1-g1",
    ]
    assert [t.stage for t in tasks[:2]] == ["rate-12.5", "rate-12.5"]
    # the two generators of a block: one wave, each with its own arm order
    assert tasks[0].wave == tasks[1].wave != tasks[2].wave
    assert tasks[1].arms == list(reversed(tasks[0].arms))


def test_generators_run_in_parallel_in_the_compiled_dag():
    s = _spec({"stages": {"rates": [20]}, "generators": 2}, blocks=2, transports=["rest"])
    wf = compile_dict(s)
    assert wf["spec"]["parallelism"] == 2
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    by_name = {t["name"]: t for t in dag}
    g0, g1 = by_name["load-rest-rate-20-b0-g0"], by_name["load-rest-rate-20-b0-g1"]
    assert g0["depends"] == g1["depends"]  # side by side
    assert (
        by_name["load-rest-rate-20-b1-g0"]["depends"] == "load-rest-rate-20-b0-g0 && load-rest-rate-20-b0-g1"
    )
    params = {p["name"]: p["value"] for p in g1["arguments"]["parameters"]}
    assert params["stage"] == "rate-20" and params["generator"] == "1" and params["block"] == "0"
    assert g0["template"] == "loadtest-stage"
    compare = by_name["compare"]
    names = {a["name"] for a in compare["arguments"]["artifacts"]}
    assert {"raw-load-rest-rate-20-b0-g0", "raw-load-rest-rate-20-b0-g1"} <= names


def test_shipped_sweep_spec_loads():
    s = load_spec(ROOT / "specs" / "sweep.yaml")
    assert s.stage_plan() and s.slo is not None
    assert s.arm_names()[0] == "direct" and {a.local_hop() for a in s.arm_list()} == {
        "model",
        "orchestrator",
        "nginx",
    }
