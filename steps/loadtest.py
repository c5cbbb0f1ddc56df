"""Steps: load-test the arms of one block; the tool's raw JSON and samples are the output artifact.

`loadtest` runs one arm (interleave `block`: the seed's way, any tool). `loadtest_arms` runs every arm
in one k6 process that rotates them request by request (interleave `request`), so all arms meet
the same moments of a noisy machine; its artifact holds one folder per arm (`with/`, `without/`, ...),
each laid out like a `loadtest` artifact, plus k6's combined files (`loadtest_pair`: the seed's two
arms, for workflows compiled before).

`meta.json` beside each arm's files says what was measured (transport, arm, block, tool, command,
payload hash, CPU placement, arm evidence) so the compare step never has to guess from file names or
logs. It is written on every exit path: a failed block keeps what it measured.
"""

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchbench.core.arms import ARMS, Endpoint
from orchbench.core.errors import ConfigError, LoadTestError
from orchbench.core.loadtools import cpu_wake
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.core.loadtools.rotation import balanced_rotation
from orchbench.core.spec import Spec
from orchbench.fsio import write_text
from steps.common import load, log, out_dir, payload_file, step

META = "meta.json"


def _cpus(platform: str, state_dir: str) -> set[int] | None:
    if platform != "local":
        return None
    from orchbench.core.platform.local import read_cpu_plan

    plan = read_cpu_plan(Path(state_dir))
    if plan and plan.get("pinned") and plan.get("loadtester_cpus"):
        return {int(c) for c in plan["loadtester_cpus"]}
    return None


@contextlib.contextmanager
def awake(s: Spec) -> Iterator[dict[str, Any]]:
    """The spec's CPU wake-up latency held while inside (cpu_wake.hold); yields the record for
    meta.json, and says in a line when it was asked for and could not be held."""
    with cpu_wake.hold(s.load.cpu_wake_latency_us) as wake:
        if s.load.cpu_wake_latency_us is not None and not wake["held"]:
            log(f"CPU wake-up latency not held ({wake['reason']}): idle CPUs sleep as they would")
        yield wake


def _run_fields(run: LoadRun) -> dict[str, Any]:
    return {
        "tool": run.tool,
        "tool_version": run.tool_version,
        "raw": run.raw_path.name if run.raw_path else None,
        "samples": run.samples_path.name if run.samples_path else None,
        "command": run.command,
        "exit_code": run.exit_code,
        "started_at_ns": run.started_at_ns,
        "ended_at_ns": run.ended_at_ns,
        "extra": run.extra,
    }


def _endpoint(endpoint: str, transport: str, arm: str) -> tuple[Endpoint, dict[str, Any]]:
    target = json.loads(endpoint)
    ep = Endpoint.from_dict(target)
    if (ep.transport, ep.arm) != (transport, arm):
        raise ConfigError(
            f"task for {transport}/{arm} is wired to the {ep.transport}/{ep.arm} endpoint: "
            "the workflow's arguments are wrong"
        )
    return ep, target


def _setup(
    spec: str, state_dir: str, transport: str
) -> tuple[Spec, Path, bytes, LoadProfile, set[int] | None]:
    s = load(spec)
    payload, payload_bytes = payload_file(s, transport)
    profile = LoadProfile(
        mode=s.load.mode,
        workers=s.load.workers,
        rate=s.load.rate,
        duration_s=s.load.duration_s,
        warmup_s=s.load.warmup_s,
        timeout_s=s.load.timeout_s,
    )
    return s, payload, payload_bytes, profile, _cpus(s.platform, state_dir)


def _meta(
    s: Spec,
    ep: Endpoint,
    target: dict[str, Any],
    block: str,
    payload: Path,
    payload_bytes: bytes,
    profile: LoadProfile,
    cpus: set[int] | None,
) -> dict[str, Any]:
    return {
        "experiment": s.name,
        "transport": ep.transport,
        "arm": ep.arm,
        "block": int(block),
        "platform": s.platform,
        "endpoint": ep.to_dict(),
        "evidence": target.get("evidence"),
        "profile": profile.to_dict(),
        "payload": str(payload.name),
        "payload_sha256": hashlib.sha256(payload_bytes).hexdigest(),
        "loadtester_cpus": sorted(cpus) if cpus else None,
        "status": "running",
        "written_at_ns": time.time_ns(),
    }


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    write_text(folder / META, json.dumps(meta, indent=2, sort_keys=True, default=str))


def run_one_arm(
    s: Spec,
    ep: Endpoint,
    payload: Path,
    profile: LoadProfile,
    out: Path,
    cpus: set[int] | None,
    meta: dict[str, Any],
    label: str,
) -> None:
    """One arm's load test (block mode), its meta.json written whatever happens: status ok with the
    run's fields, or failed with the error (and the failed run's fields when the tool got that far)."""
    from orchbench.core.loadtools.registry import get_tool

    tool = get_tool(s.load.tool, ep.transport, max_error_rate=s.load.max_error_rate)
    try:
        with awake(s) as meta["cpu_wake"]:
            run = tool.run(ep, payload, profile, out, cpus)
        meta.update(_run_fields(run), status="ok")
        log(f"{label}: {run.tool} done")
    except LoadTestError as exc:
        failed_run = getattr(exc, "run", None)
        if failed_run is not None:
            meta.update(_run_fields(failed_run))
        meta.update(status="failed", error=str(exc))
        raise
    except BaseException as exc:
        meta.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _write_meta(out, meta)


