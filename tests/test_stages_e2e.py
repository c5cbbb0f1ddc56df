"""Load stages end to end on this machine: two generators in parallel under the local runner, each at
half the rate of every arm, merged by the compare step into one stage whose summed achieved rate is
checked; the stage, its generators' CPU and the arms' resources reach the Parquet tables."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from results_schema import read_table
from serving.runtime import free_port
from tests.helpers import ROOT, orchbench


@pytest.mark.slow
def test_two_generators_at_a_low_rate(tmp_path):
    ports = sorted({free_port() for _ in range(6)})[:3]
    spec = {
        "name": "gens",
        "platform": "local",
        "manifest": str(ROOT / "manifests" / "tf_flowers.yaml"),
        "payloads": {"rest": str(ROOT / "payloads" / "flowers.json")},
        "transports": ["rest"],
        "load": {
            "tool": "k6",
            # 10 req/s per arm (5 per generator): the shared 2-core machine's model takes 10-40 ms a
            # request; VUs sized for 2 s so nothing is dropped even when another test loads it
            "stages": {"rates": [10], "expected_latency_ms": 2000},
            "generators": 2,
            "duration_s": 2,
            "warmup_s": 1,
            "timeout_s": 10,
            "max_error_rate": 0.5,
        },
        "blocks": 2,
        "floor": False,  # not about the floor: its step adds 8-17 s to a run
        "arms": [
            {"name": "direct", "baseline": True, "hop": "model"},
            {"name": "orch", "hop": "orchestrator"},
        ],
        "local": {"ports": {"with": ports[0], "without": ports[1], "model_behind_orchestrator": ports[2]}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(path), "--out", str(out), "--quiet", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both generators of a block ran side by side
    g0 = json.loads(
        (out / "tasks" / "load-rest-rate-10-b0-g0" / "fs" / "out" / "raw" / "orch" / "meta.json").read_text()
    )
    g1 = json.loads(
        (out / "tasks" / "load-rest-rate-10-b0-g1" / "fs" / "out" / "raw" / "orch" / "meta.json").read_text()
    )
    assert (g0["generator"], g1["generator"]) == (0, 1)
    assert g0["started_at_ns"] < g1["ended_at_ns"] and g1["started_at_ns"] < g0["ended_at_ns"]
    assert g0["pair_order"] == list(reversed(g1["pair_order"]))
    assert g0["profile"]["rate"] == g1["profile"]["rate"] == 5.0
    assert g0["generator_cpu"]["utilisation"] > 0
    # the orchestrator's CPU comes from /proc in 10 ms clock ticks: ~10 requests of ~0.3 ms each in a
    # 2 s block can read 0.0 (it did, 2026-12-06), so the sampling is checked, not a positive figure
    res = g0["resources"]
    assert res["source"] == "proc" and res["samples"] > 0 and res["pids"] and res["peak_rss_mb"] > 0
    assert res["cpu_s"] >= 0 and res["cpu_utilisation"] >= 0
    assert g1["resources"] is None  # generator 0 samples the arms' processes
    summary = json.loads((out / "summary.json").read_text())
    (stage,) = summary["rest"]["stages"]
    assert stage["stage"] == "rate-10"
    stages = read_table(out / "stages.parquet", "stages").to_pylist()
    assert sorted(r["arm"] for r in stages) == ["direct", "orch"]
    for row in stages:
        assert row["generators"] == 2 and row["requested_rps"] == 10.0
        assert row["dropped_iterations"] == 0, row
        # two generators at 5 req/s each: 10 req/s summed, within the 2 % the rule allows
        assert row["achieved_rps"] == pytest.approx(10.0, rel=0.02), row
        assert row["peak_rss_mb"] > 0
        # the model server (direct) infers every request: always over a tick; the orchestrator's can be 0
        assert row["cpu_ms_per_1000"] > 0 if row["arm"] == "direct" else row["cpu_ms_per_1000"] >= 0
    samples = pq.read_table(out / "samples.parquet").to_pandas()
    assert set(samples["stage"]) == {"rate-10"} and set(samples["stage_kind"]) == {"rate"}
    per = samples.groupby(["arm", "block"])["seq"].agg(["count", "nunique"])
    assert (per["count"] == per["nunique"]).all()  # seq unique over the merged generators
    assert (per["count"] >= 2 * 2 * 5).all()
    overheads = read_table(out / "overheads.parquet", "overheads").to_pylist()
    assert {r["stage"] for r in overheads} == {"rate-10"}
    assert {r["valid"] for r in overheads} == {stage["valid"]}
