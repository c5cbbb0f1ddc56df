"""The capacity search of `orchbench run` (`load.stages.search`): the spec's rate sweep first, then
rounds of bisection until every arm's capacity is bracketed within the spec's resolution. Pure.

A round is one compiled workflow (orchbench.cli.capacity_run runs them) whose stages are the rates the
search proposes next; all arms are measured at every rate of a round, interleaved as in any stage,
on every transport of the spec. After each round the capacity table of all stages measured so far
(orchbench.core.capacity_sweep.capacity_table, the one set of rules: invalid stages, left-out
stages, non-monotonic noise) gives, per transport and arm, its bracket [last good, first bad); the
next rate of that arm (:func:`propose`) is

- *refining*: the bracket's midpoint, snapped to `grain_per_s`, while the bracket is wider than
  `resolution_per_s`;
- *climbing*: when no measured rate broke the SLO and the spec gives `max_per_s` above the highest
  rate measured: that rate plus `climb_per_s` (default: the sweep's last step), at most `max_per_s`;
- *descending*: when even the lowest rate measured broke it: half of that rate (not below the grain);
- or none, with the reason: bracketed, bracketed at the rate grain, a lower bound (no `max_per_s`
  or reached), already measured (a left-out stage), or below the grain.

A round measures the union of the proposals of every transport and arm (an arm measured at a rate
proposed for another learns from it too). The search stops when no arm proposes a rate, after
`max_rounds` rounds, or when the plan would exceed the stage limit; the record says which, and
lists every round with its rates and why each was proposed (`summary.json` `capacity_search`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchbench.core.errors import ConfigError
from orchbench.core.spec import Spec
from orchbench.core.spec_stages import MAX_STAGES, StageSearch

#: Rates closer than this are the same rate.
_EPS = 1e-9


@dataclass(frozen=True)
class Proposal:
    """One transport x arm's next rate (None: it is done) and why."""

    transport: str
    arm: str
    next_per_s: float | None
    reason: str
    last_good_per_s: float | None
    first_bad_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "arm": self.arm,
            "next_per_s": self.next_per_s,
            "reason": self.reason,
            "bracket_per_s": [self.last_good_per_s, self.first_bad_per_s],
        }


def _snap(rate: float, grain: float) -> float:
    return round(round(rate / grain) * grain, 9)


def _num(value: float) -> str:
    return f"{value:g}"


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def climb_step(rates: Iterable[float]) -> float:
    """The sweep's last step (the gap between its two highest rates); its only rate for one stage."""
    top = sorted(set(float(r) for r in rates))
    return top[-1] - top[-2] if len(top) > 1 else top[-1]


def propose(
    search: StageSearch,
    climb_per_s: float,
    last_good: float | None,
    first_bad: float | None,
    measured: set[float],
    transport: str = "",
    arm: str = "",
) -> Proposal:
    """The next rate for one transport x arm from its bracket (module docstring); `measured`: the
    rates already measured on this transport (any arm)."""
    grain = search.grain_per_s

    def make(nxt: float | None, reason: str) -> Proposal:
        return Proposal(transport, arm, nxt, reason, last_good, first_bad)

    if last_good is None and first_bad is None:
        return make(None, "no stage with a result for this arm")
    if first_bad is None:
        assert last_good is not None
        top = max(measured) if measured else last_good
        ceiling = search.max_per_s
        if ceiling is None:
            return make(None, f"no rate up to {_num(top)} req/s broke the SLO (a lower bound: no max_per_s)")
        if top >= ceiling - _EPS:
            return make(
                None, f"no rate up to the maximum {_num(ceiling)} req/s broke the SLO (a lower bound)"
            )
        nxt = min(_snap(top + (search.climb_per_s or climb_per_s), grain), ceiling)
        if nxt <= top + _EPS:
            return make(None, f"capacity >= {_num(top)} req/s (the climb step is below the rate grain)")
        return make(nxt, f"climbing: no rate up to {_num(top)} req/s broke the SLO")
    if last_good is None:
        nxt = _snap(first_bad / 2, grain)
        if nxt < grain - _EPS or nxt >= first_bad - _EPS or nxt in measured:
            return make(None, f"the lowest rate, {_num(first_bad)} req/s, breaks the SLO (at the rate grain)")
        return make(nxt, f"descending: the lowest rate measured, {_num(first_bad)} req/s, breaks the SLO")
    width = first_bad - last_good
    if width <= search.resolution_per_s + _EPS:
        return make(None, f"bracketed within {_num(width)} req/s")
    mid = _snap((last_good + first_bad) / 2, grain)
    if mid <= last_good + _EPS or mid >= first_bad - _EPS:
        return make(None, f"bracketed within {_num(width)} req/s (the rate grain)")
    if mid in measured:
        return make(None, f"bracketed within {_num(width)} req/s ({_num(mid)} req/s measured, left out)")
    return make(mid, f"refining [{_num(last_good)}, {_num(first_bad)}) req/s")


def measured_rates(summary: dict[str, Any], transport: str) -> set[float]:
    """The open-loop rates a summary.json has stages for on one transport."""
    stages = (summary.get(transport) or {}).get("stages") or []
    return {float(s["stage_value"]) for s in stages if s.get("stage_kind") == "rate"}


