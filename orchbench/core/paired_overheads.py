"""The overhead estimates of paired blocks of latencies: every metric's estimate with its 95 % CI
(arm - baseline, ms), the per-block differences and the paired test, with or without deployment
replicates. Pure functions over arrays (ns); orchbench.core.analysis applies them to a run's blocks,
orchbench.core.tool_compare to two tools' files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from orchbench.core import stats
from orchbench.core.replicates import nested_interval, replicate_means

METRICS = stats.METRICS


def ms_entry(est: stats.Estimate) -> dict[str, Any]:
    """One overhead entry of summary.json (ms): estimate, ci95, se, df, n_blocks, and the per-arm
    values it is the difference of."""
    out = est.to_dict(scale=1e-6)
    out["with_ms"] = None if not math.isfinite(est.with_value) else round(est.with_value / 1e6, 6)
    out["without_ms"] = None if not math.isfinite(est.without_value) else round(est.without_value / 1e6, 6)
    return out


def overheads(
    with_groups: list[np.ndarray],
    without_groups: list[np.ndarray],
    pilot_blocks: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    replicates: Sequence[int] | None = None,
    pilot_replicates: int | None = None,
) -> dict[str, Any]:
    """Overheads (with - without, ms) of paired blocks of successful latencies (ns), every metric:
    `overhead_ms`, `method`, `paired_test` and `block_diffs_ms` (what a pilot sizes a run from).

    >= 2 blocks: stats.paired_blocks (t-interval over blocks; Stein's for the sized figures of a
    pilot-sized run). One block: the same estimator (n = 1) with a per-request bootstrap, which
    assumes independent requests and says so; no paired test (one unit).

    `replicates[i]`: the deployment replicate of paired block i. With two or more, every metric's
    interval (and the paired test) is over the replicates, blocks nested inside them
    (orchbench.core.replicates): the variation between two starts of the same thing is in it. In a
    precision-targeted run with replicates, `pilot_replicates` (R0, the replicates the size was
    fixed from) gives the sized figures Stein's interval over the replicate means."""
    n = len(with_groups)
    if n != len(without_groups) or n < 1:
        raise ValueError("overheads needs the same number (>= 1) of blocks per arm")
    if replicates is not None and len(set(replicates)) >= 2 and n >= 2:
        return _replicated_overheads(with_groups, without_groups, list(replicates), seed, pilot_replicates)
    result: dict[str, Any] = {"overhead_ms": {}, "block_diffs_ms": {}}
    pilot = pilot_blocks if pilot_blocks is not None and 2 <= pilot_blocks < n else None
    for metric in METRICS:
        if n >= 2:
            est = stats.paired_blocks(with_groups, without_groups, metric, pilot)
        else:
            est = stats.bootstrap_one_block(with_groups[0], without_groups[0], metric, n_boot, seed)
        result["overhead_ms"][metric] = ms_entry(est)
        diffs = stats.block_stats(with_groups, metric) - stats.block_stats(without_groups, metric)
        result["block_diffs_ms"][metric] = [round(float(x) / 1e6, 6) for x in diffs]
    if n >= 2:
        interval = (
            f"Stein's interval from the {pilot}-block pilot for {'/'.join(stats.PRECISION_METRICS)}, "
            "t-interval over blocks for the rest"
            if pilot
            else "t-interval over blocks"
        )
        result["method"] = f"paired blocks (n={n}): mean of per-block differences, {interval}"
        result["paired_test"] = {
            metric: stats.sign_flip_test(np.array(result["block_diffs_ms"][metric]), seed=seed).to_dict()
            for metric in METRICS
        }
    else:
        result["method"] = (
            "one block: bootstrap over requests (assumes independent requests; run >= 2 blocks)"
        )
        result["paired_test"] = None
    return result


def _replicated_overheads(
    with_groups: list[np.ndarray],
    without_groups: list[np.ndarray],
    replicates: list[int],
    seed: int,
    pilot_replicates: int | None = None,
) -> dict[str, Any]:
    """overheads() of a run with deployment replicates: per metric the block differences grouped by
    replicate, the estimate and interval over the replicate means (df = replicates - 1; Stein's from
    the first `pilot_replicates` for the sized figures of a precision-targeted run); the arm values
    are the usual means over blocks; the sign-flip test is over the replicate means."""
    if len(replicates) != len(with_groups):
        raise ValueError("one replicate per paired block")
    keys = sorted(set(replicates))
    result: dict[str, Any] = {"overhead_ms": {}, "block_diffs_ms": {}, "paired_test": {}}
    for metric in METRICS:
        a, b = stats.block_stats(with_groups, metric), stats.block_stats(without_groups, metric)
        diffs = a - b
        groups = [diffs[[i for i, r in enumerate(replicates) if r == k]] for k in keys]
        pilot = pilot_replicates if metric in stats.PRECISION_METRICS else None
        est = nested_interval(groups, pilot_replicates=pilot)
        result["overhead_ms"][metric] = ms_entry(
            replace(est, with_value=float(a.mean()), without_value=float(b.mean()))
        )
        result["block_diffs_ms"][metric] = [round(float(x) / 1e6, 6) for x in diffs]
        test = stats.sign_flip_test(replicate_means(groups) / 1e6, seed=seed).to_dict()
        result["paired_test"][metric] = {**test, "unit": "deployment replicate"}  # n_blocks: replicates
    result["replicates"] = {"count": len(keys), "blocks": [replicates.count(k) for k in keys]}
    sized = pilot_replicates is not None and 2 <= pilot_replicates < len(keys)
    interval = (
        f"Stein's interval over replicates from the {pilot_replicates}-replicate pilot for "
        f"{'/'.join(stats.PRECISION_METRICS)} (df {pilot_replicates - 1}), t-interval over replicates "
        f"for the rest (df {len(keys) - 1})"
        if sized and pilot_replicates is not None
        else f"t-interval over replicates (df {len(keys) - 1})"
    )
    result["method"] = (
        f"paired blocks (n={len(with_groups)}) nested in {len(keys)} deployment replicates: mean over "
        f"replicates of each replicate's mean per-block difference, {interval}"
    )
    return result
