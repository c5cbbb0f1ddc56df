"""benchmarks/rerun_bench.py's agreement check, on literal summaries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "rerun_bench.py"
_spec = importlib.util.spec_from_file_location("rerun_bench", _PATH)
assert _spec and _spec.loader
rerun_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rerun_bench)


def _summary(mean: tuple[float, float, float], p50: tuple[float, float, float]) -> dict:
    def o(v):
        return {"estimate": v[0], "ci95": [v[1], v[2]]}

    block = {"overhead_ms": {"mean": o(mean), "p50": o(p50)}}
    return {"rest": {"arm": "with", "by_arm": {"with": block}}}


def test_pairs_hold_or_miss_by_the_combined_half_width():
    runs = {
        "run1": _summary((0.345, 0.317, 0.373), (0.345, 0.317, 0.373)),  # half-width 0.028
        "run2": _summary((0.440, 0.424, 0.456), (0.493, 0.424, 0.562)),  # 0.016 / 0.069
    }
    rows = {r["figure"]: r for r in rerun_bench.agreement(runs)}
    assert set(rows) == {"rest with mean", "rest with p50"}
    # mean: 0.095 apart, allowed sqrt(0.028^2 + 0.016^2) = 0.0322 -> a miss
    assert rows["rest with mean"]["diff"] == pytest.approx(0.095)
    assert rows["rest with mean"]["allowed"] == pytest.approx(0.032249, abs=1e-6)
    assert rows["rest with mean"]["holds"] is False
    # p50: 0.148 apart, allowed sqrt(0.028^2 + 0.069^2) = 0.0745 -> a miss (the issue's own example)
    assert rows["rest with p50"]["allowed"] == pytest.approx(0.074465, abs=1e-6)
    assert rows["rest with p50"]["holds"] is False
    runs["run2"] = _summary((0.36, 0.33, 0.39), (0.36, 0.33, 0.39))
    assert all(r["holds"] for r in rerun_bench.agreement(runs))


def test_figures_skip_an_interval_that_is_not_there():
    s = _summary((0.3, None, None), (0.3, 0.2, 0.4))
    assert set(rerun_bench.figures(s)) == {("rest", "with", "p50")}
