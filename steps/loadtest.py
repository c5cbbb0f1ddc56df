"""Step: load-test one arm for one block; the tool's raw JSON and samples are the output artifact.

`meta.json` beside them says what was measured (transport, arm, block, tool, command, payload hash,
CPU placement, arm evidence) so the compare step never has to guess from file names or logs. It is
written on every exit path: a failed block keeps what it measured.
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any, cast

from orchbench.arms import Endpoint, Transport
from orchbench.errors import ConfigError, LoadTestError
from orchbench.loadtools.base import LoadProfile, LoadRun
from steps.common import load, log, out_dir, step

META = "meta.json"


def _cpus(platform: str, state_dir: str) -> set[int] | None:
    if platform != "local":
        return None
    from orchbench.platform.local import read_cpu_plan

    plan = read_cpu_plan(Path(state_dir))
    if plan and plan.get("pinned") and plan.get("loadtester_cpus"):
        return {int(c) for c in plan["loadtester_cpus"]}
    return None


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


@step
def loadtest(spec: str, state_dir: str, endpoint: str, transport: str, arm: str, block: str) -> None:
    from orchbench.loadtools.registry import get_tool

    s = load(spec)
    target = json.loads(endpoint)
    ep = Endpoint.from_dict(target)
    if (ep.transport, ep.arm) != (transport, arm):
        raise ConfigError(
            f"task for {transport}/{arm} is wired to the {ep.transport}/{ep.arm} endpoint: "
            "the workflow's arguments are wrong"
        )
    payload = s.resolve(s.payloads[cast(Transport, transport)])
    try:
        payload_bytes = payload.read_bytes()
    except OSError as exc:
        raise ConfigError(f"payload {payload}: {exc.strerror}") from None
    if not payload_bytes:
        raise ConfigError(f"payload {payload} is empty")
    profile = LoadProfile(
        mode=s.load.mode,
        workers=s.load.workers,
        rate=s.load.rate,
        duration_s=s.load.duration_s,
        warmup_s=s.load.warmup_s,
        timeout_s=s.load.timeout_s,
    )
    out = out_dir("raw")
    cpus = _cpus(s.platform, state_dir)
    meta: dict[str, Any] = {
        "experiment": s.name,
        "transport": transport,
        "arm": arm,
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
    tool = get_tool(s.load.tool, cast(Transport, transport), max_error_rate=s.load.max_error_rate)
    try:
        run = tool.run(ep, payload, profile, out, cpus)
        meta.update(_run_fields(run), status="ok")
        log(f"{transport} block {block} {arm}: {run.tool} done")
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
        (out / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
