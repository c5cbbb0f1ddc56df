"""Load from many generators: one stage fanned out over N load generators, each at rate/N of every arm
with its own arm order, and their samples merged back into one stage. Pure functions over tables
shaped like the `samples` table (results_schema/schema.py: SAMPLES_SCHEMA), as pyarrow Tables or
pandas DataFrames.

The merge concatenates the generators' samples with a `generator` column (int32, 0-based, in the
order given) and keeps each generator's own `seq` (unique per generator, arm and block, not across
generators). The check sums the generators' achieved rates per arm (each generator's requests of the
arm over its own measured window) and holds them against the stage's request with the invalid-stage
rule of orchbench.core.stages; a generator that measured no request of an arm is a reason too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from orchbench.core.errors import ConfigError
from orchbench.core.stages import RATE_TOLERANCE, rate_shortfalls
from results_schema.schema import SAMPLES_SCHEMA, STAGE_DEFAULTS

GENERATOR_COLUMN = "generator"
MERGED_SAMPLES_SCHEMA = SAMPLES_SCHEMA.append(pa.field(GENERATOR_COLUMN, pa.int32(), nullable=False))


def split_rate(rate_per_s: float, generators: int) -> list[float]:
    """Each generator's share of a stage's rate (per arm): rate / N, N times."""
    if isinstance(generators, bool) or not isinstance(generators, int) or generators < 1:
        raise ConfigError(f"generators must be a whole number >= 1, got {generators}")
    if not rate_per_s > 0:
        raise ConfigError(f"rate must be > 0 requests/s, got {rate_per_s}")
    return [rate_per_s / generators] * generators


def _with_stage_defaults(table: pa.Table) -> pa.Table:
    """Samples of before the stage columns (schema version 2), or with them null: one load
    (stage "", stage_kind "none", stage_value null)."""
    for name, value in STAGE_DEFAULTS.items():
        if name not in table.schema.names:
            table = table.append_column(
                name, pa.array([value] * table.num_rows, pa.string() if value is not None else pa.float64())
            )
        elif value is not None and table.column(name).null_count:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pc.fill_null(table.column(name).cast(pa.string()), value))
    return table


def _as_table(part: pa.Table | pd.DataFrame, index: int) -> pa.Table:
    if isinstance(part, pd.DataFrame):
        part = pa.Table.from_pandas(part, preserve_index=False)
    part = _with_stage_defaults(part)
    missing = [n for n in SAMPLES_SCHEMA.names if n not in part.schema.names]
    if missing:
        raise ConfigError(f"generator {index}: samples lack columns {missing}")
    return part.select(SAMPLES_SCHEMA.names).cast(SAMPLES_SCHEMA)


def merge_samples(parts: Sequence[pa.Table | pd.DataFrame]) -> pa.Table:
    """One stage's samples from N generators: concatenated in generator order, with a `generator`
    column (MERGED_SAMPLES_SCHEMA). Every part must come from the same experiment, run and
    transport."""
    if not parts:
        raise ConfigError("no generator's samples to merge")
    tables = []
    for i, part in enumerate(parts):
        t = _as_table(part, i)
        tables.append(t.append_column(GENERATOR_COLUMN, pa.array([i] * t.num_rows, pa.int32())))
    merged = pa.concat_tables(tables).cast(MERGED_SAMPLES_SCHEMA)
    for col in ("experiment", "run_id", "transport"):
        values = pc.unique(merged[col]).to_pylist()
        if len(values) > 1:
            raise ConfigError(f"generators' samples mix {col} values {sorted(map(str, values))}")
    return merged


def counts(merged: pa.Table) -> dict[str, dict[int, int]]:
    """Requests per arm and generator: {arm: {generator: n}}."""
    if merged.num_rows == 0:
        return {}
    grouped = merged.group_by(["arm", GENERATOR_COLUMN]).aggregate([("seq", "count")]).to_pylist()
    out: dict[str, dict[int, int]] = {}
    for row in sorted(grouped, key=lambda r: (r["arm"], r[GENERATOR_COLUMN])):
        out.setdefault(row["arm"], {})[int(row[GENERATOR_COLUMN])] = int(row["seq_count"])
    return out


def _start_spans(merged: pa.Table) -> dict[tuple[str, int], tuple[int, int]]:
    """(arm, generator) -> (first, last) request start, epoch ns."""
    t = pa.table(
        {
            "arm": merged["arm"],
            GENERATOR_COLUMN: merged[GENERATOR_COLUMN],
            "ts": pc.cast(merged["timestamp"], pa.int64()),
        }
    )
    rows = t.group_by(["arm", GENERATOR_COLUMN]).aggregate([("ts", "min"), ("ts", "max")]).to_pylist()
    return {
        (r["arm"], int(r[GENERATOR_COLUMN])): (int(r["ts_min"]), int(r["ts_max"]))
        for r in rows
        if r["ts_min"] is not None
    }


@dataclass(frozen=True)
class MergeCheck:
    """The merged stage: per-arm counts, per-generator and summed achieved rates, and the verdict."""

    requested_per_s: float
    generators: int
    counts: dict[str, dict[int, int]]
    achieved_per_s: dict[str, dict[int, float]]  # arm -> generator -> its achieved rate
    summed_per_s: dict[str, float]
    valid: bool
    reasons: tuple[str, ...] = ()
    shortfall: dict[str, float] = field(default_factory=dict)

    @property
    def arm_counts(self) -> dict[str, int]:
        return {arm: sum(per.values()) for arm, per in self.counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested_per_s": self.requested_per_s,
            "generators": self.generators,
            "counts": {a: {str(g): n for g, n in per.items()} for a, per in self.counts.items()},
            "arm_counts": self.arm_counts,
            "achieved_per_s": {
                a: {str(g): round(r, 6) for g, r in per.items()} for a, per in self.achieved_per_s.items()
            },
            "summed_per_s": {a: round(r, 6) for a, r in self.summed_per_s.items()},
            "shortfall": {a: round(r, 6) for a, r in self.shortfall.items()},
            "valid": self.valid,
            "reasons": list(self.reasons),
        }


def check_merged(
    merged: pa.Table,
    requested_per_s: float,
    measured_s: float | Mapping[int, float] | None = None,
    *,
    arms: Sequence[str] | None = None,
    generators: int | None = None,
    tolerance: float = RATE_TOLERANCE,
) -> MergeCheck:
    """Hold the merged samples against the stage's requested rate per arm (every arm gets the full
    rate; generator g ran rate/N of it). Each generator's achieved rate of an arm is its requests over
    its measured window (`measured_s`: one for all, or per generator), or, without a window, from its
    request start times (stages.rate_from_starts); the arm's rate is their sum. `arms` and
    `generators`: what should be there (default: what is)."""
    n_gen = (
        generators
        if generators is not None
        else (int(pc.max(merged[GENERATOR_COLUMN]).as_py()) + 1 if merged.num_rows else 0)
    )
    if n_gen < 1:
        raise ConfigError("no generator's samples to check")
    per = counts(merged)
    want_arms = sorted(set(arms) if arms is not None else set(per))
    reasons: list[str] = []
    achieved: dict[str, dict[int, float]] = {}
    spans = _start_spans(merged) if measured_s is None else {}
    for arm in want_arms:
        achieved[arm] = {}
        for g in range(n_gen):
            n = per.get(arm, {}).get(g, 0)
            if n == 0:
                reasons.append(f"generator {g} measured no request of arm {arm!r}")
                achieved[arm][g] = 0.0
                continue
            if measured_s is None:
                first, last = spans.get((arm, g), (0, 0))
                # n starts over [first, last]: n - 1 intervals (stages.rate_from_starts' rule)
                achieved[arm][g] = (n - 1) / ((last - first) / 1e9) if n > 1 and last > first else 0.0
            else:
                window = measured_s[g] if isinstance(measured_s, Mapping) else measured_s
                if not window > 0:
                    raise ValueError(f"generator {g}: a measured window must be > 0 s, got {window}")
                achieved[arm][g] = n / window
    summed = {arm: sum(achieved[arm].values()) for arm in want_arms}
    shortfall, short_reasons = rate_shortfalls(requested_per_s, summed, tolerance)
    reasons = short_reasons + reasons
    return MergeCheck(
        requested_per_s=float(requested_per_s),
        generators=n_gen,
        counts={arm: {g: per.get(arm, {}).get(g, 0) for g in range(n_gen)} for arm in want_arms},
        achieved_per_s=achieved,
        summed_per_s=summed,
        valid=not reasons,
        reasons=tuple(reasons),
        shortfall=shortfall,
    )
