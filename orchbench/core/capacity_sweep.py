"""Capacity per arm from a measured rate sweep: the `stages` table (one row per transport x stage x
arm) against the spec's SLO, by the rules of orchbench.core.capacity (one set of rules for the
stepwise search and for a sweep). Pure functions.

Per transport and arm, over its open-loop stages (`stage_kind` "rate"; closed-loop stages have no
requested rate to search over):

- every **valid** stage is judged by :func:`capacity.judge_step` at its requested rate (its p99 and
  error rate against the SLO). An **invalid** stage, by :func:`capacity.judge_stage_step`: where the
  arm's own requests were dropped or its achieved rate fell more than 2 % short it could not take
  the rate (bad: that is what an overloaded arm does to an open-loop generator); where the load
  generator was saturated it is left out (neither good nor bad: its figures say nothing of the arm),
  as is a stage invalid for a reason no arm's row shows; an arm with its own figures intact in a
  stage another arm made invalid is judged on them. All invalid stages are listed in
  `invalid_stages`, the left-out ones in `left_out_stages`; a left-out stage above the last good
  rate with no bad one makes the capacity a lower bound, which the reason says.
- **capacity** is the last good rate below the first bad one (:func:`capacity.bracket`), within
  [last good, first bad) (`bracket_rps` its width, the step); a good rate above a bad one is noise,
  listed in `non_monotonic_rps`, never taken.
- **the cost of the hop** (compared arms, when the baseline is given) is baseline capacity - arm
  capacity, within [baseline good - arm bad, baseline bad - arm good] (:func:`capacity.capacity_cost`).
- **the knee** is the Kneedle point of the arm's p99 against its achieved rate over its valid
  stages (:func:`capacity.knee`; none below three stages).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core.capacity import Capacity, Slo, Step, bracket, capacity_cost, judge_stage_step, knee
from orchbench.core.errors import ConfigError
from orchbench.core.stages import RATE_TOLERANCE, SATURATION

#: The capacity table's columns, in order (rates in requests/s per arm, latencies in ms).
CAPACITY_COLUMNS = (
    "transport",
    "arm",
    "baseline",
    "slo_p99_ms",
    "slo_max_error_rate",
    "stages",
    "valid_stages",
    "capacity_rps",
    "first_bad_rps",
    "bracket_rps",
    "capacity_reason",
    "non_monotonic_rps",
    "invalid_stages",
    "left_out_stages",
    "cost_rps",
    "cost_low_rps",
    "cost_high_rps",
    "cost_fraction",
    "knee_rps",
    "knee_p99_ms",
)
#: The `stages` columns the table is computed from.
NEEDED = ("transport", "stage", "stage_kind", "arm", "requested_rps", "achieved_rps", "error_rate", "valid")
_TRANSPORT_ORDER = {"rest": 0, "grpc": 1}


def as_slo(slo: Any) -> Slo:
    """The SLO from a capacity.Slo, the spec's `slo` section (anything with `p99_ms` and
    `max_error_rate`) or a mapping of those keys (`max_error_rate` defaults to 0.01)."""
    if isinstance(slo, Slo):
        return slo
    if isinstance(slo, Mapping):
        if "p99_ms" not in slo:
            raise ConfigError("an SLO needs p99_ms")
        return Slo(float(slo["p99_ms"]), float(slo.get("max_error_rate", 0.01)))
    p99 = getattr(slo, "p99_ms", None)
    if p99 is None:
        raise ConfigError(f"not an SLO: {slo!r} (needs p99_ms and max_error_rate)")
    return Slo(float(p99), float(getattr(slo, "max_error_rate", 0.01)))


def _num(value: float) -> str:
    return f"{value:g}"


def _flags(row: Any) -> tuple[bool, bool, bool]:
    """(dropped, short, saturated) of one arm's row of a stage, from its own columns."""
    util = _float(getattr(row, "generator_cpu_util", None))
    reasons = str(getattr(row, "invalid_reasons", "") or "")
    saturated = (math.isfinite(util) and util >= SATURATION) or "saturated" in reasons
    dropped = _float(getattr(row, "dropped_iterations", None))
    achieved, requested = _float(row.achieved_rps), _float(row.requested_rps)
    short = math.isfinite(achieved) and achieved < requested * (1 - RATE_TOLERANCE)
    return bool(math.isfinite(dropped) and dropped > 0), bool(short), bool(saturated)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _join(values: list[str]) -> str:
    return ", ".join(values)


