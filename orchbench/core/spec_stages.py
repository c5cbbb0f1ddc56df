"""The spec's load plan and SLO sections: `load.stages` (open-loop rates or closed-loop concurrency
levels, orchbench.core.stages) and `slo` (the bound a rate must meet to count towards an arm's
capacity, orchbench.core.capacity). Pydantic models, strict like the other sections; a spec without
them reads, and compiles, exactly as before (they are left out of its dumps when unset)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from orchbench.core.errors import ConfigError
from orchbench.core.stages import Stage, plan_stages

#: As orchbench.core.spec_sections._CONFIG (not imported: that module imports this one).
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

#: Stages a plan may have: each is `blocks` k6 runs per transport.
MAX_STAGES = 50


class StageSearch(BaseModel):
    """`load.stages.search`: after the sweep of `rates`, `orchbench run` bisects each arm's capacity
    bracket in further rounds (orchbench.core.capacity_search) until it is at most `resolution_per_s`
    wide, climbing above the sweep up to `max_per_s` when no rate broke the SLO."""

    model_config = _CONFIG

    resolution_per_s: float = Field(
        gt=0,
        le=100_000,
        description="refine an arm until its bracket [last good, first bad) is this narrow",
    )
    grain_per_s: float = Field(1.0, gt=0, le=100_000, description="proposed rates are multiples of this")
    max_rounds: int = Field(4, ge=1, le=20, description="at most this many rounds after the sweep")
    max_per_s: float | None = Field(
        None, gt=0, le=100_000, description="climb above the sweep up to this rate when no rate broke the SLO"
    )
    climb_per_s: float | None = Field(
        None, gt=0, le=100_000, description="the climbing step (default: the sweep's last step)"
    )


class Stages(BaseModel):
    """`load.stages`: either `rates` (requests/s *per arm*, open loop: k6 constant-arrival-rate, one
    scenario per arm at the full rate) or `workers` (closed loop: that many VUs rotating the arms),
    each stage measured in every block with all arms interleaved and its own warm-up discarded."""

    model_config = _CONFIG

    rates: list[float] | None = Field(
        None, description="open loop: requests per second per arm, one stage each, in this order"
    )
    workers: list[int] | None = Field(
        None, description="closed loop: concurrent workers (k6 VUs), one stage each, in this order"
    )
    search: StageSearch | None = Field(
        None, description="refine each arm's capacity after the sweep of `rates` (needs an `slo`)"
    )
    expected_latency_ms: float = Field(
        250.0,
        gt=0,
        le=60_000,
        description="open loop: the latency k6's pre-allocated VUs are sized for (Little's law: rate x "
        "latency in flight, x2 headroom); a stage that still runs out of VUs drops iterations and is "
        "marked invalid",
    )

    @model_validator(mode="after")
    def _one_plan(self) -> Stages:
        if (self.rates is None) == (self.workers is None):
            raise ValueError("load.stages gives either rates or workers (not both, not neither)")
        values = self.rates if self.rates is not None else self.workers
        assert values is not None
        if len(values) > MAX_STAGES:
            raise ValueError(f"load.stages: at most {MAX_STAGES} stages, got {len(values)}")
        if self.search is not None and self.rates is None:
            raise ValueError("load.stages.search refines a sweep of rates (open loop), not of workers")
        for v in self.rates or []:
            if not 0 < v <= 100_000:
                raise ValueError(f"load.stages.rates: each rate must be in (0, 100000] requests/s, got {v:g}")
        for w in self.workers or []:
            if not 1 <= w <= 256:
                raise ValueError(f"load.stages.workers: each must be a whole number in 1..256, got {w}")
        try:
            plan_stages(self.rates, self.workers)
        except ConfigError as exc:
            raise ValueError(f"load.stages: {exc}") from None
        return self

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = dict(handler(self))
        if data.get("search") is None:  # a spec without a search dumps (and compiles) as before
            data.pop("search", None)
        return data

    def plan(self) -> list[Stage]:
        return plan_stages(self.rates, self.workers)


class Slo(BaseModel):
    """`slo`: a rate counts towards an arm's capacity when its p99 is within `p99_ms` and its error
    rate (failed and dropped requests over all it was asked for) at most `max_error_rate`."""

    model_config = _CONFIG

    p99_ms: float = Field(gt=0, le=600_000, description="the highest p99 latency (ms) a good rate may have")
    max_error_rate: float = Field(0.01, ge=0, lt=1, description="the highest error rate a good rate may have")
