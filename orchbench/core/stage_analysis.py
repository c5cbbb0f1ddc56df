"""The analysis of a run with load stages (spec `load.stages`): per transport and stage, the
generators' samples merged (orchbench.core.generators), the stage judged (orchbench.core.stages: the
summed achieved rate per arm against the request, dropped iterations, the generator's CPU), each
compared arm's overhead by the run's estimator over that stage's blocks
(orchbench.core.analysis.transport_result), each arm's CPU and memory per stage, and, with an `slo`,
each arm's capacity, the hop's cost and the knee (orchbench.core.capacity). Pure functions.

**Resources.** Locally each arm's own processes are sampled over each block's measured window: the
baseline's model server, and each other arm's hop (orchestrator, nginx, HAProxy; workers as the
master's children). With `local.shared_model` every arm's requests reach that one model process, so
the baseline's CPU per 1000 requests divides the model's CPU by *all* arms' requests of the window
(`cpu_basis` says so), while a hop's divides its own CPU by its own arm's requests. With N
generators, generator 0 samples and the requests of every generator count. On Kubernetes the figures
come from the metrics API (orchbench.core.platform.k8s_metrics: each compared arm's hop containers,
the baseline's model server; `source: metrics-api`, memory the working set); where it was absent the
columns are null and `resources_note` gives the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from orchbench.core import stats
from orchbench.core.analysis import Block, summarise, transport_result
from orchbench.core.arms import Transport
from orchbench.core.capacity_sweep import capacity_table
from orchbench.core.errors import ConfigError
from orchbench.core.generators import check_merged, merge_samples
from orchbench.core.spec import Spec
from orchbench.core.stages import Stage, judge_stage
from results_schema.schema import SAMPLES_SCHEMA

SHARED_MODEL_BASIS = (
    "the model server is shared by every arm: the baseline's CPU is the model's, per 1000 requests of "
    "all arms; each other arm's is its hop's own, per 1000 of its requests"
)


def stage_of(meta: dict[str, Any]) -> tuple[str, str, float | None]:
    """(stage id, kind, value) a block's meta.json records; ("", "none", None) for one load."""
    sid = str(meta.get("stage_id") or "")
    if not sid:
        return "", "none", None
    value = meta.get("stage_value")
    return sid, str(meta.get("stage_kind") or "none"), None if value is None else float(value)


def _key(b: Block) -> tuple[str, str, int, str]:
    return (b.transport, stage_of(b.meta)[0], b.block, b.arm)


def _merged_frame(parts: list[Block]) -> pd.DataFrame | None:
    frames = []
    for p in parts:
        f = p.measured()
        if f is not None:
            frames.append(f.assign(generator=int(p.meta.get("generator") or 0)))
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True).sort_values("ts_ns", kind="stable").reset_index(drop=True)
    df["seq"] = np.arange(len(df), dtype="int64")  # unique over the generators of the block
    return df


def merge_generators(blocks: Sequence[Block]) -> list[Block]:
    """One Block per (transport, stage, block, arm): the generators' runs of it merged (samples
    concatenated in start order, renumbered, with a `generator` column; request and success counts
    summed); meta.json's `generator_parts` keeps each generator's meta. A block run by one generator
    is kept as it is."""
    groups: dict[tuple[str, str, int, str], list[Block]] = {}
    for b in blocks:
        groups.setdefault(_key(b), []).append(b)
    out = []
    for key in sorted(groups):
        parts = sorted(groups[key], key=lambda x: int(x.meta.get("generator") or 0))
        if len(parts) == 1:
            out.append(parts[0])
            continue
        first = parts[0]
        summary = replace(
            first.summary,
            requests=sum(p.summary.requests for p in parts),
            successes=None
            if any(p.summary.successes is None for p in parts)
            else sum(int(p.summary.successes or 0) for p in parts),
            latency_ns={},  # per-generator figures do not add up; the samples give the block's
            started_at_ns=None,
            ended_at_ns=None,
        )
        meta = {**first.meta, "generator_parts": [p.meta for p in parts]}
        out.append(Block(meta, summary, _merged_frame(parts), ";".join(p.raw_artifact for p in parts)))
    return out


