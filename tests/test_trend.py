"""`orchbench trend` and its regression gate: literal gate outcomes, and a synthetic nightly dataset
written with the real schema writer (one run a night under date=YYYY-MM-DD/<run_id>/)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchbench.core import trend
from orchbench.core.errors import ConfigError, SchemaVersionError
from orchbench.core.trend import RunPoint, gate
from results_schema import read_table, write_table
from results_schema.schema import OVERHEADS_SCHEMA, SCHEMA_VERSION, STAGE_DEFAULTS
from tests.helpers import orchbench

DAY0 = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)


def _pt(day: int, est: float, half: float | None = 0.04, threshold: float | None = None) -> RunPoint:
    lo, hi = (None, None) if half is None else (est - half, est + half)
    return RunPoint(f"run-{day:02d}", DAY0 + timedelta(days=day), est, lo, hi, threshold)


BASE = [_pt(i, e) for i, e in enumerate([0.30, 0.32, 0.28, 0.31, 0.29])]


# ---------------------------------------------------------------------------------------------------
# the gate, pure, literal expectations


def test_baseline_literal() -> None:
    b = trend.baseline_of(BASE)
    # median 0.30; MAD 0.01 -> 0.014826; within-run se 0.08 / 3.92 = 0.020408 (the larger)
    assert b.runs == 5
    assert b.median_ms == pytest.approx(0.30)
    assert b.spread_ms == pytest.approx(0.08 / 3.919928, rel=1e-5)
    assert b.upper_ms == pytest.approx(0.30 + 3 * 0.08 / 3.919928, rel=1e-5)


def test_gate_catches_step() -> None:
    r = gate([*BASE, _pt(5, 2.30)], "rest")
    assert not r.passed
    assert len(r.reasons) == 1 and "significantly worse than the 5 earlier runs" in r.reasons[0]
    assert "step +2.000 ms" in r.reasons[0]
    line = r.line()
    assert line.startswith(
        "rest: mean overhead +2.300 ms (95 % CI [+2.260, +2.340]) in run run-05 (2026-11-20)"
    )


def test_gate_passes_noise() -> None:
    r = gate([*BASE, _pt(5, 0.33)], "rest")
    assert r.passed and r.reasons == ()
    assert "pass" in r.line() and "band up to +0.361 ms" in r.line()


def test_gate_overlapping_ci_is_not_a_regression() -> None:
    # estimate 0.40 is above the band edge (0.361) but its CI low 0.34 is not
    assert gate([*BASE, _pt(5, 0.40, half=0.06)], "rest").passed
    assert not gate([*BASE, _pt(5, 0.40, half=0.03)], "rest").passed


def test_gate_min_effect() -> None:
    tight = [_pt(i, 0.300, half=0.002) for i in range(5)]
    latest = _pt(5, 0.350, half=0.002)
    assert gate([*tight, latest], "grpc").passed  # +0.05 ms: clear, but below the 0.1 ms minimum effect
    r = gate([*tight, latest], "grpc", min_effect_ms=0.01)
    assert not r.passed and "step +0.050 ms" in r.reasons[0]


def test_gate_one_odd_night_in_the_baseline_does_not_hide_a_step() -> None:
    odd = [*BASE[:4], _pt(4, 5.0)]  # a mean/stdev baseline would put the band above 5 ms
    r = gate([*odd, _pt(5, 2.30)], "rest")
    assert not r.passed
    assert r.baseline is not None and r.baseline.median_ms == pytest.approx(0.31)


def test_gate_uses_only_the_last_n_runs() -> None:
    old_regime = [_pt(i, 2.5) for i in range(10)]
    new_regime = [_pt(10 + i, e) for i, e in enumerate([0.30, 0.32, 0.28])]
    r = gate([*old_regime, *new_regime, _pt(13, 2.5)], "rest", baseline_runs=3)
    assert not r.passed and r.baseline is not None and r.baseline.runs == 3
    assert gate([*old_regime, *new_regime, _pt(13, 2.5)], "rest", baseline_runs=7).passed


def test_gate_threshold_with_too_few_runs() -> None:
    r = gate([_pt(0, 0.3), _pt(1, 1.2)], "grpc", threshold_ms=1.0)
    assert not r.passed
    assert r.reasons == ("over the threshold 1 ms by 0.200 ms (whole 95 % CI above it)",)
    assert any("only the threshold applies" in n for n in r.notes)
    assert r.baseline is None
    ok = gate([_pt(0, 0.3), _pt(1, 1.2)], "grpc", threshold_ms=1.5)
    assert ok.passed and "only the threshold applies" in ok.line()


def test_gate_threshold_from_the_run_and_flag_overrides() -> None:
    pts = [*BASE, _pt(5, 0.31, threshold=0.25)]
    r = gate(pts, "rest")
    assert not r.passed and r.threshold_ms == 0.25 and r.reasons[0].startswith("over the threshold 0.25 ms")
    assert gate(pts, "rest", threshold_ms=5.0).passed


def test_gate_both_reasons_in_one_line() -> None:
    r = gate([*BASE, _pt(5, 2.3)], "rest", threshold_ms=1.0)
    assert len(r.reasons) == 2 and r.line().count("\n") == 0
    assert "over the threshold 1 ms" in r.line() and "significantly worse" in r.line()


def test_gate_latest_without_ci_uses_its_estimate() -> None:
    assert not gate([*BASE, _pt(5, 0.9, half=None)], "rest").passed
    assert gate([*BASE, _pt(5, 0.35, half=None)], "rest").passed


def test_gate_threshold_verdict_from_the_interval() -> None:
    """Against a threshold: fail when the whole CI is above it, pass when below, else inconclusive,
    with the blocks that would likely decide it (from the run's own SE, not the CI width / 1.96)."""
    above = RunPoint("a", DAY0, 1.10, 1.02, 1.18, 1.0, se=0.0311, n_blocks=6)
    below = RunPoint("b", DAY0, 0.90, 0.82, 0.98, 1.0, se=0.0311, n_blocks=6)
    inside = RunPoint("c", DAY0, 1.05, 0.97, 1.13, 1.0, se=0.0311, n_blocks=6)
    assert gate([above], "rest").verdict == "fail" and not gate([above], "rest").passed
    assert gate([below], "rest").verdict == "pass" and gate([below], "rest").exit_code == trend.EXIT_OK
    r = gate([inside], "rest")
    assert r.passed and r.verdict == "inconclusive" and r.exit_code == trend.EXIT_INCONCLUSIVE == 4
    # per-block sd 0.0311 * sqrt(6) = 0.0762; t(N-1) * 0.0762 / sqrt(N) < 0.05 first at N = 12
    assert "about 6 more blocks would likely decide it" in r.line()
    assert r.line().count("\n") == 0 and "inconclusive" in r.line()


def test_se_is_the_runs_own_and_the_width_only_as_a_bound() -> None:
    assert RunPoint("a", DAY0, 1.0, 0.9, 1.1, se=0.0389).se_ms == 0.0389
    assert RunPoint("a", DAY0, 1.0, 0.9, 1.1).se_ms == pytest.approx(0.2 / 3.919928)


def test_load_dataset_takes_se_from_summary_json(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", nights=3)
    path = sorted(root.rglob("overheads.parquet"))[-1]
    se = {"rest": {"overhead_ms": {"mean": {"estimate": 0.3, "se": 0.0123, "n_blocks": 6}}}}
    (path.parent / "summary.json").write_text(json.dumps(se))
    pts = trend.series(trend.load_dataset(root), "rest", "mean")
    assert [(p.se, p.n_blocks) for p in pts] == [(None, None), (None, None), (0.0123, 6)]


def test_cli_inconclusive_exit_4(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    latest = _latest(root, "rest")
    proc = orchbench("trend", str(root), "--threshold-ms", f"{latest:.4f}", "--transport", "rest")
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orchbench: inconclusive: rest:")


def test_gate_sorts_by_time() -> None:
    pts = [_pt(5, 2.3), *BASE]  # latest given first
    assert gate(pts, "rest").latest.run_id == "run-05"


def test_gate_needs_points() -> None:
    with pytest.raises(ValueError):
        gate([], "rest")


def test_gate_false_alarm_and_detection_rates() -> None:
    """Under night-to-night noise (sd 0.05 ms) plus within-run noise (se 0.03 ms) the gate rarely fires;
    a step of +0.5 ms is caught nearly always."""
    rng = np.random.default_rng(7)

    def history(step: float) -> list[RunPoint]:
        true = 0.3 + rng.normal(0, 0.05, 8)
        true[-1] += step
        est = true + rng.normal(0, 0.03, 8)
        return [
            RunPoint(f"r{i}", DAY0 + timedelta(days=i), e, e - 0.0588, e + 0.0588) for i, e in enumerate(est)
        ]

    trials = 2000
    false_alarms = sum(not gate(history(0.0), "rest").passed for _ in range(trials))
    caught = sum(not gate(history(0.5), "rest").passed for _ in range(trials))
    assert false_alarms / trials < 0.01, false_alarms
    assert caught / trials > 0.97, caught


# ---------------------------------------------------------------------------------------------------
# a synthetic nightly dataset through the CLI


def write_night(
    root: Path,
    day: int,
    est: dict[str, float],
    half: float = 0.05,
    threshold: float = 5.0,
    experiment: str = "default",
) -> Path:
    created = DAY0 + timedelta(days=day)
    run_id = f"{created:%Y%m%dT%H%M%SZ}-{day:06x}"
    rows = []
    for transport, value in est.items():
        for metric, shift in (("mean", 0.0), ("p50", -0.02)):
            rows.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "experiment": experiment,
                    "run_id": run_id,
                    "created_at": pd.Timestamp(created),
                    "transport": transport,
                    "arm": "with",
                    "baseline": "without",
                    **STAGE_DEFAULTS,
                    "valid": True,
                    "metric": metric,
                    "estimate_ms": value + shift,
                    "ci_low_ms": value + shift - half,
                    "ci_high_ms": value + shift + half,
                    "with_ms": 6.3 + value,
                    "without_ms": 6.3,
                    "n_with": 1200,
                    "n_without": 1190,
                    "threshold_ms": threshold,
                    "platform": "kubernetes",
                    "orchbench_version": "0.1.0",
                }
            )
    path = root / f"date={created:%Y-%m-%d}" / run_id / "overheads.parquet"
    return write_table(pa.Table.from_pylist(rows, schema=OVERHEADS_SCHEMA), path, "overheads")


def make_dataset(root: Path, nights: int = 10, last: dict[str, float] | None = None, seed: int = 11) -> Path:
    rng = np.random.default_rng(seed)
    for day in range(nights):
        est = {"rest": 0.3 + rng.normal(0, 0.04), "grpc": 0.15 + rng.normal(0, 0.03)}
        if day == nights - 1 and last:
            est.update({t: est[t] + v for t, v in last.items()})
        write_night(root, day, est)
    return root


def _latest(root: Path, transport: str) -> float:
    df = trend.load_dataset(root)
    sel = df[(df["transport"] == transport) & (df["metric"] == "mean")].sort_values("created_at")
    return float(sel["estimate_ms"].iloc[-1])


def test_load_dataset_reads_every_night(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    df = trend.load_dataset(root)
    assert len(df) == 10 * 2 * 2
    pts = trend.series(df, "rest", "mean")
    assert len(pts) == 10 and pts == sorted(pts, key=lambda p: p.created_at)


def test_cli_planted_regression_exit_3(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", last={"rest": 2.0})
    proc = orchbench("trend", str(root))
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # gRPC is clean
    assert lines[0].startswith("orchbench: regression: rest: mean overhead")
    assert f"{_latest(root, 'rest'):+.3f} ms" in lines[0]
    assert "significantly worse than the 7 earlier runs" in lines[0]
    assert "gate grpc:" in proc.stdout and "pass" in proc.stdout
    assert "REGRESSION" in proc.stdout


def test_cli_clean_dataset_exit_0(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    proc = orchbench("trend", str(root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "gate rest:" in proc.stdout and "gate grpc:" in proc.stdout
    assert f"{_latest(root, 'grpc'):+.3f}" in proc.stdout
    assert "20261124T020000Z-000009" in proc.stdout  # the latest run is in the table


def test_cli_threshold_breach(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    proc = orchbench("trend", str(root), "--threshold-ms", "0.2", "--transport", "rest")
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "rest:" in lines[0] and "over the threshold 0.2 ms" in lines[0]
    assert "grpc" not in proc.stdout  # --transport rest


def assert_quiet(proc: Any) -> None:
    """stderr holds the verdict's one line and nothing else: no pandas (or other) warnings."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 1 and "Warning" not in proc.stderr, proc.stderr


def test_cli_json(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", last={"grpc": 1.5})
    proc = orchbench("trend", str(root), "--json", "--metric", "p50")
    assert proc.returncode == 3
    assert_quiet(proc)
    out = json.loads(proc.stdout)
    assert out["regression"] is True and out["metric"] == "p50"
    assert out["transports"]["grpc"]["gate"]["passed"] is False
    assert out["transports"]["rest"]["gate"]["passed"] is True
    assert len(out["transports"]["rest"]["series"]) == 10


def test_cli_html(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", last={"rest": 2.0})
    out = tmp_path / "trend.html"
    proc = orchbench("trend", str(root), "--html", str(out))
    assert proc.returncode == 3
    assert_quiet(proc)
    page = out.read_text()
    assert 'id="trend"' in page and "95 % CI" in page and "REGRESSION" in page
    assert not re.search(r"<script[^>]+src=", page)


def test_cli_two_runs_only_threshold(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", nights=2)
    proc = orchbench("trend", str(root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no pandas (or other) warnings
    assert "only the threshold applies" in proc.stdout


def test_cli_unknown_schema_version_exit_2(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", nights=3)
    path = next(root.rglob("overheads.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"orchbench.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaVersionError):
        trend.load_dataset(root)
    proc = orchbench("trend", str(root))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "schema version 99" in lines[0]


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_cli_missing_or_empty_dataset_exit_2(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "ds"
    if kind == "empty":
        (root / "date=2026-11-24").mkdir(parents=True)
    proc = orchbench("trend", str(root))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(root) in lines[0]
    assert ("no such dataset" if kind == "missing" else "no overheads.parquet") in lines[0]


def test_cli_bad_flag_exit_2(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", nights=2)
    proc = orchbench("trend", str(root), "--metric", "p99")
    assert proc.returncode == 2 and "--metric 'p99'" in proc.stderr


def test_several_experiments_need_a_choice(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", nights=3)
    write_night(root, 5, {"rest": 3.0}, experiment="seed")
    with pytest.raises(ConfigError, match="several experiments"):
        trend.run_trend(root)
    assert trend.run_trend(root, experiment="default", json_out=True) == trend.EXIT_OK
    assert trend.run_trend(root, experiment="seed", json_out=True, threshold_ms=1.0) == trend.EXIT_REGRESSION


def test_run_gate_raises_regression_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dataset(tmp_path / "ds", last={"grpc": 2.0})
    with pytest.raises(trend.RegressionFound) as info:
        trend.run_gate(root)
    assert info.value.exit_code == 3
    assert [r.transport for r in info.value.results] == ["grpc"]
    assert "\n" not in str(info.value) and "grpc: mean overhead" in str(info.value)
    assert "gate rest:" in capsys.readouterr().out


def test_run_gate_per_transport_thresholds(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    results = trend.run_gate(root, rest_ms=1.0, grpc_ms=1.0)
    assert {t: r.threshold_ms for t, r in results.items()} == {"rest": 1.0, "grpc": 1.0}
    with pytest.raises(trend.RegressionFound) as info:
        trend.run_gate(root, rest_ms=1.0, grpc_ms=0.05)
    assert [r.transport for r in info.value.results] == ["grpc"]
    assert "over the threshold 0.05 ms" in str(info.value)


def test_run_gate_inconclusive_exit_4(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    latest = _latest(root, "grpc")
    with pytest.raises(trend.Inconclusive) as info:
        trend.run_gate(root, rest_ms=5.0, grpc_ms=latest)
    assert info.value.exit_code == 4 and [r.transport for r in info.value.results] == ["grpc"]


def test_staged_runs_give_one_series_per_stage_and_drop_invalid_stages(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for day in range(3):
        path = write_night(root, day, {"rest": 0.3})
        table = read_table(path, "overheads").to_pandas()
        staged = []
        for stage, valid in (("rate-10", True), ("rate-40", False)):
            part = table.copy()
            part["stage"], part["stage_kind"], part["stage_value"] = stage, "rate", float(stage[5:])
            part["valid"] = valid
            staged.append(part)
        frame = pd.concat(staged, ignore_index=True)
        write_table(
            pa.Table.from_pandas(frame, schema=OVERHEADS_SCHEMA, preserve_index=False), path, "overheads"
        )
    df = trend.load_dataset(root)
    assert sorted(df["arm"].unique()) == ["with@rate-10"]  # rate-40 was invalid every night
    assert len(trend.series(df, "rest", "mean", "with@rate-10")) == 3
