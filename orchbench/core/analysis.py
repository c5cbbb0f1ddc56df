"""From the load-test artifacts of every block to the answer: tables, overheads with CIs, verdicts.

Pure functions over already-loaded data (the compare step does the reading and writing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats as sps

from orchbench.core import stats
from results_schema.rows import RunContext, runs_row, runs_table, samples_table
from results_schema.schema import OVERHEADS_SCHEMA, SCHEMA_VERSION
from results_schema.summary import ToolSummary

METRICS = ("mean", "p50", "p90", "p99")
#: The seed notebook's published differences (with - without, ms; its vegeta / ghz JSON of 2020-07-12,
#: one run per arm, no error bars), for context in reports; tests/test_compare_seed.py pins them.
SEED_OVERHEAD_MS = {
    "rest": {"mean": 8.968882, "p50": 6.703695, "p90": 14.025617, "p99": 35.268554},
    "grpc": {"mean": 3.748203, "p50": 2.036614, "p90": 6.943359, "p99": 34.771698},
}


@dataclass
class Block:
    """One load-test run: its meta.json, the parsed summary, and per-request samples if any."""

    meta: dict[str, Any]
    summary: ToolSummary
    samples: pd.DataFrame | None
    raw_artifact: str

    @property
    def transport(self) -> str:
        return str(self.meta["transport"])

    @property
    def arm(self) -> str:
        return str(self.meta["arm"])

    @property
    def block(self) -> int:
        return int(self.meta["block"])

    def measured(self) -> pd.DataFrame | None:
        if self.samples is None:
            return None
        df = self.samples
        if "phase" in df.columns:
            df = df[df["phase"] == "measure"]
        return df


def _context(b: Block, run_id: str, floor_p50_ns: int | None, reuse: str) -> RunContext:
    m = b.meta
    profile = m.get("profile") or {}
    evidence = m.get("evidence") or {}
    return RunContext(
        experiment=str(m.get("experiment", "")),
        run_id=run_id,
        transport=b.transport,
        arm=b.arm,
        block=b.block,
        platform=str(m.get("platform", "external")),
        mode=profile.get("mode"),
        workers=profile.get("workers"),
        rate_per_s=profile.get("rate"),
        duration_ns=None if profile.get("duration_s") is None else round(profile["duration_s"] * 1e9),
        warmup_ns=None if profile.get("warmup_s") is None else round(profile["warmup_s"] * 1e9),
        payload_sha256=m.get("payload_sha256"),
        arm_verified=bool(evidence) and evidence.get("orchestrator_on_path") == (b.arm == "with")
        if evidence
        else None,
        arm_evidence=evidence.get("how"),
        deployment_reuse=reuse,
        floor_p50_ns=floor_p50_ns,
        nodes=json.dumps({"loadtester_cpus": m.get("loadtester_cpus")}),
        raw_artifact=b.raw_artifact,
    )


def _fill_from_samples(summary: ToolSummary, measured: pd.DataFrame | None) -> ToolSummary:
    """What the tool's summary lacks (k6's has no status codes and no timestamps), from the samples:
    the measured window runs from the first request's start to the last answer's end."""
    if measured is None or not len(measured):
        return summary
    if summary.started_at_ns is None:
        summary.started_at_ns = int(measured["ts_ns"].min())
        summary.ended_at_ns = int((measured["ts_ns"] + measured["latency_ns"]).max())
    if not summary.status_codes:
        summary.status_codes = {str(k): int(v) for k, v in measured["status"].value_counts().items()}
    if summary.successes is None:
        summary.successes = int(measured["ok"].sum())
    return summary


def _block_level(blocks: list[Block], metric: str) -> stats.Estimate | None:
    """Fallback without samples: per-block differences of the tools' own summaries, t-interval."""
    key = {"mean": "mean", "p50": "p50", "p90": "p90", "p99": "p99"}[metric]
    by_block: dict[int, dict[str, int]] = {}
    for b in blocks:
        value = b.summary.latency_ns.get(key)
        if value is not None:
            by_block.setdefault(b.block, {})[b.arm] = value
    diffs = np.array([v["with"] - v["without"] for v in by_block.values() if len(v) == 2], dtype=float)
    if not len(diffs):
        return None
    est = float(diffs.mean())
    if len(diffs) < 2:
        return stats.Estimate(est, (float("nan"), float("nan")))
    half = float(sps.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    return stats.Estimate(est, (est - half, est + half))


def _arm_stats(blocks: list[Block], arm: str) -> dict[str, Any]:
    mine = [b for b in blocks if b.arm == arm]
    frames = [b.measured() for b in mine]
    ok = [f[f["ok"]] for f in frames if f is not None and len(f)]
    out: dict[str, Any] = {
        "requests": int(sum(b.summary.requests for b in mine)),
        "errors": int(sum((b.summary.error_count or 0) for b in mine)),
        "blocks": len(mine),
    }
    evidence = next((b.meta.get("evidence") for b in mine if b.meta.get("evidence")), None)
    out["verified"] = evidence.get("how") if evidence else None
    if ok:
        pooled = pd.concat(ok).sort_values("ts_ns")["latency_ns"].to_numpy(dtype=float)
        out["latency_ms"] = {
            "mean": float(pooled.mean() / 1e6),
            "p50": float(np.quantile(pooled, 0.5) / 1e6),
            "p90": float(np.quantile(pooled, 0.9) / 1e6),
            "p99": float(np.quantile(pooled, 0.99) / 1e6),
        }
        out["n"] = len(pooled)
        out["stable"] = all(stats.stable_windows(f["latency_ns"].to_numpy()) for f in ok)
        out["block_p50_ms"] = {
            str(b.block): float(np.median(f[f["ok"]]["latency_ns"]) / 1e6)
            for b, f in zip(mine, frames, strict=True)
            if f is not None and f["ok"].any()
        }
    else:
        means = [b.summary.latency_ns["mean"] for b in mine if "mean" in b.summary.latency_ns]
        out["latency_ms"] = {"mean": float(np.mean(means) / 1e6)} if means else {}
    return out


def _paired_groups(blocks: list[Block]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Successful latencies per block, for the blocks where both arms have some, in block order."""
    per: dict[int, dict[str, np.ndarray]] = {}
    for b in blocks:
        f = b.measured()
        if f is not None and f["ok"].any():
            per.setdefault(b.block, {})[b.arm] = f[f["ok"]]["latency_ns"].to_numpy()
    pairs = [per[k] for k in sorted(per) if len(per[k]) == 2]
    return [p["with"] for p in pairs], [p["without"] for p in pairs]


def transport_result(
    blocks: list[Block], threshold_ms: float | None, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Overheads (with - without) for one transport.

    With >= 2 blocks: the mean over blocks of the per-block difference, with a t-interval over blocks
    (see stats.paired_blocks). With one block: a bootstrap over requests, flagged as such. Without
    samples: the tools' own summaries, per block.
    """
    with_groups, without_groups = _paired_groups(blocks)
    result: dict[str, Any] = {"overhead_ms": {}}
    if len(with_groups) >= 2:
        for metric in METRICS:
            est = stats.paired_blocks(with_groups, without_groups, metric)
            result["overhead_ms"][metric] = est.to_dict(scale=1e-6)
        result["method"] = f"paired blocks (n={len(with_groups)}): mean of per-block differences, t-interval"
    elif with_groups:
        for metric in METRICS:
            est = stats.bootstrap_diff(with_groups, without_groups, metric, n_boot=n_boot, seed=seed)
            result["overhead_ms"][metric] = est.to_dict(scale=1e-6)
        result["method"] = (
            "one block: bootstrap over requests (assumes independent requests; run >= 2 blocks)"
        )
    else:
        for metric in METRICS:
            block_est = _block_level(blocks, metric)
            if block_est is not None:
                result["overhead_ms"][metric] = block_est.to_dict(scale=1e-6)
        result["method"] = "t-interval over per-block differences of the tools' summaries (no samples)"
    if with_groups:
        result["mann_whitney_u_p"] = stats.mann_whitney_p(
            np.concatenate(with_groups), np.concatenate(without_groups)
        )
    result["n"] = {
        "with": int(sum(len(g) for g in with_groups)),
        "without": int(sum(len(g) for g in without_groups)),
    }
    result["blocks"] = len(with_groups)
    result["arms"] = {arm: _arm_stats(blocks, arm) for arm in ("with", "without")}
    result["threshold_ms"] = threshold_ms
    mean = result["overhead_ms"].get("mean", {}).get("estimate")
    if threshold_ms is None or mean is None:
        result["verdict"] = "n/a"
    else:
        result["verdict"] = "pass" if mean <= threshold_ms else "fail"
    return result


def build_tables(
    blocks: list[Block], run_id: str, provenance: dict[str, Any], floor_p50_ns: int | None, reuse: str
) -> tuple[pa.Table, pa.Table]:
    rows, frames = [], []
    for b in sorted(blocks, key=lambda x: (x.transport, x.block, x.meta.get("started_at_ns") or 0)):
        ctx = _context(b, run_id, floor_p50_ns, reuse)
        measured = b.measured()
        summary = _fill_from_samples(b.summary, measured)
        summary.tool_version = summary.tool_version or b.meta.get("tool_version")
        rows.append(runs_row(summary, ctx, provenance))
        if measured is not None and len(measured):
            frames.append((ctx, measured))
    return runs_table(rows), samples_table(frames)


def overheads_table(summary: dict[str, Any], created_at_ns: int, provenance: dict[str, Any]) -> pa.Table:
    rows = []
    for transport in ("rest", "grpc"):
        res = summary.get(transport)
        if not res:
            continue
        for metric, est in res["overhead_ms"].items():
            arms = res["arms"]
            rows.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "experiment": summary["experiment"],
                    "run_id": summary["run_id"],
                    "created_at": created_at_ns,
                    "transport": transport,
                    "metric": metric,
                    "estimate_ms": est["estimate"],
                    "ci_low_ms": est["ci95"][0],
                    "ci_high_ms": est["ci95"][1],
                    "with_ms": arms["with"].get("latency_ms", {}).get(metric),
                    "without_ms": arms["without"].get("latency_ms", {}).get(metric),
                    "n_with": res["n"]["with"],
                    "n_without": res["n"]["without"],
                    "mann_whitney_u_p": res.get("mann_whitney_u_p"),
                    "threshold_ms": res.get("threshold_ms"),
                    "platform": summary.get("platform"),
                    "orchbench_version": provenance.get("orchbench_version"),
                    "git_commit": provenance.get("git_commit"),
                    "host": provenance.get("host"),
                }
            )
    return pa.Table.from_pylist(rows, schema=OVERHEADS_SCHEMA)
