"""A synthetic run directory as `orchbench run` writes it, made with the real schema writers and the
real compare statistics: `make_run_dir`. Shared by the report, report-load, browser and floor tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from orchbench.core.tool_compare import sample_overheads
from results_schema import write_table
from results_schema.rows import RunContext, runs_row, runs_table, samples_table
from results_schema.schema import OVERHEADS_SCHEMA, SCHEMA_VERSION
from results_schema.summary import ToolSummary

RUN_ID = "20261125T080000Z-ab12cd"
T0_NS = 1_795_593_600_000_000_000  # 2026-11-25T08:00:00Z
PROVENANCE = {
    "orchbench_version": "0.1.0",
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "host": "bench-host-7",
    "cpu_model": "Synthetic CPU @ 3.00GHz",
    "python": "3.11.7",
}
SPEC = {
    "name": "default",
    "platform": "local",
    "transports": ["rest", "grpc"],
    "blocks": 4,
    "load": {"tool": "k6", "workers": 1, "duration_s": 12},
    "thresholds": {"rest_ms": 5.0, "grpc_ms": 5.0},
}
FLOOR = {
    "k6": {
        "rest": {"p50_ms": 0.112, "p90_ms": 0.151, "p99_ms": 0.402, "mean_ms": 0.123},
        "grpc": {"p50_ms": 0.207, "p90_ms": 0.255, "p99_ms": 0.611, "mean_ms": 0.219},
    },
    "python": {"rest": {"p50_ms": 0.081, "p90_ms": 0.099, "p99_ms": 0.2, "mean_ms": 0.088}},
}


def _latency_ns(ms: np.ndarray) -> dict[str, int]:
    ns = ms * 1e6
    q = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
    out = {k: int(np.quantile(ns, v)) for k, v in q.items()}
    out.update(min=int(ns.min()), max=int(ns.max()), mean=int(ns.mean()))
    return out


def make_run_dir(
    root: Path,
    transports: tuple[str, ...] = ("rest", "grpc"),
    overhead_ms: dict[str, float] | None = None,
    blocks: int = 4,
    per_block: int = 250,
    samples: bool = True,
    floor: bool = True,
    seed: int = 1,
) -> Path:
    """A run directory as `orchbench run` writes it, made with the real schema writers and compare."""
    overhead_ms = overhead_ms or {"rest": 0.31, "grpc": 0.17}
    rng = np.random.default_rng(seed)
    run_dir = root / RUN_ID
    run_dir.mkdir(parents=True)
    frames, runs_rows = [], []
    summary: dict = {
        "schema_version": SCHEMA_VERSION,
        "experiment": "default",
        "run_id": RUN_ID,
        "created_at": "2026-11-25T08:00:00Z",
        "platform": "local",
        "provenance": PROVENANCE,
        "spec": SPEC,
        "model_latency_ms": {"p50": 6.1, "mean": 6.3},
        "seed": {"rest": {"mean": 8.968882}, "grpc": {"mean": 3.748203}},
    }
    overhead_rows = []
    t = T0_NS
    for transport in transports:
        base = 6.0 if transport == "rest" else 5.0
        per_arm: dict[str, list[pd.DataFrame]] = {"with": [], "without": []}
        for block in range(blocks):
            order = ["with", "without"] if rng.random() < 0.5 else ["without", "with"]
            for arm in order:
                shift = overhead_ms[transport] if arm == "with" else 0.0
                lat_ms = base + shift + rng.gamma(2.0, 0.25, per_block) + 0.02 * block
                ok = np.ones(per_block, dtype=bool)
                ok[-1] = block != 0  # one failed request in block 0: must not count
                ts = t + np.cumsum((lat_ms * 1e6).astype(np.int64))
                t = int(ts[-1]) + 1_000_000
                df = pd.DataFrame(
                    {
                        "seq": np.arange(per_block),
                        "ts_ns": ts,
                        "latency_ns": (lat_ms * 1e6).astype(np.int64),
                        "status": np.where(ok, "200", "503"),
                        "ok": ok,
                        "block": block,
                    }
                )
                ctx = RunContext(
                    "default",
                    RUN_ID,
                    transport,
                    arm,
                    block=block,
                    platform="local",
                    cluster="kind-bench",
                    arm_verified=True,
                    arm_evidence="header",
                )
                frames.append((ctx, df))
                per_arm[arm].append(df)
                okms = lat_ms[ok]
                ts_summary = ToolSummary(
                    tool="k6",
                    source=f"raw/{transport}/{block}/{arm}.json",
                    requests=per_block,
                    successes=int(ok.sum()),
                    latency_ns=_latency_ns(okms),
                    tool_version="1.1.0",
                )
                runs_rows.append(runs_row(ts_summary, ctx, PROVENANCE))
        w, wo = pd.concat(per_arm["with"]), pd.concat(per_arm["without"])
        stats = sample_overheads(w, wo, n_boot=200)
        lat = {
            arm: _latency_ns(d.loc[d["ok"], "latency_ns"].to_numpy() / 1e6)
            for arm, d in (("with", w), ("without", wo))
        }
        summary[transport] = {
            **stats,
            "method": "stratified bootstrap over requests (test fixture)",
            "arms": {
                arm: {
                    "latency_ms": {k: lat[arm][k] / 1e6 for k in ("mean", "p50", "p90", "p99")},
                    "requests": blocks * per_block,
                    "errors": 1,
                    "stable": arm == "with",
                    "verified": f"response header x-orchbench-orchestrator ({arm})",
                }
                for arm in ("with", "without")
            },
            "threshold_ms": 5.0,
            "verdict": "pass",
        }
        for metric, est in stats["overhead_ms"].items():
            overhead_rows.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "experiment": "default",
                    "run_id": RUN_ID,
                    "created_at": pd.Timestamp("2026-11-25T08:00:00Z"),
                    "transport": transport,
                    "arm": "with",
                    "baseline": "without",
                    "stage": "",  # a run of one load (schema 3's stage columns)
                    "stage_kind": "none",
                    "stage_value": None,
                    "valid": True,
                    "metric": metric,
                    "estimate_ms": est["estimate"],
                    "ci_low_ms": est["ci95"][0],
                    "ci_high_ms": est["ci95"][1],
                    "threshold_ms": 5.0,
                }
            )
    write_table(runs_table(runs_rows), run_dir / "results.parquet", "runs")
    if samples:
        write_table(samples_table(frames), run_dir / "samples.parquet", "samples")
    write_table(
        pa.Table.from_pylist(overhead_rows, schema=OVERHEADS_SCHEMA),
        run_dir / "overheads.parquet",
        "overheads",
    )
    if floor:
        (run_dir / "floor.json").write_text(json.dumps(FLOOR))
        summary["floor"] = FLOOR
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir
