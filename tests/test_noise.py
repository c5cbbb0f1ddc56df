"""What limits the precision (orchbench.core.noise): literal figures on small fixtures, and the
summary's `noise` consistent with the overheads it explains."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchbench.core import analysis, noise, precision_run
from orchbench.core.design import Plan
from orchbench.core.spec import parse_spec
from results_schema.summary import ToolSummary


def _ns(*blocks: list[float]) -> list[np.ndarray]:
    return [np.array(b, dtype=float) * 1e6 for b in blocks]


def test_request_jitter_literal() -> None:
    groups = _ns([1, 2, 3], [10, 12])
    # around the block means 2 and 11: squares 1 + 0 + 1 + 1 + 1 = 4 on 2 + 1 df
    assert noise.request_sd_ms(groups) == pytest.approx(math.sqrt(4 / 3))
    # type-7 quartiles: [1, 2, 3] -> 1.5 and 2.5; [10, 12] -> 10.5 and 11.5
    assert noise.request_iqr_ms(groups) == pytest.approx(1.0)
    assert noise.request_sd_ms(_ns([5])) is None and noise.request_iqr_ms(_ns([5])) is None


def test_lag1_literal() -> None:
    # centred [-1, 1, -1, 1]: (-1 - 1 - 1) / 4; [-1, -1, 1, 1]: (1 - 1 + 1) / 4; pooled (-3 + 1) / 8
    assert noise.lag1(_ns([1, 3, 1, 3])) == pytest.approx(-0.75)
    assert noise.lag1(_ns([1, 1, 3, 3])) == pytest.approx(0.25)
    assert noise.lag1(_ns([1, 3, 1, 3], [1, 1, 3, 3])) == pytest.approx(-0.25)
    assert noise.lag1(_ns([1, 2])) is None  # too short to say
    assert noise.lag1(_ns([4, 4, 4])) is None  # no spread


def test_pair_noise_literal() -> None:
    # block means: the arm 2, 4, 3; the baseline 1, 3, 2.5; differences 1, 1, 0.5
    arm = _ns([2, 2], [4, 4], [3, 3])
    base = _ns([1, 1], [3, 3], [2.5, 2.5])
    got = noise.pair_noise(arm, base)
    assert got["diff_sd_ms"]["mean"] == pytest.approx(math.sqrt(1 / 12))  # SD of (1, 1, 0.5)
    assert got["diff_sd_ms"]["p50"] == pytest.approx(math.sqrt(1 / 12))
    # the levels' variances 1 and 13/12: pairing cancels 1 - (1/12) / (25/12) = 96 % of them
    assert got["drift_removed"]["mean"] == pytest.approx(0.96)
    assert got["independent_diff_sd_ms"] == pytest.approx(0.0)  # no spread inside a block
    with pytest.raises(ValueError, match="the same blocks"):
        noise.pair_noise(arm, base[:2])


def test_independent_prediction_literal() -> None:
    # one block: the arm's variance 1 over 3 requests, the baseline's 2 over 2: sqrt(1/3 + 2/2)
    got = noise.independent_diff_sd_ms(_ns([1, 2, 3]), _ns([10, 12]))
    assert got == pytest.approx(math.sqrt(1 / 3 + 1))


def test_blocks_for_ms_literal() -> None:
    # t(0.975, 14) * 0.036 / sqrt(15) = 0.01994 <= 0.02 < t(0.975, 13) * 0.036 / sqrt(14) = 0.02079
    assert noise.blocks_for_ms(0.036, 0.02) == 15
    assert noise.blocks_for_ms(0.0, 0.02) == 2
    assert noise.blocks_for_ms(1.0, 1e-4) == noise.MAX_BLOCKS_FOR
    with pytest.raises(ValueError, match="must be > 0"):
        noise.blocks_for_ms(0.1, 0.0)


def _drifting_blocks(shared: float, seed: int = 5) -> list[analysis.Block]:
    """8 blocks of 300 requests per arm, alternating request by request; block levels drift by up
    to ±0.5 ms; a slow spell term that both arms' neighbouring requests share (weight `shared`)
    and independent jitter; the arm +0.3 ms."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(8):
        drift = rng.uniform(-0.5, 0.5)
        spell = np.repeat(rng.normal(0, 1.0, 150), 2)  # one spell value for each adjacent pair
        for k, (arm, shift) in enumerate((("with", 0.3), ("without", 0.0))):
            lat_ms = 10 + drift + shift + shared * spell[k::2] + rng.normal(0, 0.3, 150)
            df = pd.DataFrame(
                {
                    "latency_ns": (lat_ms * 1e6).astype(np.int64),
                    "ok": True,
                    "status": "200",
                    "ts_ns": 2 * np.arange(150) + k,
                }
            )
            summary = ToolSummary(tool="k6", source="x", requests=150, successes=150, latency_ns={})
            out.append(analysis.Block({"transport": "rest", "arm": arm, "block": i}, summary, df, "x"))
    return out


