"""Watching a run: the running estimate per arm after each finished block, and the time left. Pure.

The figures are the run's own estimator (orchbench.core.stats.paired_blocks: the mean over blocks of
the per-block difference, t-interval over blocks) over the blocks finished so far; with one block
there is an estimate and no interval (the interval is over blocks). The display that shows them is
orchbench.cli.progress.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from orchbench.core import stats
from orchbench.core.analysis import Block, paired_groups
from orchbench.core.spec import Spec

#: The figures the display shows per arm.
WATCH_METRICS = ("mean", "p50")


@dataclass(frozen=True)
class Running:
    """One arm's running overhead (ms) for one transport and metric."""

    transport: str
    arm: str
    baseline: str
    metric: str
    blocks: int
    estimate: float | None
    ci95: tuple[float, float] | None

    def text(self) -> str:
        if self.estimate is None:
            return "n/a"
        ci = "" if self.ci95 is None else f" [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]"
        return f"{self.estimate:+.3f}{ci}"


def running_estimates(
    blocks: Sequence[Block], arms: Sequence[str], baseline: str, metrics: Sequence[str] = WATCH_METRICS
) -> list[Running]:
    """Per transport (in the blocks' order), arm and metric: the estimate over the blocks in which
    both the arm and the baseline finished (>= 2 blocks: with its 95 % t-interval)."""
    out: list[Running] = []
    transports = list(dict.fromkeys(b.transport for b in blocks))
    for transport in transports:
        mine = [b for b in blocks if b.transport == transport]
        for arm in arms:
            with_groups, without_groups = paired_groups(mine, arm, baseline)
            n = len(with_groups)
            for metric in metrics:
                est: float | None = None
                ci: tuple[float, float] | None = None
                if n >= 2:
                    e = stats.paired_blocks(with_groups, without_groups, metric)
                    est, ci = e.estimate / 1e6, (e.ci95[0] / 1e6, e.ci95[1] / 1e6)
                elif n == 1:
                    d = stats.block_stats(with_groups, metric) - stats.block_stats(without_groups, metric)
                    est = float(d[0]) / 1e6
                if est is not None and not math.isfinite(est):
                    est, ci = None, None
                out.append(Running(transport, arm, baseline, metric, n, est, ci))
    return out


def block_seconds(spec: Spec) -> float:
    """Nominal seconds of one block of one transport: warm-up plus every arm's measured time (one
    k6 process alternating the arms: measure lasts duration_s times the arms), plus ~1 s start-up."""
    arms = len(spec.arm_names())
    if spec.interleave() == "request":
        return spec.load.warmup_s + spec.load.duration_s * arms + 1.0
    return arms * (spec.load.warmup_s + spec.load.duration_s + 1.0)


def time_left_s(spec: Spec, blocks_left: int) -> float:
    """Load-testing time left: blocks left (over all transports) times a block's nominal length."""
    return max(0, blocks_left) * block_seconds(spec)


def fmt_duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
