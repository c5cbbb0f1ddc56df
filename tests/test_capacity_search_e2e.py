"""The capacity search end to end on this machine: `orchbench run` runs the sweep, then a refinement
round as a workflow of its own, and compares every stage measured into one run directory.

The SLO is set below anything a real request takes (p99 within 0.001 ms), so every rate breaks it
whatever the machine's load: the search must descend from the sweep's lowest rate, 4 req/s, to
2 req/s, and stop there at `max_rounds`. That makes the rounds deterministic while every part runs
for real (servers, k6, the compare step, the report)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from results_schema import read_table
from serving.runtime import free_port
from tests.helpers import ROOT, orchbench


def _spec(tmp_path, **extra):
    ports = sorted({free_port() for _ in range(6)})[:3]
    spec = {
        "name": "search",
        "platform": "local",
        "manifest": str(ROOT / "manifests" / "tf_flowers.yaml"),
        "payloads": {"rest": str(ROOT / "payloads" / "flowers.json")},
        "transports": ["rest"],
        "load": {
            "tool": "k6",
            "stages": {
                "rates": [4],
                "expected_latency_ms": 2000,
                "search": {"resolution_per_s": 1, "max_rounds": 1},
            },
            "duration_s": 2,
            "warmup_s": 1,
            "timeout_s": 10,
            "max_error_rate": 0.5,
        },
        "blocks": 2,
        "floor": False,  # not about the floor: its step adds 8-17 s to a run
        "slo": {"p99_ms": 0.001, "max_error_rate": 0.5},
        "arms": [
            {"name": "direct", "baseline": True, "hop": "model"},
            {"name": "orch", "hop": "orchestrator"},
        ],
        "local": {"ports": {"with": ports[0], "without": ports[1], "model_behind_orchestrator": ports[2]}},
        **extra,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_search_without_an_slo_is_refused_before_anything_starts(tmp_path):
    path = _spec(tmp_path)
    spec = yaml.safe_load(path.read_text())
    del spec["slo"]
    path.write_text(yaml.safe_dump(spec))
    proc = orchbench("run", "--spec", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "orchbench: error: load.stages.search: the capacity search needs an `slo` (p99_ms, max_error_rate)"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_search_runs_a_refinement_round_and_compares_all_stages(tmp_path):
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(_spec(tmp_path)), "--out", str(out), "--quiet", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    record = summary["capacity_search"]
    assert [(r["round"], r["rates_per_s"], r["workflow_dir"]) for r in record["rounds"]] == [
        (1, [4.0], "."),
        (2, [2.0], "search/round-2"),
    ]
    (why,) = record["rounds"][1]["proposed_by"][:1]
    assert why["next_per_s"] == 2.0 and why["reason"].startswith("descending: the lowest rate measured, 4")
    assert record["stopped"].startswith("max_rounds (1) refinement rounds run; still moving: rest/direct")
    # both rounds' stages in one comparison, in increasing rate
    assert [s["stage"] for s in summary["rest"]["stages"]] == ["rate-2", "rate-4"]
    caps = summary["rest"]["capacity"]["arms"]
    assert caps["direct"]["capacity_rps"] is None and caps["direct"]["first_bad_rps"] == 2.0
    stages = read_table(out / "stages.parquet", "stages").to_pylist()
    assert sorted((r["stage"], r["arm"]) for r in stages) == [
        ("rate-2", "direct"),
        ("rate-2", "orch"),
        ("rate-4", "direct"),
        ("rate-4", "orch"),
    ]
    for row in stages:
        assert row["requests"] > 0 and row["dropped_iterations"] == 0, row
    # nothing measured is lost: the round's raw artifacts are kept in its own folder, the sweep's summary too
    assert any((out / "search" / "round-2" / "raw").iterdir())
    assert json.loads((out / "sweep-summary.json").read_text())["rest"]["stages"][0]["stage"] == "rate-4"
    samples = pq.read_table(out / "samples.parquet").to_pandas()
    assert set(samples["stage"]) == {"rate-2", "rate-4"}
    html = (out / "report.html").read_text()
    assert "Capacity search" in html and "search/round-2" in html
