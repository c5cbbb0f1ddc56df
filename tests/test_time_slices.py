"""benchmarks/time_slices.py (issue 13's reference method) on a small samples frame written here: the
slices, the paired estimate and half-width (literal), failed requests left out, the spec it writes,
bad input in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import yaml

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "time_slices.py"
_spec = importlib.util.spec_from_file_location("time_slices", _PATH)
assert _spec and _spec.loader
time_slices = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(time_slices)

#: the nginx arm's offset over `direct` in blocks 0-1, slices 0-1
OFFSETS = {(0, 0): 0.1, (0, 1): 0.3, (1, 0): 0.2, (1, 1): 0.4}


def _samples() -> pd.DataFrame:
    """Two blocks of 12 requests, one a second, direct and nginx alternating: each slice of 6 s holds
    direct at 10, 12, 14 ms and nginx at those plus the slice's offset; one failed nginx request of
    100 ms, and a gRPC request, which the REST figures must not see."""
    rows = []
    for block in (0, 1):
        for i in range(12):
            arm = "direct" if i % 2 == 0 else "nginx"
            s = i // 6
            ms = 10.0 + 2 * ((i % 6) // 2) + (OFFSETS[block, s] if arm == "nginx" else 0.0)
            rows.append(("rest", arm, block, block * 100 + i, ms, True))
        rows.append(("rest", "nginx", block, block * 100 + 5.5, 100.0, False))
    rows.append(("grpc", "nginx", 0, 3.0, 50.0, True))
    df = pd.DataFrame(rows, columns=["transport", "arm", "block", "t_s", "ms", "ok"])
    df["timestamp"] = pd.to_datetime(df["t_s"], unit="s", utc=True)
    df["latency_ns"] = (df["ms"] * 1e6).round().astype("int64")
    return df.drop(columns=["t_s", "ms"])


def test_slices_and_the_paired_interval_literal():
    stats = time_slices.slice_stats(_samples(), "rest", per_block=2)
    assert sorted(set(zip(stats["block"], stats["slice"], strict=True))) == sorted(OFFSETS)
    assert set(stats["n"]) == {3}  # the failed request is not counted
    direct = stats[stats["arm"] == "direct"]
    assert set(direct["p50"]) == {12.0} and set(direct["mean"]) == {12.0}
    for metric in ("p50", "mean"):
        got = time_slices.paired(stats, "nginx", "direct", metric)
        # differences 0.1, 0.3, 0.2, 0.4: mean 0.25, SD 0.1291, t(0.975, 3) = 3.1824, * 0.1291 / 2 = 0.2054
        assert got["estimate"] == pytest.approx(0.25)
        assert got["sd"] == pytest.approx(0.129099, abs=1e-6)
        assert got["half"] == pytest.approx(0.205426, abs=1e-6)
        assert got["slices"] == 4


def test_time_for_a_target_scales_with_the_square():
    assert time_slices.time_for(0.1, 0.05, 60.0) == pytest.approx(240.0)


def test_the_spec_it_writes_is_the_proxies_spec_on_rest_for_150_s(tmp_path):
    out = tmp_path / "px150.yaml"
    assert time_slices.main(["--spec", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["transports"] == ["rest"] and spec["blocks"] == 2
    assert spec["load"]["duration_s"] * len(spec["arms"]) * spec["blocks"] == 150
    assert Path(spec["manifest"]).is_file() and Path(spec["payloads"]["rest"]).is_file()


def test_main_prints_the_figures(tmp_path, capsys):
    _samples().to_parquet(tmp_path / "samples.parquet")
    assert time_slices.main([str(tmp_path), "--slices-per-block", "2", "--target", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "4 slices over 22 s of k6" in out  # 11 s a block (the failed request is left out)
    assert "nginx         p50  +0.250 ± 0.205 ms" in out


def test_bad_input_one_line(tmp_path, capsys):
    assert time_slices.main([str(tmp_path)]) == 2
    assert time_slices.main([]) == 2
    _samples().to_parquet(tmp_path / "samples.parquet")
    assert time_slices.main([str(tmp_path), "--baseline", "nope"]) == 2
    assert time_slices.main([str(tmp_path), "--slices-per-block", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 4 and err.count("time_slices: ") == 4
