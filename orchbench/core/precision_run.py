"""The two workflows of a precision-targeted local run (`load.precision_ms`). Pure.

`orchbench run` runs the spec's `blocks` as the pilot (one compiled workflow), sizes the run from
the pilot's summary.json (`<transport>.by_arm.<arm>.block_diffs_ms`, the mean and p50 of every
transport and compared arm, A/A arm included) with Stein's rule (orchbench.core.design.plan_blocks),
and, when N > pilot, runs the remaining N − pilot blocks as a second compiled workflow
(:func:`extension_spec`). The second workflow deploys every arm afresh: deployments are not kept
across the two workflows (recorded in summary.json `precision_run.deployments`). The final compare
runs over all N blocks, the extension's numbered after the pilot's.

With deployment replicates (`replicates: R0`, b = blocks / R0 blocks each) the unit is the replicate,
not the block: the pilot is R0 replicates, Stein's rule runs over their means (each replicate's mean
per-block difference; orchbench.core.replicates), the size is a number of replicates R (capped by
max_blocks // b and max_duration_s), and the extension deploys R - R0 more replicates of b blocks
each. Block k belongs to replicate k // b in both workflows, so the final compare nests the
extension's blocks in replicates of their own and gives the sized figures Stein's interval over
replicates (df R0 - 1): the variation between two starts of the arms is inside the interval that
decided the size.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from orchbench.core.design import DEFAULT_MAX_BLOCKS, PRECISION_METRICS, Plan, plan_blocks
from orchbench.core.spec import Spec
from orchbench.core.watch import block_seconds, fmt_duration

#: The extension's arm orders are drawn from order_seed + this (the pilot's from order_seed).
EXTENSION_SEED_OFFSET = 1
DEPLOYMENTS_NOTE = (
    "two workflows: the pilot's deployments were torn down after it, the extension deployed every "
    "arm afresh (new processes); blocks are paired within each workflow"
)
DEPLOYMENTS_NOTE_REPLICATES = (
    "two workflows of deployment replicates (every replicate deployed every arm afresh); the "
    "interval is over replicates, the pilot's and the extension's alike"
)


def blocks_per_unit(spec: Spec) -> int:
    """Blocks per unit of the size: 1 (the block), or each replicate's blocks with replicates."""
    return spec.blocks // spec.replicates if spec.replicates > 1 else 1


def pilot_series(spec: Spec, summary: dict[str, Any]) -> dict[str, list[float]]:
    """`<transport>/<arm>/<metric>` -> the pilot's unit differences (ms), for every sized figure:
    its block differences, or with replicates each replicate's mean block difference (summary.json
    lists the blocks that were measured in both arms; block k is in replicate k // b)."""
    out: dict[str, list[float]] = {}
    per = blocks_per_unit(spec)
    for transport in spec.transports:
        res = summary.get(transport) or {}
        by_arm = res.get("by_arm") or {res.get("arm", "with"): res}
        for arm, arm_res in by_arm.items():
            diffs = arm_res.get("block_diffs_ms") or {}
            for metric in PRECISION_METRICS:
                if metric not in diffs:
                    continue
                values = [float(x) for x in diffs[metric]]
                if per > 1:
                    ids = arm_res.get("block_ids") or list(range(len(values)))
                    groups: dict[int, list[float]] = {}
                    for block, v in zip(ids, values, strict=True):
                        groups.setdefault(int(block) // per, []).append(v)
                    values = [float(np.mean(groups[k])) for k in sorted(groups)]
                out[f"{transport}/{arm}/{metric}"] = values
    return out


def plan_for(spec: Spec, summary: dict[str, Any]) -> Plan:
    """The run's size from the pilot's summary.json (a spec with `load.precision_ms`), in blocks
    (with replicates: sized in replicates, then b blocks each)."""
    precision = spec.load.precision_ms
    if precision is None:
        raise ValueError("plan_for: the spec sets no load.precision_ms")
    per = blocks_per_unit(spec)
    plan = plan_blocks(
        pilot_series(spec, summary),
        precision,
        (spec.load.max_blocks or DEFAULT_MAX_BLOCKS) // per,
        spec.load.max_duration_s,
        block_seconds(spec) * len(spec.transports) * per,
    )
    if per == 1:
        return plan
    return replace(
        plan,
        n_blocks=plan.n_blocks * per,
        needed=plan.needed * per,
        pilot_blocks=plan.pilot_blocks * per,
        per_figure={k: v * per for k, v in plan.per_figure.items()},
    )


def extension_spec(spec: Spec, more_blocks: int) -> Spec:
    """The second workflow's spec: `more_blocks` blocks, arm orders from a seed of their own, no
    precision target (it is a fixed continuation, sized once), and no floor step (the pilot's
    floor.json is the run's: a second one would be measured and thrown away). With replicates:
    more_blocks / b more replicates of b blocks each (every one deployed afresh)."""
    per = blocks_per_unit(spec)
    if more_blocks % per:
        raise ValueError(f"extension: {more_blocks} blocks are not whole replicates of {per}")
    return spec.with_overrides(
        {
            "floor": False,
            "blocks": more_blocks,
            "replicates": more_blocks // per,
            "order_seed": spec.order_seed + EXTENSION_SEED_OFFSET,
            "load.precision_ms": None,
            "load.max_blocks": None,
            "load.max_duration_s": None,
        }
    )


def needed_load_s(plan: Plan, spec: Spec) -> float:
    """Nominal load-testing seconds of the size the target asked for (every transport's blocks;
    deployments and waits not counted)."""
    return plan.needed * block_seconds(spec) * len(spec.transports)


def limited_line(plan: Plan, spec: Spec | None = None) -> str:
    why = {
        "precision": "the precision target (the size it asks for fits the budget)",
        "max_blocks": "load.max_blocks",
        "max_duration_s": "load.max_duration_s",
    }[plan.limited_by]
    return (
        f"precision-targeted run: {plan.n_blocks} blocks in all ({plan.pilot_blocks} pilot"
        f" + {plan.n_blocks - plan.pilot_blocks}); the target asked for {plan.needed}"
        + ("" if spec is None else f" (~{fmt_duration(needed_load_s(plan, spec))} of load-testing)")
        + f"; N limited by {why}"
    )


def record(plan: Plan, spec: Spec) -> dict[str, Any]:
    """What summary.json carries as `precision_run`."""
    per = blocks_per_unit(spec)
    return {
        "unit": "replicate" if spec.replicates > 1 else "block",
        "blocks_per_unit": per,
        "pilot_units": plan.pilot_blocks // per,
        "n_units": plan.n_blocks // per,
        "pilot_blocks": plan.pilot_blocks,
        "n_blocks": plan.n_blocks,
        "needed": plan.needed,
        "limited_by": plan.limited_by,
        "per_figure": plan.per_figure,
        "workflows": 1 if plan.n_blocks <= plan.pilot_blocks else 2,
        "extension_order_seed": spec.order_seed + EXTENSION_SEED_OFFSET,
        "deployments": (DEPLOYMENTS_NOTE_REPLICATES if spec.replicates > 1 else DEPLOYMENTS_NOTE)
        if plan.n_blocks > plan.pilot_blocks
        else "one workflow",
        "needed_load_s": round(needed_load_s(plan, spec), 1),
        "line": limited_line(plan, spec),
    }
