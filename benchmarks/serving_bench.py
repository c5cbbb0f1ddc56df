"""Serving-stack micro-benchmark: what the model server and the orchestrator add, at concurrency 1.

One run measures, with the shipped flowers payload, N requests each (in interleaved rounds so slow
drifts of the machine hit every target alike):
  raw        onnxruntime inference incl. JPEG decode + preprocessing, in-process (on the serving CPU)
  model-rest / model-grpc    the model server directly
  orch-rest  / orch-grpc     through the orchestrator
REST uses a kept-alive raw-socket client (serving.client.HttpClient); gRPC is timed twice, with
grpcio's sync client (model-grpc, orch-grpc) and with the thin blocking HTTP/2 client
(serving.client.H2GrpcClient: model-grpc-thin, orch-grpc-thin), the REST client's counterpart.
Servers are pinned to one CPU and the client to another (when there are >= 2). The benchmark starts
and stops its own servers on ephemeral loopback ports.

    .venv/bin/python benchmarks/serving_bench.py [-n 1200] [--rounds 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchbench.core.paths import PAYLOADS
from serving.client import GrpcClient, H2GrpcClient, HttpClient
from serving.model import Classifier
from serving.runtime import free_port

MAX_REQUESTS = 20_000


def _start(module: str, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"serving.{module}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_ready(port: int, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a server exited during start-up")
        try:
            with HttpClient("127.0.0.1", port, timeout_s=1) as c:
                if c.request("GET", "/v1/models/flowers").status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"port {port} not ready after {timeout_s}s")


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1200, help="requests per target (default 1200)")
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds (default 40)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up requests per target and round (default 5)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    n = max(1, min(args.n, MAX_REQUESTS))
    rounds = max(1, min(args.rounds, n))
    per_round = max(1, n // rounds)

    cpus = sorted(os.sched_getaffinity(0))
    client_cpus, server_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else (set(cpus), set(cpus))
    pin = ["--cpus", ",".join(map(str, sorted(server_cpus)))] if len(cpus) >= 2 else []

    rest_body = (PAYLOADS / "flowers.json").read_bytes()
    grpc_body = (PAYLOADS / "flowers.bin").read_bytes()
    jpeg = base64.b64decode(json.loads(rest_body)["instances"][0]["image_bytes"]["b64"])
    mr, mg, orr, og = (free_port() for _ in range(4))
    procs = [_start("model_server", ["--rest-port", str(mr), "--grpc-port", str(mg), *pin])]
    procs.append(
        _start(
            "orchestrator",
            [
                "--rest-port",
                str(orr),
                "--grpc-port",
                str(og),
                "--upstream-rest",
                f"127.0.0.1:{mr}",
                "--upstream-grpc",
                f"127.0.0.1:{mg}",
                *pin,
            ],
        )
    )
    clients: list[HttpClient | GrpcClient | H2GrpcClient] = []
    try:
        classifier = Classifier()
        _wait_ready(mr, procs)
        _wait_ready(orr, procs)
        model_rest, orch_rest = HttpClient("127.0.0.1", mr), HttpClient("127.0.0.1", orr)
        model_grpc, orch_grpc = GrpcClient(f"127.0.0.1:{mg}"), GrpcClient(f"127.0.0.1:{og}")
        model_thin, orch_thin = H2GrpcClient("127.0.0.1", mg), H2GrpcClient("127.0.0.1", og)
        clients = [model_rest, orch_rest, model_grpc, orch_grpc, model_thin, orch_thin]
        mr_req = model_rest.build("POST", "/v1/models/flowers:predict", rest_body)
        or_req = orch_rest.build("POST", "/v1/models/flowers:predict", rest_body)

        def raw() -> object:
            return classifier.predict_bytes(jpeg)

        def check(resp: object) -> object:
            if getattr(resp, "status", 200) != 200:
                raise RuntimeError(f"bad answer {resp}")
            return resp

        def check_call(result: tuple[int, str, bytes]) -> object:
            if result[0] != 0:
                raise RuntimeError(f"gRPC status {result[0]}: {result[1]}")
            return result

        targets: dict[str, Callable[[], object]] = {
            "raw": raw,
            "model-rest": lambda: check(model_rest.send_raw(mr_req)),
            "model-grpc": lambda: model_grpc.predict_raw(grpc_body),
            "orch-rest": lambda: check(orch_rest.send_raw(or_req)),
            "orch-grpc": lambda: orch_grpc.predict_raw(grpc_body),
            "model-grpc-thin": lambda: check_call(model_thin.call(grpc_body)),
            "orch-grpc-thin": lambda: check_call(orch_thin.call(grpc_body)),
        }
        samples: dict[str, list[float]] = {k: [] for k in targets}
        rng = random.Random(1)
        for _ in range(rounds):
            order = list(targets)
            rng.shuffle(order)
            for name in order:
                # raw inference runs where the servers run; requests are sent from the client CPU
                os.sched_setaffinity(0, server_cpus if name == "raw" else client_cpus)
                _timed(targets[name], args.warmup)
                samples[name] += _timed(targets[name], per_round)
    finally:
        for c in clients:
            c.close()
        _stop(procs)

    stats = {
        k: {
            "p50": float(np.percentile(v, 50)),
            "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)),
            "mean": float(np.mean(v)),
            "n": len(v),
        }
        for k, v in samples.items()
    }
    derived = {
        "server_adds_rest_p50": stats["model-rest"]["p50"] - stats["raw"]["p50"],
        "server_adds_grpc_p50": stats["model-grpc"]["p50"] - stats["raw"]["p50"],
        "orchestrator_adds_rest_p50": stats["orch-rest"]["p50"] - stats["model-rest"]["p50"],
        "orchestrator_adds_grpc_p50": stats["orch-grpc"]["p50"] - stats["model-grpc"]["p50"],
        "server_adds_grpc_thin_p50": stats["model-grpc-thin"]["p50"] - stats["raw"]["p50"],
        "orchestrator_adds_grpc_thin_p50": stats["orch-grpc-thin"]["p50"] - stats["model-grpc-thin"]["p50"],
    }
    print(
        f"CPUs: client {sorted(client_cpus)}, servers {sorted(server_cpus)}; {rounds} rounds, "
        f"{per_round} requests per target and round (+{args.warmup} warm-up)"
    )
    print(f"{'target':<16}{'n':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for k, s in stats.items():
        print(f"{k:<16}{s['n']:>6}{s['p50']:>10.3f}{s['p90']:>10.3f}{s['p99']:>10.3f}{s['mean']:>10.3f}")
    for k, v in derived.items():
        print(f"{k:<34}{v:>8.3f} ms")
    if args.json:
        args.json.write_text(json.dumps({"stats": stats, "derived": derived}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
