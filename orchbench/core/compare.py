"""The compare logic: pure functions over parsed summaries and sample tables. No I/O here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from orchbench.core import stats
from results_schema.summary import ToolSummary

METRICS = ("mean", "p50", "p90", "p95", "p99")
CI_METRICS = ("mean", "p50")


def overhead_ms(with_: ToolSummary, without: ToolSummary) -> dict[str, float]:
    """with - without in ms, for each metric both sides report (computed on integer ns, then scaled)."""
    out: dict[str, float] = {}
    for metric in METRICS:
        a, b = with_.latency_ns.get(metric), without.latency_ns.get(metric)
        if a is not None and b is not None:
            out[metric] = (a - b) / 1e6
    return out


def _groups(samples: pd.DataFrame) -> list[np.ndarray]:
    ok = samples[samples["ok"]]
    if "block" in ok.columns:
        return [g["latency_ns"].to_numpy() for _, g in ok.groupby("block", sort=True)]
    return [ok["latency_ns"].to_numpy()]


def sample_statistics(
    with_samples: pd.DataFrame,
    without_samples: pd.DataFrame,
    metrics: tuple[str, ...] = CI_METRICS,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap 95 % CIs (ms) of the overhead for `metrics` and a Mann-Whitney U p-value.

    Only successful requests count. Samples may carry a `block` column (interleaved design).
    """
    a, b = _groups(with_samples), _groups(without_samples)
    if not a or not b:
        raise ValueError("both arms need successful samples")
    overhead = {
        m: stats.bootstrap_diff(a, b, m, n_boot=n_boot, seed=seed).to_dict(scale=1e-6) for m in metrics
    }
    return {
        "overhead_ms": overhead,
        "mann_whitney_u_p": stats.mann_whitney_p(np.concatenate(a), np.concatenate(b)),
        "n": {"with": int(sum(len(g) for g in a)), "without": int(sum(len(g) for g in b))},
    }


def compare(
    with_: ToolSummary,
    without: ToolSummary,
    with_samples: pd.DataFrame | None = None,
    without_samples: pd.DataFrame | None = None,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The `orchbench compare` result: point overheads from the summaries, CIs from samples if any."""
    result: dict[str, Any] = {
        "overhead_ms": overhead_ms(with_, without),
        "with": {
            "tool": with_.tool,
            "requests": with_.requests,
            "successes": with_.successes,
            "latency_ms": {k: v / 1e6 for k, v in with_.latency_ns.items()},
        },
        "without": {
            "tool": without.tool,
            "requests": without.requests,
            "successes": without.successes,
            "latency_ms": {k: v / 1e6 for k, v in without.latency_ns.items()},
        },
    }
    if (
        with_samples is not None
        and without_samples is not None
        and len(with_samples)
        and len(without_samples)
    ):
        sampled = sample_statistics(with_samples, without_samples, n_boot=n_boot)
        result["ci95_ms"] = {m: sampled["overhead_ms"][m]["ci95"] for m in CI_METRICS}
        result["samples_overhead_ms"] = {m: sampled["overhead_ms"][m]["estimate"] for m in CI_METRICS}
        result["mann_whitney_u_p"] = sampled["mann_whitney_u_p"]
        result["samples_n"] = sampled["n"]
    return result
