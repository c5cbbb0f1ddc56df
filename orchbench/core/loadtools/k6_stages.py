"""k6 for load stages (orchbench.core.stages): the options of one stage, the measured window's CPU of
the load generator and of each arm's own processes, and what the summary says per arm.

**Open-loop stages** run one `constant-arrival-rate` scenario per arm (`measure-<arm>`, after its own
`warmup-<arm>`), each at the stage's *full* rate (divided only over load generators), so every arm
gets the requested rate; their starts are staggered by 1/(N·rate) so the arms' arrivals alternate
(stages.arrival_rate_scenarios). The script picks the arm's target from the scenario's env.

*Coordinated omission.* k6's constant-arrival-rate starts each iteration at its scheduled time on a
free pre-allocated VU, and its request latency is measured from that start; an arrival finding no free
VU is not delayed (which would hide the queueing a late generator causes) but dropped and counted in
`dropped_iterations`. So latency is measured from the scheduled send time as long as nothing is
dropped, and a stage that dropped anything is invalid (stages.judge_stage). The pool is sized by
Little's law (rate x the spec's expected latency in flight, x2 headroom, stages.preallocated_vus),
all VUs pre-allocated (maxVUs = preAllocatedVUs: none is created mid-measurement).

**Closed-loop stages** are `workers` VUs rotating the arms request by request, as the single-load
closed loop does (the measure phase lasts duration x arms).

**Measured window.** The script logs a marker from k6's `setup()` (after every VU is initialised, just
before the scenarios start); a thread waiting for it samples, with psutil (orchbench.core.resources),
k6's CPU (this step's descendants) and each arm's processes from the end of the warm-up to the end of
the measure phase. The generator's utilisation is its CPU seconds over the window's wall seconds
times the cores it may use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchbench.core.resources import ProcessSampler, ResourceUsage
from orchbench.core.stages import Stage, arrival_rate_scenarios, generator_utilisation

#: What k6's setup() logs (k6_scripts/common.js): the scenarios start right after it.
START_MARKER = "orchbench-scenarios-start"
#: How long to wait for the marker before giving up on the window (k6 failed to start, say).
MARKER_TIMEOUT_S = 60.0


def measure_selector(stage: Stage | None, arm: str) -> str:
    """The submetric selector of an arm's measured requests: its own scenario for an open-loop
    stage, the shared `measure` scenario and its `arm` tag otherwise."""
    if stage is not None and stage.mode == "open":
        return f"scenario:measure-{arm}"
    return f"scenario:measure,arm:{arm}"


def stage_options(
    stage: Stage,
    arms: Sequence[str],
    transport: str,
    *,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    expected_latency_s: float,
    generators: int,
    thresholds: Any,
) -> dict[str, Any]:
    """The k6 `scenarios` and `thresholds` of an open-loop stage (`thresholds(transport, selector,
    per_arm)`: the adapter's per-selector thresholds), with dropped iterations per arm."""
    scenarios = arrival_rate_scenarios(
        stage,
        arms,
        duration_s=duration_s,
        warmup_s=warmup_s,
        timeout_s=timeout_s,
        expected_latency_s=expected_latency_s,
        generators=generators,
    )
    out: dict[str, list[str]] = {}
    for arm in arms:
        sel = measure_selector(stage, arm)
        out.update(thresholds(transport, sel, True))
        out[f"dropped_iterations{{{sel}}}"] = ["count>=0"]
    return {"scenarios": scenarios, "thresholds": out}


def measured_window_s(stage: Stage | None, duration_s: float, arms: int) -> float:
    """The measure phase's length (s): an open-loop stage's arms run side by side for `duration_s`
    each; closed-loop arms rotate, so the phase lasts duration x arms."""
    if stage is not None and stage.mode == "open":
        return duration_s
    return duration_s * arms


def stagger_s(stage: Stage | None, arms: int, generators: int) -> float:
    """The last arm's measure scenario starts this much after the first's (open-loop stages)."""
    if stage is None or stage.mode != "open" or stage.rate_per_s is None:
        return 0.0
    return (arms - 1) / (arms * stage.rate_per_s / generators)


def counter(metrics: Mapping[str, Any], key: str) -> int:
    """A counter's `count` from handleSummary metrics (0 when the metric is absent: k6 leaves out a
    counter that never moved)."""
    metric = metrics.get(key)
    if not isinstance(metric, dict):
        return 0
    values = metric.get("values", metric)
    try:
        return int(values.get("count", 0))
    except (TypeError, ValueError, AttributeError):
        return 0


def dropped_per_arm(summary: Mapping[str, Any], stage: Stage | None, arms: Sequence[str]) -> dict[str, int]:
    """k6's dropped iterations of each arm's measure scenario (0 for closed-loop runs, which drop
    nothing)."""
    if stage is None or stage.mode != "open":
        return dict.fromkeys(arms, 0)
    metrics = summary.get("metrics") or {}
    return {a: counter(metrics, f"dropped_iterations{{{measure_selector(stage, a)}}}") for a in arms}


def loadtester_cores(cpus: set[int] | None) -> int:
    """The cores the load generator may run on: its pinned CPUs, else this process's affinity."""
    if cpus:
        return len(cpus)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class WindowSampler:
    """Samples the generator (this process's descendants) and each arm's processes over the measured
    window, found from k6's start marker in `log_path`. `groups`: arm -> pids (their children too)."""

    log_path: Path
    warmup_s: float
    window_s: float
    cores: int
    groups: Mapping[str, Sequence[int]] = field(default_factory=dict)
    generator: ResourceUsage | None = None
    arms: dict[str, ResourceUsage] = field(default_factory=dict)
    note: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> WindowSampler:
        self._thread = threading.Thread(target=self._run, name="orchbench-window", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _marker_seen(self) -> bool:
        with contextlib.suppress(OSError):
            return START_MARKER.encode() in self.log_path.read_bytes()
        return False

    def _run(self) -> None:
        deadline = time.monotonic() + MARKER_TIMEOUT_S
        while not self._marker_seen():
            if self._stop.wait(0.02) or time.monotonic() > deadline:
                self.note = "k6 never reached its scenarios: no measured window sampled"
                return
        if self.warmup_s > 0 and self._stop.wait(self.warmup_s):
            self.note = "k6 ended during its warm-up: no measured window sampled"
            return
        me = os.getpid()
        samplers: dict[str, ProcessSampler] = {}
        try:
            samplers["\0generator"] = ProcessSampler([me], interval_s=0.2, children=True).start()
            for arm, pids in self.groups.items():
                if pids:
                    samplers[arm] = ProcessSampler(pids, interval_s=0.2, children=True).start()
        except Exception as exc:  # a pid gone between the record and now: say so, keep the rest
            self.note = f"resource sampling failed to start: {type(exc).__name__}: {exc}"
        ended_early = self._stop.wait(self.window_s)
        for key, sampler in samplers.items():
            usage = sampler.stop()
            if key == "\0generator":  # k6 only: this step's own (idle, waiting) process left out
                own = usage.per_process_cpu_s.get(me, 0.0)
                usage = ResourceUsage(
                    cpu_s=max(0.0, usage.cpu_s - own),
                    peak_rss_bytes=usage.peak_rss_bytes,
                    wall_s=usage.wall_s,
                    samples=usage.samples,
                    pids=tuple(p for p in usage.pids if p != me),
                    per_process_cpu_s={p: c for p, c in usage.per_process_cpu_s.items() if p != me},
                )
                self.generator = usage
            else:
                self.arms[key] = usage
        if ended_early:
            self.note = "k6 ended before the measured window's end: the window sampled was shorter"

    def generator_record(self) -> dict[str, Any] | None:
        """k6's CPU over the window and its utilisation of its cores (None: not sampled)."""
        g = self.generator
        if g is None or not g.wall_s > 0:
            return None
        return {
            "cpu_s": round(g.cpu_s, 6),
            "wall_s": round(g.wall_s, 6),
            "cores": self.cores,
            "utilisation": round(generator_utilisation(g.cpu_s, g.wall_s, self.cores), 6),
            "peak_rss_mb": round(g.peak_rss_mb, 3),
            "pids": list(g.pids),
        }