def _parts(b: Block) -> list[dict[str, Any]]:
    return list(b.meta.get("generator_parts") or [b.meta])


def _by_generator(b: Block) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Each generator's meta and measured samples of a (possibly merged) block."""
    f = b.measured()
    if f is None:
        f = pd.DataFrame({c: [] for c in ("ts_ns", "latency_ns", "status", "ok")})
    metas = _parts(b)
    if "generator" not in f.columns:
        return [(metas[0], f)]
    return [(m, f[f["generator"] == int(m.get("generator") or 0)]) for m in metas]


def _as_samples(df: pd.DataFrame) -> pa.Table:
    """One generator's rows (all arms, `arm` column) as a `samples` table for merge_samples."""
    n = len(df)
    cols: dict[str, Any] = {
        "schema_version": [0] * n,
        "experiment": [""] * n,
        "run_id": [""] * n,
        "transport": [""] * n,
        "arm": df["arm"].astype(str).tolist(),
        "block": [0] * n,
        "stage": [""] * n,
        "stage_kind": ["none"] * n,
        "stage_value": pa.nulls(n, pa.float64()),
        "seq": np.arange(n, dtype="int64"),
        "timestamp": pa.array(df["ts_ns"].astype("int64").to_numpy()).cast(
            SAMPLES_SCHEMA.field("timestamp").type
        ),
        "latency_ns": df["latency_ns"].astype("int64").to_numpy(),
        "status": df["status"].astype(str).tolist(),
        "ok": df["ok"].astype(bool).to_numpy(),
    }
    return pa.Table.from_pydict(cols, schema=SAMPLES_SCHEMA)


def judge_block(
    stage: Stage, arm_blocks: dict[str, Block], generators: int
) -> tuple[dict[str, float], list[str], int, float | None]:
    """One block of a stage, all arms: the achieved rate per arm (open loop: summed over the
    generators by generators.check_merged, each generator's requests over its measured window;
    closed loop: requests over the window), the invalid-stage reasons (stages.judge_stage, and a
    generator that measured no request of an arm), the dropped iterations (all arms and generators)
    and the busiest generator's CPU utilisation (None: not measured)."""
    parts: dict[int, list[pd.DataFrame]] = {}
    windows: dict[int, float] = {}
    dropped, util = 0, None
    for arm in sorted(arm_blocks):
        for meta, frame in _by_generator(arm_blocks[arm]):
            g = int(meta.get("generator") or 0)
            parts.setdefault(g, []).append(frame.assign(arm=arm))
            if meta.get("measured_s"):
                windows[g] = float(meta["measured_s"])
            dropped += int(meta.get("dropped_iterations") or 0)
            u = (meta.get("generator_cpu") or {}).get("utilisation")
            if u is not None:
                util = max(util or 0.0, float(u))
    order = sorted(parts)
    extra: list[str] = []
    achieved: dict[str, float] = {}
    if stage.mode == "open":
        assert stage.rate_per_s is not None
        merged = merge_samples([_as_samples(pd.concat(parts[g], ignore_index=True)) for g in order])
        # each generator's rate of an arm from its requests' start times inside the measured window:
        # (n - 1) intervals over the first-to-last start (k6 starts one more iteration than
        # rate x window, at the window's end), summed over the generators
        check = check_merged(
            merged, stage.rate_per_s, None, arms=sorted(arm_blocks), generators=max(generators, len(order))
        )
        achieved = check.summed_per_s
        extra = [r for r in check.reasons if r.startswith("generator ")]
    else:
        for arm in sorted(arm_blocks):
            window = windows.get(0)
            n = sum(len(f) for g in order for f in parts[g] if len(f) and f["arm"].iloc[0] == arm)
            if window:
                achieved[arm] = n / window
    verdict = judge_stage(
        stage, achieved if stage.mode == "open" else None, dropped, util, arms=sorted(arm_blocks)
    )
    return achieved, list(verdict.reasons) + extra, dropped, util


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(xs)) if xs else None


def _block_stat(lat: np.ndarray, metric: str) -> float | None:
    return float(stats.statistic(lat, metric) / 1e6) if len(lat) else None


