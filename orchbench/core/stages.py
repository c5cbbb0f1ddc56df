"""Load stages: a plan of open-loop rates or closed-loop concurrency levels, and whether a stage's
measurement can be trusted. Pure functions.

**The plan.** A spec's load can be one load or a list of stages: open-loop constant arrival rates
(`rates: [10, 50, 100]`, requests per second *per arm*) or closed-loop concurrency levels
(`workers: [1, 2, 4]`). Each stage gets an id that is safe in a path and a task name (`rate-100`,
`rate-12.5`, `workers-4`), a label for people (`100 req/s`, `4 workers`) and its requested value.

**Honest open-loop stages.** A stage is *invalid* (measured, kept, but its overhead not presented as
a result) when

- an arm's **achieved rate** is more than 2 % below the request: requests of that arm divided by
  *that arm's measured window* (never by the whole test, warm-up and the other arms included);
- k6 **dropped iterations** (`dropped_iterations`: arrivals for which no VU was free; their latency
  is missing from the samples, the classic coordinated omission);
- the **load generator was saturated**: its CPU use (a measured figure: CPU seconds over wall
  seconds times the cores it may use) near 100 % of its cores, so its own scheduling delays enter
  the latencies.

:func:`judge_stage` returns a :class:`StageVerdict` that says which rule failed and by how much.

**VUs.** k6's `constant-arrival-rate` starts each iteration on a free pre-allocated VU, or drops it.
By Little's law a rate r with latency L keeps r·L requests in flight; :func:`preallocated_vus` sizes
the pool from that with headroom. :func:`arrival_rate_scenarios` builds the k6 scenarios of a stage
with N arms: one `constant-arrival-rate` scenario per arm, each at the *full* requested rate (divided
only over load generators), their start times staggered by 1/(N·rate) so the arms' arrivals
alternate evenly, every metric tagged with its `arm`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchbench.core.errors import ConfigError

StageMode = Literal["open", "closed"]

#: An arm's achieved rate may fall this far (a fraction) below the request before its stage is invalid.
RATE_TOLERANCE = 0.02
#: The generator counts as saturated from this fraction of its cores' capacity on.
SATURATION = 0.90
#: Headroom on Little's law's VUs in flight (latency spikes, GC pauses), and VUs added on top.
VU_HEADROOM = 2.0
VU_EXTRA = 2
#: k6 scenario names: letters, digits, '-' and '_'.
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _num(value: float) -> str:
    """100 -> '100', 12.5 -> '12.5' (no exponent, no trailing zeros)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class Stage:
    """One load level. `index` is its position in the plan (0-based)."""

    index: int
    mode: StageMode
    rate_per_s: float | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.mode == "open":
            if self.rate_per_s is None or self.workers is not None:
                raise ConfigError("an open-loop stage has a rate and no workers")
            if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
                raise ConfigError(f"a stage's rate must be > 0 requests/s, got {self.rate_per_s}")
        elif self.mode == "closed":
            if self.workers is None or self.rate_per_s is not None:
                raise ConfigError("a closed-loop stage has workers and no rate")
            if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
                raise ConfigError(f"a stage's workers must be a whole number >= 1, got {self.workers}")
        else:
            raise ConfigError(f"a stage's mode is 'open' or 'closed', got {self.mode!r}")

    @property
    def requested(self) -> float:
        """The requested rate (open loop, requests/s per arm) or concurrency (closed loop)."""
        return float(self.rate_per_s if self.mode == "open" else self.workers)  # type: ignore[arg-type]

    @property
    def id(self) -> str:
        """Path- and task-name-safe: 'rate-100', 'rate-12.5', 'workers-4'."""
        if self.mode == "open":
            return f"rate-{_num(self.requested)}"
        return f"workers-{self.workers}"

    @property
    def label(self) -> str:
        if self.mode == "open":
            return f"{_num(self.requested)} req/s"
        return f"{self.workers} worker" + ("" if self.workers == 1 else "s")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "label": self.label,
            "mode": self.mode,
            "rate_per_s": self.rate_per_s,
            "workers": self.workers,
        }


