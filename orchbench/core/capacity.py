"""Capacity per arm: the highest rate whose p99 stays within an SLO and whose error rate stays below a
bound, found by a stepwise search that records every step; what capacity the hop costs; the knee of
a latency curve. Pure functions (the search is a function of the results so far).

**The search.** :func:`next_rate` looks at every (rate -> p99, error rate) measured so far and either
proposes the next rate to measure or stops. It climbs from `start_per_s` in steps of `step_per_s`
(or, with `growth` > 1, multiplies the rate by it) until a rate breaks the SLO or `max_per_s` is
reached; then, while the bracket [last good, first bad] is wider than `resolution_per_s`, it bisects
it (rounded to `grain_per_s`). With `resolution_per_s` equal to the step (the default) the search is
purely stepwise and the bracket is one step wide. "Last good" is the highest good rate *below* the
lowest bad one: a good rate measured above a bad one (noise) is recorded and flagged, never taken as
capacity. :func:`search` drives it against a measuring function and returns every step.

**Capacity** of an arm is its last good rate; it lies in [last good, first bad), so its uncertainty is
the bracket's width (one step). **The cost of the hop** is baseline capacity - arm capacity, and lies
in [baseline good - arm bad, baseline bad - arm good]: ± one step of each search. A search that never
failed gives a lower bound only (the open side is None).

**The knee** of latency against achieved rate is the Kneedle point (Satopää et al. 2011, the `kneed`
package) of the convex increasing curve: where latency stops being flat and starts to climb.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchbench.core.errors import ConfigError

#: Measured results so far: rate (req/s) -> (p99 ms, error rate), in the order measured.
Results = Mapping[float, tuple[float, float]] | Mapping[int, tuple[float, float]]


@dataclass(frozen=True)
class Slo:
    """A rate is good when its p99 is within `p99_ms` and its error rate at most `max_error_rate`
    (0: no error allowed), as the spec's `slo` section says."""

    p99_ms: float
    max_error_rate: float = 0.01

    def __post_init__(self) -> None:
        if not (self.p99_ms > 0 and math.isfinite(self.p99_ms)):
            raise ConfigError(f"the SLO's p99 must be > 0 ms, got {self.p99_ms}")
        if not 0 <= self.max_error_rate < 1:
            raise ConfigError(f"the SLO's error-rate bound must be in [0, 1), got {self.max_error_rate}")


@dataclass(frozen=True)
class SearchPlan:
    """How the search climbs and refines (requests/s)."""

    start_per_s: float
    step_per_s: float
    max_per_s: float
    growth: float = 1.0  # > 1: multiply the rate by this while climbing, instead of adding the step
    resolution_per_s: float | None = None  # bisect the bracket down to this width (default: the step)
    grain_per_s: float = 1.0  # proposed rates are multiples of this

    def __post_init__(self) -> None:
        for name in ("start_per_s", "step_per_s", "max_per_s", "grain_per_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"capacity search: {name} must be > 0, got {value}")
        if self.max_per_s < self.start_per_s:
            raise ConfigError("capacity search: max_per_s must be >= start_per_s")
        if self.growth < 1:
            raise ConfigError(f"capacity search: growth must be >= 1, got {self.growth}")
        if self.resolution_per_s is not None and not self.resolution_per_s > 0:
            raise ConfigError(f"capacity search: resolution_per_s must be > 0, got {self.resolution_per_s}")

    @property
    def resolution(self) -> float:
        return self.resolution_per_s if self.resolution_per_s is not None else self.step_per_s


@dataclass(frozen=True)
class Step:
    """One measured rate and what the SLO made of it."""

    rate_per_s: float
    p99_ms: float
    error_rate: float
    good: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate_per_s,
            "p99_ms": self.p99_ms,
            "error_rate": self.error_rate,
            "good": self.good,
            "reason": self.reason,
        }


def judge_step(rate_per_s: float, p99_ms: float, error_rate: float, slo: Slo) -> Step:
    """Good when p99 <= the SLO's p99 and the error rate <= its bound; the reason says which failed."""
    problems = []
    if not math.isfinite(p99_ms) or p99_ms > slo.p99_ms:
        problems.append(f"p99 {p99_ms:g} ms > {slo.p99_ms:g} ms")
    if not math.isfinite(error_rate) or error_rate > slo.max_error_rate:
        problems.append(f"error rate {error_rate:g} > {slo.max_error_rate:g}")
    if problems:
        return Step(rate_per_s, p99_ms, error_rate, False, "; ".join(problems))
    return Step(rate_per_s, p99_ms, error_rate, True, "within the SLO")


