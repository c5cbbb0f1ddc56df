"""What the load-stage part of a report is drawn from, as small pure functions over the run's tables
(issue 16's contract): `stages` (one row per transport x stage x arm: requested and achieved rate,
errors, dropped iterations, generator CPU, validity and its reasons, the arm's CPU ms per 1000
requests and peak RSS, mean / p50 / p99), `overheads` rows carrying `stage`, `stage_kind`,
`stage_value` and `valid`, and samples carrying `stage`. A run without stages has stage "" everywhere
and no (or an empty) stages table: :func:`has_stages` is False and the report shows nothing of this.
No HTML here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core import stats

#: One-second windows (ns) for the overhead over time inside a stage.
WINDOW_NS = 1_000_000_000
#: A window counts when every arm compared in it has at least this many successful requests.
MIN_WINDOW_REQUESTS = 5
KIND_AXIS = {
    "rate": "requested rate (req/s per arm)",
    "workers": "concurrency (workers per arm)",
}


def _staged(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of `df` that belong to a stage (non-empty `stage`), or None."""
    if df is None or not len(df) or "stage" not in df.columns:
        return None
    mine = df[df["stage"].fillna("").astype(str) != ""]
    return mine if len(mine) else None


def _float(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return out


def has_stages(
    stages: pd.DataFrame | None, overheads: pd.DataFrame | None, samples: pd.DataFrame | None
) -> bool:
    """Whether the run measured load stages (any table with a non-empty `stage`)."""
    return any(_staged(df) is not None for df in (stages, overheads, samples))


def stage_label(kind: str, value: float) -> str:
    """'100 req/s', '4 workers', '1 worker' (the spec's stage labels)."""
    if kind == "workers":
        return f"{value:g} worker" + ("" if value == 1 else "s")
    if kind == "rate":
        return f"{value:g} req/s"
    return f"{value:g}"


def stage_order(*frames: pd.DataFrame | None) -> pd.DataFrame:
    """Every (transport, stage) with its kind, value, label and whether it is valid (all of its rows
    valid in the stages table, else in the overheads), sorted by transport and value."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for df in frames:
        mine = _staged(df)
        if mine is None:
            continue
        for r in mine.itertuples():
            key = (str(r.transport), str(r.stage))
            entry = rows.setdefault(
                key,
                {
                    "transport": key[0],
                    "stage": key[1],
                    "stage_kind": str(getattr(r, "stage_kind", "rate")),
                    "stage_value": _float(getattr(r, "stage_value", None)),
                    "valid": True,
                    "reasons": [],
                },
            )
            if "valid" in mine.columns and not bool(r.valid):
                entry["valid"] = False
                reason = str(getattr(r, "invalid_reasons", "") or "")
                for part in filter(None, (p.strip() for p in reason.split(";"))):
                    arm = getattr(r, "arm", "")
                    text = part if arm == "" or f"{arm!r}" in part else f"{arm}: {part}"
                    if text not in entry["reasons"]:
                        entry["reasons"].append(text)
    cols = ["transport", "stage", "stage_kind", "stage_value", "valid", "reasons", "label"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(list(rows.values()))
    out["reasons"] = out["reasons"].map("; ".join)
    out["label"] = [stage_label(k, v) for k, v in zip(out["stage_kind"], out["stage_value"], strict=True)]
    return out.sort_values(["transport", "stage_value"], kind="stable").reset_index(drop=True)[cols]


def overhead_curves(overheads: pd.DataFrame | None, transport: str, metric: str) -> pd.DataFrame:
    """The overhead of every compared arm against load for one transport and metric: arm,
    stage_value, estimate_ms, ci_low_ms, ci_high_ms, valid, sorted by arm then load."""
    cols = ["arm", "stage", "stage_value", "estimate_ms", "ci_low_ms", "ci_high_ms", "valid"]
    mine = _staged(overheads)
    if mine is None:
        return pd.DataFrame(columns=cols)
    sel = mine[(mine["transport"] == transport) & (mine["metric"] == metric)].copy()
    if "valid" not in sel.columns:
        sel["valid"] = True
    sel["valid"] = sel["valid"].fillna(False).astype(bool)
    return sel.sort_values(["arm", "stage_value"], kind="stable").reset_index(drop=True)[cols]


def arm_order(
    summary: Mapping[str, Any], *frames: pd.DataFrame | None, baseline: str | None = None
) -> list[str]:
    """The arms, compared ones first (summary.json's `compared_arms` order), the baseline last."""
    seen: list[str] = [str(a) for a in summary.get("compared_arms") or []]
    for df in frames:
        if df is not None and "arm" in df.columns:
            seen += [str(a) for a in dict.fromkeys(df["arm"]) if str(a) not in seen]
    base = baseline or run_baseline(summary, *frames)
    return [a for a in dict.fromkeys(seen) if a != base] + ([base] if base in seen else [])


def run_baseline(summary: Mapping[str, Any], *frames: pd.DataFrame | None) -> str:
    """summary.json's `baseline`, else the overheads' `baseline` column, else the seed's "without"."""
    base = summary.get("baseline")
    if isinstance(base, str) and base:
        return base
    for df in frames:
        if df is not None and "baseline" in df.columns and len(df):
            return str(df["baseline"].iloc[0])
    return "without"


def spec_slo(summary: Mapping[str, Any]) -> dict[str, float] | None:
    """The spec's `slo` section (p99_ms, max_error_rate) as summary.json records the spec, or None."""
    slo = (summary.get("spec") or {}).get("slo") if isinstance(summary.get("spec"), Mapping) else None
    if isinstance(slo, Mapping) and isinstance(slo.get("p99_ms"), int | float):
        return {"p99_ms": float(slo["p99_ms"]), "max_error_rate": float(slo.get("max_error_rate", 0.01))}
    return None


def windowed_overhead(
    samples: pd.DataFrame | None,
    transport: str,
    baseline: str,
    window_ns: int = WINDOW_NS,
    min_requests: int = MIN_WINDOW_REQUESTS,
) -> pd.DataFrame:
    """The overhead over time inside each stage: per stage, successful requests in one-second windows
    from the stage's first request (by `timestamp`), each arm's median latency per window minus the
    baseline's in the same window (windows where either has fewer than `min_requests` are left out).
    Columns: stage, arm, second (window start, s from the stage's start), overhead_ms, requests."""
    cols = ["stage", "arm", "second", "overhead_ms", "requests"]
    mine = _staged(samples)
    if mine is None:
        return pd.DataFrame(columns=cols)
    mine = mine[(mine["transport"] == transport) & mine["ok"].astype(bool)]
    out: list[pd.DataFrame] = []
    for stage, grp in mine.groupby("stage", sort=False):
        offset = (grp["timestamp"] - grp["timestamp"].min()).dt.total_seconds().to_numpy()
        window = np.floor(offset * 1e9 / window_ns).astype(np.int64)
        frame = pd.DataFrame({"arm": grp["arm"].to_numpy(), "window": window, "ms": grp["latency_ns"] / 1e6})
        medians = frame.groupby(["window", "arm"])["ms"].agg(
            median=lambda v: float(stats.percentile(v.to_numpy(), 0.5)), requests="size"
        )
        wide = medians.unstack("arm")
        if baseline not in wide["median"].columns:
            continue
        for arm in wide["median"].columns:
            if arm == baseline:
                continue
            n = np.minimum(wide["requests"][arm].fillna(0), wide["requests"][baseline].fillna(0))
            keep = n >= min_requests
            diff = (wide["median"][arm] - wide["median"][baseline])[keep]
            out.append(
                pd.DataFrame(
                    {
                        "stage": stage,
                        "arm": arm,
                        "second": diff.index.to_numpy() * window_ns / 1e9,
                        "overhead_ms": diff.to_numpy(),
                        "requests": n[keep].astype(np.int64).to_numpy(),
                    }
                )
            )
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


def arm_reasons(reasons: str, arm: str, arms: list[str]) -> str:
    """A stage's invalid reasons (joined by "; ", one per block and cause) as one arm's row shows
    them: each once, without those that name another arm (its own row shows them)."""
    others = [a for a in arms if a != arm]
    kept = [
        r
        for r in dict.fromkeys(x.strip() for x in str(reasons or "").split("; ") if x.strip())
        if not any(r.startswith(f"arm '{a}'") for a in others)
    ]
    return "; ".join(kept) if kept else "another arm's figures (see its row)"
