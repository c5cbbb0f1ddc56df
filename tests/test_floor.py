"""The measurement floor: no-op answers, percentile maths, and one real run through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchbench.core.floor import grpc_answer, rest_answer, stats_ms


def test_noop_answers_pass_the_real_checks() -> None:
    from tensorflow_serving.apis import predict_pb2

    body = rest_answer()
    assert len(body) == 218
    assert json.loads(body)["predictions"][0]["scores"]
    resp = predict_pb2.PredictResponse.FromString(grpc_answer())
    assert list(resp.outputs["scores"].float_val)


def test_stats_nearest_rank() -> None:
    s = stats_ms([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    assert (s["n"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"]) == (100, 50.0, 90.0, 99.0, 50.5)
    assert stats_ms([3_000_000])["p99_ms"] == 3.0
    with pytest.raises(ValueError):
        stats_ms([])


@pytest.mark.slow
def test_orchbench_floor_json(tmp_path: Path) -> None:
    orchbench = Path(sys.executable).parent / "orchbench"
    out = subprocess.run(
        [str(orchbench), "floor", "--json", "--requests", "300"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    floor = json.loads(out.stdout)
    pairs = {(r["tool"], r["transport"]) for r in floor["results"]}
    assert pairs == {("k6", "rest"), ("k6", "grpc"), ("python", "rest"), ("python", "grpc")}
    for r in floor["results"]:
        assert r["n"] == 300
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["mean_ms"] > 0
    assert floor["k6_version"].startswith("k6 v")
    if floor["pinned"]:
        assert floor["cpus"]["client"] != floor["cpus"]["server"]
    # nothing the floor started is left running
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "serving.noop" not in ps