def judge_stage_step(
    rate_per_s: float,
    p99_ms: float,
    error_rate: float,
    slo: Slo,
    *,
    dropped: bool = False,
    short: bool = False,
    saturated: bool = False,
) -> Step | None:
    """One measured stage of a sweep as a search step, the rule for stages that failed the
    invalid-stage checks (orchbench.core.stages): a saturated load generator says nothing about the
    arm (None: neither good nor bad); an arm whose own requests were dropped or whose achieved rate
    fell short could not take the rate (bad); otherwise :func:`judge_step`."""
    if saturated:
        return None
    if dropped or short:
        why = " and ".join(
            w for w, on in (("k6 dropped iterations", dropped), ("its achieved rate fell short", short)) if on
        )
        return Step(rate_per_s, p99_ms, error_rate, False, f"the arm could not take the rate ({why})")
    return judge_step(rate_per_s, p99_ms, error_rate, slo)


@dataclass(frozen=True)
class Proposal:
    """What the search says after the results so far: the next rate, or None and why it stopped."""

    next_per_s: float | None
    last_good_per_s: float | None
    first_bad_per_s: float | None
    reason: str
    steps: tuple[Step, ...] = ()
    non_monotonic: tuple[float, ...] = ()  # good rates measured above the first bad one

    @property
    def done(self) -> bool:
        return self.next_per_s is None


def _steps(results: Results, slo: Slo) -> list[Step]:
    """In the order the results were measured (the mapping's order)."""
    return [judge_step(float(r), float(p), float(e), slo) for r, (p, e) in results.items()]


def _snap(rate: float, grain: float) -> float:
    return round(round(rate / grain) * grain, 9)


def bracket(steps: Sequence[Step]) -> tuple[float | None, float | None, tuple[float, ...]]:
    """(last good, first bad, good rates above the first bad) of judged steps: the first bad is the
    lowest bad rate, the last good the highest good rate below it; a good rate above it is noise,
    returned apart and never taken as capacity. A side with no such rate is None."""
    bad = [s.rate_per_s for s in steps if not s.good]
    first_bad = min(bad) if bad else None
    good = [s.rate_per_s for s in steps if s.good and (first_bad is None or s.rate_per_s < first_bad)]
    last_good = max(good) if good else None
    above = tuple(
        s.rate_per_s for s in steps if s.good and first_bad is not None and s.rate_per_s > first_bad
    )
    return last_good, first_bad, above


def next_rate(results: Results, slo: Slo, plan: SearchPlan) -> Proposal:
    """The next rate to measure, given `results`: rate (req/s) -> (p99 ms, error rate), or None
    (`done`) with the bracket [last good, first bad] and the reason it stopped."""
    steps = _steps(results, slo)
    last_good, first_bad, above = bracket(steps)

    def make(nxt: float | None, reason: str) -> Proposal:
        return Proposal(nxt, last_good, first_bad, reason, tuple(steps), above)

    if not steps:
        return make(_snap(plan.start_per_s, plan.grain_per_s), "start")
    tested = {s.rate_per_s for s in steps}
    if first_bad is None:  # still climbing
        top = max(tested)
        if top >= plan.max_per_s:
            return make(None, f"no rate up to the maximum {top:g} req/s broke the SLO (capacity >= it)")
        climb = top * plan.growth if plan.growth > 1 else top + plan.step_per_s
        nxt = min(_snap(climb, plan.grain_per_s), plan.max_per_s)
        if nxt <= top:
            nxt = plan.max_per_s
        return make(nxt, "climbing")
    if last_good is None:
        return make(None, f"the lowest rate measured, {first_bad:g} req/s, already breaks the SLO")
    if first_bad - last_good <= plan.resolution + 1e-9:
        return make(None, f"bracketed within {first_bad - last_good:g} req/s")
    mid = _snap((last_good + first_bad) / 2, plan.grain_per_s)
    if mid <= last_good or mid >= first_bad or mid in tested:
        return make(None, f"bracketed within {first_bad - last_good:g} req/s (the rate grain)")
    return make(mid, "refining")


@dataclass(frozen=True)
class Capacity:
    """An arm's capacity: its last good rate, in [last good, first bad)."""

    last_good_per_s: float | None
    first_bad_per_s: float | None
    steps: tuple[Step, ...] = ()
    reason: str = ""
    non_monotonic: tuple[float, ...] = ()

    @property
    def estimate_per_s(self) -> float | None:
        return self.last_good_per_s

    @property
    def uncertainty_per_s(self) -> float | None:
        """The bracket's width; None when a side is open."""
        if self.last_good_per_s is None or self.first_bad_per_s is None:
            return None
        return self.first_bad_per_s - self.last_good_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity_per_s": self.estimate_per_s,
            "bracket_per_s": [self.last_good_per_s, self.first_bad_per_s],
            "uncertainty_per_s": self.uncertainty_per_s,
            "reason": self.reason,
            "non_monotonic_per_s": list(self.non_monotonic),
            "steps": [s.to_dict() for s in self.steps],
        }