def plan_stages(rates: Sequence[float] | None = None, workers: Sequence[int] | None = None) -> list[Stage]:
    """The stages of a load plan, in the order given: `rates` (open loop) or `workers` (closed loop),
    exactly one of them, non-empty, without repeats."""
    if (rates is None) == (workers is None):
        raise ConfigError("a load plan gives either `rates` or `workers`, not both and not neither")
    values: Sequence[float] = rates if rates is not None else workers  # type: ignore[assignment]
    if isinstance(values, str | bytes) or not len(values):
        raise ConfigError("a load plan needs at least one stage")
    if rates is not None:
        stages = [Stage(i, "open", rate_per_s=float(r)) for i, r in enumerate(rates)]
    else:
        stages = [Stage(i, "closed", workers=w) for i, w in enumerate(workers or [])]
    seen: dict[str, int] = {}
    for s in stages:
        if s.id in seen:
            raise ConfigError(
                f"stage {s.label} appears twice in the load plan (stages {seen[s.id]} and {s.index})"
            )
        seen[s.id] = s.index
    return stages


def stage_by_id(stages: Sequence[Stage], stage_id: str) -> Stage:
    for s in stages:
        if s.id == stage_id:
            return s
    raise KeyError(stage_id)


# ---------------------------------------------------------------------------------------------------
# achieved rates


def achieved_rate(requests: int, measured_s: float) -> float:
    """Requests per second of one arm over *its own* measured window (seconds)."""
    if requests < 0:
        raise ValueError(f"requests must be >= 0, got {requests}")
    if not measured_s > 0:
        raise ValueError(f"a measured window must be > 0 s, got {measured_s}")
    return requests / measured_s


def rate_from_starts(start_ns: Sequence[int] | Any) -> float | None:
    """An arm's achieved rate from its requests' start times (ns) alone: (n - 1) intervals over the
    span from the first start to the last, so n starts spaced 1/r apart give exactly r. None below
    two requests or for a zero span."""
    starts = sorted(int(t) for t in start_ns)
    if len(starts) < 2 or starts[-1] <= starts[0]:
        return None
    return (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e9)


def achieved_rates(
    requests_per_arm: Mapping[str, int], measured_s: float | Mapping[str, float]
) -> dict[str, float]:
    """Achieved rate per arm: its requests over its measured window (one window for all arms, or one
    per arm)."""
    out = {}
    for arm, n in requests_per_arm.items():
        window = measured_s[arm] if isinstance(measured_s, Mapping) else measured_s
        out[arm] = achieved_rate(int(n), float(window))
    return out


def generator_utilisation(cpu_s: float, wall_s: float, cores: int) -> float:
    """The load generator's CPU use as a fraction of the cores it may run on (1.0 = all of them busy
    for the whole window): CPU seconds / (wall seconds x cores)."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if not wall_s > 0:
        raise ValueError(f"a window must be > 0 s, got {wall_s}")
    if cpu_s < 0:
        raise ValueError(f"CPU seconds must be >= 0, got {cpu_s}")
    return cpu_s / (wall_s * cores)


# ---------------------------------------------------------------------------------------------------
# the invalid-stage rules


@dataclass(frozen=True)
class StageVerdict:
    """Whether a stage's measurement holds, and if not, every reason (in rule order)."""

    stage_id: str
    valid: bool
    reasons: tuple[str, ...] = ()
    requested_per_s: float | None = None
    achieved_per_s: dict[str, float] = field(default_factory=dict)
    shortfall: dict[str, float] = field(default_factory=dict)  # fraction below the request, per arm
    dropped_iterations: int = 0
    generator_utilisation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage_id,
            "valid": self.valid,
            "reasons": list(self.reasons),
            "requested_per_s": self.requested_per_s,
            "achieved_per_s": {k: round(v, 6) for k, v in self.achieved_per_s.items()},
            "shortfall": {k: round(v, 6) for k, v in self.shortfall.items()},
            "dropped_iterations": self.dropped_iterations,
            "generator_utilisation": None
            if self.generator_utilisation is None
            else round(self.generator_utilisation, 6),
        }


