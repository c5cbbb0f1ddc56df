"""Hand-written protocol code against library-built code, side by side in one interleaved run.

Each server or forwarder implementation of the local serving stack is a target; every cycle sends
one request to each target, in a fresh random order, so whatever the shared machine does at a
moment hits all targets alike (compare within one run, never across runs):

  model-rest            the model server's REST (aiohttp), the REST baseline
  model-grpc:hand       the model server's gRPC on serving.h2_grpc (hand-written HTTP/2), baseline
  model-grpc:grpcio     the same model server code on grpc.aio (--grpc-server grpcio)
  orch-rest:<impl>      the orchestrator's REST forwarder in front of the first model server:
                        httptools (uvloop; the default), httptools+asyncio, aiohttp (the
                        hand-written forwarder measured against them here was replaced)
  orch-grpc:<impl>      the orchestrator's gRPC forwarder in front of the first model server:
                        hand (serving.h2_forward, asyncio), hand+uvloop, h2 (uvloop), grpcio
  orch-grpc:hand>grpcio the hand-written gRPC forwarder in front of the grpc.aio model server

Per target: p50, IQR, p99 − p50, stdev of the per-request latency (jitter), and against its
baseline (the model server it fronts; model-grpc:grpcio against model-grpc:hand) the p50 added and
the 95 % CI half-width of that overhead computed the way orchbench does: the cycles cut into
blocks, per block the difference of p50s (and of means), a Student-t interval over blocks.

Clients are the thin ones of serving.client (one kept-alive connection per target), the same for
every target of a transport, so their own cost cancels. Servers are pinned to one CPU, the client
to another (when there are >= 2); all bind 127.0.0.1 on ephemeral ports and are stopped at the end.
Bounded: at most 5,000 cycles.

    .venv/bin/python benchmarks/protocol_bench.py [--cycles 1000] [--blocks 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchbench.core.paths import PAYLOADS
from serving.client import H2GrpcClient, HttpClient
from serving.runtime import free_port

MAX_CYCLES = 5_000
MARKER = "x-orchbench-orchestrator"
PREDICT = "/v1/models/flowers:predict"


def _start(module: str, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"serving.{module}", *args],
        stdin=subprocess.DEVNULL,
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


def _wait_rest(port: int, procs: list[subprocess.Popen[bytes]], timeout_s: float = 90.0) -> None:
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


def _wait_grpc(port: int, body: bytes, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with H2GrpcClient("127.0.0.1", port, timeout_s=2) as c:
                if c.call(body)[0] == 0:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"gRPC port {port} not ready after {timeout_s}s")


def _jitter(v: np.ndarray) -> dict[str, object]:
    q25, p50, q75, p90, p99 = np.percentile(v, [25, 50, 75, 90, 99])
    return {
        "n": len(v),
        "p50": float(p50),
        "iqr": float(q75 - q25),
        "p90": float(p90),
        "p99": float(p99),
        "p99_minus_p50": float(p99 - p50),
        "stdev": float(np.std(v, ddof=1)),
        "mean": float(np.mean(v)),
    }


def _block_ci(target: np.ndarray, base: np.ndarray, blocks: int) -> dict[str, float]:
    """orchbench's statistic: per block, target − baseline (p50 and mean); Student-t 95 % over blocks."""
    out: dict[str, float] = {}
    t = float(st.t.ppf(0.975, blocks - 1))
    for name, fn in (("p50", np.median), ("mean", np.mean)):
        diffs = [
            float(fn(a) - fn(b))
            for a, b in zip(np.array_split(target, blocks), np.array_split(base, blocks), strict=True)
        ]
        out[f"{name}_overhead"] = statistics.fmean(diffs)
        out[f"{name}_ci_half"] = t * statistics.stdev(diffs) / len(diffs) ** 0.5
    # per-cycle paired difference: the jitter this hop adds on top of its baseline's
    d = target - base
    out["paired_iqr"] = float(np.subtract(*np.percentile(d, [75, 25])))
    out["paired_stdev"] = float(np.std(d, ddof=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=1000, help="requests per target (default 1000)")
    ap.add_argument("--blocks", type=int, default=20, help="blocks for the overhead CI (default 20)")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up cycles, discarded (default 50)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    cycles = max(args.blocks * 2, min(args.cycles, MAX_CYCLES))
    blocks = max(2, args.blocks)

    cpus = sorted(os.sched_getaffinity(0))
    client_cpus = {cpus[0]} if len(cpus) >= 2 else set(cpus)
    pin = ["--cpus", ",".join(map(str, cpus[1:]))] if len(cpus) >= 2 else []

    rest_body = (PAYLOADS / "flowers.json").read_bytes()
    grpc_body = (PAYLOADS / "flowers.bin").read_bytes()
    host = "127.0.0.1"
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[HttpClient | H2GrpcClient] = []
    rest: dict[str, int] = {}
    grpc: dict[str, int] = {}
    try:
        m1r, m1g, m2r, m2g = (free_port() for _ in range(4))
        procs.append(
            _start(
                "model_server",
                ["--rest-port", str(m1r), "--grpc-port", str(m1g), "--grpc-server", "h2", *pin],
            )
        )
        procs.append(
            _start(
                "model_server",
                ["--rest-port", str(m2r), "--grpc-port", str(m2g), "--grpc-server", "grpcio", *pin],
            )
        )
        rest["model-rest"], grpc["model-grpc:hand"], grpc["model-grpc:grpcio"] = m1r, m1g, m2g
        # (rest impl, grpc impl, loop, REST label, gRPC label, upstream gRPC port); the hand-written
        # REST forwarder these figures once compared was replaced by httptools (benchmarks/README.md)
        orchs = [
            ("httptools", "hand", "asyncio", "httptools+asyncio", "hand", m1g),
            ("httptools", "hand", "uvloop", "httptools", "hand+uvloop", m1g),
            ("httptools", "h2", "uvloop", None, "h2", m1g),
            ("aiohttp", "grpcio", "asyncio", "aiohttp", "grpcio", m1g),
        ]
        for rest_impl, grpc_impl, loop, rest_label, grpc_label, up_grpc in orchs:
            r, g = free_port(), free_port()
            procs.append(
                _start(
                    "orchestrator",
                    [
                        *("--rest-port", str(r), "--upstream-rest", f"{host}:{m1r}"),
                        *("--grpc-port", str(g), "--upstream-grpc", f"{host}:{up_grpc}"),
                        *("--rest-impl", rest_impl, "--grpc-impl", grpc_impl, "--loop", loop, *pin),
                    ],
                )
            )
            if rest_label:
                rest[f"orch-rest:{rest_label}"] = r
            grpc[f"orch-grpc:{grpc_label}"] = g
        g2 = free_port()
        procs.append(
            _start(
                "orchestrator",
                ["--grpc-port", str(g2), "--upstream-grpc", f"{host}:{m2g}", "--grpc-impl", "hand", *pin],
            )
        )
        grpc["orch-grpc:hand>grpcio"] = g2
        for port in (m1r, m2r, *(p for k, p in rest.items() if k != "model-rest")):
            _wait_rest(port, procs)
        for port in grpc.values():
            _wait_grpc(port, grpc_body)

        # every implementation must give the same answer, with the marker exactly where it belongs
        targets: dict[str, Callable[[], object]] = {}
        ref_rest = ref_grpc = None
        for name, port in rest.items():
            c = HttpClient(host, port)
            clients.append(c)
            req = c.build("POST", PREDICT, rest_body)
            r0 = c.send_raw(req)
            ref_rest = ref_rest or r0.body
            if r0.status != 200 or r0.body != ref_rest or (MARKER in r0.headers) != name.startswith("orch"):
                raise RuntimeError(f"{name}: unexpected answer {r0.status} {r0.headers}")

            def rest_call(c: HttpClient = c, req: bytes = req) -> object:
                r = c.send_raw(req)
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
                return r

            targets[name] = rest_call
        for name, port in grpc.items():
            t = H2GrpcClient(host, port)
            clients.append(t)
            code, msg, answer = t.call(grpc_body)
            ref_grpc = ref_grpc or answer
            if code != 0 or answer != ref_grpc:
                raise RuntimeError(f"{name}: gRPC status {code} {msg}")

            def grpc_call(t: H2GrpcClient = t) -> object:
                code, msg, _ = t.call(grpc_body)
                if code != 0:
                    raise RuntimeError(f"gRPC status {code}: {msg}")
                return code

            targets[name] = grpc_call

        os.sched_setaffinity(0, client_cpus)
        names = list(targets)
        samples: dict[str, list[float]] = {k: [] for k in names}
        rng = random.Random(args.seed)
        started = time.monotonic()
        for i in range(args.warmup + cycles):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                t0 = time.perf_counter_ns()
                targets[name]()
                dt = (time.perf_counter_ns() - t0) / 1e6
                if i >= args.warmup:
                    samples[name].append(dt)
        wall = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
        _stop(procs)

    data = {k: np.array(v) for k, v in samples.items()}
    baseline = {k: "model-rest" for k in data if k.startswith("orch-rest")}
    baseline |= {k: "model-grpc:hand" for k in data if k.startswith("orch-grpc")}
    baseline["orch-grpc:hand>grpcio"] = "model-grpc:grpcio"
    baseline["model-grpc:grpcio"] = "model-grpc:hand"
    figures: dict[str, dict[str, object]] = {}
    for k, v in data.items():
        figures[k] = _jitter(v)
        if k in baseline:
            figures[k] |= {"baseline": baseline[k], **_block_ci(v, data[baseline[k]], blocks)}

    print(
        f"{cycles} interleaved cycles (+{args.warmup} warm-up) x {len(names)} targets in {wall:.0f} s; "
        f"client CPU {sorted(client_cpus)}, servers {cpus[1:] or cpus}; CI over {blocks} blocks"
    )
    print(
        "target                   p50    IQR  p99-p50  stdev | vs baseline:  +p50 ±CI95(p50)"
        "  +mean ±CI95(mean)  paired-sd"
    )
    for k, f in figures.items():
        line = f"{k:<22}{f['p50']:>7.3f}{f['iqr']:>7.3f}{f['p99_minus_p50']:>9.3f}{f['stdev']:>7.3f} |"
        if "baseline" in f:
            line += (
                f"{f['p50_overhead']:>+19.3f} ±{f['p50_ci_half']:.3f}    {f['mean_overhead']:>+7.3f} "
                f"±{f['mean_ci_half']:.3f}  {f['paired_stdev']:>8.3f}   ({f['baseline']})"
            )
        print(line)
    print("all figures in ms")
    if args.json:
        args.json.write_text(json.dumps({"cycles": cycles, "blocks": blocks, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
