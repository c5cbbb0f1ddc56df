"""What limits a run's precision (issue 14): the per-request jitter of each arm, the drift between
blocks, what pairing the arms in one block leaves of it, the spread between deployment replicates,
and what a target half-width would take at those figures.

Reads run folders already made (`orchbench run`: samples.parquet and summary.json) and prints, per
run, transport and compared arm, the figures of orchbench.core.noise (the same ones summary.json
carries as `noise`, here recomputed from samples.parquet so that runs of before have them too), then
the SD between the units of the interval (replicate means with `replicates`, else blocks), the CI
half-widths, and the units a t-interval would need for `--target` at that SD, in time at the run's
all-in cost per unit (its wall time from owner.json to summary.json, over its units and transports).

    .venv/bin/python benchmarks/limits_bench.py RUN_DIR [RUN_DIR ...] [--target 0.02] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core import noise
from orchbench.core.watch import fmt_duration
from orchbench.fsio import write_text

METRICS = ("mean", "p50")


def _groups(samples: pd.DataFrame, transport: str, arm: str, blocks: list[int]) -> list[np.ndarray]:
    mine = samples[(samples["transport"] == transport) & (samples["arm"] == arm)]
    by_block = {int(k): g.sort_values("timestamp")["latency_ns"].to_numpy() for k, g in mine.groupby("block")}
    return [by_block[b] for b in blocks]


def both_blocks(samples: pd.DataFrame, transport: str, arm: str, baseline: str) -> list[int]:
    mine = samples[samples["transport"] == transport]
    have = [set(mine.loc[mine["arm"] == a, "block"].astype(int)) for a in (arm, baseline)]
    return sorted(have[0] & have[1])


def unit_sds(arm_res: dict[str, Any], per: int) -> dict[str, float | None]:
    """The SD between the interval's units: replicate means of `per` blocks (block k in replicate
    k // per), or the blocks themselves."""
    out: dict[str, float | None] = {}
    ids = arm_res.get("block_ids") or []
    for m in METRICS:
        diffs = (arm_res.get("block_diffs_ms") or {}).get(m) or []
        units: dict[int, list[float]] = {}
        for k, d in zip(ids or range(len(diffs)), diffs, strict=True):
            units.setdefault(int(k) // per, []).append(float(d))
        means = [float(np.mean(v)) for v in units.values()]
        out[m] = float(np.std(means, ddof=1)) if len(means) >= 2 else None
    return out


def run_limits(run: Path, target_ms: float) -> list[dict[str, Any]]:
    summary = json.loads((run / "summary.json").read_text())
    samples = pd.read_parquet(
        run / "samples.parquet", columns=["transport", "arm", "block", "timestamp", "latency_ns", "ok"]
    )
    samples = samples[samples["ok"]]
    spec = summary.get("spec") or {}
    replicates = int(summary.get("replicates") or spec.get("replicates") or 1)
    per = int((summary.get("precision_run") or {}).get("blocks_per_unit") or 0) or (
        int(spec.get("blocks", 1)) // replicates if replicates > 1 else 1
    )
    transports = [t for t in ("rest", "grpc") if isinstance(summary.get(t), dict)]
    wall_s = (run / "summary.json").stat().st_mtime - (run / "owner.json").stat().st_mtime
    rows = []
    for transport in transports:
        res = summary[transport]
        for arm, arm_res in (res.get("by_arm") or {res.get("arm", "with"): res}).items():
            baseline = arm_res.get("baseline", "without")
            blocks = [int(b) for b in arm_res.get("block_ids") or []] or both_blocks(
                samples, transport, arm, baseline
            )  # summaries before block_ids: the blocks both arms have samples in
            entry = noise.noise(
                _groups(samples, transport, arm, blocks),
                _groups(samples, transport, baseline, blocks),
                arm,
                baseline,
            )
            n_units = len({b // per for b in blocks})
            sds = unit_sds(arm_res, per)
            cis = {m: (arm_res["overhead_ms"].get(m) or {}).get("ci95") or [None, None] for m in METRICS}
            half = {m: None if None in ci else (ci[1] - ci[0]) / 2 for m, ci in cis.items()}
            need = {m: None if sds[m] is None else noise.blocks_for_ms(sds[m], target_ms) for m in METRICS}
            unit_cost_s = wall_s / max(1, n_units) / len(transports)
            rows.append(
                {
                    "run": run.name,
                    "transport": transport,
                    "arm": arm,
                    "baseline": baseline,
                    "noise": entry,
                    "unit": "replicate" if per > 1 or replicates > 1 else "block",
                    "units": n_units,
                    "unit_sd_ms": sds,
                    "half_width_ms": half,
                    "units_for_target": need,
                    "wall_s": round(wall_s, 1),
                    "unit_cost_s": round(unit_cost_s, 1),
                    "transports": len(transports),
                    "target_ms": target_ms,
                }
            )
    return rows


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "run | figure | request SD arm/base ms | IQR arm/base | lag-1 arm/base"
        " | block-mean drift SD arm/base | cancelled | block diff SD mean/p50 | independent"
        " | unit SD mean/p50 | ± mean/p50 | units for target mean/p50 (time, all transports)"
    )
    for r in rows:
        n, a, b = r["noise"], r["noise"]["arms"][r["arm"]], r["noise"]["arms"][r["baseline"]]
        need = r["units_for_target"]
        worst = max((v for v in need.values() if v is not None), default=None)
        time = "-" if worst is None else fmt_duration(worst * r["unit_cost_s"] * r["transports"])
        removed = n["drift_removed"]["mean"]
        print(
            f"{r['run']} | {r['transport']} {r['arm']}"
            f" | {_f(a['request_sd_ms'], '.2f')}/{_f(b['request_sd_ms'], '.2f')}"
            f" | {_f(a['request_iqr_ms'], '.2f')}/{_f(b['request_iqr_ms'], '.2f')}"
            f" | {_f(a['lag1'], '.2f')}/{_f(b['lag1'], '.2f')}"
            f" | {_f(a['block_sd_ms']['mean'])}/{_f(b['block_sd_ms']['mean'])}"
            f" | {'-' if removed is None else f'{100 * removed:.1f} %'}"
            f" | {_f(n['diff_sd_ms']['mean'])}/{_f(n['diff_sd_ms']['p50'])}"
            f" | {_f(n['independent_diff_sd_ms'])}"
            f" | {_f(r['unit_sd_ms']['mean'])}/{_f(r['unit_sd_ms']['p50'])}"
            f" | {_f(r['half_width_ms']['mean'])}/{_f(r['half_width_ms']['p50'])}"
            f" | {need['mean']}/{need['p50']} {r['unit']}s ({time})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--target", type=float, default=0.02, help="CI half-width to size for, ms")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.target <= 0:
        print("limits_bench: --target must be > 0", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        if not (run / "summary.json").exists() or not (run / "samples.parquet").exists():
            print(
                f"limits_bench: {run}: no summary.json and samples.parquet (not a run folder)",
                file=sys.stderr,
            )
            return 2
        rows += run_limits(run, args.target)
    print_table(rows)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
