"""Step: the measurement floor (the load tester's own latency against a no-op endpoint) and the
model's own inference latency, recorded with every run so a reader knows the result's resolution."""

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchbench.core.spec import SHIPPED_PAYLOADS
from orchbench.fsio import write_text
from steps.common import load, log, out_dir, payload_file, step
from steps.loadtest import awake


def model_latency(payload_json: Path, requests: int, threads: int, cpus: list[int] | None) -> dict[str, Any]:
    """Raw onnxruntime inference incl. JPEG decode, as the model server does it, at concurrency 1."""
    from serving.model import Classifier

    jpeg = base64.b64decode(json.loads(payload_json.read_text())["instances"][0]["image_bytes"]["b64"])
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    try:
        clf = Classifier(threads=threads)
        for _ in range(10):
            clf.predict_bytes(jpeg)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter_ns()
            clf.predict_bytes(jpeg)
            times.append(time.perf_counter_ns() - t0)
    finally:
        os.sched_setaffinity(0, before)
    arr = np.array(times, dtype=float) / 1e6
    return {
        "p50_ms": round(float(np.median(arr)), 4),
        "mean_ms": round(float(arr.mean()), 4),
        "p99_ms": round(float(np.quantile(arr, 0.99)), 4),
        "requests": requests,
        "what": "onnxruntime inference incl. JPEG decode and preprocessing, in-process",
    }


@step
def floor(spec: str, state_dir: str) -> None:
    from orchbench.core.floor import measure_floor

    s = load(spec)
    out = out_dir("floor")
    with awake(s) as wake:
        result: dict[str, Any] = dict(
            measure_floor(
                requests=300, warmup=50, warmup_s=1.0, out_dir=out / "work", transports=tuple(s.transports)
            )
        )
    result["cpu_wake"] = wake
    for row in result.get("results", []):  # also keyed by tool and transport, as summary.json shows it
        result.setdefault(row["tool"], {})[row["transport"]] = {
            k: v for k, v in row.items() if k not in ("tool", "transport")
        }
    if s.platform == "local":
        from orchbench.core.platform.local import read_cpu_plan

        plan = read_cpu_plan(Path(state_dir)) or {}
        own = "rest" in s.transports and s.protocol == "tfserving"  # the model alone reads a TF body
        rest = payload_file(s, "rest")[0] if own else SHIPPED_PAYLOADS["rest"]
        result["model"] = model_latency(
            rest,
            100,
            s.local.model_threads,
            plan.get("serving_cpus") if plan.get("pinned") else None,
        )
    write_text(out / "floor.json", json.dumps(result, indent=2, sort_keys=True, default=str))
    log(f"floor written: {sorted(result)}")
