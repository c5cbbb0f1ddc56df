"""The `stages` table (results_schema.schema.STAGES_SCHEMA, stages.parquet): one row per transport x
stage x arm, from the summary.json that orchbench.core.stage_analysis.summarise_stages writes. Pure."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from results_schema.schema import STAGES_SCHEMA


def stages_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The `stages` table's rows from a summary.json (results_schema.schema.STAGES_SCHEMA)."""
    rows = []
    for transport in ("rest", "grpc"):
        for r in (summary.get(transport) or {}).get("stages") or []:
            for arm, row in r["arms"].items():
                rows.append(
                    {
                        "schema_version": summary["schema_version"],
                        "experiment": summary["experiment"],
                        "run_id": summary["run_id"],
                        "transport": transport,
                        "stage": r["stage"],
                        "stage_kind": r["stage_kind"],
                        "stage_value": r["stage_value"],
                        **row,
                        "arm": arm,
                    }
                )
    return rows


def stages_table(summary: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(stages_rows(summary), schema=STAGES_SCHEMA)