def proposals(spec: Spec, summary: dict[str, Any], climb_per_s: float) -> list[Proposal]:
    """Every transport x arm's proposal from a summary.json of all stages measured so far."""
    search = _search(spec)
    out = []
    for transport in spec.transports:
        measured = measured_rates(summary, transport)
        arms = (((summary.get(transport) or {}).get("capacity") or {}).get("arms")) or {}
        for arm in spec.arm_names():
            row = arms.get(arm) or {}
            out.append(
                propose(
                    search,
                    climb_per_s,
                    _opt(row.get("capacity_rps")),
                    _opt(row.get("first_bad_rps")),
                    measured,
                    transport,
                    arm,
                )
            )
    return out


def check(spec: Spec) -> None:
    """A search needs the SLO it searches against (one line, before anything starts)."""
    stages = spec.load.stages
    if stages is not None and stages.search is not None and spec.slo is None:
        raise ConfigError("load.stages.search: the capacity search needs an `slo` (p99_ms, max_error_rate)")


def _search(spec: Spec) -> StageSearch:
    stages = spec.load.stages
    if stages is None or stages.search is None:
        raise ValueError("the spec sets no load.stages.search")
    return stages.search


@dataclass
class SearchRecord:
    """What summary.json carries as `capacity_search` (built round by round)."""

    search: StageSearch
    rounds: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    final: list[Proposal] = field(default_factory=list)  # every transport x arm's last word

    def add_round(
        self, number: int, rates: list[float], why: list[Proposal], workflow_dir: str, order_seed: int
    ) -> None:
        self.rounds.append(
            {
                "round": number,
                "rates_per_s": rates,
                "workflow_dir": workflow_dir,
                "order_seed": order_seed,
                "proposed_by": [p.to_dict() for p in why],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.search.model_dump(),
            "rounds": self.rounds,
            "stopped": self.stopped,
            "final": [p.to_dict() for p in self.final],
            "line": self.line(),
        }

    def line(self) -> str:
        n = len(self.rounds)
        rates = sum(len(r["rates_per_s"]) for r in self.rounds)
        return f"capacity search: {n} round(s), {rates} rate(s) measured; stopped: {self.stopped}"


def next_round(
    spec: Spec, summary: dict[str, Any], record: SearchRecord, measured_total: int, climb_per_s: float
) -> tuple[list[float], list[Proposal]]:
    """The rates of the next round ([] when the search stops; `record.stopped` then says why) and
    every transport x arm's proposal (the moving ones first)."""
    search = _search(spec)
    props = proposals(spec, summary, climb_per_s)
    moving = [p for p in props if p.next_per_s is not None]
    if not moving:
        record.stopped = "every arm on every transport is done: " + "; ".join(
            f"{p.transport}/{p.arm}: {p.reason}" for p in props
        )
        return [], props
    if len(record.rounds) - 1 >= search.max_rounds:  # round 1 is the sweep
        record.stopped = (
            f"max_rounds ({search.max_rounds}) refinement rounds run; still moving: "
            + ", ".join(f"{p.transport}/{p.arm}" for p in moving)
        )
        return [], props
    rates = sorted({float(p.next_per_s) for p in moving if p.next_per_s is not None})
    if measured_total + len(rates) > MAX_STAGES:
        record.stopped = f"the next round would pass {MAX_STAGES} stages in all"
        return [], props
    return rates, moving + [p for p in props if p.next_per_s is None]


def round_spec(spec: Spec, rates: list[float], number: int) -> Spec:
    """A refinement round's spec: the sweep's spec with only `rates` as its stages, its own arm orders
    (order_seed + round number; round 1 is the sweep, with order_seed), no search of its own, and no
    floor step (the sweep's floor.json is the run's: a round's would be measured and thrown away)."""
    return spec.with_overrides(
        {
            "load.stages.rates": rates,
            "load.stages.search": None,
            "order_seed": spec.order_seed + number,
            "floor": False,
        }
    )


def merged_spec(spec: Spec, rates: Iterable[float]) -> Spec:
    """The spec the final compare runs with: every rate measured, in increasing order."""
    return spec.with_overrides({"load.stages.rates": sorted(set(rates)), "load.stages.search": None})


#: A search's refinement rounds run in the run directory's `search/round-K` (round 1, the sweep, in it).
SEARCH_DIR = "search"


def round_dir(number: int) -> str:
    return f"{SEARCH_DIR}/round-{number}"


#: Runs round `number` at `rates` (all rates measured so far, these included, in `measured`) and
#: returns the summary.json of every stage measured so far.
MeasureRound = Callable[[int, list[float], list[float]], dict[str, Any]]


def run_search(
    spec: Spec, sweep: dict[str, Any], measure: MeasureRound
) -> tuple[SearchRecord, dict[str, Any]]:
    """The search after the sweep (`sweep`: its summary.json): round after round of what
    :func:`next_round` asks for, each run by `measure`, until it stops. Returns the record, with its
    final proposals, and the last summary."""
    rates = [float(s.rate_per_s or 0) for s in spec.stage_plan()]
    climb = climb_step(rates)
    record = SearchRecord(_search(spec))
    record.add_round(1, sorted(rates), [], ".", spec.order_seed)
    summary, number = sweep, 1
    while True:
        todo, why = next_round(spec, summary, record, len(rates), climb)
        if not todo:
            break
        number += 1
        rates += todo
        summary = measure(number, todo, list(rates))
        moving = [p for p in why if p.next_per_s is not None]
        record.add_round(number, todo, moving, round_dir(number), spec.order_seed + number)
    record.final = proposals(spec, summary, climb)
    return record, summary
