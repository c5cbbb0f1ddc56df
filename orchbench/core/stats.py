"""The estimators: one per metric, over the paired blocks of the interleaved design. Pure functions.

**The unit is the block.** Both arms run in every block (request by request, or one run each in a
random order), so a block is one paired observation of the hop: the machine's state of that moment
(other tenants, CPU frequency, the model's drift of ±0.5 ms between half-second windows) is shared by
both arms and cancels in the block's difference. Requests inside a block are not independent (noise
on a shared machine comes in bursts of seconds), so nothing here treats them as independent units,
except the one-block fallback, which says so.

**The estimator**, for a metric s in {mean, p50, p90, p99} and blocks b = 1..n:

    d_b      = s(with requests of block b) - s(without requests of block b)
    overhead = mean_b d_b                      (the point estimate)
    arm(a)   = mean_b s(arm a's requests of block b)    (the per-arm values shown beside it)

so the shown arm values are exactly the ones the overhead is the difference of:
overhead = arm(with) - arm(without). Its 95 % interval is the Student-t interval over the n block
differences, mean ± t(0.975, n-1) · sd(d) / √n, and its standard error sd(d) / √n with n - 1 degrees
of freedom travels with it (never reconstructed from the width). What it estimates: the average over
the run's machine states of the within-state difference of the metric (for a pure shift, the shift).
tests/test_coverage_sim.py shows these intervals cover the truth 93-97 % of the time for every metric
on simulated runs shaped like this machine's (drift, bursts, heavy tails), also under the pilot rule
of orchbench.core.design.

**The percentile definition** is one, everywhere: Hyndman & Fan's type 7, numpy's default
``method="linear"`` (R's default): for sorted x_1..x_m, Q(p) = x_j + g (x_{j+1} - x_j) with
h = (m - 1) p, j = floor(h) + 1, g = h - floor(h). ``PERCENTILE_METHOD`` names it; every quantile
orchbench computes goes through :func:`percentile`.

**The test** over the paired units is a sign-flip permutation test of the mean block difference
(exact, over all 2^n sign patterns, up to n = 16 blocks; Monte Carlo with a fixed seed beyond),
vectorised and equal to ``scipy.stats.permutation_test``'s answer; it is reported with the number
of blocks it rests on (with n blocks its smallest possible two-sided p is 2 / 2^n, 0.031 for 6).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

METRICS: tuple[str, ...] = ("mean", "p50", "p90", "p99")
#: The figures a precision target (orchbench.core.design) sizes the run on: the gate's metrics.
PRECISION_METRICS: tuple[str, ...] = ("mean", "p50")
#: Hyndman & Fan (1996) type 7, numpy's and R's default: linear interpolation between order statistics.
PERCENTILE_METHOD: Literal["linear"] = "linear"
_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
#: Sign-flip test: exact enumeration up to this many blocks (2^16 patterns), Monte Carlo beyond.
EXACT_SIGN_FLIP_MAX = 16
SIGN_FLIP_RESAMPLES = 2**16


@functools.lru_cache(maxsize=1024)
def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile t(0.5 + level / 2, df) (cached)."""
    return float(sps.t.ppf(0.5 + level / 2, df))