def rate_shortfalls(
    requested_per_s: float, achieved_per_s: Mapping[str, float], tolerance: float = RATE_TOLERANCE
) -> tuple[dict[str, float], list[str]]:
    """Per arm, the fraction its achieved rate lies below the request, and a reason for each arm
    more than `tolerance` below (a rate above the request is no shortfall: 0)."""
    if not requested_per_s > 0:
        raise ValueError(f"a requested rate must be > 0, got {requested_per_s}")
    shortfall: dict[str, float] = {}
    reasons: list[str] = []
    for arm in sorted(achieved_per_s):
        got = float(achieved_per_s[arm])
        short = max(0.0, (requested_per_s - got) / requested_per_s)
        shortfall[arm] = short
        if short > tolerance:
            reasons.append(
                f"arm {arm!r} achieved {got:.2f} req/s, {100 * short:.1f} % below the requested "
                f"{_num(requested_per_s)} req/s (allowed: {100 * tolerance:g} %)"
            )
    return shortfall, reasons


def judge_stage(
    stage: Stage,
    achieved_per_s: Mapping[str, float] | None = None,
    dropped_iterations: int = 0,
    generator_cpu_fraction: float | None = None,
    *,
    arms: Sequence[str] | None = None,
    rate_tolerance: float = RATE_TOLERANCE,
    saturation: float = SATURATION,
) -> StageVerdict:
    """The invalid-stage rules for one stage.

    `achieved_per_s`: each arm's requests over its own measured window (:func:`achieved_rates`),
    required for an open-loop stage; `arms`: the arms that should be there (an arm without a rate is
    a reason). `dropped_iterations`: k6's `dropped_iterations` count for the stage (all arms and
    generators). `generator_cpu_fraction`: the generator's measured CPU use as a fraction of its cores
    (:func:`generator_utilisation`; the busiest generator when there are several), None if not
    measured (then that rule cannot flag the stage)."""
    if dropped_iterations < 0:
        raise ValueError(f"dropped iterations must be >= 0, got {dropped_iterations}")
    achieved = dict(achieved_per_s or {})
    reasons: list[str] = []
    shortfall: dict[str, float] = {}
    requested = stage.rate_per_s if stage.mode == "open" else None
    if requested is not None:
        missing = sorted(set(arms or []) - set(achieved))
        for arm in missing:
            reasons.append(f"arm {arm!r} has no achieved rate (no measured requests)")
        if not achieved and not missing:
            reasons.append("no achieved rate was measured")
        shortfall, short_reasons = rate_shortfalls(requested, achieved, rate_tolerance)
        reasons += short_reasons
    if dropped_iterations > 0:
        reasons.append(
            f"k6 dropped {dropped_iterations} iteration{'s' if dropped_iterations != 1 else ''} "
            "(no free VU at the scheduled time: those requests were never measured)"
        )
    if generator_cpu_fraction is not None and generator_cpu_fraction >= saturation:
        reasons.append(
            f"the load generator was saturated: {100 * generator_cpu_fraction:.0f} % of its cores' CPU "
            f"(limit: {100 * saturation:g} %)"
        )
    return StageVerdict(
        stage_id=stage.id,
        valid=not reasons,
        reasons=tuple(reasons),
        requested_per_s=requested,
        achieved_per_s=achieved,
        shortfall=shortfall,
        dropped_iterations=int(dropped_iterations),
        generator_utilisation=generator_cpu_fraction,
    )


# ---------------------------------------------------------------------------------------------------
# k6: VUs and the scenarios of a stage


def preallocated_vus(
    rate_per_s: float, expected_latency_s: float, headroom: float = VU_HEADROOM, extra: int = VU_EXTRA
) -> int:
    """VUs one `constant-arrival-rate` scenario needs to drop nothing: Little's law's requests in
    flight (rate x latency), times `headroom`, rounded up, plus `extra`. `expected_latency_s`: the
    latency to plan for (a high percentile at that rate, not the idle mean)."""
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise ConfigError(f"rate must be > 0 requests/s, got {rate_per_s}")
    if not (expected_latency_s > 0 and math.isfinite(expected_latency_s)):
        raise ConfigError(f"expected latency must be > 0 s, got {expected_latency_s}")
    if headroom < 1:
        raise ConfigError(f"VU headroom must be >= 1, got {headroom}")
    if extra < 0:
        raise ConfigError(f"extra VUs must be >= 0, got {extra}")
    in_flight = rate_per_s * expected_latency_s * headroom
    return max(1, math.ceil(in_flight - 1e-9)) + extra