def capacity(results: Results, slo: Slo, plan: SearchPlan) -> Capacity:
    """The capacity the results so far show (whether or not the search is finished)."""
    p = next_rate(results, slo, plan)
    return Capacity(p.last_good_per_s, p.first_bad_per_s, p.steps, p.reason, p.non_monotonic)


def search(
    measure: Callable[[float], tuple[float, float]], slo: Slo, plan: SearchPlan, max_steps: int = 50
) -> Capacity:
    """Run the stepwise search: measure each proposed rate (-> (p99 ms, error rate)) until it stops."""
    results: dict[float, tuple[float, float]] = {}
    for _ in range(max_steps):
        p = next_rate(results, slo, plan)
        if p.next_per_s is None:
            return Capacity(p.last_good_per_s, p.first_bad_per_s, p.steps, p.reason, p.non_monotonic)
        results[p.next_per_s] = measure(p.next_per_s)
    p = next_rate(results, slo, plan)
    return Capacity(
        p.last_good_per_s, p.first_bad_per_s, p.steps, f"stopped after {max_steps} steps", p.non_monotonic
    )


@dataclass(frozen=True)
class CapacityCost:
    """Baseline capacity - arm capacity (req/s), and the range the two brackets allow."""

    estimate_per_s: float | None
    low_per_s: float | None
    high_per_s: float | None
    baseline: Capacity
    arm: Capacity

    @property
    def fraction(self) -> float | None:
        """The cost as a fraction of the baseline's capacity."""
        base = self.baseline.estimate_per_s
        if self.estimate_per_s is None or not base:
            return None
        return self.estimate_per_s / base

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost_per_s": self.estimate_per_s,
            "range_per_s": [self.low_per_s, self.high_per_s],
            "fraction": None if self.fraction is None else round(self.fraction, 6),
            "baseline_capacity_per_s": self.baseline.estimate_per_s,
            "arm_capacity_per_s": self.arm.estimate_per_s,
        }


def capacity_cost(baseline: Capacity, arm: Capacity) -> CapacityCost:
    """What the hop costs: baseline - arm, in [baseline good - arm bad, baseline bad - arm good].
    A capacity below the search's first rate (no good rate) gives None for the estimate."""
    b_lo, b_hi = baseline.last_good_per_s, baseline.first_bad_per_s
    a_lo, a_hi = arm.last_good_per_s, arm.first_bad_per_s
    estimate = None if b_lo is None or a_lo is None else b_lo - a_lo
    low = None if b_lo is None or a_hi is None else b_lo - a_hi
    high = None if b_hi is None or a_lo is None else b_hi - a_lo
    return CapacityCost(estimate, low, high, baseline, arm)


# ---------------------------------------------------------------------------------------------------
# the knee


@dataclass(frozen=True)
class Knee:
    rate_per_s: float
    latency_ms: float
    method: str = "kneedle (kneed, convex increasing)"

    def to_dict(self) -> dict[str, Any]:
        return {"rate_per_s": self.rate_per_s, "latency_ms": self.latency_ms, "method": self.method}


def knee(achieved_per_s: Any, latency_ms: Any, sensitivity: float = 1.0) -> Knee | None:
    """The knee of latency (ms) against achieved rate (req/s): Kneedle on the convex increasing curve,
    one point per stage (sorted by rate; a repeated rate keeps its mean latency). None when the curve
    has fewer than 3 points or no knee inside it (a straight line, or a curve that jumps at its start
    and is not convex: Kneedle would name an end point)."""
    from kneed import KneeLocator

    x = np.asarray(achieved_per_s, dtype=np.float64)
    y = np.asarray(latency_ms, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("rates and latencies must be 1-d and of the same length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    xs, inverse = np.unique(x, return_inverse=True)
    ys = np.bincount(inverse, weights=y) / np.bincount(inverse)
    if len(xs) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when it finds none; None says so
        loc = KneeLocator(xs, ys, S=sensitivity, curve="convex", direction="increasing")
    if loc.knee is None:
        return None
    i = int(np.argmin(np.abs(xs - float(loc.knee))))
    if i in (0, len(xs) - 1):  # Kneedle's answer on a curve that is not convex (a jump at the start)
        return None
    return Knee(float(xs[i]), float(ys[i]))


@dataclass(frozen=True)
class ArmCapacity:
    """One arm's search, knee and (against the baseline) cost, as the results record them."""

    arm: str
    capacity: Capacity
    knee: Knee | None = None
    cost: CapacityCost | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            **self.capacity.to_dict(),
            "knee": None if self.knee is None else self.knee.to_dict(),
            "cost": None if self.cost is None else self.cost.to_dict(),
            **self.extra,
        }
