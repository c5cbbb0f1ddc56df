"""What limits a run's precision: the per-request jitter of each arm, the drift between blocks, and
what the pairing leaves of them. Pure functions over the per-block latencies (ns, each block's in
request order) of an arm and its baseline, for the blocks measured in both; summary.json carries the
result per transport and arm as `noise`, and `benchmarks/limits_bench.py` tabulates it over runs.

Per arm:
- `request_sd_ms`: the SD of one request's latency around its block's mean, pooled over blocks
  (the drift between blocks is not in it); `request_iqr_ms`: the median over blocks of the
  within-block interquartile range;
- `lag1`: the lag-1 autocorrelation of the arm's consecutive requests within a block (each block's
  mean removed, pooled over blocks): near 0 the requests are independent draws, near 1 the host's
  slow spells last several requests;
- `block_sd_ms[metric]`: the SD over blocks of the arm's block value (mean, p50): the drift between
  blocks that the arm's own figure would carry without a partner.

Per arm against its baseline:
- `diff_sd_ms[metric]`: the SD over blocks of the paired per-block difference, which is what the
  interval is made of (half-width ≈ t · diff_sd / √blocks, or over replicates' means);
- `independent_diff_sd_ms`: the SD the block's mean difference would have if every request were an
  independent draw with its arm's within-block spread, √(s_a²/n_a + s_b²/n_b), root mean square over
  blocks: the floor the pairing cannot go below for a block of that many requests;
- `drift_removed[metric]`: 1 − var(diff) / (var(arm's blocks) + var(baseline's blocks)), the share of
  the two arms' block-to-block variance that pairing them in the same block cancels (negative when
  the difference varies more than the two arms' levels: the arms drift apart within a block);
- `blocks_for_ms(sd, target)`: the blocks (or replicates) that a t-interval needs for a half-width
  `target` at that SD, the arithmetic behind "how long would 0.02 ms take".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from orchbench.core import stats

NOISE_METRICS = ("mean", "p50")
#: The largest size blocks_for_ms reports; beyond it the answer is "more than this".
MAX_BLOCKS_FOR = 100_000


def _ms(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _sd(values: Sequence[float] | np.ndarray) -> float | None:
    v = np.asarray(values, dtype=float)
    return float(np.std(v, ddof=1)) if len(v) >= 2 else None


def request_sd_ms(groups: Sequence[np.ndarray]) -> float | None:
    """Pooled within-block SD of single requests (ms): Σ(x − block mean)² / Σ(n_k − 1)."""
    ss = sum(float(np.sum((g / 1e6 - np.mean(g / 1e6)) ** 2)) for g in groups if len(g) >= 2)
    df = sum(len(g) - 1 for g in groups if len(g) >= 2)
    return math.sqrt(ss / df) if df > 0 else None


def request_iqr_ms(groups: Sequence[np.ndarray]) -> float | None:
    """The median over blocks of the within-block interquartile range (ms, type-7 percentiles)."""
    iqrs = [
        float(stats.percentile(g / 1e6, 0.75)) - float(stats.percentile(g / 1e6, 0.25))
        for g in groups
        if len(g) >= 2
    ]
    return float(np.median(iqrs)) if iqrs else None


def lag1(groups: Sequence[np.ndarray]) -> float | None:
    """Lag-1 autocorrelation of consecutive requests within blocks, each block's mean removed,
    pooled: Σ x_i x_{i+1} / Σ x_i² over all blocks."""
    num = den = 0.0
    for g in groups:
        if len(g) < 3:
            continue
        x = g.astype(float) - float(np.mean(g))
        num += float(np.dot(x[1:], x[:-1]))
        den += float(np.dot(x, x))
    return num / den if den > 0 else None


def block_values_ms(groups: Sequence[np.ndarray], metric: str) -> np.ndarray:
    """Each block's value of `metric` (ms), the estimator's per-block statistic."""
    return np.array([float(stats.statistic(g, metric)) / 1e6 for g in groups if len(g)])


def arm_noise(groups: Sequence[np.ndarray]) -> dict[str, Any]:
    """One arm's jitter and drift (see the module's docstring)."""
    return {
        "request_sd_ms": _ms(request_sd_ms(groups)),
        "request_iqr_ms": _ms(request_iqr_ms(groups)),
        "lag1": _ms(lag1(groups)),
        "block_sd_ms": {m: _sd(block_values_ms(groups, m)) for m in NOISE_METRICS},
    }


def independent_diff_sd_ms(
    with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray]
) -> float | None:
    """√(s_a²/n_a + s_b²/n_b) per block (ms), root mean square over the blocks."""
    per = [
        float(np.var(a / 1e6, ddof=1)) / len(a) + float(np.var(b / 1e6, ddof=1)) / len(b)
        for a, b in zip(with_groups, without_groups, strict=True)
        if len(a) >= 2 and len(b) >= 2
    ]
    return math.sqrt(float(np.mean(per))) if per else None


def pair_noise(with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray]) -> dict[str, Any]:
    """The paired figures of an arm against its baseline over the same blocks (see the docstring)."""
    if len(with_groups) != len(without_groups):
        raise ValueError("pair_noise: the arm and its baseline need the same blocks")
    diff_sd: dict[str, float | None] = {}
    removed: dict[str, float | None] = {}
    for m in NOISE_METRICS:
        a, b = block_values_ms(with_groups, m), block_values_ms(without_groups, m)
        d = _sd(a - b) if len(a) == len(b) else None
        diff_sd[m] = d
        levels = (_sd(a) or 0.0) ** 2 + (_sd(b) or 0.0) ** 2
        removed[m] = None if d is None or levels <= 0 else 1.0 - d**2 / levels
    return {
        "diff_sd_ms": diff_sd,
        "independent_diff_sd_ms": _ms(independent_diff_sd_ms(with_groups, without_groups)),
        "drift_removed": removed,
    }


def noise(
    with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray], arm: str, baseline: str
) -> dict[str, Any]:
    """summary.json's `noise` of one arm against its baseline: both arms' jitter and drift, then
    the paired figures."""
    return {
        "arms": {arm: arm_noise(with_groups), baseline: arm_noise(without_groups)},
        **pair_noise(with_groups, without_groups),
    }


def blocks_for_ms(sd_ms: float, target_ms: float, level: float = 0.95) -> int:
    """The fewest units n >= 2 whose t-interval, t(n − 1) · sd / √n, is within `target_ms`
    (MAX_BLOCKS_FOR when even that many are not)."""
    if target_ms <= 0:
        raise ValueError("blocks_for_ms: the target must be > 0")
    if sd_ms <= 0:
        return 2

    def enough(n: int) -> bool:
        return stats.t_quantile(n - 1, level) * sd_ms / math.sqrt(n) <= target_ms

    lo = max(2, math.ceil((1.96 * sd_ms / target_ms) ** 2))  # the normal's answer: a lower bound
    if lo >= MAX_BLOCKS_FOR or not enough(MAX_BLOCKS_FOR):
        return MAX_BLOCKS_FOR
    hi = MAX_BLOCKS_FOR  # enough(hi); t(n - 1) / √n falls with n, so bisect for the first enough
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def line(entry: dict[str, Any], arm: str, baseline: str) -> str:
    """One line for the terminal: what the interval of `arm` − `baseline` is made of."""
    a, b = entry["arms"][arm], entry["arms"][baseline]
    d, removed = entry["diff_sd_ms"], entry["drift_removed"]["mean"]
    cancelled = "" if removed is None else f", {100 * removed:.1f} % of it cancelled by the pairing"
    return (
        f"what limits it ({arm} − {baseline}): one request's SD {_f(a['request_sd_ms'])} / "
        f"{_f(b['request_sd_ms'])} ms (lag-1 {_f(a['lag1'])} / {_f(b['lag1'])}); the block means drift "
        f"SD {_f(a['block_sd_ms']['mean'])} / {_f(b['block_sd_ms']['mean'])} ms{cancelled}; "
        f"left in a block's difference: SD {_f(d['mean'], '.3f')} ms (mean), {_f(d['p50'], '.3f')} (p50)"
    )
