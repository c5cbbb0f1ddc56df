"""Steps: one block of one load stage (spec `load.stages`, orchbench.core.stages).

`loadtest_stage` measures every arm in one k6 process (interleave `request`): an open-loop stage as
one constant-arrival-rate scenario per arm at the stage's rate divided over `generators` (this task
is generator `generator` of them, with its own arm order), a closed-loop one as `workers` VUs rotating
the arms. Locally it samples each arm's own processes (from the deployment records) and k6's CPU over
the measured window (`resources`, `source: proc`); on a cluster it polls the metrics API for each arm's
hop containers (orchbench.core.platform.k8s_hops: found from the deploy tasks' records, `records`) over
the same window (`source: metrics-api`, or `source: absent` with the reason: the run goes on).
`loadtest_stage_arm` runs one arm at the stage's load (interleave `block`: any tool). Each arm's
`meta.json` carries the stage and what its judgement needs (dropped iterations, measured window, the
generator's CPU, the arm's resources).
"""

import contextlib
import json
from pathlib import Path
from typing import Any, cast

from orchbench.core.arms import Transport
from orchbench.core.errors import ConfigError, LoadTestError
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.core.spec import Spec
from orchbench.core.stages import Stage, stage_by_id
from steps.common import load, log, out_dir, record_path, step
from steps.loadtest import (
    _endpoint,
    _meta,
    _run_fields,
    _setup,
    _write_meta,
    awake,
    parse_endpoints,
    run_one_arm,
)


def _stage(s: Spec, stage: str) -> Stage:
    try:
        return stage_by_id(s.stage_plan(), stage)
    except KeyError:
        ids = ", ".join(x.id for x in s.stage_plan()) or "none"
        raise ConfigError(
            f"task is wired to stage {stage!r}, the spec's stages are {ids}: "
            "the workflow's arguments are wrong"
        ) from None


def _generator(generator: str, s: Spec) -> int:
    try:
        g = int(generator)
    except ValueError:
        raise ConfigError(f"generator must be a whole number, got {generator!r}") from None
    if not 0 <= g < s.load.generators:
        raise ConfigError(f"generator {g} of {s.load.generators}: the workflow's arguments are wrong")
    return g


def stage_fields(st: Stage, generator: int, generators: int) -> dict[str, Any]:
    """The stage as meta.json records it (the compare step reads these)."""
    return {
        "stage": st.to_dict(),
        "stage_id": st.id,
        "stage_kind": "rate" if st.mode == "open" else "workers",
        "stage_value": st.requested,
        "generator": generator,
        "generators": generators,
    }


def arm_pids(s: Spec, state_dir: str, transport: str, arms: list[str]) -> dict[str, list[int]]:
    """Locally, each arm's own processes from its deployment record (the ones still ours: same pid,
    start time and cmdline): the baseline's model server, the other arms' hop (orchestrator, nginx or
    HAProxy master; their workers are sampled as its children). Elsewhere: none."""
    if s.platform != "local":
        return {}
    from orchbench.core.platform.base import DeploymentRecord
    from orchbench.core.platform.local_procs import is_ours

    out: dict[str, list[int]] = {}
    for arm in arms:
        path = record_path(state_dir, cast(Transport, transport), arm)
        try:
            rec = DeploymentRecord.load(path)
        except (OSError, ValueError, TypeError):
            continue
        procs = rec.details.get("processes") or []
        out[arm] = [int(p["pid"]) for p in procs if isinstance(p, dict) and "pid" in p and is_ours(p)]
    return out


def _parse_endpoints(s: Spec, transport: str, endpoints: str) -> list[str]:
    return [str(t.get("arm")) for t in parse_endpoints(s, transport, endpoints)]


def _records(records: str) -> list[dict[str, Any]]:
    """The deploy tasks' `record` outputs (a JSON list; "" when the workflow passes none)."""
    if not records.strip():
        return []
    try:
        out = json.loads(records)
    except ValueError:
        raise ConfigError(
            "records is not a JSON list of deployment records: the workflow's arguments are wrong"
        ) from None
    if not isinstance(out, list) or not all(isinstance(r, dict) for r in out):
        raise ConfigError(
            "records is not a JSON list of deployment records: the workflow's arguments are wrong"
        )
    return out


def cluster_sampler(
    s: Spec, st: Stage, records: list[dict[str, Any]], order: list[str], out: Path, profile: LoadProfile
) -> Any:
    """On a cluster, the metrics-API sampler of this k6 run's measured window (its warm-up discarded,
    as locally); elsewhere None."""
    if s.platform != "kubernetes":
        return None
    from orchbench.core.loadtools.k6_stages import measured_window_s
    from orchbench.core.platform.k8s_metrics_window import cluster_window

    window_s = measured_window_s(st, profile.duration_s, len(order))
    return cluster_window(s, records, order, out / "k6.stderr.log", profile.warmup_s, window_s)


