"""The interleaved calibration design (pure parts): its arms, and the recovered delay as the mean of
per-block differences between a delay's arm and the reference arm, with a t-interval over blocks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchbench.cli.calibrate import (
    AA_REPLICATES,
    CALIBRATE_SPEC,
    REFERENCE_MS,
    aa_arms,
    aa_layout,
    delay_arm,
    interleaved_arms,
    parse_metrics,
    recovered_paired,
    table_lines,
)
from orchbench.core.errors import ConfigError
from orchbench.core.spec import load_spec
from orchbench.core.spec_arms import Arm
from serving.runtime import sleep_part_s


def _run(ref: list[float], arms: dict[str, list[float]], transport: str = "rest") -> dict:
    """A summary.json fragment: each arm's per-block p50 differences against the baseline."""
    by_arm = {"ref": {"block_diffs_ms": {"p50": ref}}}
    by_arm |= {name: {"block_diffs_ms": {"p50": diffs}} for name, diffs in arms.items()}
    return {transport: {"by_arm": by_arm}}


def test_recovered_is_the_mean_block_difference_with_a_t_interval():
    # per block: 0.52, 0.48, 0.51 -> mean 0.503333, sd 0.020817, se 0.012019, t(0.975, 2) = 4.302653
    run = _run([0.30, 0.40, 0.35], {"plus-500us": [0.82, 0.88, 0.86]})
    row = recovered_paired(run, "rest", 0.5)
    assert row["arm"] == "plus-500us" and row["reference_ms"] == REFERENCE_MS == 5.0
    assert row["recovered_ms"] == 0.5033 and row["error_ms"] == 0.0033
    assert row["se_ms"] == pytest.approx(0.01202, abs=1e-5) and row["df"] == 2
    assert row["ci95"] == pytest.approx([0.4516, 0.5550], abs=1e-4)
    assert row["covers"] and row["within_0.05_ms"] and row["passed"] and row["design"] == "interleaved"


def test_drift_shared_by_the_arms_cancels():
    # the same blocks drift by up to 3 ms in both arms: the recovered delay does not move
    drift = [0.0, 3.0, -1.0]
    run = _run([0.3 + d for d in drift], {"plus-2000us": [2.3 + d for d in drift]})
    row = recovered_paired(run, "rest", 2.0)
    assert row["recovered_ms"] == 2.0 and row["se_ms"] == 0.0 and row["passed"]


def test_covered_but_off_by_more_than_005_is_not_recovered():
    run = _run([0.3, 0.5, 0.2], {"plus-1000us": [1.4, 1.5, 1.3]})  # 1.1, 1.0, 1.1: 0.0667 off
    row = recovered_paired(run, "rest", 1.0)
    assert row["covers"] and not row["within_0.05_ms"] and not row["passed"]


def test_one_block_or_a_missing_arm_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs >= 2 blocks"):
        recovered_paired(_run([0.3], {"plus-500us": [0.8]}), "rest", 0.5)
    with pytest.raises(ConfigError, match="no arms 'plus-1000us' and 'ref'"):
        recovered_paired(_run([0.3, 0.3], {"plus-500us": [0.8, 0.8]}), "rest", 1.0)