def _resources(
    arm: str, blocks: list[Block], all_arms: dict[int, dict[str, Block]], baseline: str, shared: bool
) -> tuple[float | None, float | None]:
    """(CPU ms per 1000 requests, peak RSS MB) of an arm's own processes over the stage's measured
    windows; (None, None) where they were not sampled."""
    cpu_s, peak, requests, seen = 0.0, None, 0, False
    for b in blocks:
        res = (_parts(b)[0] or {}).get("resources")
        if not res or res.get("source") == "absent":
            continue
        seen = True
        cpu_s += float(res.get("cpu_s") or 0.0)
        mb = res.get("peak_rss_mb")
        if mb is not None:
            peak = max(peak or 0.0, float(mb))
        if arm == baseline and (shared or res.get("shared")):  # the shared model serves every arm
            requests += sum(len(_ok_latencies(x)) for x in all_arms[b.block].values())
        else:
            requests += len(_ok_latencies(b))
    if not seen:
        return None, None
    return (cpu_s * 1e6 / requests if requests else None), peak


def _ok_latencies(b: Block) -> np.ndarray:
    f = b.measured()
    if f is None or not len(f):
        return np.array([], dtype=np.int64)
    return f[f["ok"]]["latency_ns"].to_numpy()


def stage_result(spec: Spec, stage: Stage, blocks: list[Block], transport: Transport) -> dict[str, Any]:
    """One stage of one transport: validity, per-arm rows (the `stages` table's columns) and each
    compared arm's overheads (`by_arm`, analysis.transport_result over the stage's blocks)."""
    per_block: dict[int, dict[str, Block]] = {}
    for b in blocks:
        per_block.setdefault(b.block, {})[b.arm] = b
    arms = spec.arm_names()
    reasons: list[str] = []
    achieved: dict[str, list[float]] = {a: [] for a in arms}
    dropped_arm: dict[str, int] = dict.fromkeys(arms, 0)
    utils: list[float] = []
    for k in sorted(per_block):
        got, why, _dropped, util = judge_block(stage, per_block[k], spec.load.generators)
        for r in why:
            if r not in reasons:
                reasons.append(r)
        for a, v in got.items():
            achieved.setdefault(a, []).append(v)
        if util is not None:
            utils.append(util)
        for a, b in per_block[k].items():
            dropped_arm[a] += sum(int(m.get("dropped_iterations") or 0) for m in _parts(b))
    valid = not reasons
    shared = spec.platform == "local" and spec.local.shared_model
    rows: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = [per_block[k][arm] for k in sorted(per_block) if arm in per_block[k]]
        requests = sum(int(b.summary.requests) for b in mine)
        errors = sum(int(b.summary.error_count or 0) for b in mine)
        lat = [_ok_latencies(b) for b in mine]
        cpu, rss = _resources(arm, mine, per_block, spec.baseline, shared)
        rows[arm] = {
            "arm": arm,
            "requested_rps": stage.rate_per_s,
            "achieved_rps": _mean(achieved.get(arm, [])),
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else None,
            "dropped_iterations": dropped_arm[arm],
            "generator_cpu_util": max(utils) if utils else None,
            "generators": spec.load.generators,
            "blocks": len(mine),
            "valid": valid,
            "invalid_reasons": "; ".join(reasons),
            "cpu_ms_per_1000": cpu,
            "peak_rss_mb": rss,
            "mean_ms": _mean([_block_stat(x, "mean") for x in lat]),
            "p50_ms": _mean([_block_stat(x, "p50") for x in lat]),
            "p99_ms": _mean([_block_stat(x, "p99") for x in lat]),
        }
    by_arm = {
        arm: {
            **transport_result(blocks, spec.threshold_ms(transport, arm), arm=arm, baseline=spec.baseline),
            "valid": valid,
        }
        for arm in spec.compared_arms()
    }
    return {
        "stage": stage.id,
        "label": stage.label,
        "stage_kind": "rate" if stage.mode == "open" else "workers",
        "stage_value": stage.requested,
        "valid": valid,
        "invalid_reasons": reasons,
        "arms": rows,
        "by_arm": by_arm,
        "resources_note": _resources_note(spec, shared, blocks),
    }


