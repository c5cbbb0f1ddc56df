"""Statistics on per-request latencies: stratified bootstrap CIs and a rank test. Pure functions.

The bootstrap resamples within each block of each arm (the interleaved design's strata), so a block
that ran during a noisy moment weighs as it did in the experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Stat = Callable[[np.ndarray], np.ndarray]  # rows of resamples (k, n) -> (k,)

STATISTICS: dict[str, Stat] = {
    "mean": lambda a: a.mean(axis=-1),
    "p50": lambda a: np.quantile(a, 0.50, axis=-1),
    "p90": lambda a: np.quantile(a, 0.90, axis=-1),
    "p95": lambda a: np.quantile(a, 0.95, axis=-1),
    "p99": lambda a: np.quantile(a, 0.99, axis=-1),
}


@dataclass(frozen=True)
class Estimate:
    estimate: float
    ci95: tuple[float, float]

    def to_dict(self, scale: float = 1.0, digits: int = 6) -> dict[str, object]:
        def r(x: float) -> float | None:
            return None if not np.isfinite(x) else round(x * scale, digits)

        return {"estimate": r(self.estimate), "ci95": [r(self.ci95[0]), r(self.ci95[1])]}


def _as_groups(groups: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(groups, np.ndarray):
        groups = [groups]
    out = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not out:
        raise ValueError("no samples")
    return out


def _resample(groups: list[np.ndarray], k: int, rng: np.random.Generator) -> np.ndarray:
    parts = [g[rng.integers(0, len(g), size=(k, len(g)))] for g in groups]
    return np.concatenate(parts, axis=1)


def bootstrap_diff(
    with_groups: Sequence[np.ndarray] | np.ndarray,
    without_groups: Sequence[np.ndarray] | np.ndarray,
    statistic: str,
    n_boot: int = 2000,
    seed: int = 0,
    chunk: int = 100,
) -> Estimate:
    """stat(with) - stat(without), with a 95 % percentile-bootstrap interval (stratified by group)."""
    fn = STATISTICS[statistic]
    a, b = _as_groups(with_groups), _as_groups(without_groups)
    point = float(fn(np.concatenate(a)[None, :])[0] - fn(np.concatenate(b)[None, :])[0])
    rng = np.random.default_rng(seed)
    diffs = []
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        diffs.append(fn(_resample(a, k, rng)) - fn(_resample(b, k, rng)))
        done += k
    all_diffs = np.concatenate(diffs)
    lo, hi = np.quantile(all_diffs, [0.025, 0.975])
    return Estimate(point, (float(lo), float(hi)))


def paired_blocks(
    with_groups: Sequence[np.ndarray], without_groups: Sequence[np.ndarray], statistic: str
) -> Estimate:
    """Mean over blocks of stat(with_b) - stat(without_b), with a Student-t 95 % interval over blocks.

    The block, not the request, is the independent unit: noise on a shared machine comes in bursts
    of seconds, so requests inside a block are correlated and a per-request bootstrap would claim
    more certainty than the data has. Needs >= 2 blocks; the arms' blocks are paired by position.
    """
    if len(with_groups) != len(without_groups) or len(with_groups) < 2:
        raise ValueError("paired_blocks needs the same number (>= 2) of blocks per arm")
    fn = STATISTICS[statistic]
    diffs = np.array(
        [
            float(
                fn(np.asarray(a, dtype=np.float64)[None, :])[0]
                - fn(np.asarray(b, dtype=np.float64)[None, :])[0]
            )
            for a, b in zip(with_groups, without_groups, strict=True)
        ]
    )
    est = float(diffs.mean())
    half = float(sps.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    return Estimate(est, (est - half, est + half))


def mann_whitney_p(with_values: np.ndarray, without_values: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value: do the two arms' latencies come from one distribution?"""
    result = sps.mannwhitneyu(np.asarray(with_values), np.asarray(without_values), alternative="two-sided")
    return float(result.pvalue)


def stable_windows(values: np.ndarray, windows: int = 3, tolerance: float = 0.10) -> bool:
    """perf_analyzer's rule: the last `windows` equal windows' medians agree within `tolerance`."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < windows * 10:
        return False
    parts = np.array_split(values, windows)
    medians = np.array([np.median(p) for p in parts])
    return bool((medians.max() - medians.min()) <= tolerance * medians.mean())