def test_the_arms_of_the_one_run():
    spec = load_spec(CALIBRATE_SPEC)
    arms = interleaved_arms(spec, [0.5, 1.0, 2.0])
    assert [(a["name"], a.get("hop"), a.get("inject_delay_ms")) for a in arms] == [
        ("without", None, None),
        ("ref", "orchestrator", 5.0),
        ("plus-500us", "orchestrator", 5.5),
        ("plus-1000us", "orchestrator", 6.0),
        ("plus-2000us", "orchestrator", 7.0),
    ]
    assert arms[0]["baseline"] is True
    # every held arm, the reference too, lets its loop sleep whole ms before the busy-wait
    sleeps = [sleep_part_s(a["inject_delay_ms"] / 1000) for a in arms[1:]]
    assert sleeps == [0.003, 0.004, 0.004, 0.005]
    run_spec = spec.with_overrides({"arms": arms})
    ports = run_spec.arm_ports()
    assert len(set(ports.values())) == 5
    assert [a.inject_delay_ms for a in run_spec.arm_list()] == [None, 5.0, 5.5, 6.0, 7.0]
    # the A/A copy gets a run of its own with the baseline (equally busy model servers)
    copies = aa_arms(spec)
    assert copies is not None and [(a["name"], a.get("baseline"), a.get("aa")) for a in copies] == [
        ("without", True, None),
        ("aa", False, True),
    ]
    assert aa_arms(spec.with_overrides({"arms": [copies[0], {"name": "with"}]})) is None
    # the delay run walks the balanced rotation; the A/A run (no delay) does not
    assert run_spec.delays_injected() and not spec.with_overrides({"arms": copies}).delays_injected()
    # ... and is deployed afresh AA_REPLICATES times, the blocks shared among the starts, >= 2 each
    layout = aa_layout(spec.blocks)
    assert layout == {"replicates": AA_REPLICATES, "blocks": AA_REPLICATES * max(2, spec.blocks // 4)}
    assert (aa_layout(5), aa_layout(12)) == ({"replicates": 4, "blocks": 8}, {"replicates": 4, "blocks": 12})
    aa_spec = spec.with_overrides({"arms": copies, "local.inject_delay_ms": 0.0} | layout)
    assert aa_spec.replicates == 4
    assert {aa_spec.replicate_of(b) for b in range(aa_spec.blocks)} == {0, 1, 2, 3}


def test_delay_arm_names_and_collisions():
    assert [delay_arm(d) for d in (0.5, 1, 2, 0.001)] == [
        "plus-500us",
        "plus-1000us",
        "plus-2000us",
        "plus-1us",
    ]
    with pytest.raises(ConfigError, match="differ by at least 1 µs"):
        interleaved_arms(load_spec(CALIBRATE_SPEC), [1.0, 1.0002])


def test_inject_delay_is_for_orchestrator_arms_only():
    assert Arm(name="x", hop="orchestrator", inject_delay_ms=1.0).model_dump()["inject_delay_ms"] == 1.0
    assert "inject_delay_ms" not in Arm(name="x").model_dump()  # unset: left out of specs and workflows
    assert Arm(name="x", inject_delay_ms=0).model_dump()["inject_delay_ms"] == 0  # 0 overrides local's
    for bad in ({"hop": "nginx"}, {"baseline": True}, {"hop": "model"}):
        with pytest.raises(ValidationError, match="inject_delay_ms is for an arm of hop orchestrator"):
            Arm(name="x", inject_delay_ms=1.0, **bad)


def test_each_metric_recovers_from_its_own_block_differences():
    """p50 and mean rows come from their own per-block differences (a delay moves both): a run
    whose p50 differences recover 1 ms and whose mean differences come back 0.083 ms high says so
    in two rows, with the literal table below (80 columns)."""
    run = {
        "rest": {
            "by_arm": {
                "ref": {"block_diffs_ms": {"p50": [2.0, 2.5, 1.5], "mean": [2.0, 2.0, 2.0]}},
                "plus-1000us": {"block_diffs_ms": {"p50": [2.75, 3.75, 2.5], "mean": [3.0, 3.25, 3.0]}},
            }
        }
    }
    p50, mean = (recovered_paired(run, "rest", 1.0, m) for m in ("p50", "mean"))
    assert (p50["metric"], p50["recovered_ms"], p50["passed"]) == ("p50", 1.0, True)
    assert (mean["metric"], mean["recovered_ms"], mean["covers"], mean["passed"]) == (
        "mean",
        1.0833,
        True,
        False,
    )
    assert table_lines([p50, mean]) == [
        "figure     injected  recovered           95% CI ms    error  ok",
        "rest p50      1.000      1.000      [0.379, 1.621]   +0.000  yes",
        "rest mean     1.000      1.083      [0.725, 1.442]   +0.083  NO (|error| > 0.05)",
    ]
    assert max(len(line) for line in table_lines([p50, mean])) <= 80


@pytest.mark.parametrize("text", ["", "p99", "p50,max", ","])
def test_bad_metrics(text):
    with pytest.raises(ConfigError, match="--metrics"):
        parse_metrics(text)


def test_metrics_parse_keeps_order_and_drops_repeats():
    assert parse_metrics("mean, p50,mean") == ("mean", "p50")
    assert parse_metrics("p50") == ("p50",)