@step
def loadtest(spec: str, state_dir: str, endpoint: str, transport: str, arm: str, block: str) -> None:
    ep, target = _endpoint(endpoint, transport, arm)
    s, payload, payload_bytes, profile, cpus = _setup(spec, state_dir, transport)
    meta = _meta(s, ep, target, block, payload, payload_bytes, profile, cpus)
    meta["interleave"] = "block"
    run_one_arm(s, ep, payload, profile, out_dir("raw"), cpus, meta, f"{transport} block {block} {arm}")


def parse_endpoints(s: Spec, label: str, endpoints: str) -> list[dict[str, Any]]:
    """An interleaved task's `endpoints` (a JSON list of the wait tasks' outputs), in the block's
    order; ConfigError when it is not such a list or names other arms than the spec's."""
    try:
        targets = json.loads(endpoints)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"endpoints: not a JSON list of endpoints ({exc.msg})") from None
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise ConfigError("endpoints: not a JSON list of endpoints")
    order = [str(t.get("arm")) for t in targets]
    if sorted(order) != sorted(s.arm_names()):
        raise ConfigError(
            f"task for {label} is wired to arms {order}, the spec has {s.arm_names()}: "
            "the workflow's arguments are wrong"
        )
    return targets


@step
def loadtest_arms(spec: str, state_dir: str, transport: str, block: str, endpoints: str) -> None:
    """Every arm of one block in one k6 process rotating them request by request (interleave
    `request`). `endpoints`: a JSON list of the wait tasks' `endpoint` outputs, in the block's order
    (VU n starts at arm (n - 1) mod N); one folder per arm in the artifact."""
    s = load(spec)
    targets = parse_endpoints(s, f"{transport} block {block}", endpoints)
    order = [str(t.get("arm")) for t in targets]
    _interleaved(
        s,
        spec,
        state_dir,
        transport,
        block,
        [_endpoint(json.dumps(t), transport, a) for t, a in zip(targets, order, strict=True)],
    )


@step
def loadtest_pair(
    spec: str,
    state_dir: str,
    transport: str,
    block: str,
    first: str,
    endpoint_with: str,
    endpoint_without: str,
) -> None:
    """The seed's two arms alternating (workflows compiled before `loadtest_arms`)."""
    if first not in ARMS:
        raise ConfigError(f"first must be one of {', '.join(ARMS)}, got {first!r}")
    eps = {
        "with": _endpoint(endpoint_with, transport, "with"),
        "without": _endpoint(endpoint_without, transport, "without"),
    }
    order = [first, *(a for a in ARMS if a != first)]
    _interleaved(load(spec), spec, state_dir, transport, block, [eps[a] for a in order])


def _interleaved(
    s: Spec, spec: str, state_dir: str, transport: str, block: str, eps: list[tuple[Endpoint, dict[str, Any]]]
) -> None:
    from orchbench.core.loadtools.k6 import K6Tool

    _s, payload, payload_bytes, profile, cpus = _setup(spec, state_dir, transport)
    out = out_dir("raw")
    order = [ep.arm for ep, _ in eps]
    # with injected delays: every arm after every ordered pair of arms equally often (the carry-over
    # of held answers the same for every arm; orchbench.core.loadtools.rotation)
    rotation = balanced_rotation(len(order)) if s.delays_injected() else None
    by_arm = {ep.arm: (ep, target) for ep, target in eps}
    metas = {
        arm: {
            **_meta(s, by_arm[arm][0], by_arm[arm][1], block, payload, payload_bytes, profile, cpus),
            "interleave": "request",
            "pair_order": order,
            **({"rotation": [order[i] for i in rotation]} if rotation else {}),
        }
        for arm in order
    }
    runs: dict[str, LoadRun] = {}
    try:
        tool = K6Tool(max_error_rate=s.load.max_error_rate)
        if not tool.available():
            raise ConfigError("load.interleave 'request' needs k6, which is not installed here")
        with awake(s) as wake:
            for arm in order:
                metas[arm]["cpu_wake"] = wake
            runs = tool.run_arms([ep for ep, _ in eps], payload, profile, out, cpus, rotation=rotation)
        for arm in order:
            metas[arm].update(_run_fields(runs[arm]), status="ok")
        log(f"{transport} block {block} {'/'.join(order)} (rotating): k6 done")
    except LoadTestError as exc:
        runs = getattr(exc, "runs", None) or {}
        failed = getattr(exc, "run", None)
        for arm in order:
            run = runs.get(arm)
            if run is not None:
                metas[arm].update(_run_fields(run))
            elif failed is not None:  # k6 failed as a whole: its combined files sit one level up
                fields = _run_fields(failed)
                for key in ("raw", "samples"):
                    fields[key] = f"../{fields[key]}" if fields[key] else None
                metas[arm].update(fields)
            # an arm whose own check passed still fails with its block: the block is one measurement
            metas[arm].update(status="failed", error=str(exc))
        raise
    except BaseException as exc:
        for arm in order:
            metas[arm].update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for arm in order:
            _write_meta(out / arm, metas[arm])
