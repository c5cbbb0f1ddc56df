"""`orchbench compare`: the overhead from two load-tester files (vegeta / ghz / k6 JSON), by the run's
estimator when both carry per-request samples (orchbench.core.analysis.overheads), else the tools'
own summaries' differences, without a CI. Pure functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from orchbench.core.analysis import overheads
from results_schema.summary import ToolSummary

#: Metrics the tools' summaries report (vegeta, ghz and k6 all give these).
TOOL_METRICS = ("mean", "p50", "p90", "p95", "p99")


def _groups(samples: pd.DataFrame) -> dict[int, np.ndarray]:
    ok = samples[samples["ok"]]
    if "block" in ok.columns:
        return {int(k): g["latency_ns"].to_numpy() for k, g in ok.groupby("block", sort=True)}
    return {0: ok["latency_ns"].to_numpy()}


def sample_overheads(
    with_samples: pd.DataFrame, without_samples: pd.DataFrame, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Overheads from two sample tables (successful requests only), the run's estimator: paired by
    the `block` column when both carry it (>= 2 common blocks: t-interval over blocks), else the
    two files are one block (per-request bootstrap, flagged). Point estimate and CI from the same
    samples."""
    a, b = _groups(with_samples), _groups(without_samples)
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        wg, bg = [a[k] for k in common], [b[k] for k in common]
    else:
        wg, bg = [np.concatenate(list(a.values()))], [np.concatenate(list(b.values()))]
    if not len(wg[0]) or not len(bg[0]):
        raise ValueError("both arms need successful samples")
    result = overheads(wg, bg, n_boot=n_boot, seed=seed)
    result["n"] = {"with": int(sum(len(g) for g in wg)), "without": int(sum(len(g) for g in bg))}
    return result


def overhead_ms(with_: ToolSummary, without: ToolSummary) -> dict[str, float]:
    """with - without in ms from the tools' own summaries, for each metric both report (integer ns)."""
    out: dict[str, float] = {}
    for metric in TOOL_METRICS:
        a, b = with_.latency_ns.get(metric), without.latency_ns.get(metric)
        if a is not None and b is not None:
            out[metric] = (a - b) / 1e6
    return out


def compare(
    with_: ToolSummary,
    without: ToolSummary,
    with_samples: pd.DataFrame | None = None,
    without_samples: pd.DataFrame | None = None,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The `orchbench compare` result. With per-request samples on both sides: overheads, CIs and the
    per-arm values from the samples by the run's estimator (`source: samples`), the tools' own
    summary figures kept apart under `tool_summaries`. Without: the tools' summaries' differences
    (`source: tool summaries`), no CI."""
    arm = {
        name: {
            "tool": s.tool,
            "requests": s.requests,
            "successes": s.successes,
            "latency_ms": {k: v / 1e6 for k, v in s.latency_ns.items()},
        }
        for name, s in (("with", with_), ("without", without))
    }
    result: dict[str, Any] = {"with": arm["with"], "without": arm["without"]}
    sampled = (
        with_samples is not None
        and without_samples is not None
        and bool(with_samples["ok"].any())
        and bool(without_samples["ok"].any())
    )
    if not sampled:
        result["source"] = "tool summaries (no per-request samples: no CI)"
        result["overhead_ms"] = overhead_ms(with_, without)
        return result
    assert with_samples is not None and without_samples is not None
    s = sample_overheads(with_samples, without_samples, n_boot=n_boot)
    o = s["overhead_ms"]
    result["source"] = "samples"
    result["method"] = s["method"]
    result["overhead_ms"] = {m: o[m]["estimate"] for m in o}
    result["ci95_ms"] = {m: o[m]["ci95"] for m in o}
    result["se_ms"] = {m: o[m]["se"] for m in o}
    result["paired_test"] = s["paired_test"]
    result["samples_n"] = s["n"]
    result["tool_summaries"] = {"overhead_ms": overhead_ms(with_, without)}
    for name in ("with", "without"):
        result[name]["tool_latency_ms"] = result[name]["latency_ms"]
        result[name]["latency_ms"] = {m: o[m][f"{name}_ms"] for m in o}
    return result
