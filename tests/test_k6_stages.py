"""k6 for load stages: the options of an open-loop stage (one constant-arrival-rate scenario per arm at
the full rate, per-arm thresholds with dropped iterations), the per-arm split of its summary, the
samples' warm-up phase, and reading older (schema v2) tables with the stage columns filled."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from orchbench.core.arms import Endpoint
from orchbench.core.loadtools import k6_stages
from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.loadtools.k6_split import split_summary
from orchbench.core.stages import plan_stages
from results_schema import read_table
from results_schema.samples import parse_k6_csv
from tests.helpers import ROOT

STAGE = plan_stages(rates=[40])[0]


def _eps():
    return [
        Endpoint(transport="rest", arm=a, host="127.0.0.1", port=p, model_name="m")
        for a, p in (("direct", 9000), ("orch", 8000))
    ]


def test_open_stage_options_give_each_arm_the_full_rate(tmp_path):
    tool = K6Tool(binary="/bin/true")
    profile = LoadProfile(mode="open", rate=40, duration_s=5, warmup_s=1, timeout_s=10)
    _cmd, _env, cfg = tool.build(
        _eps()[0],
        ROOT / "payloads" / "flowers.json",
        profile,
        tmp_path,
        pair=_eps(),
        stage=STAGE,
        expected_latency_s=0.1,
    )
    sc = cfg["options"]["scenarios"]
    assert sorted(sc) == ["measure-direct", "measure-orch", "warmup-direct", "warmup-orch"]
    m = sc["measure-orch"]
    assert (m["executor"], m["rate"], m["timeUnit"], m["duration"]) == (
        "constant-arrival-rate",
        40,
        "1s",
        "5s",
    )
    assert m["preAllocatedVUs"] == m["maxVUs"] == 8 + 2  # ceil(40 x 0.1 x 2) + 2
    assert m["startTime"] == "1012500us"  # warm-up + 1/(2 x 40) s: the arms' arrivals alternate
    assert m["env"] == {"ORCHBENCH_ARM": "orch"} and m["tags"]["arm"] == "orch"
    th = cfg["options"]["thresholds"]
    assert "dropped_iterations{scenario:measure-orch}" in th
    assert "http_req_duration{scenario:measure-direct}" in th
    assert cfg["target_by_scenario"] is True
    assert [t["arm"] for t in cfg["targets"]] == ["direct", "orch"]


def test_two_generators_halve_each_arms_rate(tmp_path):
    opts = k6_stages.stage_options(
        STAGE,
        ["a", "b"],
        "grpc",
        duration_s=2,
        warmup_s=0,
        timeout_s=5,
        expected_latency_s=0.05,
        generators=2,
        thresholds=lambda t, sel, per_arm: {f"grpc_req_duration{{{sel}}}": ["max>=0"]},
    )
    assert {s["rate"] for s in opts["scenarios"].values()} == {20}
    assert sorted(opts["thresholds"]) == [
        "dropped_iterations{scenario:measure-a}",
        "dropped_iterations{scenario:measure-b}",
        "grpc_req_duration{scenario:measure-a}",
        "grpc_req_duration{scenario:measure-b}",
    ]


def test_stage_summary_splits_per_arm_and_reads_dropped():
    data = {
        "metrics": {
            "http_req_duration{scenario:measure-a}": {"values": {"med": 10.0}},
            "http_req_duration{scenario:measure-b}": {"values": {"med": 12.0}},
            "dropped_iterations{scenario:measure-a}": {"values": {"count": 0}},
            "dropped_iterations{scenario:measure-b}": {"values": {"count": 7, "rate": 1.0}},
            "http_req_duration": {"values": {"med": 11.0}},
        }
    }
    b = split_summary(data, "b", k6_stages.measure_selector(STAGE, "b"))
    assert b["metrics"]["http_req_duration{scenario:measure}"] == {"values": {"med": 12.0}}
    assert "http_req_duration" not in b["metrics"]
    assert k6_stages.dropped_per_arm(data, STAGE, ["a", "b", "c"]) == {"a": 0, "b": 7, "c": 0}
    closed = plan_stages(workers=[2])[0]
    assert k6_stages.dropped_per_arm(data, closed, ["a"]) == {"a": 0}
    assert k6_stages.measure_selector(closed, "a") == "scenario:measure,arm:a"
    assert k6_stages.measured_window_s(closed, 3.0, 2) == 6.0
    assert k6_stages.measured_window_s(STAGE, 3.0, 2) == 3.0


def test_per_arm_warmup_scenarios_are_warmup_in_the_samples(tmp_path):
    csv = tmp_path / "k6-samples.csv"
    header = "metric_name,timestamp,metric_value,check,error,expected_response,scenario,status,extra_tags"
    rows = [
        f"http_req_duration,{1_700_000_000_000_000_000 + i * 10**7},5.0,,,true,{sc},200,arm=a&vu=1&iter={i}"
        for i, sc in enumerate(["warmup-a", "warmup-a", "measure-a"])
    ]
    csv.write_text("\n".join([header, *rows]) + "\n")
    df = parse_k6_csv(csv)
    assert df["phase"].tolist() == ["warmup", "warmup", "measure"]


def test_version_2_tables_read_with_the_stage_columns_filled(tmp_path):
    table = pa.table({"schema_version": pa.array([2], pa.int16()), "run_id": ["r"], "arm": ["with"]})
    table = table.replace_schema_metadata({b"orchbench.schema_version": b"2", b"orchbench.table": b"samples"})
    path = tmp_path / "samples.parquet"
    pq.write_table(table, path)
    got = read_table(path, "samples")
    row = got.to_pylist()[0]
    assert (row["stage"], row["stage_kind"], row["stage_value"]) == ("", "none", None)
    assert row["schema_version"] == 2


def test_marker_window_sampler_gives_up_without_k6(tmp_path, monkeypatch):
    monkeypatch.setattr(k6_stages, "MARKER_TIMEOUT_S", 0.2)
    w = k6_stages.WindowSampler(tmp_path / "none.log", 0.0, 0.1, 1)
    with w:
        pass
    assert w.generator is None and w.generator_record() is None
    assert "never reached its scenarios" in w.note
