"""Deployment replicates (orchbench.core.replicates): a literal case, and coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from orchbench.core.replicates import nested_interval, replicate_means
from orchbench.core.stats import t_interval


def test_literal_three_replicates():
    # replicate means 0.30, 0.40, 0.50 (their blocks' own spread does not enter): SD 0.1, SE 0.1/sqrt(3)
    groups = [[0.25, 0.35], [0.40, 0.40], [0.45, 0.55]]
    est = nested_interval(groups)
    assert replicate_means(groups).tolist() == pytest.approx([0.30, 0.40, 0.50])
    assert est.estimate == pytest.approx(0.40)
    assert est.se == pytest.approx(0.1 / np.sqrt(3))
    assert est.df == 2 and est.n_units == 3
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, 2)
    assert est.ci95 == pytest.approx((0.40 - half, 0.40 + half))


def test_each_replicate_counts_once_whatever_its_blocks():
    # unbalanced: 1 block against 3; the estimate is the mean of the two replicate means, 0.2 and 0.6
    est = nested_interval([[0.2], [0.5, 0.6, 0.7]])
    assert est.estimate == pytest.approx(0.4)
    assert est.df == 1


def test_one_replicate_is_the_ordinary_block_interval():
    blocks = [0.31, 0.29, 0.35, 0.33]
    assert nested_interval([blocks]) == t_interval(blocks)


def test_pilot_sized_replicates_get_steins_interval():
    # replicate means 0.3, 0.4, 0.5 (the pilot: SD 0.1), then 0.4 and 0.4: the mean of all five,
    # +- t(0.975, 2) x 0.1 / sqrt(5)
    groups = [[0.3], [0.4], [0.5], [0.4], [0.35, 0.45]]
    est = nested_interval(groups, pilot_replicates=3)
    half = 4.302652729911275 * 0.1 / np.sqrt(5)
    assert est.estimate == pytest.approx(0.4)
    assert est.ci95 == pytest.approx((0.4 - half, 0.4 + half))
    assert est.df == 2 and est.n_units == 5
    # no extension (R = R0): the ordinary interval over replicates
    assert nested_interval(groups[:3], pilot_replicates=3) == nested_interval(groups[:3])


def test_non_finite_blocks_and_empty_replicates_are_left_out():
    est = nested_interval([[0.1, float("nan")], [], [0.3]])
    assert est.estimate == pytest.approx(0.2) and est.n_units == 2
    with pytest.raises(ValueError, match="at least 2 replicates"):
        nested_interval([[0.1], [], [float("nan")]])


def _simulate(reps: int, blocks: int, rep_sd: float, runs: int, seed: int) -> np.ndarray:
    """`runs` experiments with true overhead 0.3: a per-deployment offset (SD rep_sd), then per-block
    noise with heavy tails (t with 4 df, scaled to SD 1) and a slow drift shared inside a replicate."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0.0, rep_sd, (runs, reps, 1))
    noise = rng.standard_t(4, (runs, reps, blocks)) / np.sqrt(2.0)
    drift = np.linspace(-0.2, 0.2, blocks) * rng.normal(0.0, 1.0, (runs, reps, 1))
    return 0.3 + offset + noise + drift


@pytest.mark.parametrize(("reps", "blocks"), [(2, 3), (3, 2), (4, 2), (6, 1)])
@pytest.mark.parametrize("rep_sd", [0.0, 1.0, 2.0])
def test_nested_interval_covers_with_and_without_a_replicate_effect(reps, blocks, rep_sd):
    x = _simulate(reps, blocks, rep_sd, runs=1500, seed=reps * 100 + blocks * 10 + int(rep_sd))
    covered = 0
    for run in x:
        lo, hi = nested_interval(list(run)).ci95
        covered += lo <= 0.3 <= hi
    assert 0.93 <= covered / len(x) <= 0.97, f"{reps}x{blocks}, replicate SD {rep_sd}: {covered / len(x):.3f}"


def test_pooling_blocks_across_replicates_would_not_cover():
    """Why the interval is over replicates: treating every block as independent (one t-interval over
    all R x b blocks) under-covers as soon as deployments differ as much as blocks do."""
    x = _simulate(4, 3, 1.0, runs=2000, seed=7)
    flat = x.reshape(len(x), -1)
    n = flat.shape[1]
    half = sps.t.ppf(0.975, n - 1) * flat.std(axis=1, ddof=1) / np.sqrt(n)
    pooled = float(np.mean(np.abs(flat.mean(axis=1) - 0.3) <= half))
    cis = [nested_interval(list(run)).ci95 for run in x]
    nested = float(np.mean([lo <= 0.3 <= hi for lo, hi in cis]))
    assert pooled < 0.90 < 0.93 <= nested
