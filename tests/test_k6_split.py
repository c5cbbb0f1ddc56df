"""Splitting a paired k6 run (both arms in one process, tagged `arm`) into one artifact per arm: the
pure functions, against literal input and output."""

from __future__ import annotations

from pathlib import Path

from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.k6_options import build_options
from orchbench.core.loadtools.k6_split import split_samples, split_summary
from results_schema import k6 as k6_summary

SUMMARY = {
    "state": {"testRunDurationMs": 3000},
    "metrics": {
        "http_req_duration": {"type": "trend", "values": {"med": 5.0, "count": 30}},
        "http_req_duration{scenario:measure,arm:with}": {
            "type": "trend",
            "values": {
                "avg": 6.0,
                "med": 6.0,
                "min": 5.5,
                "max": 7.0,
                "p(90)": 6.5,
                "p(99)": 6.9,
                "count": 10,
            },
        },
        "http_req_duration{scenario:measure,arm:without}": {
            "type": "trend",
            "values": {
                "avg": 4.0,
                "med": 4.0,
                "min": 3.5,
                "max": 5.0,
                "p(90)": 4.5,
                "p(99)": 4.9,
                "count": 11,
            },
        },
        "http_reqs{scenario:measure,arm:with}": {"type": "counter", "values": {"count": 10, "rate": 3.3}},
        "http_reqs{scenario:measure,arm:without}": {"type": "counter", "values": {"count": 11, "rate": 3.6}},
        "http_req_failed{scenario:measure,arm:with}": {"type": "rate", "values": {"passes": 1, "fails": 9}},
        "http_req_failed{scenario:measure,arm:without}": {
            "type": "rate",
            "values": {"passes": 0, "fails": 11},
        },
        "data_sent{scenario:measure,arm:with}": {"type": "counter", "values": {"count": 1000}},
        "data_sent{scenario:measure,arm:without}": {"type": "counter", "values": {"count": 1100}},
        "data_sent": {"type": "counter", "values": {"count": 5000}},
        "vus": {"type": "gauge", "values": {"value": 1}},
    },
}


def test_split_summary_renames_the_arms_submetrics_and_drops_mixed_ones() -> None:
    out = split_summary(SUMMARY, "with")
    assert sorted(out["metrics"]) == [
        "data_sent{scenario:measure}",
        "http_req_duration{scenario:measure}",
        "http_req_failed{scenario:measure}",
        "http_reqs{scenario:measure}",
        "vus",
    ]
    assert out["metrics"]["http_req_duration{scenario:measure}"]["values"]["med"] == 6.0
    assert out["state"] == SUMMARY["state"] and out["orchbench_split"]["arm"] == "with"
    parsed = k6_summary.parse(out, "with.json")  # read exactly like a single-arm run
    assert parsed.requests == 10 and parsed.successes == 9
    assert parsed.latency_ns["p50"] == 6_000_000 and parsed.bytes_out_total == 1000
    other = k6_summary.parse(split_summary(SUMMARY, "without"), "without.json")
    assert other.requests == 11 and other.successes == 11 and other.latency_ns["p50"] == 4_000_000


CSV = (
    "metric_name,timestamp,metric_value,check,extra_tags,metadata\n"
    "vus,1,1,,,\n"
    "http_req_duration,2,5.1,,arm=with,vu=1&iter=0\n"
    'checks,2,1,"ok, really",arm=with,vu=1&iter=0\n'
    "http_req_duration,3,4.1,,arm=without,vu=1&iter=1\n"
    "checks,3,1,ok,arm=without&x=y,vu=1&iter=1\n"
    "http_req_duration,4,5.2,,arm=other,vu=1&iter=2\n"
)


def test_split_samples_by_the_arm_tag(tmp_path: Path) -> None:
    src = tmp_path / "all.csv"
    src.write_text(CSV)
    outs = {"with": tmp_path / "w.csv", "without": tmp_path / "wo.csv"}
    assert split_samples(src, outs) == {"with": 3, "without": 3}
    header, vus = CSV.splitlines()[:2]
    assert outs["with"].read_text().splitlines() == [header, vus, *CSV.splitlines()[2:4]]
    assert outs["without"].read_text().splitlines() == [header, vus, *CSV.splitlines()[4:6]]


def test_paired_options_name_per_arm_submetrics() -> None:
    opts = build_options(LoadProfile(duration_s=2, warmup_s=1), "grpc", arms=["without", "with"])
    assert "grpc_req_duration{scenario:measure,arm:with}" in opts["thresholds"]
    assert "checks{scenario:measure,arm:without}" in opts["thresholds"]
    assert not any(k.endswith("{scenario:measure}") for k in opts["thresholds"])
