"""The local stack under 32 concurrent workers (k6 closed loop) for 30 s per arm: no errors, and the
counts orchbench stores in Parquet equal the load tester's own (k6's summary JSON and its CSV).

One `orchbench run` with `blocks: 1`, `warmup_s: 1`, `duration_s: 30`, both arms. make test runs REST
only (one transport is about 90 s on 2 cores; both would be ~2.5 min of the 15 min budget); set
ORCHBENCH_LOAD32_TRANSPORTS=rest,grpc to run gRPC too (checked by hand: both pass).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from results_schema import load_summary, read_table
from results_schema.samples import load_samples
from serving.runtime import free_port
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

TRANSPORTS = [t for t in os.environ.get("ORCHBENCH_LOAD32_TRANSPORTS", "rest").split(",") if t]
WORKERS = 32
DURATION_S = 30


def _csv_measure_requests(path: Path, transport: str) -> int:
    """Request rows of the measure scenario, counted straight from k6's CSV (no orchbench parser)."""
    metric = "http_reqs" if transport == "rest" else "grpc_req_duration"
    with path.open(newline="") as f:
        return sum(
            1 for row in csv.DictReader(f) if row["metric_name"] == metric and row["scenario"] == "measure"
        )


def _raw_measure_requests(summary: dict, transport: str) -> int:
    """k6's own count in its handleSummary JSON (the measure-scenario submetric)."""
    key = "http_reqs{scenario:measure}" if transport == "rest" else "grpc_req_duration{scenario:measure}"
    return int(summary["metrics"][key]["values"]["count"])


def _alive_recorded(out: Path) -> list[str]:
    left = []
    for rec in (out / "state" / "deploy").glob("*.json"):
        for p in json.loads(rec.read_text())["details"]["processes"]:
            try:
                state = Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                left.append(f"{p['role']} pid {p['pid']}")
    return left


def test_32_workers_for_30_seconds(tmp_path: Path) -> None:
    ports = {"with": free_port(), "without": free_port(), "model_behind_orchestrator": free_port()}
    spec = {
        "name": "load32",
        "transports": TRANSPORTS,
        "load": {
            "tool": "k6",
            "mode": "closed",
            "workers": WORKERS,
            "duration_s": DURATION_S,
            "warmup_s": 1,
            "timeout_s": 20,
            "max_error_rate": 0.0,
            "interleave": "block",  # all 32 workers on one arm at a time
        },
        "blocks": 1,
        "floor": False,  # not about the floor: its step adds 8-17 s to a run
        "local": {"ports": ports},
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchbench.cli",
            "run",
            "--spec",
            str(spec_path),
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=120 * len(TRANSPORTS) + 60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            for rec in (out / "state" / "deploy").glob("*.json"):  # the run never got to its exit handler
                for p in json.loads(rec.read_text())["details"]["processes"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(int(p["pgid"]), signal.SIGKILL)
    assert proc.returncode == 0, err
    assert not _alive_recorded(out)

    runs = read_table(out / "results.parquet", "runs").to_pandas()
    samples = read_table(out / "samples.parquet", "samples").to_pandas()
    per_run_samples = Counter(zip(samples["transport"], samples["arm"], samples["block"], strict=True))
    assert sorted(zip(runs["transport"], runs["arm"], strict=True)) == sorted(
        (t, a) for t in TRANSPORTS for a in ("with", "without")
    )
    for row in runs.itertuples():
        folder = out / "raw" / f"load-{row.transport}-b{row.block}-{row.arm}"
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["status"] == "ok" and meta["profile"]["workers"] == WORKERS
        raw = json.loads((folder / meta["raw"]).read_text())
        k6_requests = _raw_measure_requests(raw, row.transport)
        csv_requests = _csv_measure_requests(folder / meta["samples"], row.transport)
        where = f"{row.transport}/{row.arm}"
        # 32 workers for 30 s: far more than a handful of requests, and none failed
        assert k6_requests > WORKERS * 10, where
        assert row.requests == k6_requests == csv_requests, (where, row.requests, k6_requests, csv_requests)
        assert row.successes == row.requests and row.errors == 0, (where, row.successes, row.errors)
        assert per_run_samples[(row.transport, row.arm, row.block)] == k6_requests, where
        # the parsers agree with the raw files too
        assert load_summary(folder / meta["raw"]).requests == k6_requests
        parsed = load_samples(folder / meta["samples"], measure_only=True)
        assert len(parsed) == k6_requests and bool(parsed["ok"].all()), where
        # the measure phase really lasted ~30 s with 32 VUs
        assert abs(row.duration_ns / 1e9 - DURATION_S) < 2, (where, row.duration_ns)
        assert row.workers == WORKERS
