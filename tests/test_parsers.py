"""Parsers per tool: units fixed at the edge (ns), optional fields, percentiles read by percentage."""

from __future__ import annotations

import copy
import json

import pytest

from orchbench.core.errors import ParseError
from results_schema import load_summary, parse_data
from results_schema.detect import detect
from tests.helpers import FIXTURES


def _load(name):
    return json.loads((FIXTURES / name).read_text())


def test_detects_each_format():
    assert detect(_load("seed_vegeta_rest_with.json")) == "vegeta"
    assert detect(_load("seed_ghz_grpc_with.json")) == "ghz"
    assert detect({"metrics": {"http_req_duration": {"avg": 1.0, "med": 1.0}}}) == "k6"
    assert detect({"metrics": {}}) is None


def test_old_vegeta_report_without_90th_min_throughput():
    data = _load("seed_vegeta_rest_with.json")
    for key in ("90th", "min"):
        del data["latencies"][key]
    del data["throughput"]
    data["buckets"] = {"0": 1}
    s = parse_data(data, "old.json")
    assert "p90" not in s.latency_ns and "min" not in s.latency_ns
    assert s.latency_ns["p50"] == 79832732 and s.throughput_rps is None


def test_vegeta_success_ratio_and_status_codes():
    data = _load("seed_vegeta_rest_with.json")
    data["requests"] = 10
    data["success"] = 0.7
    data["status_codes"] = {"200": 7, "503": 2, "0": 1}
    s = parse_data(data, "v.json")
    assert (s.successes, s.error_count, s.status_codes["503"]) == (7, 3, 2)


def test_ghz_percentiles_read_by_percentage_not_position():
    data = _load("seed_ghz_grpc_with.json")
    data["latencyDistribution"] = list(reversed(data["latencyDistribution"]))
    s = parse_data(data, "g.json")
    assert s.latency_ns["p50"] == 75875238 and s.latency_ns["p99"] == 128647238


def test_ghz_with_histogram_and_details_and_null_distribution():
    data = _load("seed_ghz_grpc_without.json")
    data["histogram"] = [{"mark": 0.05, "count": 3, "frequency": 0.1}]
    data["details"] = [{"timestamp": "2020-07-12T18:04:44.1Z", "latency": 7e7, "error": "", "status": "OK"}]
    assert parse_data(data, "g.json").latency_ns["p95"] == 85533746
    data["latencyDistribution"] = None
    data["statusCodeDistribution"] = {"Unavailable": data["count"]}
    s = parse_data(data, "g.json")
    assert s.successes == 0 and "p50" not in s.latency_ns and s.latency_ns["mean"] == 74479232


K6_NESTED = {
    "metrics": {
        "http_req_duration": {
            "type": "trend",
            "contains": "time",
            "values": {
                "avg": 9.0,
                "min": 1.0,
                "med": 8.0,
                "max": 50.0,
                "p(90)": 12.0,
                "p(95)": 14.0,
                "p(99)": 20.0,
            },
        },
        "http_req_duration{scenario:measure}": {
            "type": "trend",
            "contains": "time",
            "values": {
                "avg": 7.5,
                "min": 5.25,
                "med": 7.125,
                "max": 30.0,
                "p(90)": 9.0,
                "p(95)": 10.0,
                "p(99)": 12.5,
            },
        },
        "http_reqs": {"type": "counter", "values": {"count": 120, "rate": 40.0}},
        "http_reqs{scenario:measure}": {"type": "counter", "values": {"count": 100, "rate": 33.3}},
        "http_req_failed{scenario:measure}": {
            "type": "rate",
            "values": {"rate": 0.02, "passes": 2, "fails": 98},
        },
        "data_sent": {"type": "counter", "values": {"count": 1617500, "rate": 1.0}},
    },
    "state": {"testRunDurationMs": 3000.5},
}


def test_k6_handle_summary_prefers_measure_submetric_ms_to_ns():
    s = parse_data(copy.deepcopy(K6_NESTED), "k6.json")
    assert s.tool == "k6"
    assert s.latency_ns == {
        "min": 5_250_000,
        "mean": 7_500_000,
        "p50": 7_125_000,
        "p90": 9_000_000,
        "p95": 10_000_000,
        "p99": 12_500_000,
        "max": 30_000_000,
    }
    assert (s.requests, s.successes) == (100, 98)
    assert s.duration_ns == 3_000_500_000 and s.bytes_out_total == 1617500


def test_k6_summary_export_flat_layout_and_grpc():
    flat = {
        "metrics": {
            "grpc_req_duration": {"avg": 2.5, "min": 1.0, "med": 2.0, "max": 9.0, "p(90)": 3.0, "p(95)": 4.0},
            "iterations": {"count": 40, "rate": 10.0},
            "checks": {"passes": 80, "fails": 0, "value": 1},
        }
    }
    s = parse_data(flat, "flat.json")
    assert s.latency_ns["p50"] == 2_000_000 and "p99" not in s.latency_ns
    assert (s.requests, s.successes) == (40, 40)


def test_k6_without_duration_metric_is_parse_error():
    with pytest.raises(ParseError, match="neither http_req_duration nor grpc_req_duration"):
        parse_data({"metrics": {"iterations": {"count": 3}}}, "k6.json")


def test_truncated_file_names_file(tmp_path):
    text = (FIXTURES / "seed_ghz_grpc_with.json").read_text()
    path = tmp_path / "trunc.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ParseError) as info:
        load_summary(path)
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)
