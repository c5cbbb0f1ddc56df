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
  blocks: the paired difference comes out below it when the arms' neighbouring requests share their
  jitter (request-by-request interleaving on this machine: a third to two thirds of it), above it
  when the arms drift apart within a block;
- `drift_removed[metric]`: 1 − var(diff) / (var(arm's blocks) + var(baseline's blocks)), the share of
  the two arms' block-to-block variance that pairing them in the same block cancels (negative when
  the difference varies more than the two arms' levels: the arms drift apart within a block);
- `blocks_for_ms(sd, target)`: the blocks (or replicates) that a t-interval needs for a half-width
  `target` at that SD, the arithmetic behind "how long would 0.02 ms take".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BlockStats:
    """One block of one arm, in ms: what every figure here is made of, computed in one pass."""

    n: int
    mean: float
    ss: float  # Σ (x − mean)²
    quartiles: tuple[float, float, float]  # p25, p50, p75 (type 7, the estimator's definition)
    lag_num: float  # Σ (x_i − mean)(x_{i+1} − mean)

    @property
    def value(self) -> dict[str, float]:
        """The block's value of each NOISE_METRICS, as the estimator computes it."""
        return {"mean": self.mean, "p50": self.quartiles[1]}


def block_stats(g: np.ndarray) -> BlockStats:
    x = np.asarray(g, dtype=np.float64) / 1e6
    m = float(np.mean(x))
    c = x - m
    q = np.quantile(x, [0.25, 0.5, 0.75], method=stats.PERCENTILE_METHOD)
    return BlockStats(len(x), m, float(c @ c), (float(q[0]), float(q[1]), float(q[2])), float(c[1:] @ c[:-1]))


def _of(groups: Sequence[np.ndarray]) -> list[BlockStats]:
    return [block_stats(g) for g in groups if len(g)]


def _request_sd(blocks: Sequence[BlockStats]) -> float | None:
    df = sum(b.n - 1 for b in blocks if b.n >= 2)
    return math.sqrt(sum(b.ss for b in blocks if b.n >= 2) / df) if df > 0 else None


def _request_iqr(blocks: Sequence[BlockStats]) -> float | None:
    iqrs = [b.quartiles[2] - b.quartiles[0] for b in blocks if b.n >= 2]
    return float(np.median(iqrs)) if iqrs else None


def _lag1(blocks: Sequence[BlockStats]) -> float | None:
    den = sum(b.ss for b in blocks if b.n >= 3)
    return sum(b.lag_num for b in blocks if b.n >= 3) / den if den > 0 else None


def request_sd_ms(groups: Sequence[np.ndarray]) -> float | None:
    """Pooled within-block SD of single requests (ms): Σ(x − block mean)² / Σ(n_k − 1)."""
    return _request_sd(_of(groups))


def request_iqr_ms(groups: Sequence[np.ndarray]) -> float | None:
    """The median over blocks of the within-block interquartile range (ms, type-7 percentiles)."""
    return _request_iqr(_of(groups))


def lag1(groups: Sequence[np.ndarray]) -> float | None:
    """Lag-1 autocorrelation of consecutive requests within blocks, each block's mean removed,
    pooled: Σ x_i x_{i+1} / Σ x_i² over all blocks of 3 or more requests."""
    return _lag1(_of(groups))


def _arm(blocks: Sequence[BlockStats]) -> dict[str, Any]:
    return {
        "request_sd_ms": _ms(_request_sd(blocks)),
        "request_iqr_ms": _ms(_request_iqr(blocks)),
        "lag1": _ms(_lag1(blocks)),
        "block_sd_ms": {m: _sd([b.value[m] for b in blocks]) for m in NOISE_METRICS},
    }


def arm_noise(groups: Sequence[np.ndarray]) -> dict[str, Any]:
    """One arm's jitter and drift (see the module's docstring)."""
    return _arm(_of(groups))


def _pair(arm: Sequence[BlockStats], base: Sequence[BlockStats]) -> dict[str, Any]:
    if len(arm) != len(base):
        raise ValueError("pair_noise: the arm and its baseline need the same blocks")
    diff_sd: dict[str, float | None] = {}
    removed: dict[str, float | None] = {}
    for m in NOISE_METRICS:
        a, b = np.array([x.value[m] for x in arm]), np.array([x.value[m] for x in base])
        d = _sd(a - b)
        diff_sd[m] = d
        levels = (_sd(a) or 0.0) ** 2 + (_sd(b) or 0.0) ** 2
        removed[m] = None if d is None or levels <= 0 else 1.0 - d**2 / levels
    per = [
        x.ss / (x.n - 1) / x.n + y.ss / (y.n - 1) / y.n
        for x, y in zip(arm, base, strict=True)
        if min(x.n, y.n) >= 2
    ]
    return {
        "diff_sd_ms": diff_sd,
        "independent_diff_sd_ms": math.sqrt(float(np.mean(per))) if per else None,
        "drift_removed": removed,
    }


def independent_diff_sd_ms(
    with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray]
) -> float | None:
    """√(s_a²/n_a + s_b²/n_b) per block (ms), root mean square over the blocks."""
    return _pair(_of(with_groups), _of(without_groups))["independent_diff_sd_ms"]


def pair_noise(with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray]) -> dict[str, Any]:
    """The paired figures of an arm against its baseline over the same blocks (see the docstring)."""
    return _pair(_of(with_groups), _of(without_groups))


def noise(
    with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray], arm: str, baseline: str
) -> dict[str, Any]:
    """summary.json's `noise` of one arm against its baseline: both arms' jitter and drift, then
    the paired figures (every block's statistics computed once)."""
    a, b = _of(with_groups), _of(without_groups)
    return {"arms": {arm: _arm(a), baseline: _arm(b)}, **_pair(a, b)}


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