def _resources_note(spec: Spec, shared: bool, blocks: list[Block]) -> str:
    """What the stage's CPU and memory figures are, or why there are none."""
    if spec.platform == "local":
        return SHARED_MODEL_BASIS if shared else "each arm's own processes, per 1000 of its requests"
    if spec.platform != "kubernetes":
        return "not measured: nothing is deployed on this platform to sample"
    absent = sorted(
        {
            f"{b.arm}: {res.get('reason')}"
            for b in blocks
            for res in [(_parts(b)[0] or {}).get("resources") or {}]
            if res.get("source") == "absent"
        }
    )
    note = (
        "from the metrics API: each compared arm's hop containers per 1000 of its requests, the "
        "baseline's model server (per 1000 of all arms' requests where the arms share it); memory is "
        "the working set"
    )
    return note + (f"; absent: {'; '.join(absent)}" if absent else "")


def capacities(spec: Spec, transport: str, stage_results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """With an `slo`: each arm's capacity over the rate stages, the hop's cost against the baseline
    and each arm's knee, by the one set of rules of orchbench.core.capacity_sweep (the report's
    capacity table is the same function over stages.parquet). None without an SLO or rate stages."""
    if spec.slo is None:
        return None
    rows = [
        {
            "transport": transport,
            "stage": r["stage"],
            "stage_kind": r["stage_kind"],
            "stage_value": r["stage_value"],
            **row,
            "arm": arm,
        }
        for r in stage_results
        for arm, row in r["arms"].items()
    ]
    table = capacity_table(pd.DataFrame(rows), spec.slo, spec.baseline) if rows else pd.DataFrame()
    if table.empty:
        return None

    def plain(value: Any) -> Any:
        if isinstance(value, float | np.floating):
            return None if not math.isfinite(float(value)) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value

    arms = {
        str(r["arm"]): {k: plain(v) for k, v in r.items() if k not in ("transport", "arm")}
        for r in table.to_dict("records")
    }
    return {"slo": {"p99_ms": spec.slo.p99_ms, "max_error_rate": spec.slo.max_error_rate}, "arms": arms}


def summarise_stages(
    spec: Spec, blocks: list[Block], floor: dict[str, Any] | None, run_id: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    """summary.json of a run with load stages: the context of analysis.summarise, and per transport
    `stages` (one entry per stage, in plan order: stage_result) and `capacity`; the transport's top
    level holds the first valid stage's figures (`stage` names it; `valid` false when none is)."""
    plan = spec.stage_plan()
    merged = merge_generators(blocks)
    per_transport: dict[str, list[dict[str, Any]]] = {}
    for transport in spec.transports:
        results = []
        for st in plan:
            mine = [b for b in merged if b.transport == transport and stage_of(b.meta)[0] == st.id]
            if not mine:
                raise ConfigError(f"{transport}: no load-test results for stage {st.label}")
            arms = {b.arm for b in mine}
            if arms != set(spec.arm_names()):
                raise ConfigError(
                    f"{transport} {st.label}: results for arms {sorted(arms)}, need {spec.arm_names()}"
                )
            results.append(stage_result(spec, st, mine, transport))
        per_transport[transport] = results
    first_valid = {t: next((r for r in rs if r["valid"]), rs[0]) for t, rs in per_transport.items()}
    top_blocks = [b for b in merged if stage_of(b.meta)[0] == first_valid[b.transport]["stage"]]
    summary = summarise(spec, top_blocks, floor, run_id, provenance)
    for name, rs in per_transport.items():
        top = first_valid[name]
        summary[name].update(stage=top["stage"], valid=top["valid"], stages=rs)
        if not top["valid"]:
            summary[name]["verdict"] = "inconclusive"
            summary[name]["verdict_detail"] = {"verdict": "inconclusive", "reason": "no valid stage"}
        cap_result = capacities(spec, name, rs)
        if cap_result is not None:
            summary[name]["capacity"] = cap_result
    summary["stage_plan"] = [s.to_dict() for s in plan]
    summary["generators"] = spec.load.generators
    return summary
