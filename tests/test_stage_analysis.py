"""The analysis of load stages on synthetic blocks: the stage bookkeeping (achieved rate per arm,
dropped iterations, the generator's CPU, resources), the invalid-stage rules (a starved generator is
flagged, and its overheads carry valid=False), the merge of N generators, and the tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchbench.core import stage_analysis as sa
from orchbench.core.analysis import Block
from orchbench.core.overheads_table import overheads_table
from orchbench.core.spec import parse_spec
from orchbench.core.stages_table import stages_table
from results_schema.schema import STAGES_SCHEMA
from results_schema.summary import ToolSummary

T0 = 1_700_000_000_000_000_000
ARMS = [{"name": "direct", "baseline": True, "hop": "model"}, {"name": "orch", "hop": "orchestrator"}]


def _spec(rates=(20, 40), generators=1, **extra):
    return parse_spec(
        {
            "name": "x",
            "arms": ARMS,
            "transports": ["rest"],
            "blocks": 3,
            "load": {
                "tool": "k6",
                "stages": {"rates": list(rates)},
                "generators": generators,
                "duration_s": 2,
            },
            **extra,
        }
    )


def _block(
    arm: str,
    block: int,
    rate: float,
    *,
    stage_rate: float,
    latency_ms: float,
    window_s: float = 2.0,
    generator: int = 0,
    generators: int = 1,
    dropped: int = 0,
    util: float | None = 0.2,
    cpu_s: float | None = None,
    rss_mb: float = 50.0,
    offset_ns: int = 0,
) -> Block:
    """k6's starts of one arm's scenario: n = rate x window + 1 evenly spaced (the one at the end too)."""
    n = round(rate * window_s) + 1
    starts = T0 + block * 10**10 + offset_ns + np.round(np.arange(n) * 1e9 / rate).astype("int64")
    rng = np.random.default_rng(block * 7 + generator + (0 if arm == "direct" else 100))
    lat = np.rint((latency_ms + rng.normal(0, 0.05, n)) * 1e6).astype("int64")
    frame = pd.DataFrame(
        {
            "seq": np.arange(n, dtype="int64"),
            "ts_ns": starts,
            "latency_ns": lat,
            "status": ["200"] * n,
            "ok": [True] * n,
            "phase": ["measure"] * n,
            "error": [""] * n,
        }
    )
    stage_id = f"rate-{stage_rate:g}"
    meta = {
        "experiment": "x",
        "transport": "rest",
        "arm": arm,
        "block": block,
        "stage_id": stage_id,
        "stage_kind": "rate",
        "stage_value": float(stage_rate),
        "generator": generator,
        "generators": generators,
        "measured_s": window_s,
        "dropped_iterations": dropped,
        "generator_cpu": None if util is None else {"utilisation": util, "cores": 1},
        "resources": None if cpu_s is None else {"cpu_s": cpu_s, "peak_rss_mb": rss_mb},
        "profile": {"mode": "open", "rate": rate, "duration_s": window_s, "warmup_s": 1},
    }
    return Block(meta, ToolSummary("k6", "x", requests=n, successes=n), frame, f"{stage_id}-b{block}/{arm}")


def _stage_blocks(stage_rate, latency_orch=11.0, latency_direct=10.0, **kw):
    return [
        _block(arm, b, stage_rate, stage_rate=stage_rate, latency_ms=lat, **kw)
        for b in range(3)
        for arm, lat in (("direct", latency_direct), ("orch", latency_orch))
    ]


def test_an_honest_stage_is_valid_with_the_requested_rate_per_arm():
    spec = _spec()
    stage = spec.stage_plan()[0]
    res = sa.stage_result(spec, stage, _stage_blocks(20, cpu_s=0.4), "rest")
    assert res["valid"] is True and res["invalid_reasons"] == []
    direct, orch = res["arms"]["direct"], res["arms"]["orch"]
    assert direct["requested_rps"] == 20.0
    assert direct["achieved_rps"] == pytest.approx(20.0, rel=1e-6)  # 41 starts 50 ms apart
    assert direct["requests"] == 3 * 41 and direct["errors"] == 0 and direct["dropped_iterations"] == 0
    assert direct["generator_cpu_util"] == 0.2
    # the shared model's CPU over every arm's requests; the hop's over its own
    assert direct["cpu_ms_per_1000"] == pytest.approx(3 * 0.4 * 1e6 / (3 * 2 * 41))
    assert orch["cpu_ms_per_1000"] == pytest.approx(3 * 0.4 * 1e6 / (3 * 41))
    assert orch["peak_rss_mb"] == 50.0
    assert orch["p50_ms"] == pytest.approx(11.0, abs=0.02)
    over = res["by_arm"]["orch"]["overhead_ms"]["p50"]
    assert over["estimate"] == pytest.approx(1.0, abs=0.03) and over["n_blocks"] == 3
    assert res["by_arm"]["orch"]["valid"] is True


def test_a_starved_generator_is_flagged_and_its_overheads_are_marked_invalid():
    """The generator reached 15 req/s of the 20 asked, dropped iterations and ran its core flat."""
    spec = _spec()
    stage = spec.stage_plan()[0]
    blocks = _stage_blocks(20)
    blocks[1] = _block("orch", 0, 15, stage_rate=20, latency_ms=11.0, dropped=10, util=0.97)
    res = sa.stage_result(spec, stage, blocks, "rest")
    assert res["valid"] is False
    reasons = res["invalid_reasons"]
    assert reasons == [
        "arm 'orch' achieved 15.00 req/s, 25.0 % below the requested 20 req/s (allowed: 2 %)",
        "k6 dropped 10 iterations (no free VU at the scheduled time: those requests were never measured)",
        "the load generator was saturated: 97 % of its cores' CPU (limit: 90 %)",
    ]
    assert (
        res["arms"]["orch"]["dropped_iterations"] == 10 and res["arms"]["direct"]["dropped_iterations"] == 0
    )
    assert res["arms"]["orch"]["generator_cpu_util"] == 0.97
    assert res["arms"]["direct"]["invalid_reasons"] == "; ".join(reasons)
    summary = {
        "schema_version": 3,
        "experiment": "x",
        "run_id": "r",
        "platform": "local",
        "rest": {"stages": [{**res}]},
    }
    table = overheads_table(summary, 0, {})
    assert set(table["valid"].to_pylist()) == {False}
    assert set(table["stage"].to_pylist()) == {"rate-20"} and set(table["stage_kind"].to_pylist()) == {"rate"}


def test_two_generators_merge_into_one_block_and_their_rates_add_up():
    spec = _spec(rates=[20], generators=2)
    stage = spec.stage_plan()[0]
    blocks = [
        _block(arm, b, 10, stage_rate=20, latency_ms=lat, generator=g, generators=2, offset_ns=g * 50_000_000)
        for b in range(3)
        for g in range(2)
        for arm, lat in (("direct", 10.0), ("orch", 11.0))
    ]
    merged = sa.merge_generators(blocks)
    assert len(merged) == 6  # (block, arm) pairs
    one = next(b for b in merged if b.block == 0 and b.arm == "orch")
    assert one.summary.requests == 2 * 21
    frame = one.measured()
    assert frame is not None and sorted(frame["generator"].unique()) == [0, 1]
    assert frame["seq"].tolist() == list(range(42)) and frame["ts_ns"].is_monotonic_increasing
    res = sa.stage_result(spec, stage, merged, "rest")
    assert res["valid"] is True
    assert res["arms"]["orch"]["achieved_rps"] == pytest.approx(20.0, rel=1e-6)
    assert res["arms"]["orch"]["generators"] == 2


def test_a_generator_that_lost_an_arm_is_a_reason():
    spec = _spec(rates=[20], generators=2)
    stage = spec.stage_plan()[0]
    blocks = [
        _block(arm, b, 10, stage_rate=20, latency_ms=10.0, generator=g, generators=2)
        for b in range(3)
        for g in range(2)
        for arm in ("direct", "orch")
        if not (g == 1 and arm == "orch" and b == 2)
    ]
    res = sa.stage_result(spec, stage, sa.merge_generators(blocks), "rest")
    assert res["valid"] is False
    assert "generator 1 measured no request of arm 'orch'" in res["invalid_reasons"]


def test_capacity_over_the_stages_from_the_slo():
    """p99 10 ms up to 40 req/s, then 80 ms at 60 for the hop: capacity 40, the baseline's 60."""
    spec = _spec(rates=[20, 40, 60], slo={"p99_ms": 30})
    results = []
    for st in spec.stage_plan():
        r = st.rate_per_s
        lat_orch = 80.0 if r == 60 else 11.0
        results.append(sa.stage_result(spec, st, _stage_blocks(r, latency_orch=lat_orch), "rest"))
    cap = sa.capacities(spec, "rest", results)
    assert cap is not None and cap["slo"] == {"p99_ms": 30.0, "max_error_rate": 0.01}
    direct, orch = cap["arms"]["direct"], cap["arms"]["orch"]
    assert direct["capacity_rps"] == 60.0 and direct["first_bad_rps"] is None  # never broke the SLO
    assert orch["capacity_rps"] == 40.0 and orch["first_bad_rps"] == 60.0 and orch["bracket_rps"] == 20.0
    assert orch["cost_rps"] == 20.0 and orch["baseline"] == "direct"
    assert sa.capacities(_spec(rates=[20, 40, 60]), "rest", results) is None  # no SLO, no capacity


def test_stages_table_rows_follow_the_contract():
    spec = _spec(rates=[20])
    res = sa.stage_result(spec, spec.stage_plan()[0], _stage_blocks(20), "rest")
    summary = {"schema_version": 3, "experiment": "x", "run_id": "r", "rest": {"stages": [res]}}
    table = stages_table(summary)
    assert table.schema == STAGES_SCHEMA and table.num_rows == 2
    row = table.to_pylist()[0]
    assert (row["transport"], row["stage"], row["stage_kind"], row["stage_value"], row["arm"]) == (
        "rest",
        "rate-20",
        "rate",
        20.0,
        "direct",
    )
    assert row["valid"] is True and row["invalid_reasons"] == ""
    assert row["cpu_ms_per_1000"] is None and row["peak_rss_mb"] is None  # not sampled here
    assert math.isclose(row["achieved_rps"], 20.0, rel_tol=1e-6)
