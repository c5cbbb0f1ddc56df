"""Capacity per arm from a sweep's `stages` table: a literal expected table on a fixture (the
bracket, invalid stages neither good nor bad, a good rate above a bad one not taken, the hop's cost
with its range, the knee), and the SLO's forms."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import pytest

from orchbench.core.capacity import Slo, judge_stage_step, judge_step, knee
from orchbench.core.capacity_sweep import CAPACITY_COLUMNS, as_slo, capacity_table
from orchbench.core.errors import ConfigError
from orchbench.core.spec_stages import Slo as SpecSlo
from tests.load_fixtures import BASELINE, SLO, stages_frame

NAN = math.nan
BRACKET = "bracketed within 20 req/s"
EXPECTED = pd.DataFrame(
    [
        # transport, arm, baseline, slo p99, slo errors, stages, valid, capacity, first bad, bracket,
        # reason, non-monotonic, invalid, left out, cost, cost low, cost high, fraction, knee rps and p99
        ["rest", "model", "model", 25.0, 0.01, 6, 6, 100.0, 120.0, 20.0, BRACKET, "", "", "",
         NAN, NAN, NAN, NAN, 99.8, 18.0],
        ["rest", "ref", "model", 25.0, 0.01, 6, 4, 60.0, 80.0, 20.0, BRACKET, "", "rate-100, rate-120", "",
         40.0, 20.0, 60.0, 0.4, 59.88, 16.0],
        ["rest", "nginx", "model", 25.0, 0.01, 6, 5, 100.0, NAN, NAN,
         "no stage up to 100 req/s broke the SLO (capacity >= it); left out above it: rate-120", "",
         "rate-120", "rate-120", 0.0, NAN, 20.0, 0.0, 79.84, 15.0],
        ["grpc", "model", "model", 25.0, 0.01, 5, 5, 40.0, 60.0, 20.0, BRACKET, "80", "", "",
         NAN, NAN, NAN, NAN, 79.84, 9.5],
        ["grpc", "ref", "model", 25.0, 0.01, 5, 5, 20.0, 40.0, 20.0, BRACKET, "", "", "",
         20.0, 0.0, 40.0, 0.5, NAN, NAN],
    ],
    columns=list(CAPACITY_COLUMNS),
)  # fmt: skip


def test_capacity_table_literal() -> None:
    got = capacity_table(stages_frame(), SLO, baseline=BASELINE)
    pd.testing.assert_frame_equal(got, EXPECTED, check_exact=False, rtol=1e-12)


def test_the_knee_needs_a_convex_curve() -> None:
    # gRPC "ref" jumps at its second stage and climbs on: no knee inside it (not the last point)
    assert knee([20, 40, 60, 80, 100], [9.0, 30.0, 31.0, 40.0, 50.0]) is None
    assert knee([20, 40, 60, 80, 100], [8.0, 8.5, 9.0, 9.5, 30.0]) is not None


def test_without_a_baseline_there_is_no_cost() -> None:
    got = capacity_table(stages_frame(), SLO)
    assert got["cost_rps"].isna().all() and (got["baseline"] == "").all()
    assert got["capacity_rps"].tolist() == [100.0, 60.0, 100.0, 40.0, 20.0]


def test_closed_loop_stages_only_give_an_empty_table() -> None:
    workers = stages_frame()
    workers = workers[workers["stage_kind"] == "workers"]
    got = capacity_table(workers, SLO, baseline=BASELINE)
    assert got.empty and list(got.columns) == list(CAPACITY_COLUMNS)


def test_dropped_iterations_mean_the_arm_could_not_take_the_rate() -> None:
    # ref on REST holds its p99 at 80 req/s; at 100 k6 dropped its iterations: the first bad rate
    df = stages_frame(with_workers_stage=False)
    df.loc[(df["transport"] == "rest") & (df["arm"] == "ref") & (df["stage"] == "rate-80"), "p99_ms"] = 20.0
    row = capacity_table(df, SLO, baseline=BASELINE).set_index(["transport", "arm"]).loc[("rest", "ref")]
    assert (row["capacity_rps"], row["first_bad_rps"], row["cost_rps"]) == (80.0, 100.0, 20.0)
    assert row["capacity_reason"] == "bracketed within 20 req/s" and row["left_out_stages"] == ""
    step = judge_stage_step(100, 45.0, 0.0, Slo(25), dropped=True)
    assert step is not None and not step.good
    assert step.reason == "the arm could not take the rate (k6 dropped iterations)"
    assert judge_stage_step(100, 12.0, 0.0, Slo(25), saturated=True, dropped=True) is None


def test_an_arm_whose_every_stage_is_left_out_has_no_capacity() -> None:
    df = stages_frame(with_workers_stage=False)
    ref = df["arm"] == "ref"
    df.loc[ref, "valid"] = False
    df.loc[ref, "generator_cpu_util"] = 0.95  # a saturated generator: nothing said about the arm
    got = capacity_table(df, SLO, baseline=BASELINE).set_index(["transport", "arm"])
    row = got.loc[("rest", "ref")]
    assert row["capacity_reason"] == "no stage with a result for this arm: no capacity can be read"
    assert math.isnan(row["capacity_rps"]) and math.isnan(row["cost_rps"])
    assert row["left_out_stages"] == "rate-20, rate-40, rate-60, rate-80, rate-100, rate-120"
    # the other arms in those stages keep their own figures: model and nginx as before
    assert got.loc[("rest", "model"), "capacity_rps"] == 100.0


def test_a_stage_left_out_inside_the_bracket_is_named() -> None:
    df = stages_frame(with_workers_stage=False)
    # model REST at 100: invalid for a reason no row shows (say, an arm without requests): left out
    where = (df["transport"] == "rest") & (df["stage"] == "rate-100")
    df.loc[where, "valid"] = False
    df.loc[where & (df["arm"] == "ref"), ["dropped_iterations", "achieved_rps"]] = [0, 100.0]
    row = capacity_table(df, SLO).set_index(["transport", "arm"]).loc[("rest", "model")]
    assert (row["capacity_rps"], row["first_bad_rps"], row["bracket_rps"]) == (80.0, 120.0, 40.0)
    assert row["capacity_reason"] == "bracketed within 40 req/s (left out inside the bracket: rate-100)"


def test_a_zero_error_bound_allows_no_error_only() -> None:
    slo = Slo(p99_ms=25.0, max_error_rate=0.0)
    assert judge_step(100, 10.0, 0.0, slo).good
    assert judge_step(100, 10.0, 0.001, slo).reason == "error rate 0.001 > 0"


@dataclass
class _Section:
    p99_ms: float
    max_error_rate: float


def test_the_slo_in_every_form() -> None:
    want = Slo(25.0, 0.01)
    assert as_slo(want) is want
    assert as_slo({"p99_ms": 25}) == want
    assert as_slo(_Section(25.0, 0.01)) == want
    assert as_slo(SpecSlo(p99_ms=25.0)) == want
    with pytest.raises(ConfigError, match="needs p99_ms"):
        as_slo({"max_error_rate": 0.1})
    with pytest.raises(ConfigError, match="not an SLO"):
        as_slo(3)
    with pytest.raises(ConfigError, match="lacks valid"):
        capacity_table(stages_frame().drop(columns=["valid"]), SLO)