def _arm_capacity(rows: pd.DataFrame, explained: set[str], slo: Slo) -> tuple[Capacity, dict[str, Any]]:
    """One arm's rows (its rate stages): the steps (module docstring's rules), the bracket, the knee."""
    rows = rows.sort_values("requested_rps", kind="stable")
    steps: list[Step] = []
    left_out: list[tuple[float, str]] = []
    invalid: list[str] = []
    for r in rows.itertuples():
        rate, stage = float(r.requested_rps), str(r.stage)
        dropped, short, saturated = _flags(r)
        if not bool(r.valid):
            invalid.append(stage)
            if not (dropped or short or saturated or stage in explained):
                left_out.append((rate, stage))  # invalid for a reason that says nothing of this arm
                continue
        step = judge_stage_step(
            rate,
            _float(r.p99_ms),
            _float(r.error_rate),
            slo,
            dropped=dropped,
            short=short,
            saturated=saturated,
        )
        if step is None:
            left_out.append((rate, stage))
        else:
            steps.append(step)
    last_good, first_bad, above = bracket(steps)
    reason = _reason(last_good, first_bad, steps, left_out)
    cap = Capacity(last_good, first_bad, tuple(steps), reason, above)
    valid = rows[rows["valid"].astype(bool)]
    k = knee(valid["achieved_rps"].to_numpy(dtype=float), valid["p99_ms"].to_numpy(dtype=float))
    extra = {
        "stages": len(rows),
        "valid_stages": len(valid),
        "non_monotonic_rps": _join([_num(r) for r in above]),
        "invalid_stages": _join(invalid),
        "left_out_stages": _join([s for _, s in left_out]),
        "knee_rps": math.nan if k is None else k.rate_per_s,
        "knee_p99_ms": math.nan if k is None else k.latency_ms,
    }
    return cap, extra


def _reason(
    last_good: float | None, first_bad: float | None, steps: list[Step], left_out: list[tuple[float, str]]
) -> str:
    if not steps:
        return "no stage with a result for this arm: no capacity can be read"
    if first_bad is None:
        top = max(s.rate_per_s for s in steps)
        text = f"no stage up to {_num(top)} req/s broke the SLO (capacity >= it)"
        above = [s for r, s in left_out if r > top]
        return text + (f"; left out above it: {_join(above)}" if above else "")
    if last_good is None:
        return f"the lowest rate with a result, {_num(first_bad)} req/s, already breaks the SLO"
    text = f"bracketed within {_num(first_bad - last_good)} req/s"
    inside = [s for r, s in left_out if last_good < r < first_bad]
    return text + (f" (left out inside the bracket: {_join(inside)})" if inside else "")


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _explained(rated: pd.DataFrame) -> set[str]:
    """The stages of one transport that some arm's own dropped iterations, short rate or saturated
    generator made invalid (the other arms' figures in them are their own, and count)."""
    return {str(r.stage) for r in rated.itertuples() if any(_flags(r))}


def capacity_table(stages: pd.DataFrame, slo: Any, baseline: str | None = None) -> pd.DataFrame:
    """Capacity per transport and arm from the `stages` table (module docstring), one row each, in
    CAPACITY_COLUMNS: REST first, the arms in their order of appearance. `slo`: see :func:`as_slo`.
    `baseline`: the arm the others' cost is taken against (the spec's baseline); None: no cost.
    Missing figures are NaN (numbers) or "" (text). No rate stages: an empty table."""
    the_slo = as_slo(slo)
    missing = [c for c in (*NEEDED, "p99_ms") if c not in stages.columns]
    if missing:
        raise ConfigError(f"the stages table lacks {', '.join(missing)}")
    rated = stages[stages["stage_kind"] == "rate"]
    out: list[dict[str, Any]] = []
    transports = sorted(rated["transport"].unique(), key=lambda t: (_TRANSPORT_ORDER.get(t, 2), t))
    for transport in transports:
        mine = rated[rated["transport"] == transport]
        arms = list(dict.fromkeys(mine["arm"]))
        explained = _explained(mine)
        caps = {arm: _arm_capacity(mine[mine["arm"] == arm], explained, the_slo) for arm in arms}
        base = caps.get(baseline) if baseline is not None else None
        for arm in arms:
            cap, extra = caps[arm]
            cost = capacity_cost(base[0], cap) if base is not None and arm != baseline else None
            out.append(
                {
                    "transport": transport,
                    "arm": arm,
                    "baseline": baseline or "",
                    "slo_p99_ms": the_slo.p99_ms,
                    "slo_max_error_rate": the_slo.max_error_rate,
                    "capacity_rps": _nan(cap.last_good_per_s),
                    "first_bad_rps": _nan(cap.first_bad_per_s),
                    "bracket_rps": _nan(cap.uncertainty_per_s),
                    "capacity_reason": cap.reason,
                    "cost_rps": _nan(cost.estimate_per_s if cost else None),
                    "cost_low_rps": _nan(cost.low_per_s if cost else None),
                    "cost_high_rps": _nan(cost.high_per_s if cost else None),
                    "cost_fraction": _nan(cost.fraction if cost else None),
                    **extra,
                }
            )
    table = pd.DataFrame(out, columns=list(CAPACITY_COLUMNS))
    for col in ("stages", "valid_stages"):
        table[col] = table[col].astype(np.int64)
    return table
