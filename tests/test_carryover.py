"""benchmarks/carryover.py (the calibration lean): slopes recovered from a synthetic walk with a known
carry-over, the bias they imply through the walk's imbalance, bad input in one line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchbench.core.loadtools.rotation import balanced_rotation

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "carryover.py"
_spec = importlib.util.spec_from_file_location("carryover", _PATH)
assert _spec and _spec.loader
carryover = importlib.util.module_from_spec(_spec)
sys.modules["carryover"] = carryover  # its dataclass looks its module up there
_spec.loader.exec_module(carryover)

ARMS = ["without", "ref", "plus-500us", "plus-1000us", "plus-2000us"]
HOLDS = dict(zip(ARMS, (0.0, 2.0, 2.5, 3.0, 4.0), strict=True))
#: ms of latency per ms of the hold 1, 2 and 3 requests before
SLOPES = (0.040, -0.015, 0.005)


def _walk(blocks: int = 6, cycles: int = 40, seed: int = 3) -> pd.DataFrame:
    """Each block walks the balanced 5-arm cycle, its arms in a shuffled order; a request's latency
    is 10 ms + its own hold + the slopes times the holds before it + N(0, 0.05 ms) noise."""
    rng = np.random.default_rng(seed)
    cycle = balanced_rotation(len(ARMS))
    rows = []
    for block in range(blocks):
        order = list(rng.permutation(ARMS))
        arms = [order[i] for i in cycle * cycles]
        holds = [HOLDS[a] for a in arms]
        for i, arm in enumerate(arms):
            before = [holds[i - k] if i >= k else 0.0 for k in (1, 2, 3)]
            ms = 10.0 + holds[i] + float(np.dot(SLOPES, before)) + rng.normal(0, 0.05)
            rows.append(("grpc", arm, block, block * 10_000 + i, ms, True))
    df = pd.DataFrame(rows, columns=["transport", "arm", "block", "t_ms", "ms", "ok"])
    df["timestamp"] = pd.to_datetime(df["t_ms"], unit="ms", utc=True)
    df["latency_ns"] = (df["ms"] * 1e6).round().astype("int64")
    return df.drop(columns=["t_ms", "ms"])


def _records(folder: Path) -> None:
    """The deploy records a calibration run leaves: each arm's injected delay (none on the baseline)."""
    deploy = folder / "state" / "deploy"
    deploy.mkdir(parents=True)
    for arm, ms in HOLDS.items():
        details = {"inject_delay_ms": ms} if ms else {}
        (deploy / f"grpc-{arm}.json").write_text(json.dumps({"arm": arm, "details": details}))


def test_holds_from_the_deploy_records(tmp_path):
    _records(tmp_path)
    assert carryover.holds_of(tmp_path, "grpc") == HOLDS
    assert carryover.holds_of(tmp_path, "rest") == {}


def test_slopes_and_bias_recovered_from_a_known_carryover():
    f = carryover.lagged(_walk(), "grpc", HOLDS)
    assert list(f.columns) == ["block", "arm", "lat", "h1", "h2", "h3"]
    res = carryover.carryover(f, HOLDS)
    assert res.slopes == pytest.approx(SLOPES, abs=0.002)
    assert np.all(res.se < 0.002)
    assert set(res.imbalance_ms) == {"plus-500us", "plus-1000us", "plus-2000us"}
    for arm, imb in res.imbalance_ms.items():
        assert abs(imb[0]) < 0.01  # the cycle evens out the hold 1 before
        assert res.bias_ms[arm] == pytest.approx(float(np.dot(res.slopes, imb)))
        # the bias is what the arm's mean latency minus the reference's shows beyond the injected delay
        mine, ref = f[f["arm"] == arm], f[f["arm"] == "ref"]
        beyond = (mine["lat"].mean() - ref["lat"].mean()) - (HOLDS[arm] - 2.0)
        assert beyond == pytest.approx(float(np.dot(SLOPES, imb)), abs=0.01)


def test_main_prints_and_refuses_bad_input(tmp_path, capsys):
    (tmp_path / "interleaved").mkdir()
    _walk(blocks=3, cycles=10).to_parquet(tmp_path / "interleaved" / "samples.parquet")
    _records(tmp_path / "interleaved")
    assert carryover.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grpc: µs per ms of hold: 1 before +" in out and "plus-2000us: hold imbalance" in out
    assert carryover.main([str(tmp_path / "nope")]) == 2
    other = tmp_path / "other"
    other.mkdir()
    _walk(blocks=2, cycles=2).query("arm != 'ref'").to_parquet(other / "samples.parquet")
    assert carryover.main([str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "no samples.parquet" in err and "no deploy records" in err
