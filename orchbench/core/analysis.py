"""The summary and overhead logic, in one place: from every block's load-test data (or two tool files)
to overheads with CIs, per-arm values, the paired test, verdicts and the Parquet tables.

Pure functions over already-loaded data: the compare step (steps/compare.py) and `orchbench compare`
(orchbench/cli/compare_cmd.py) do the reading and writing. The estimators are orchbench.core.stats'
(one per metric, the same for every output: terminal, summary.json, Parquet, report, trend, compare),
applied to paired blocks by orchbench.core.paired_overheads; verdicts orchbench.core.verdict's; the
precision target orchbench.core.design's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from orchbench.core import aa, design, noise, stats, verdict
from orchbench.core.errors import ConfigError
from orchbench.core.paired_overheads import ms_entry, overheads
from orchbench.core.spec import Spec
from results_schema.rows import RunContext, runs_row, runs_table, samples_table
from results_schema.schema import SCHEMA_VERSION
from results_schema.summary import ToolSummary

METRICS = stats.METRICS
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
    stage_id = str(m.get("stage_id") or "")
    return RunContext(
        experiment=str(m.get("experiment", "")),
        run_id=run_id,
        transport=b.transport,
        arm=b.arm,
        block=b.block,
        stage=stage_id,
        stage_kind=str(m.get("stage_kind") or "none") if stage_id else "none",
        stage_value=None if not stage_id or m.get("stage_value") is None else float(m["stage_value"]),
        platform=str(m.get("platform", "external")),
        mode=profile.get("mode"),
        workers=profile.get("workers"),
        rate_per_s=profile.get("rate"),
        duration_ns=None if profile.get("duration_s") is None else round(profile["duration_s"] * 1e9),
        warmup_ns=None if profile.get("warmup_s") is None else round(profile["warmup_s"] * 1e9),
        payload_sha256=m.get("payload_sha256"),
        arm_verified=_verified(evidence, b.arm),
        arm_evidence=evidence.get("how"),
        deployment_reuse=reuse,
        floor_p50_ns=floor_p50_ns,
        nodes=json.dumps({"loadtester_cpus": m.get("loadtester_cpus")}),
        raw_artifact=b.raw_artifact,
    )


def _verified(evidence: dict[str, Any], arm: str) -> bool | None:
    """The arm's checks passed (evidence `verified`), or the seed's reading for evidence of before:
    the orchestrator on the path exactly in "with"."""
    if not evidence:
        return None
    if evidence.get("verified") is not None:
        return bool(evidence["verified"])
    return evidence.get("orchestrator_on_path") == (arm == "with")


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


def _tool_summaries(
    blocks: list[Block], metric: str, arm: str = "with", baseline: str = "without"
) -> stats.Estimate | None:
    """Fallback without samples: the estimator over the tools' own per-block summaries."""
    by_block: dict[int, dict[str, int]] = {}
    for b in blocks:
        value = b.summary.latency_ns.get(metric)
        if value is not None and b.arm in (arm, baseline):
            by_block.setdefault(b.block, {})[b.arm] = value
    pairs = [by_block[k] for k in sorted(by_block) if len(by_block[k]) == 2]
    if not pairs:
        return None
    return stats.paired_block_values([p[arm] for p in pairs], [p[baseline] for p in pairs])


def _arm_info(blocks: list[Block], arm: str, values: dict[str, float | None]) -> dict[str, Any]:
    mine = [b for b in blocks if b.arm == arm]
    frames = [b.measured() for b in mine]
    ok = [f[f["ok"]] for f in frames if f is not None and len(f)]
    out: dict[str, Any] = {
        "requests": int(sum(b.summary.requests for b in mine)),
        "errors": int(sum((b.summary.error_count or 0) for b in mine)),
        "blocks": len(mine),
        # the per-arm values the overheads are the difference of: mean over blocks of the block's stat
        "latency_ms": {k: v for k, v in values.items() if v is not None},
    }
    evidence = next((b.meta.get("evidence") for b in mine if b.meta.get("evidence")), None)
    out["verified"] = evidence.get("how") if evidence else None
    if ok:
        out["n"] = int(sum(len(f) for f in ok))
        out["stable"] = all(stats.stable_windows(f["latency_ns"].to_numpy()) for f in ok)
        out["block_p50_ms"] = {
            str(b.block): float(stats.statistic(f[f["ok"]]["latency_ns"].to_numpy(), "p50") / 1e6)
            for b, f in zip(mine, frames, strict=True)
            if f is not None and f["ok"].any()
        }
    return out