@step
def loadtest_stage(
    spec: str,
    state_dir: str,
    transport: str,
    stage: str,
    block: str,
    endpoints: str,
    generator: str = "0",
    records: str = "",
) -> None:
    """Every arm of one block of one stage in one k6 process; `endpoints`: the wait tasks' `endpoint`
    outputs in this generator's arm order; `records` (on a cluster): the deploy tasks' `record`
    outputs, by which each arm's pods are found for the metrics API. One folder per arm in the
    artifact."""
    from orchbench.core.loadtools.k6 import K6Tool

    s = load(spec)
    st = _stage(s, stage)
    g = _generator(generator, s)
    order = _parse_endpoints(s, transport, endpoints)
    targets = json.loads(endpoints)
    eps = [_endpoint(json.dumps(t), transport, a) for t, a in zip(targets, order, strict=True)]
    _s, payload, payload_bytes, profile, cpus = _setup(spec, state_dir, transport)
    profile = _profile(profile, st, s.load.generators)
    out = out_dir("raw")
    metas = {
        ep.arm: {
            **_meta(s, ep, target, block, payload, payload_bytes, profile, cpus),
            **stage_fields(st, g, s.load.generators),
            "interleave": "request",
            "pair_order": order,
        }
        for ep, target in eps
    }
    runs: dict[str, LoadRun] = {}
    # generator 0 samples the arms' resources, as locally (the others' requests count in compare)
    sampler = cluster_sampler(s, st, _records(records), order, out, profile) if g == 0 else None
    try:
        tool = K6Tool(max_error_rate=s.load.max_error_rate)
        if not tool.available():
            raise ConfigError("load stages with interleave 'request' need k6, which is not installed here")
        assert s.load.stages is not None
        with awake(s) as wake, sampler if sampler is not None else contextlib.nullcontext():
            for arm in order:
                metas[arm]["cpu_wake"] = wake
            runs = tool.run_arms(
                [ep for ep, _ in eps],
                payload,
                profile,
                out,
                cpus,
                stage=st,
                generators=s.load.generators,
                expected_latency_s=s.load.stages.expected_latency_ms / 1000,
                arm_pids=arm_pids(s, state_dir, transport, order) if g == 0 else None,
            )
        for arm in order:
            metas[arm].update(_run_fields(runs[arm]), **_stage_results(runs[arm]), status="ok")
        log(f"{transport} {st.label} block {block} generator {g}: k6 done")
    except LoadTestError as exc:
        runs = getattr(exc, "runs", None) or {}
        for arm in order:
            if arm in runs:
                metas[arm].update(_run_fields(runs[arm]), **_stage_results(runs[arm]))
            metas[arm].update(status="failed", error=str(exc))
        raise
    except BaseException as exc:
        for arm in order:
            metas[arm].update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for arm in order:
            if sampler is not None:
                metas[arm]["resources"] = sampler.record(arm)
            _write_meta(out / arm, metas[arm])


@step
def loadtest_stage_arm(
    spec: str, state_dir: str, endpoint: str, transport: str, arm: str, stage: str, block: str
) -> None:
    """One arm of one block of one stage (interleave `block`): the spec's tool at the stage's rate
    (open loop) or workers (closed loop)."""
    ep, target = _endpoint(endpoint, transport, arm)
    s = load(spec)
    st = _stage(s, stage)
    _s, payload, payload_bytes, profile, cpus = _setup(spec, state_dir, transport)
    profile = _profile(profile, st, 1)
    out = out_dir("raw")
    meta = {
        **_meta(s, ep, target, block, payload, payload_bytes, profile, cpus),
        **stage_fields(st, 0, 1),
        "interleave": "block",
        "measured_s": profile.duration_s,
        "dropped_iterations": None,
        "generator_cpu": None,
        "resources": None
        if s.platform != "kubernetes"
        else {
            "source": "absent",
            "reason": "interleave block: the metrics API is sampled in request-interleaved (k6) stages only",
        },
    }
    run_one_arm(s, ep, payload, profile, Path(out), cpus, meta, f"{transport} {st.label} block {block} {arm}")


def _profile(profile: LoadProfile, st: Stage, generators: int) -> LoadProfile:
    """The run's profile at the stage's load (an open-loop rate is this generator's share)."""
    if st.mode == "open":
        assert st.rate_per_s is not None
        return LoadProfile(
            mode="open",
            workers=profile.workers,
            rate=st.rate_per_s / generators,
            duration_s=profile.duration_s,
            warmup_s=profile.warmup_s,
            timeout_s=profile.timeout_s,
        )
    assert st.workers is not None
    return LoadProfile(
        mode="closed",
        workers=st.workers,
        rate=None,
        duration_s=profile.duration_s,
        warmup_s=profile.warmup_s,
        timeout_s=profile.timeout_s,
    )


def _stage_results(run: LoadRun) -> dict[str, Any]:
    x = run.extra
    resources = x.get("resources")
    if isinstance(resources, dict):  # this machine's processes, from /proc (orchbench.core.resources)
        resources = {"source": "proc", **resources}
    return {
        "measured_s": x.get("measured_s"),
        "dropped_iterations": x.get("dropped_iterations"),
        "generator_cpu": x.get("generator"),
        "resources": resources,
        "window_note": x.get("window_note", ""),
    }
