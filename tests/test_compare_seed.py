"""The seed notebook's own four results through `orchbench compare`: its printed diffs come back."""

from __future__ import annotations

import json

import pytest

from orchbench.core.tool_compare import compare, overhead_ms
from results_schema import load_summary
from tests.helpers import FIXTURES, orchbench

REST = (FIXTURES / "seed_vegeta_rest_with.json", FIXTURES / "seed_vegeta_rest_without.json")
GRPC = (FIXTURES / "seed_ghz_grpc_with.json", FIXTURES / "seed_ghz_grpc_without.json")

# Literal expected table: (with - without) from the seed's printed JSON, in ms.
EXPECTED = {
    "rest": {"mean": 8.968882, "p50": 6.703695, "p90": 14.025617, "p95": 19.080155, "p99": 35.268554},
    "grpc": {"mean": 3.748203, "p50": 2.036614, "p90": 6.943359, "p95": 12.002984, "p99": 34.771698},
}


@pytest.mark.parametrize(("transport", "paths"), [("rest", REST), ("grpc", GRPC)])
def test_overhead_matches_literal_table(transport, paths):
    got = overhead_ms(load_summary(paths[0]), load_summary(paths[1]))
    assert got == pytest.approx(EXPECTED[transport], abs=1e-9)


@pytest.mark.parametrize(("transport", "paths"), [("rest", REST), ("grpc", GRPC)])
def test_cli_json_gives_seed_diffs(transport, paths):
    proc = orchbench("compare", "--with", str(paths[0]), "--without", str(paths[1]), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["overhead_ms"]["mean"] == pytest.approx(EXPECTED[transport]["mean"], abs=1e-9)
    assert result["overhead_ms"]["p50"] == pytest.approx(EXPECTED[transport]["p50"], abs=1e-9)
    assert result["overhead_ms"]["p99"] == pytest.approx(EXPECTED[transport]["p99"], abs=1e-9)
    assert set(result["overhead_ms"]) == {"mean", "p50", "p90", "p95", "p99"}


def test_seed_ghz_end_of_run_error_is_counted():
    s = load_summary(GRPC[0])
    assert (s.requests, s.successes, s.error_count) == (22978, 22977, 1)
    assert s.errors == {"rpc error: code = Unavailable desc = transport is closing": 1}


def test_metric_missing_on_one_side_is_left_out():
    a = load_summary(REST[0])
    b = load_summary(REST[1])
    del b.latency_ns["p90"]
    assert "p90" not in compare(a, b)["overhead_ms"]
    assert "p95" in compare(a, b)["overhead_ms"]


def test_cli_table_output_mentions_every_metric():
    proc = orchbench("compare", "--with", str(REST[0]), "--without", str(REST[1]))
    assert proc.returncode == 0, proc.stderr
    for metric in ("mean", "p50", "p90", "p95", "p99"):
        assert metric in proc.stdout
    assert "8.968882" in proc.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty file"),
        ("{not json", "not valid JSON"),
        ('{"hello": 1}', "format not recognised"),
        ('{"latencies": {"mean": "fast"}, "requests": 3, "success": 1}', "'mean' must be a finite number"),
        ('{"count": 5, "average": 10, "latencyDistribution": "x"}', "'latencyDistribution' must be a list"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = orchbench("compare", "--with", str(bad), "--without", str(REST[1]))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and needle in lines[0]


def test_cli_missing_file(tmp_path):
    proc = orchbench("compare", "--with", str(tmp_path / "nope.json"), "--without", str(REST[1]))
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("transport", "paths"), [("rest", REST), ("grpc", GRPC)])
def test_seed_figures_shown_in_reports_are_the_seed_data(transport, paths):
    from orchbench.core.analysis import SEED_OVERHEAD_MS

    got = overhead_ms(load_summary(paths[0]), load_summary(paths[1]))
    assert SEED_OVERHEAD_MS[transport] == pytest.approx(
        {k: got[k] for k in SEED_OVERHEAD_MS[transport]}, abs=1e-6
    )
