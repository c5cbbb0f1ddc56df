"""The `overheads` table (results_schema OVERHEADS_SCHEMA, version 3) from a run's summary.json: one
row per transport x stage x compared arm x metric. Pure functions."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from results_schema.schema import OVERHEADS_SCHEMA, SCHEMA_VERSION


def arm_results(res: dict[str, Any], order: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """One transport's results per compared arm (in `order`, summary.json's `compared_arms`, when
    given): `by_arm`, or (summaries of before) the seed's one."""
    by_arm = res.get("by_arm")
    if isinstance(by_arm, dict) and by_arm:
        ranked = [a for a in order or [] if a in by_arm] + sorted(set(by_arm) - set(order or []))
        return {a: by_arm[a] for a in ranked}
    return {str(res.get("arm", "with")): res}


def _stage_entries(result: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(stage columns, results with by_arm) of one transport: each load stage's, or the one load's."""
    stages = result.get("stages")
    if not stages:
        return [({"stage": "", "stage_kind": "none", "stage_value": None, "valid": True}, result)]
    return [
        (
            {
                "stage": st["stage"],
                "stage_kind": st["stage_kind"],
                "stage_value": st["stage_value"],
                "valid": bool(st["valid"]),
            },
            st,
        )
        for st in stages
    ]


def overheads_table(summary: dict[str, Any], created_at_ns: int, provenance: dict[str, Any]) -> pa.Table:
    """One row per transport x stage x compared arm x metric (SCHEMA_VERSION 3: `stage`,
    `stage_kind`, `stage_value`, `valid`; an invalid stage's rows carry valid false)."""
    rows = []
    for transport in ("rest", "grpc"):
        if not summary.get(transport):
            continue
        for stage_cols, entry in _stage_entries(summary[transport]):
            for arm, res in arm_results(entry).items():
                rows += _overhead_rows(summary, created_at_ns, provenance, transport, stage_cols, arm, res)
    return pa.Table.from_pylist(rows, schema=OVERHEADS_SCHEMA)


def _overhead_rows(
    summary: dict[str, Any],
    created_at_ns: int,
    provenance: dict[str, Any],
    transport: str,
    stage_cols: dict[str, Any],
    arm: str,
    res: dict[str, Any],
) -> list[dict[str, Any]]:
    rows = []
    tests = res.get("paired_test") or {}
    for metric, est in res["overhead_ms"].items():
        rows.append(
            {
                "schema_version": SCHEMA_VERSION,
                "experiment": summary["experiment"],
                "run_id": summary["run_id"],
                "created_at": created_at_ns,
                "transport": transport,
                "arm": arm,
                **stage_cols,
                "baseline": str(res.get("baseline", "without")),
                "metric": metric,
                "estimate_ms": est["estimate"],
                "ci_low_ms": est["ci95"][0],
                "ci_high_ms": est["ci95"][1],
                "se_ms": est.get("se"),
                "df": est.get("df"),
                "n_blocks": est.get("n_blocks"),
                "paired_test_p": (tests.get(metric) or {}).get("p"),
                "with_ms": est.get("with_ms"),
                "without_ms": est.get("without_ms"),
                "n_with": res["n"]["with"],
                "n_without": res["n"]["without"],
                "threshold_ms": res.get("threshold_ms"),
                "platform": summary.get("platform"),
                "orchbench_version": provenance.get("orchbench_version"),
                "git_commit": provenance.get("git_commit"),
                "host": provenance.get("host"),
            }
        )
    return rows