def percentile(values: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    """The one percentile definition (type 7, see the module docstring); q in [0, 1]."""
    return np.quantile(np.asarray(values, dtype=np.float64), q, axis=axis, method=PERCENTILE_METHOD)


def statistic(values: np.ndarray, metric: str, axis: int = -1) -> np.ndarray:
    """The metric of `values` along `axis` (mean, or a percentile by :func:`percentile`)."""
    values = np.asarray(values, dtype=np.float64)
    if metric == "mean":
        return values.mean(axis=axis)
    if metric not in _QUANTILES:
        raise ValueError(f"unknown metric {metric!r}")
    return percentile(values, _QUANTILES[metric], axis=axis)


def _scalar(values: np.ndarray, metric: str) -> float:
    return float(statistic(np.asarray(values, dtype=np.float64), metric))


@dataclass(frozen=True)
class Estimate:
    """An overhead (or any paired difference) with its 95 % interval and what the interval rests on.

    `se` is the standard error and `df` its degrees of freedom (None: a normal / bootstrap interval);
    `n_units` the number of independent units (blocks); `with_value` / `without_value` the per-arm
    values the estimate is the difference of."""

    estimate: float
    ci95: tuple[float, float]
    se: float = math.nan
    df: int | None = None
    n_units: int = 0
    with_value: float = math.nan
    without_value: float = math.nan

    @property
    def half_width(self) -> float:
        return (self.ci95[1] - self.ci95[0]) / 2

    def to_dict(self, scale: float = 1.0, digits: int = 6) -> dict[str, object]:
        def r(x: float) -> float | None:
            return None if not np.isfinite(x) else round(x * scale, digits)

        return {
            "estimate": r(self.estimate),
            "ci95": [r(self.ci95[0]), r(self.ci95[1])],
            "se": r(self.se),
            "df": self.df,
            "n_blocks": self.n_units,
        }


def t_interval(diffs: Sequence[float] | np.ndarray, level: float = 0.95) -> Estimate:
    """Mean of independent unit differences with a Student-t interval (needs >= 2 units)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n < 2:
        raise ValueError("a t-interval needs at least 2 units")
    est = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    half = t_quantile(n - 1, level) * se
    return Estimate(est, (est - half, est + half), se=se, df=n - 1, n_units=n)


def stein_interval(diffs: Sequence[float] | np.ndarray, pilot_blocks: int, level: float = 0.95) -> Estimate:
    """The interval of a pilot-sized run (orchbench.core.design): the mean of all N unit differences
    ± t(0.975, n0 - 1) · s0 / √N, s0 the SD of the first n0 (the pilot's). Stein (1945): with N fixed
    from s0 alone, the mean is independent of s0 and the interval has exact coverage for normal
    differences; the ordinary interval over N would not (runs stopped early are those whose pilot
    happened to look quiet). `se` = s0 / √N with n0 - 1 degrees of freedom."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if pilot_blocks < 2 or n < pilot_blocks:
        raise ValueError(f"a pilot-sized interval needs a pilot of >= 2 of the {n} units")
    est = float(d.mean())
    se = float(d[:pilot_blocks].std(ddof=1) / math.sqrt(n))
    half = t_quantile(pilot_blocks - 1, level) * se
    return Estimate(est, (est - half, est + half), se=se, df=pilot_blocks - 1, n_units=n)


def block_interval(
    diffs: Sequence[float] | np.ndarray, metric: str, pilot_blocks: int | None = None
) -> Estimate:
    """The interval over blocks of one metric: the t-interval of a fixed design; in a pilot-sized run
    (`pilot_blocks` = n0), Stein's interval for the figures the size was computed from
    (PRECISION_METRICS: their pilot SD chose N, so their ordinary interval would under-cover, 93.6 %
    for p50 in tests/test_coverage_sim.py) and the t-interval for the others (not selected on; with
    heavy-tailed per-block p90/p99 a 4-df SD of the pilot would under-cover them instead)."""
    d = np.asarray(diffs, dtype=np.float64)
    if pilot_blocks is not None and metric in PRECISION_METRICS and len(d) >= pilot_blocks >= 2:
        return stein_interval(d, pilot_blocks)
    return t_interval(d)


def block_stats(groups: Sequence[np.ndarray], metric: str) -> np.ndarray:
    """The metric of each block's requests, in block order."""
    return np.array([_scalar(g, metric) for g in groups], dtype=np.float64)


def paired_blocks(
    with_groups: Sequence[np.ndarray],
    without_groups: Sequence[np.ndarray],
    metric: str,
    pilot_blocks: int | None = None,
) -> Estimate:
    """THE estimator (module docstring): mean over blocks of stat(with_b) - stat(without_b), t-interval
    over blocks, and the per-arm means over blocks of each arm's stat. Needs >= 2 paired blocks."""
    if len(with_groups) != len(without_groups) or len(with_groups) < 2:
        raise ValueError("paired_blocks needs the same number (>= 2) of blocks per arm")
    a, b = block_stats(with_groups, metric), block_stats(without_groups, metric)
    est = block_interval(a - b, metric, pilot_blocks)
    return Estimate(est.estimate, est.ci95, est.se, est.df, est.n_units, float(a.mean()), float(b.mean()))


def paired_block_values(with_values: Sequence[float], without_values: Sequence[float]) -> Estimate:
    """The estimator from per-block values already computed (the tools' own per-block summaries)."""
    a, b = np.asarray(with_values, dtype=np.float64), np.asarray(without_values, dtype=np.float64)
    if len(a) != len(b) or not len(a):
        raise ValueError("need the same number (>= 1) of blocks per arm")
    if len(a) == 1:
        d = float(a[0] - b[0])
        return Estimate(d, (math.nan, math.nan), n_units=1, with_value=float(a[0]), without_value=float(b[0]))
    est = t_interval(a - b)
    return Estimate(est.estimate, est.ci95, est.se, est.df, est.n_units, float(a.mean()), float(b.mean()))


Stat = Callable[[np.ndarray], np.ndarray]


def bootstrap_one_block(
    with_values: np.ndarray,
    without_values: np.ndarray,
    metric: str,
    n_boot: int = 2000,
    seed: int = 0,
    chunk: int = 100,
) -> Estimate:
    """One block only: stat(with) - stat(without) (the estimator with n = 1) and a 95 % percentile
    bootstrap over requests. It ASSUMES independent requests, which bursts on a shared machine break,
    so it is narrower than the truth deserves; callers say so. `se` is the bootstrap SD, `df` None."""
    a = np.asarray(with_values, dtype=np.float64)
    b = np.asarray(without_values, dtype=np.float64)
    if not len(a) or not len(b):
        raise ValueError("no samples")
    sa, sb = _scalar(a, metric), _scalar(b, metric)
    rng = np.random.default_rng(seed)
    diffs = []
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        ra = a[rng.integers(0, len(a), size=(k, len(a)))]
        rb = b[rng.integers(0, len(b), size=(k, len(b)))]
        diffs.append(statistic(ra, metric) - statistic(rb, metric))
        done += k
    all_diffs = np.concatenate(diffs)
    lo, hi = percentile(all_diffs, 0.025), percentile(all_diffs, 0.975)
    return Estimate(
        sa - sb,
        (float(lo), float(hi)),
        se=float(all_diffs.std(ddof=1)),
        df=None,
        n_units=1,
        with_value=sa,
        without_value=sb,
    )


@dataclass(frozen=True)
class PairedTest:
    """Two-sided sign-flip permutation test of the mean of per-unit differences (H0: symmetric about 0)."""

    p: float
    n_units: int
    exact: bool
    method: str = "sign-flip permutation test of the mean block difference"

    def to_dict(self) -> dict[str, object]:
        return {"p": self.p, "n_blocks": self.n_units, "exact": self.exact, "method": self.method}


#: scipy.stats.permutation_test's tolerance for ties of the null statistic with the observed one
#: (relative, 100 machine epsilons), kept so that p-values equal scipy's.
_TIE_TOLERANCE = float(np.finfo(np.float64).eps * 100)


def _exact_negative_signs(n: int) -> np.ndarray:
    """All 2^n sign patterns (True: the unit's sign is flipped), in itertools.product order."""
    k = np.arange(2**n, dtype=np.int64)[:, None]
    return ((k >> np.arange(n - 1, -1, -1, dtype=np.int64)) & 1).astype(bool)


def _random_negative_signs(n: int, resamples: int, seed: int) -> np.ndarray:
    """`resamples` random sign patterns, the very ones scipy.stats.permutation_test draws from
    `np.random.default_rng(seed)` for a one-sample "samples" test (it shuffles each unit's pair
    (x, -x) with one 32-bit draw of the bit generator, swapping when the draw's lowest bit is 0), at a
    fraction of the cost. tests/test_stats.py checks the equality against scipy."""
    count = resamples * n
    raw = np.random.default_rng(seed).bit_generator.random_raw((count + 1) // 2)
    words = np.ascontiguousarray(raw, dtype="<u8").view("<u4")[:count]
    return ((words & 1) == 0).reshape(resamples, n)


def sign_flip_test(diffs: Sequence[float] | np.ndarray, seed: int = 0) -> PairedTest:
    """Exact over all 2^n sign patterns for n <= EXACT_SIGN_FLIP_MAX, else SIGN_FLIP_RESAMPLES random
    ones (seeded). With n blocks the smallest two-sided p is 2 / 2^n: few blocks cannot be "highly
    significant", which is the honest answer. Needs >= 1 unit; all-zero differences give p = 1.

    Vectorised, and equal to ``scipy.stats.permutation_test((d,), mean, permutation_type="samples",
    alternative="two-sided")`` with ``n_resamples`` 2^n (exact) or SIGN_FLIP_RESAMPLES and
    ``rng=np.random.default_rng(seed)``: the same sign patterns, the null means summed unit by unit in
    the same order (so bit for bit the same floats), scipy's tie tolerance and its +1 of a Monte Carlo
    p (Phipson & Smyth), twice the smaller tail."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n < 1:
        raise ValueError("no units")
    if not np.any(d):
        return PairedTest(1.0, n, True)
    exact = n <= EXACT_SIGN_FLIP_MAX
    negative = _exact_negative_signs(n) if exact else _random_negative_signs(n, SIGN_FLIP_RESAMPLES, seed)
    null = np.zeros(len(negative), dtype=np.float64)
    for i in range(n):  # unit by unit, as numpy's reduction over scipy's strided view adds them
        null += np.where(negative[:, i], -d[i], d[i])
    null /= n
    observed = float(np.mean(d))
    gamma = abs(_TIE_TOLERANCE * observed)
    extra = 0 if exact else 1
    below = (np.count_nonzero(null <= observed + gamma) + extra) / (len(null) + extra)
    above = (np.count_nonzero(null >= observed - gamma) + extra) / (len(null) + extra)
    return PairedTest(float(min(1.0, max(0.0, 2 * min(below, above)))), n, exact)


def stable_windows(values: np.ndarray, windows: int = 3, tolerance: float = 0.10) -> bool:
    """perf_analyzer's rule: the last `windows` equal windows' medians agree within `tolerance`."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < windows * 10:
        return False
    parts = np.array_split(values, windows)
    medians = np.array([_scalar(p, "p50") for p in parts])
    return bool((medians.max() - medians.min()) <= tolerance * medians.mean())
