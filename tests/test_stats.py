"""The estimators, the paired test, verdicts and the pilot rule: unit tests, and literal expected
tables on a fixture small enough to check by hand (tests/fixtures/paired_blocks_small.json)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from orchbench.core import analysis, design, overheads_table, stats, tool_compare, verdict
from orchbench.core.errors import ConfigError
from orchbench.core.spec import parse_spec
from results_schema.summary import ToolSummary
from tests.helpers import FIXTURES

SMALL = json.loads((FIXTURES / "paired_blocks_small.json").read_text())
T2 = 4.302652729911275  # t(0.975, 2)

# The literal expected table of the fixture (ms). Per block (type-7 percentiles of 5 values: p90 is
# x4 + 0.6 (x5 - x4), p99 x4 + 0.96 (x5 - x4)):
#   block 0: with mean 13.2 p50 12 p90 17.2 p99 19.72; without 11.2 10 13.8 14.88
#   block 1: with 13.0 12 15.2 15.92;                   without 11.4 11 12.6 12.96
#   block 2: with 14.2 11 22.4 29.24;                   without  9.6  9 11.2 11.92
# overhead = mean of the block differences, arms = mean of each arm's block values, CI = mean ± T2·se.
EXPECTED = {
    #        estimate   se        ci low      ci high    with        without
    "mean": (2.733333, 0.940449, -1.313092, 6.779759, 13.466667, 10.733333),
    "p50": (1.666667, 0.333333, 0.232449, 3.100884, 11.666667, 10.0),
    "p90": (5.733333, 2.743072, -6.069153, 17.53582, 18.266667, 12.533333),
    "p99": (8.373333, 4.506134, -11.014997, 27.761663, 21.626667, 13.253333),
}


def _groups(arm: str) -> list[np.ndarray]:
    return [np.array(b[arm], dtype=np.int64) * 1_000_000 for b in SMALL["blocks"]]


def _blocks(transport: str = "rest") -> list[analysis.Block]:
    """The fixture as the compare step reads it: one Block per (arm, block) with its samples."""
    out = []
    for i, b in enumerate(SMALL["blocks"]):
        for arm in ("with", "without"):
            lat = np.array(b[arm], dtype=np.int64) * 1_000_000
            df = pd.DataFrame({"latency_ns": lat, "ok": True, "status": "200", "ts_ns": np.arange(len(lat))})
            summary = ToolSummary(
                tool="k6", source="x.json", requests=len(lat), successes=len(lat), latency_ns={}
            )
            out.append(analysis.Block({"transport": transport, "arm": arm, "block": i}, summary, df, "x"))
    return out


# ---------------------------------------------------------------------------------------------------
# the literal tables


def test_fixture_overheads_literal_table() -> None:
    res = analysis.overheads(_groups("with"), _groups("without"))
    got = {
        m: (e["estimate"], e["se"], e["ci95"][0], e["ci95"][1], e["with_ms"], e["without_ms"])
        for m, e in res["overhead_ms"].items()
    }
    for metric, row in EXPECTED.items():
        assert got[metric] == pytest.approx(row, abs=2e-6), metric
        assert res["overhead_ms"][metric]["df"] == 2 and res["overhead_ms"][metric]["n_blocks"] == 3
    assert res["block_diffs_ms"] == {
        "mean": [2.0, 1.6, 4.6],
        "p50": [2.0, 1.0, 2.0],
        "p90": pytest.approx([3.4, 2.6, 11.2]),
        "p99": pytest.approx([4.84, 2.96, 17.32]),
    }
    # every block difference positive: the exact sign-flip p is 2 / 2^3
    assert {m: t["p"] for m, t in res["paired_test"].items()} == dict.fromkeys(stats.METRICS, 0.25)
    assert all(t["n_blocks"] == 3 and t["exact"] for t in res["paired_test"].values())


def test_fixture_summary_terminal_and_parquet_agree() -> None:
    """summary.json's arm values are the ones the overhead is the difference of, and the Parquet
    `overheads` rows carry the same figures."""
    res = analysis.transport_result(_blocks(), threshold_ms=5.0)
    for metric, (est, *_, w, wo) in EXPECTED.items():
        assert res["arms"]["with"]["latency_ms"][metric] == pytest.approx(w, abs=2e-6)
        assert res["arms"]["without"]["latency_ms"][metric] == pytest.approx(wo, abs=2e-6)
        assert res["overhead_ms"][metric]["estimate"] == pytest.approx(est, abs=2e-6)
    assert res["blocks"] == 3 and res["n"] == {"with": 15, "without": 15}
    # mean CI [-1.31, 6.78] contains 5: inconclusive; with per-block sd 1.6289 the half-width
    # t(N-1) * 1.6289 / sqrt(N) first falls below the distance 2.2667 at N = 5 (2.022; N = 4: 2.592)
    assert res["verdict"] == "inconclusive" and res["verdict_detail"]["more_blocks"] == 2
    table = overheads_table.overheads_table(
        {"experiment": "e", "run_id": "r", "rest": res}, created_at_ns=0, provenance={}
    ).to_pylist()
    rows = {r["metric"]: r for r in table}
    for metric, (est, _se, lo, hi, w, wo) in EXPECTED.items():
        r = rows[metric]
        assert (
            r["estimate_ms"],
            r["ci_low_ms"],
            r["ci_high_ms"],
            r["with_ms"],
            r["without_ms"],
        ) == pytest.approx((est, lo, hi, w, wo), abs=2e-6)
        assert "mann_whitney_u_p" not in r  # no pooled rank test any more (schema v2)
        assert r["n_blocks"] == r["df"] + 1 and r["paired_test_p"] is not None  # the blocks' own test


def test_fixture_compare_of_two_sample_tables() -> None:
    """`orchbench compare` with samples: estimate, CI and arm values from the same samples."""
    frames = {
        arm: pd.DataFrame(
            [
                {"latency_ns": v * 1_000_000, "ok": True, "block": i}
                for i, b in enumerate(SMALL["blocks"])
                for v in b[arm]
            ]
        )
        for arm in ("with", "without")
    }
    tool = ToolSummary(tool="k6", source="x", requests=15, successes=15, latency_ns={"mean": 1})
    res = tool_compare.compare(tool, tool, frames["with"], frames["without"])
    assert res["source"] == "samples"
    for metric, (est, _se, lo, hi, *_) in EXPECTED.items():
        assert res["overhead_ms"][metric] == pytest.approx(est, abs=2e-6)
        assert res["ci95_ms"][metric] == pytest.approx([lo, hi], abs=2e-6)
        assert res["with"]["latency_ms"][metric] - res["without"]["latency_ms"][metric] == pytest.approx(
            est, abs=3e-6
        )
    assert res["tool_summaries"]["overhead_ms"] == {"mean": 0.0}


def test_compare_one_block_bootstrap_contains_its_own_estimate() -> None:
    rng = np.random.default_rng(5)
    w = pd.DataFrame({"latency_ns": (8e6 + rng.gamma(2, 2e5, 400) + 3e5).astype(np.int64), "ok": True})
    wo = pd.DataFrame({"latency_ns": (8e6 + rng.gamma(2, 2e5, 400)).astype(np.int64), "ok": True})
    tool = ToolSummary(tool="vegeta", source="x", requests=400, successes=400, latency_ns={"mean": 1})
    res = tool_compare.compare(tool, tool, w, wo)
    assert "one block" in res["method"] and res["paired_test"] is None
    for metric in stats.METRICS:
        lo, hi = res["ci95_ms"][metric]
        assert lo <= res["overhead_ms"][metric] <= hi, metric


# ---------------------------------------------------------------------------------------------------
# estimators


def test_percentile_is_type_7() -> None:
    x = np.array([9.0, 1.0, 3.0, 7.0, 5.0])
    # sorted 1 3 5 7 9, h = 4p: p90 -> 7 + 0.6 * 2, p25 -> 3, p99 -> 7 + 0.96 * 2
    assert stats.PERCENTILE_METHOD == "linear"
    assert stats.percentile(x, 0.9) == pytest.approx(8.2)
    assert stats.percentile(x, 0.25) == pytest.approx(3.0)
    assert stats.statistic(x, "p99") == pytest.approx(8.92)
    assert stats.statistic(x, "p50") == 5.0 and stats.statistic(x, "mean") == 5.0
    with pytest.raises(ValueError):
        stats.statistic(x, "p42")


def test_t_interval_matches_scipy() -> None:
    d = np.array([0.31, 0.28, 0.35, 0.22, 0.30, 0.41])
    est = stats.t_interval(d)
    ref = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert est.ci95 == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert est.se == pytest.approx(d.std(ddof=1) / math.sqrt(6)) and est.df == 5 and est.n_units == 6
    with pytest.raises(ValueError):
        stats.t_interval([1.0])


def test_paired_blocks_is_the_difference_of_its_arm_values() -> None:
    rng = np.random.default_rng(11)
    w = [rng.gamma(2, 0.2, 200) + 8.3 + k for k in range(5)]
    wo = [rng.gamma(2, 0.2, 180) + 8.0 + k for k in range(5)]
    for metric in stats.METRICS:
        est = stats.paired_blocks(w, wo, metric)
        assert est.with_value - est.without_value == pytest.approx(est.estimate, abs=1e-12)
        diffs = stats.block_stats(w, metric) - stats.block_stats(wo, metric)
        assert est.ci95 == stats.t_interval(diffs).ci95
    with pytest.raises(ValueError):
        stats.paired_blocks(w[:1], wo[:1], "mean")


def test_stein_interval_uses_the_pilot_sd_only_for_the_sized_figures() -> None:
    d = np.array([0.1, 0.3, 0.2, 0.25, 0.25, 0.25, 0.25, 0.25])
    est = stats.stein_interval(d, pilot_blocks=3)
    assert est.estimate == pytest.approx(d.mean())
    assert est.se == pytest.approx(0.1 / math.sqrt(8)) and est.df == 2
    assert est.half_width == pytest.approx(T2 * 0.1 / math.sqrt(8))
    assert stats.block_interval(d, "p50", 3).ci95 == est.ci95
    assert stats.block_interval(d, "p99", 3).ci95 == stats.t_interval(d).ci95
    assert stats.block_interval(d, "mean", None).ci95 == stats.t_interval(d).ci95


def test_bootstrap_one_block_is_seeded_and_flagged_by_df_none() -> None:
    a, b = np.arange(100.0) + 3, np.arange(100.0)
    one = stats.bootstrap_one_block(a, b, "mean", n_boot=500, seed=1)
    assert one.estimate == 3.0 and one.df is None and one.n_units == 1
    assert one.ci95 == stats.bootstrap_one_block(a, b, "mean", n_boot=500, seed=1).ci95
    assert one.ci95[0] < 3.0 < one.ci95[1]


# ---------------------------------------------------------------------------------------------------
# the paired test


def test_sign_flip_exact_equals_brute_force() -> None:
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, -0.02, 0.2, 0.15])
    signs = np.array(list(itertools.product([1, -1], repeat=len(d))))
    brute = float(np.mean(np.abs((signs * d).mean(axis=1)) >= abs(d.mean()) - 1e-12))
    res = stats.sign_flip_test(d)
    assert res.exact and res.n_units == 8 and res.p == pytest.approx(brute)


def _scipy_sign_flip(d: np.ndarray, seed: int = 0) -> float:
    """The implementation of before: scipy's permutation test, one sample, sign flips."""
    exact = len(d) <= stats.EXACT_SIGN_FLIP_MAX
    res = sps.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=2 ** len(d) if exact else stats.SIGN_FLIP_RESAMPLES,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue))


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11, 16, 17, 20, 23])
def test_sign_flip_equals_scipy_permutation_test_exactly(n: int) -> None:
    # exact up to 16 blocks, Monte Carlo beyond (the same seeded sign patterns as scipy's): the same p,
    # to the last bit, for continuous differences, for ties (integers, repeated values), an estimate
    # near zero and a shift far from it
    rng = np.random.default_rng(100 + n)
    cases = [
        rng.normal(0.05, 0.3, n),
        rng.integers(-2, 3, n).astype(float),
        np.repeat([0.1, -0.1], (n + 1) // 2)[:n],
        rng.normal(2.0, 0.1, n),
    ]
    for d in cases:
        if not np.any(d):
            continue
        mine = stats.sign_flip_test(d, seed=n)
        assert mine.p == _scipy_sign_flip(d, seed=n), d
        assert mine.exact == (n <= stats.EXACT_SIGN_FLIP_MAX)


def test_sign_flip_few_blocks_cannot_be_highly_significant() -> None:
    assert stats.sign_flip_test([5.0, 6.0, 7.0, 8.0, 9.0, 10.0]).p == pytest.approx(2 / 64)
    assert stats.sign_flip_test([0.0, 0.0]).p == 1.0
    assert stats.sign_flip_test([0.4]).p == 1.0  # one unit: both signs are as extreme (scipy refuses n = 1)
    many = stats.sign_flip_test(np.full(30, 0.2) + np.linspace(-0.01, 0.01, 30))
    assert not many.exact and many.p < 1e-3


# ---------------------------------------------------------------------------------------------------
# verdicts


def test_verdicts_from_the_interval() -> None:
    assert verdict.judge(0.8, (0.7, 0.9), 1.0).verdict == "pass"
    assert verdict.judge(1.2, (1.1, 1.3), 1.0).verdict == "fail"
    v = verdict.judge(2.733333, (-1.313092, 6.779759), 0.2, se=0.940449, n_blocks=3)
    # distance 2.5333, per-block sd 1.6289: t(3) 3.182 * 1.6289 / 2 = 2.59 too wide, t(4) at N = 5 fits
    assert v.verdict == "inconclusive" and v.more_blocks == 2 and "about 2 more blocks" in v.reason
    assert verdict.judge(1.0, (0.9, 1.1), 1.0, se=0.05, n_blocks=6).more_blocks is None  # on the threshold
    assert verdict.judge(1.0, (None, None), 2.0).verdict == "inconclusive"
    assert verdict.judge(1.0, (0.9, 1.1), None).verdict == "n/a"
    assert [verdict.EXIT_CODES[k] for k in ("pass", "fail", "inconclusive")] == [0, 3, 4]


# ---------------------------------------------------------------------------------------------------
# the pilot rule


def test_stein_size_literal() -> None:
    # sd 1, n0 3: N = ceil((4.3027 / h)^2)
    assert design.stein_size([1.0, 2.0, 3.0], 1.0) == 19
    assert design.stein_size([1.0, 2.0, 3.0], 2.0) == 5
    assert design.stein_size([1.0, 2.0, 3.0], 10.0) == 3  # never fewer than the pilot


def test_plan_caps_and_says_why() -> None:
    pilot = {"rest/mean": [1.0, 2.0, 3.0], "rest/p50": [1.0, 1.5, 2.0]}
    plan = design.plan_blocks(pilot, 1.0, max_blocks=40)
    assert (plan.n_blocks, plan.limited_by, plan.per_figure) == (
        19,
        "precision",
        {"rest/mean": 19, "rest/p50": 5},
    )
    assert design.plan_blocks(pilot, 1.0, max_blocks=10).limited_by == "max_blocks"
    timed = design.plan_blocks(pilot, 1.0, 40, max_duration_s=60, seconds_per_block=12)
    assert (timed.n_blocks, timed.limited_by, timed.needed) == (5, "max_duration_s", 19)
    assert design.blocks_needed(np.array([[1.0, 2.0, 3.0], [1.0, 1.5, 2.0]]), 1.0, 10) == 10
    with pytest.raises(ValueError, match="at least 3"):
        design.blocks_needed([1.0, 2.0], 1.0, 10)
    with pytest.raises(ValueError, match="smaller than the pilot"):
        design.blocks_needed([1.0, 2.0, 3.0], 1.0, 2)


def test_precision_status() -> None:
    assert design.precision_status({"mean": 0.01, "p50": 0.019}, 0.02)["met"] is True
    s = design.precision_status({"mean": 0.01, "p50": 0.03}, 0.02)
    assert s["met"] is False and s["worst"] == "p50" and "p50 half-width 0.0300 ms > 0.02 ms" in s["line"]
    assert design.precision_status({"mean": None}, 0.02)["met"] is False


def test_pilot_sized_run_summary_reports_precision() -> None:
    rng = np.random.default_rng(3)
    blocks = []
    for i in range(8):
        drift = rng.uniform(-0.5, 0.5)
        for arm, shift in (("with", 0.3), ("without", 0.0)):
            lat = ((8 + drift + shift + rng.gamma(2, 0.15, 300)) * 1e6).astype(np.int64)
            df = pd.DataFrame({"latency_ns": lat, "ok": True, "status": "200", "ts_ns": np.arange(300)})
            summary = ToolSummary(tool="k6", source="x", requests=300, successes=300, latency_ns={})
            blocks.append(analysis.Block({"transport": "rest", "arm": arm, "block": i}, summary, df, "x"))
    res = analysis.transport_result(blocks, 5.0, pilot_blocks=4, precision_ms=0.05)
    assert res["overhead_ms"]["mean"]["df"] == 3 and res["overhead_ms"]["p99"]["df"] == 7
    assert "Stein" in res["method"] and res["precision"]["target_ms"] == 0.05
    assert res["verdict"] == "pass"


# ---------------------------------------------------------------------------------------------------
# the spec


def test_spec_precision_fields() -> None:
    s = parse_spec(
        {"name": "x", "blocks": 4, "load": {"precision_ms": 0.02, "max_blocks": 30, "max_duration_s": 180}}
    )
    assert (s.load.precision_ms, s.load.max_blocks, s.load.max_duration_s) == (0.02, 30, 180)
    for bad, needle in [
        ({"load": {"max_blocks": 10}}, "apply with load.precision_ms only"),
        ({"blocks": 2, "load": {"precision_ms": 0.02}}, "at least 3"),
        ({"blocks": 6, "load": {"precision_ms": 0.02, "max_blocks": 4}}, "below the pilot"),
        ({"load": {"precision_ms": 0}}, "precision_ms"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            parse_spec({"name": "x", **bad})
