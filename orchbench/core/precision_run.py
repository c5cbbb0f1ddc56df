"""The two workflows of a precision-targeted local run (`load.precision_ms`). Pure.

`orchbench run` runs the spec's `blocks` as the pilot (one compiled workflow), sizes the run from
the pilot's summary.json (`<transport>.by_arm.<arm>.block_diffs_ms`, the mean and p50 of every
transport and compared arm, A/A arm included) with Stein's rule (orchbench.core.design.plan_blocks),
and, when N > pilot, runs the remaining N − pilot blocks as a second compiled workflow
(:func:`extension_spec`). The second workflow deploys every arm afresh: deployments are not kept
across the two workflows (recorded in summary.json `precision_run.deployments`). The final compare
runs over all N blocks, the extension's numbered after the pilot's.
"""

from __future__ import annotations

from typing import Any

from orchbench.core.design import DEFAULT_MAX_BLOCKS, PRECISION_METRICS, Plan, plan_blocks
from orchbench.core.spec import Spec
from orchbench.core.watch import block_seconds

#: The extension's arm orders are drawn from order_seed + this (the pilot's from order_seed).
EXTENSION_SEED_OFFSET = 1
DEPLOYMENTS_NOTE = (
    "two workflows: the pilot's deployments were torn down after it, the extension deployed every "
    "arm afresh (new processes); blocks are paired within each workflow"
)


def pilot_series(spec: Spec, summary: dict[str, Any]) -> dict[str, list[float]]:
    """`<transport>/<arm>/<metric>` -> the pilot's block differences (ms), for every sized figure."""
    out: dict[str, list[float]] = {}
    for transport in spec.transports:
        res = summary.get(transport) or {}
        by_arm = res.get("by_arm") or {res.get("arm", "with"): res}
        for arm, arm_res in by_arm.items():
            diffs = arm_res.get("block_diffs_ms") or {}
            for metric in PRECISION_METRICS:
                if metric in diffs:
                    out[f"{transport}/{arm}/{metric}"] = [float(x) for x in diffs[metric]]
    return out


def plan_for(spec: Spec, summary: dict[str, Any]) -> Plan:
    """The run's size from the pilot's summary.json (a spec with `load.precision_ms`)."""
    precision = spec.load.precision_ms
    if precision is None:
        raise ValueError("plan_for: the spec sets no load.precision_ms")
    return plan_blocks(
        pilot_series(spec, summary),
        precision,
        spec.load.max_blocks or DEFAULT_MAX_BLOCKS,
        spec.load.max_duration_s,
        block_seconds(spec) * len(spec.transports),
    )


def extension_spec(spec: Spec, more_blocks: int) -> Spec:
    """The second workflow's spec: `more_blocks` blocks, arm orders from a seed of their own, no
    precision target (it is a fixed continuation, sized once), and no floor step (the pilot's
    floor.json is the run's: a second one would be measured and thrown away)."""
    return spec.with_overrides(
        {
            "floor": False,
            "blocks": more_blocks,
            "order_seed": spec.order_seed + EXTENSION_SEED_OFFSET,
            "load.precision_ms": None,
            "load.max_blocks": None,
            "load.max_duration_s": None,
        }
    )


def limited_line(plan: Plan) -> str:
    why = {
        "precision": "the precision target (the size it asks for fits the budget)",
        "max_blocks": "load.max_blocks",
        "max_duration_s": "load.max_duration_s",
    }[plan.limited_by]
    return (
        f"precision-targeted run: {plan.n_blocks} blocks in all ({plan.pilot_blocks} pilot"
        f" + {plan.n_blocks - plan.pilot_blocks}); the target asked for {plan.needed}; N limited by {why}"
    )


def record(plan: Plan, spec: Spec) -> dict[str, Any]:
    """What summary.json carries as `precision_run`."""
    return {
        "pilot_blocks": plan.pilot_blocks,
        "n_blocks": plan.n_blocks,
        "needed": plan.needed,
        "limited_by": plan.limited_by,
        "per_figure": plan.per_figure,
        "workflows": 1 if plan.n_blocks <= plan.pilot_blocks else 2,
        "extension_order_seed": spec.order_seed + EXTENSION_SEED_OFFSET,
        "deployments": DEPLOYMENTS_NOTE if plan.n_blocks > plan.pilot_blocks else "one workflow",
        "line": limited_line(plan),
    }