def k6_duration(seconds: float) -> str:
    """A Go duration for k6: '5s', '1500ms', or microseconds ('2500us') below a millisecond's grain."""
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ConfigError(f"durations must be >= 0, got {seconds}")
    us = round(seconds * 1e6)
    if us % 1_000_000 == 0:
        return f"{us // 1_000_000}s"
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


def k6_rate(rate_per_s: float) -> tuple[int, str]:
    """(rate, timeUnit) for `constant-arrival-rate`, whose rate is an integer: 100 -> (100, '1s'),
    12.5 -> (12500, '1000s')."""
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise ConfigError(f"open-loop rate must be > 0 requests/s, got {rate_per_s}")
    if float(rate_per_s).is_integer():
        return int(rate_per_s), "1s"
    return round(rate_per_s * 1000), "1000s"


def arrival_rate_scenarios(
    stage: Stage,
    arms: Sequence[str],
    *,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    expected_latency_s: float,
    generators: int = 1,
    headroom: float = VU_HEADROOM,
) -> dict[str, dict[str, Any]]:
    """The k6 scenarios of an open-loop stage with N arms, in the order given (the block's arm order).

    Per arm `a`: `warmup-a` (when `warmup_s` > 0; gracefulStop 0s) then `measure-a` (startTime the
    warm-up plus the arm's stagger), both `constant-arrival-rate` at the stage's *full* rate divided
    only by `generators` (each of N generators runs rate/N of every arm), `exec` `warmup` / `measure`,
    `env` ORCHBENCH_ARM = a (the script picks its target from it) and `tags` {arm: a, stage: id}, so
    every metric, `dropped_iterations` included, is per arm. Arm i's scenarios start i/(N·rate) s
    after the first arm's: the arms' arrivals alternate evenly, as one stream at N times the rate
    would, while each arm keeps its own exact rate. All VUs are pre-allocated (maxVUs =
    preAllocatedVUs), so none is created mid-measurement."""
    if stage.mode != "open":
        raise ConfigError(f"stage {stage.label}: arrival-rate scenarios are for open-loop stages")
    arms = list(arms)
    if not arms:
        raise ConfigError("a stage needs at least one arm")
    if len(set(arms)) != len(arms):
        raise ConfigError(f"arm names repeat: {arms}")
    for arm in arms:
        if not _NAME.match(arm):
            raise ConfigError(f"arm {arm!r}: k6 scenario names allow letters, digits, '-' and '_' only")
    if isinstance(generators, bool) or not isinstance(generators, int) or generators < 1:
        raise ConfigError(f"generators must be a whole number >= 1, got {generators}")
    if duration_s < 1:
        raise ConfigError(f"k6 needs a duration of at least 1 s, got {duration_s}")
    if 0 < warmup_s < 1:
        raise ConfigError(f"k6 needs a warm-up of 0 or at least 1 s, got {warmup_s}")
    assert stage.rate_per_s is not None
    per_generator = stage.rate_per_s / generators
    rate, unit = k6_rate(per_generator)
    vus = preallocated_vus(per_generator, expected_latency_s, headroom)
    gap_s = 1.0 / (len(arms) * per_generator)
    scenarios: dict[str, dict[str, Any]] = {}
    for i, arm in enumerate(arms):

        def base(arm: str = arm) -> dict[str, Any]:  # fresh nested dicts for each scenario
            return {
                "executor": "constant-arrival-rate",
                "rate": rate,
                "timeUnit": unit,
                "preAllocatedVUs": vus,
                "maxVUs": vus,
                "env": {"ORCHBENCH_ARM": arm},
                "tags": {"arm": arm, "stage": stage.id},
            }

        offset = i * gap_s
        if warmup_s > 0:
            warm: dict[str, Any] = {
                **base(),
                "duration": k6_duration(warmup_s),
                "gracefulStop": "0s",
                "exec": "warmup",
            }
            if offset:
                warm["startTime"] = k6_duration(offset)
            scenarios[f"warmup-{arm}"] = warm
        measure: dict[str, Any] = {
            **base(),
            "duration": k6_duration(duration_s),
            "gracefulStop": k6_duration(timeout_s + 1),
            "exec": "measure",
        }
        if warmup_s + offset > 0:
            measure["startTime"] = k6_duration(warmup_s + offset)
        scenarios[f"measure-{arm}"] = measure
    return scenarios
