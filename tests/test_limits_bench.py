"""benchmarks/limits_bench.py on a small run folder written here: the unit SD over replicates and
the size for a target (literal), the noise figures from samples.parquet, bad input in one line."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "limits_bench.py"
_spec = importlib.util.spec_from_file_location("limits_bench", _PATH)
assert _spec and _spec.loader
limits_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(limits_bench)


def test_unit_sd_over_replicate_means():
    # blocks 0-3 in replicates of 2: means (0.1 + 0.3) / 2 = 0.2 and (0.2 + 0.4) / 2 = 0.3
    res = {
        "block_ids": [0, 1, 2, 3],
        "block_diffs_ms": {"mean": [0.1, 0.3, 0.2, 0.4], "p50": [0.1, 0.1, 0.1, 0.1]},
    }
    got = limits_bench.unit_sds(res, per=2)
    assert got["mean"] == pytest.approx(math.sqrt(0.005))  # SD of (0.2, 0.3)
    assert got["p50"] == pytest.approx(0.0)
    # one block per unit: the blocks' own SD; a missing block keeps the others in their replicates
    assert limits_bench.unit_sds(res, per=1)["mean"] == pytest.approx(np.std([0.1, 0.3, 0.2, 0.4], ddof=1))
    gap = {"block_ids": [0, 2, 3], "block_diffs_ms": {"mean": [0.1, 0.2, 0.4], "p50": [0.0, 0.0, 0.0]}}
    assert limits_bench.unit_sds(gap, per=2)["mean"] == pytest.approx(np.std([0.1, 0.3], ddof=1))


def _run_folder(folder: Path) -> tuple[Path, list[float]]:
    """4 blocks of one transport, the arm +0.3 ms over the baseline, requests alternating; the
    summary as `orchbench run` writes its fields that the benchmark reads (2 replicates of 2)."""
    rng = np.random.default_rng(1)
    rows = []
    diffs = []
    for block in range(4):
        level = 10 + rng.uniform(-1, 1)
        base = level + rng.normal(0, 0.5, 100)
        arm = base + 0.3 + rng.normal(0, 0.05, 100)
        diffs.append(float(arm.mean() - base.mean()))
        for i in range(100):
            for k, (name, lat) in enumerate((("without", base[i]), ("with", arm[i]))):
                t = pd.Timestamp(1_700_000_000_000_000_000 + (block * 1000 + 2 * i + k) * 10**7, tz="UTC")
                rows.append(("rest", name, block, t, int(lat * 1e6), True))
    samples = pd.DataFrame(rows, columns=["transport", "arm", "block", "timestamp", "latency_ns", "ok"])
    folder.mkdir()
    samples.to_parquet(folder / "samples.parquet")
    (folder / "owner.json").write_text("{}")
    res = {
        "arm": "with",
        "baseline": "without",
        "block_ids": [0, 1, 2, 3],
        "block_diffs_ms": {"mean": diffs, "p50": diffs},
        "overhead_ms": {m: {"estimate": 0.3, "ci95": [0.25, 0.35]} for m in ("mean", "p50")},
    }
    summary = {
        "replicates": 2,
        "spec": {"blocks": 4, "replicates": 2},
        "rest": {**res, "by_arm": {"with": res}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    t = (folder / "owner.json").stat().st_mtime
    os.utime(folder / "summary.json", (t + 40, t + 40))  # a run of 40 s
    return folder, diffs


def test_run_limits_on_a_folder(tmp_path, capsys):
    run, diffs = _run_folder(tmp_path / "run1")
    (row,) = limits_bench.run_limits(run, target_ms=0.02)
    assert (row["transport"], row["arm"], row["unit"], row["units"]) == ("rest", "with", "replicate", 2)
    assert row["half_width_ms"] == pytest.approx({"mean": 0.05, "p50": 0.05})
    assert row["unit_cost_s"] == pytest.approx(20.0, abs=0.1)  # 40 s over 2 replicates of one transport
    n = row["noise"]
    # each request ~0.5 ms around its block's level, the pairing leaving the arm's own 0.05 ms
    assert n["arms"]["without"]["request_sd_ms"] == pytest.approx(0.5, rel=0.2)
    assert n["diff_sd_ms"]["mean"] == pytest.approx(np.std(diffs, ddof=1), abs=1e-5)  # ns rounding
    means = [(diffs[0] + diffs[1]) / 2, (diffs[2] + diffs[3]) / 2]
    assert row["unit_sd_ms"]["mean"] == pytest.approx(np.std(means, ddof=1))
    assert n["drift_removed"]["mean"] > 0.99
    assert row["units_for_target"]["mean"] is not None
    assert limits_bench.main([str(run), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "run1 | rest with | " in out and "replicates (" in out
    assert json.loads((tmp_path / "rows.json").read_text())[0]["units"] == 2


def test_bad_input_is_one_line(tmp_path, capsys):
    assert limits_bench.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run folder" in err
    assert limits_bench.main([str(tmp_path), "--target", "0"]) == 2
    assert "--target must be > 0" in capsys.readouterr().err


def test_a_summary_of_before_block_ids(tmp_path):
    # summaries written before `block_ids` existed: the blocks both arms have samples in; a figure
    # without a CI has no half-width
    run, diffs = _run_folder(tmp_path / "old")
    summary = json.loads((run / "summary.json").read_text())
    for res in (summary["rest"], summary["rest"]["by_arm"]["with"]):
        del res["block_ids"]
        res["overhead_ms"]["p50"]["ci95"] = [None, None]
    (run / "summary.json").write_text(json.dumps(summary))
    (row,) = limits_bench.run_limits(run, target_ms=0.02)
    assert row["units"] == 2 and row["half_width_ms"] == {"mean": pytest.approx(0.05), "p50": None}
    assert row["noise"]["diff_sd_ms"]["mean"] == pytest.approx(np.std(diffs, ddof=1), abs=1e-5)