def test_summary_noise_explains_the_interval() -> None:
    res = analysis.transport_result(_drifting_blocks(shared=1.0), None)
    n = res["noise"]
    assert set(n["arms"]) == {"with", "without"}
    # the SD of the paired differences is the one the interval is made of
    for m in ("mean", "p50"):
        assert n["diff_sd_ms"][m] == pytest.approx(
            np.std(res["block_diffs_ms"][m], ddof=1), abs=1e-5
        )  # ms, rounded to ns
    # the shared spells: each arm's requests correlated and spread, the drift cancelled by pairing,
    # and the paired difference far below what independent requests of that spread would give
    for arm in ("with", "without"):
        assert n["arms"][arm]["request_sd_ms"] == pytest.approx(math.hypot(1.0, 0.3), rel=0.1)
        assert n["arms"][arm]["block_sd_ms"]["mean"] > 0.1
    assert n["drift_removed"]["mean"] > 0.9
    assert n["diff_sd_ms"]["mean"] < 0.5 * n["independent_diff_sd_ms"]
    # without the shared spells the requests are independent and the prediction holds
    flat = analysis.transport_result(_drifting_blocks(shared=0.0), None)["noise"]
    assert flat["diff_sd_ms"]["mean"] == pytest.approx(flat["independent_diff_sd_ms"], rel=0.6)
    assert abs(flat["arms"]["with"]["lag1"]) < 0.2
    line = noise.line(n, "with", "without")
    assert line.startswith("what limits it (with − without): one request's SD ") and "(p50)" in line


def test_the_size_asked_for_in_time() -> None:
    spec = parse_spec(
        {"name": "x", "blocks": 6, "load": {"precision_ms": 0.02, "duration_s": 6, "warmup_s": 1}}
    )
    plan = Plan(n_blocks=8, needed=45, pilot_blocks=6, limited_by="max_blocks")
    # 45 blocks x (1 s warm-up + 2 arms x 6 s + 1 s start) x 2 transports
    assert precision_run.needed_load_s(plan, spec) == pytest.approx(45 * 14 * 2)
    rec = precision_run.record(plan, spec)
    assert rec["needed_load_s"] == 1260.0
    assert "the target asked for 45 (~21m00s of load-testing); N limited by load.max_blocks" in rec["line"]


def test_report_shows_what_limits_the_interval(tmp_path) -> None:
    from orchbench.core.report_data import RunData
    from orchbench.core.report_sections import limits_section

    res = analysis.transport_result(_drifting_blocks(shared=1.0), None)
    n = res["noise"]
    html = limits_section(RunData(tmp_path, {"rest": res}), ["rest"])
    assert "What limits the interval" in html and "REST with − without" in html
    assert f"{n['arms']['with']['request_sd_ms']:.3f} / {n['arms']['without']['request_sd_ms']:.3f}" in html
    assert f"{n['diff_sd_ms']['mean']:.3f} / {n['diff_sd_ms']['p50']:.3f}" in html
    assert f"{100 * n['drift_removed']['mean']:.1f} %" in html
    # a summary of before has no `noise`: no section; a mangled one shows dashes, never a traceback
    assert limits_section(RunData(tmp_path, {"rest": {"arm": "with"}}), ["rest"]) == ""
    bad = {"rest": {"arm": "with", "noise": {"arms": "x", "diff_sd_ms": {"mean": "0.1"}}}}
    assert "— / —" in limits_section(RunData(tmp_path, bad), ["rest"])