def _paired(
    blocks: list[Block], arm: str = "with", baseline: str = "without"
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """The block numbers, and successful latencies per block of `arm` and `baseline`, for the blocks
    where both have some, in block order."""
    per: dict[int, dict[str, np.ndarray]] = {}
    for b in blocks:
        f = b.measured()
        if b.arm in (arm, baseline) and f is not None and f["ok"].any():
            per.setdefault(b.block, {})[b.arm] = f[f["ok"]]["latency_ns"].to_numpy()
    ids = [k for k in sorted(per) if len(per[k]) == 2]
    return ids, [per[k][arm] for k in ids], [per[k][baseline] for k in ids]


def _paired_groups(
    blocks: list[Block], arm: str = "with", baseline: str = "without"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Successful latencies per block of `arm` and `baseline`, for the blocks where both have some,
    in block order."""
    _, with_groups, without_groups = _paired(blocks, arm, baseline)
    return with_groups, without_groups


#: Public: the running estimates of a watched run (orchbench.core.watch) pair blocks the same way.
paired_groups = _paired_groups


def transport_result(
    blocks: list[Block],
    threshold_ms: float | None,
    n_boot: int = 2000,
    seed: int = 0,
    pilot_blocks: int | None = None,
    precision_ms: float | None = None,
    arm: str = "with",
    baseline: str = "without",
    replicate_of: Callable[[int], int] | None = None,
) -> dict[str, Any]:
    """Overheads (arm - baseline; the seed's: with - without) for one transport, per-arm values,
    paired test, verdict. In the overhead entries `with_ms` is the arm's value, `without_ms` the
    baseline's; `n` counts them under "with" / "without" too; `arms` is keyed by the arms' names.

    From the samples when there are any (see :func:`overheads`); else the same estimator over the
    tools' own per-block summaries. The verdict is the mean overhead's 95 % CI against the threshold
    (orchbench.core.verdict); with `precision_ms`, whether every sized figure's half-width reached it."""
    ids, with_groups, without_groups = _paired(blocks, arm, baseline)
    if with_groups:
        reps = [replicate_of(i) for i in ids] if replicate_of is not None else None
        # the replicates a precision-targeted run's size was fixed from: those of its pilot's blocks
        pilot_reps = (
            len({r for i, r in zip(ids, reps, strict=True) if i < pilot_blocks})
            if reps is not None and pilot_blocks is not None
            else None
        )
        result = overheads(with_groups, without_groups, pilot_blocks, n_boot, seed, reps, pilot_reps)
        result["block_ids"] = ids  # the block each of block_diffs_ms is (blocks measured in both arms)
        result["noise"] = noise.noise(with_groups, without_groups, arm, baseline)  # what limits the CI
    else:
        result = {"overhead_ms": {}, "paired_test": None}
        for metric in METRICS:
            est = _tool_summaries(blocks, metric, arm, baseline)
            if est is not None:
                result["overhead_ms"][metric] = ms_entry(est)
        result["method"] = "mean of per-block differences of the tools' summaries, t-interval (no samples)"
    o = result["overhead_ms"]
    result["n"] = {
        "with": int(sum(len(g) for g in with_groups)),
        "without": int(sum(len(g) for g in without_groups)),
    }
    result["blocks"] = max([len(with_groups)] + [int(e["n_blocks"] or 0) for e in o.values()])
    result["arm"], result["baseline"] = arm, baseline
    result["arms"] = {
        name: _arm_info(blocks, name, {m: o[m][f"{role}_ms"] for m in o})
        for name, role in ((arm, "with"), (baseline, "without"))
    }
    result["threshold_ms"] = threshold_ms
    mean = o.get("mean", {})
    v = verdict.judge(
        mean.get("estimate"), mean.get("ci95"), threshold_ms, mean.get("se"), int(mean.get("n_blocks") or 0)
    )
    result["verdict"] = v.verdict
    result["verdict_detail"] = v.to_dict()
    if precision_ms is not None:
        result["precision"] = design.precision_status(
            {
                m: None
                if o.get(m, {}).get("ci95", [None])[0] is None
                else (o[m]["ci95"][1] - o[m]["ci95"][0]) / 2
                for m in stats.PRECISION_METRICS
            },
            precision_ms,
        )
    return result


def build_tables(
    blocks: list[Block],
    run_id: str,
    provenance: dict[str, Any],
    floor_p50_ns: int | None,
    reuse: str,
    sample_blocks: list[Block] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The `runs` table (one row per load-test run of `blocks`) and the `samples` table (of
    `sample_blocks`, default `blocks`: a stage's N generators' runs merged into one block each,
    orchbench.core.stage_analysis.merge_generators, so `seq` is unique per block and arm)."""
    rows, frames = [], []

    def order(x: Block) -> tuple[Any, ...]:
        return (x.transport, str(x.meta.get("stage_id") or ""), x.block, x.meta.get("started_at_ns") or 0)

    for b in sorted(blocks, key=order):
        ctx = _context(b, run_id, floor_p50_ns, reuse)
        measured = b.measured()
        summary = _fill_from_samples(b.summary, measured)
        summary.tool_version = summary.tool_version or b.meta.get("tool_version")
        rows.append(runs_row(summary, ctx, provenance))
        if sample_blocks is None and measured is not None and len(measured):
            frames.append((ctx, measured))
    for b in sorted(sample_blocks or [], key=order):
        measured = b.measured()
        if measured is not None and len(measured):
            frames.append((_context(b, run_id, floor_p50_ns, reuse), measured))
    return runs_table(rows), samples_table(frames)


# ---------------------------------------------------------------------------------------------------
# a run's summary.json


DEPLOYMENT_REUSE = "one deployment per arm and transport, kept across its blocks"
SHARED_MODEL = (
    "one model process per transport, kept across its blocks; the 'with' arm's orchestrator fronts the "
    "'without' arm's model process"
)


def deployment_reuse(spec: Spec) -> str:
    """What the results say about deployments (local runs may share the model process)."""
    return SHARED_MODEL if spec.platform == "local" and spec.local.shared_model else DEPLOYMENT_REUSE


def summarise(
    spec: Spec, blocks: list[Block], floor: dict[str, Any] | None, run_id: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The run's summary.json: context, then per transport :func:`transport_result`. A spec with
    `load.precision_ms` was sized by a pilot of its `blocks` (orchbench.core.design)."""
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "experiment": spec.name,
        "run_id": run_id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": spec.platform,
        "deployment_reuse": deployment_reuse(spec),
        "block_order": spec.block_order(),
        "baseline": spec.baseline,
        "compared_arms": spec.compared_arms(),
        "interleave": spec.interleave(),
        "order_seed": spec.order_seed,
        "aa_mode": spec.local.aa_mode if spec.platform == "local" else False,
        "inject_delay_ms": spec.local.inject_delay_ms if spec.platform == "local" else None,
        "provenance": provenance,
        "spec": spec.to_json_dict(),
        "floor": floor,
        "model_latency_ms": (floor or {}).get("model"),
        "seed": SEED_OVERHEAD_MS,
        "estimator": ESTIMATOR,
        "replicates": spec.replicates,
    }
    precision = spec.load.precision_ms
    for transport in spec.transports:
        mine = [b for b in blocks if b.transport == transport]
        if not mine:
            raise ConfigError(f"no load-test results for transport {transport}")
        arms = {b.arm for b in mine}
        if arms != set(spec.arm_names()):
            need = " and ".join(repr(a) for a in spec.arm_names())
            raise ConfigError(f"{transport}: results for arms {sorted(arms)}, need {need}")
        by_arm = {
            arm: transport_result(
                mine,
                spec.threshold_ms(transport, arm),
                pilot_blocks=spec.blocks if precision is not None else None,
                precision_ms=precision,
                arm=arm,
                baseline=spec.baseline,
                replicate_of=spec.replicate_of if spec.replicates > 1 else None,
            )
            for arm in spec.compared_arms()
        }
        # an A/A arm (aa: true): its interval is the band every other arm is flagged against
        flags = aa.flag_arms(by_arm, spec.aa_arm())
        # the first compared arm's figures at the top (the seed's one: "with"), every arm in by_arm
        first = spec.compared_arms()[0]
        summary[transport] = {**by_arm[first], "by_arm": by_arm}
        if spec.aa_arm() is not None:
            summary[transport]["within_aa_noise"] = flags
    summary["aa_arm"] = spec.aa_arm()
    return summary


ESTIMATOR = (
    "per metric (mean, p50, p90, p99): mean over blocks of the per-block difference of the metric "
    "(with - without); arm values: mean over blocks of each arm's per-block metric; percentiles "
    f"Hyndman-Fan type 7 (numpy '{stats.PERCENTILE_METHOD}'); 95 % CI: Student-t over blocks (with "
    "deployment replicates: over the replicates' means, blocks nested inside them)"
)
