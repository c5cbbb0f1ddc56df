"""The measurement floor: how much latency the load tester itself reports against a server that does
nothing, on this machine, at concurrency 1.

Two no-op servers (serving/noop.py: a minimal asyncio HTTP/1.1 keep-alive server answering a 218-byte
prediction-shaped JSON body, and a gRPC PredictionService answering a pre-serialised PredictResponse
with a 5-float `scores` output) run in one child process (`python -m serving.noop`) pinned to one CPU;
each client runs pinned to another CPU: k6 through the same adapter and scripts as a real run (REST
and gRPC), and a minimal Python client (http.client keep-alive loop, grpc stub loop). The no-op
answers are shaped like predictions so the per-request checks of the real scripts pass; they cost
the server no more than an empty answer.

The same servers double as test targets (`RestNoopServer`, `GrpcNoopServer` here add the `Endpoint` a
load tool takes): `status` makes them answer errors (503 / UNAVAILABLE) and `record=True` keeps the
raw request bytes they received.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from orchbench.core.arms import Endpoint
from orchbench.core.errors import LoadTestError
from orchbench.core.loadtools._process import pin_command
from orchbench.fsio import write_bytes, write_text
from serving import noop
from serving.errors import ServingError
from serving.noop import MODEL_NAME, REST_ANSWER_BYTES, grpc_answer, rest_answer

__all__ = [
    "MODEL_NAME",
    "REST_ANSWER_BYTES",
    "GrpcNoopServer",
    "RestNoopServer",
    "default_payloads",
    "format_table",
    "grpc_answer",
    "measure_floor",
    "rest_answer",
    "run_floor_cli",
    "stats_ms",
    "synthetic_payloads",
]


# ---------------------------------------------------------------------------------------------------
# payloads


def _jpeg_bytes(side: int = 224, quality: int = 40) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, side, dtype=np.float64)
    base = (ramp[None, :, None] + ramp[:, None, None]) / 2
    noise = rng.normal(0, 24, size=(side, side, 3))
    img = np.clip(base + noise, 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def synthetic_payloads(directory: Path) -> tuple[Path, Path]:
    """Write a seed-shaped REST body (`{"instances":[{"image_bytes":{"b64":..},"key":"1"}]}`, ~16 KB)
    and the same image as a binary PredictRequest; return (json_path, bin_path)."""
    from tensorflow_serving.apis import predict_pb2

    directory.mkdir(parents=True, exist_ok=True)
    jpeg = _jpeg_bytes()
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(jpeg).decode()}, "key": "1"}]}
    json_path = directory / "flowers.json"
    write_text(json_path, json.dumps(body, separators=(",", ":")))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.model_spec.signature_name = "serving_default"
    for name, value in (("image_bytes", jpeg), ("key", b"1")):
        tensor = req.inputs[name]
        tensor.dtype = 7  # DT_STRING
        tensor.tensor_shape.dim.add().size = 1
        tensor.string_val.append(value)
    bin_path = directory / "flowers.bin"
    write_bytes(bin_path, req.SerializeToString())
    return json_path, bin_path


def default_payloads(scratch: Path) -> tuple[Path, Path]:
    """payloads/flowers.{json,bin} when the project ships them, else synthetic ones in `scratch`."""
    from orchbench.core.paths import PAYLOADS

    json_path, bin_path = PAYLOADS / "flowers.json", PAYLOADS / "flowers.bin"
    if json_path.is_file() and bin_path.is_file():
        return json_path, bin_path
    return synthetic_payloads(scratch)


# ---------------------------------------------------------------------------------------------------
# no-op servers (serving/noop.py), with the Endpoint a load tool takes


class RestNoopServer(noop.RestNoopServer):
    def start(self) -> Self:
        try:
            return super().start()
        except ServingError as exc:
            raise LoadTestError(str(exc)) from None

    def endpoint(self, arm: str = "without") -> Endpoint:
        return Endpoint("rest", arm, "127.0.0.1", self.port, MODEL_NAME)


class GrpcNoopServer(noop.GrpcNoopServer):
    def start(self) -> Self:
        try:
            return super().start()
        except ServingError as exc:
            raise LoadTestError(str(exc)) from None

    def endpoint(self, arm: str = "without") -> Endpoint:
        return Endpoint("grpc", arm, "127.0.0.1", self.port, MODEL_NAME)


# ---------------------------------------------------------------------------------------------------
# the minimal Python clients (each run in a pinned child process)


def python_rest_latencies_ns(
    url_host: str, port: int, path: str, body: bytes, n: int, warmup: int
) -> list[int]:
    conn = http.client.HTTPConnection(url_host, port, timeout=10)
    headers = {"Content-Type": "application/json"}
    out: list[int] = []
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            t1 = time.perf_counter_ns()
            if resp.status != 200:
                raise LoadTestError(f"python rest client: status {resp.status}")
            if i >= warmup:
                out.append(t1 - t0)
    finally:
        conn.close()
    return out


def python_grpc_latencies_ns(target: str, request: bytes, n: int, warmup: int) -> list[int]:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest.FromString(request)
    out: list[int] = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            resp = stub.Predict(req, timeout=10)
            t1 = time.perf_counter_ns()
            if "scores" not in resp.outputs:
                raise LoadTestError("python grpc client: answer has no 'scores' output")
            if i >= warmup:
                out.append(t1 - t0)
    return out


# ---------------------------------------------------------------------------------------------------
# pinning and the floor itself


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(client CPUs, server CPUs): one each when this process may use >= 2 CPUs, else no pinning."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[0]}, {allowed[1]}


def stats_ms(latencies_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/mean in ms (nearest-rank percentiles) and the count."""
    if not latencies_ns:
        raise ValueError("no latencies")
    ordered = sorted(latencies_ns)
    n = len(ordered)

    def pct(p: int) -> float:
        rank = max(1, -(-p * n // 100))  # ceil(p * n / 100), exact in integers
        return ordered[min(rank, n) - 1] / 1e6

    return {
        "n": n,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "mean_ms": statistics.fmean(ordered) / 1e6,
    }


def _run_python_client(args: list[str], cpus: set[int] | None, timeout_s: float) -> list[int]:
    cmd = pin_command([sys.executable, "-m", "orchbench.core.floor", "client", *args], cpus)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise LoadTestError(f"python floor client failed: {proc.stderr.strip().splitlines()[-1:]}")
    return [int(x) for x in json.loads(proc.stdout)]


def _k6_latencies_ns(
    endpoint: Endpoint, payload: Path, requests: int, warmup_s: float, out_dir: Path, cpus: set[int] | None
) -> tuple[list[int], str]:
    """k6 through the real adapter and scripts: `warmup_s` of warm-up, then exactly `requests`."""
    from orchbench.core.loadtools.base import LoadProfile
    from orchbench.core.loadtools.k6 import K6Tool
    from results_schema.samples import load_samples

    profile = LoadProfile(mode="closed", workers=1, duration_s=120.0, warmup_s=warmup_s, timeout_s=10.0)
    run = K6Tool().run(endpoint, payload, profile, out_dir, cpus=cpus, iterations=requests)
    assert run.samples_path is not None
    df = load_samples(run.samples_path, "k6", measure_only=True)
    return [int(x) for x in df["latency_ns"]], run.tool_version


def _python_args(transport: str, endpoint: Endpoint, payload: Path, requests: int, warmup: int) -> list[str]:
    args = [
        transport,
        "--port",
        str(endpoint.port),
        "--payload",
        str(payload),
        "-n",
        str(requests),
        "--warmup",
        str(warmup),
    ]
    if transport == "rest":
        args += ["--path", f"/v1/models/{endpoint.model_name}:predict"]
    return args


def _start_servers(cpus: set[int] | None) -> tuple[subprocess.Popen[str], dict[str, int]]:
    cmd = [sys.executable, "-m", "serving.noop", *(["--cpus", _cpu_arg(cpus)] if cpus else [])]
    server = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert server.stdout is not None
    ports = json.loads(server.stdout.readline() or "{}")
    if "rest_port" not in ports:
        _stop_servers(server)
        raise LoadTestError("floor: the no-op servers did not start")
    return server, ports


def _stop_servers(server: subprocess.Popen[str]) -> None:
    if server.stdin is not None:
        server.stdin.close()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def measure_floor(
    requests: int = 2000,
    warmup: int = 200,
    warmup_s: float = 1.0,
    out_dir: Path | None = None,
    tools: Sequence[str] = ("k6", "python"),
    transports: Sequence[str] = ("rest", "grpc"),
) -> dict[str, Any]:
    """Each (tool, transport) against the no-op servers, one after another, in one call, at
    concurrency 1: `requests` measured per pair, after `warmup_s` (k6) or `warmup` requests (Python);
    `transports`: the ones to measure (a run's own, in the floor step).

    Returns {"requests", "warmup", "warmup_s", "cpus": {"client", "server"}, "pinned", "payload_bytes",
    "k6_version", "host", "results": [{"tool", "transport", "n", "p50_ms", "p90_ms", "p99_ms",
    "mean_ms"}, ...]}.
    """
    if requests < 1 or warmup < 0:
        raise ValueError("requests must be >= 1 and warmup >= 0")
    if not transports or set(transports) - {"rest", "grpc"}:
        raise ValueError(f"transports must be some of rest, grpc, got {list(transports)}")
    client_cpus, server_cpus = split_cpus()
    results: list[dict[str, Any]] = []
    k6_version = None
    with tempfile.TemporaryDirectory(prefix="orchbench-floor-") as scratch_name:
        scratch = Path(scratch_name)
        work = out_dir or scratch
        json_path, bin_path = default_payloads(scratch / "payloads")
        payload_bytes = {"rest": json_path.stat().st_size, "grpc": bin_path.stat().st_size}
        server, ports = _start_servers(server_cpus)
        try:
            endpoints = {
                "rest": (Endpoint("rest", "without", "127.0.0.1", ports["rest_port"], MODEL_NAME), json_path),
                "grpc": (Endpoint("grpc", "without", "127.0.0.1", ports["grpc_port"], MODEL_NAME), bin_path),
            }
            budget_s = 60.0 + requests * 0.01
            for tool in tools:
                for transport, (endpoint, payload) in endpoints.items():
                    if transport not in transports:
                        continue
                    if tool == "k6":
                        lat, k6_version = _k6_latencies_ns(
                            endpoint, payload, requests, warmup_s, work / f"k6-{transport}", client_cpus
                        )
                    else:
                        lat = _run_python_client(
                            _python_args(transport, endpoint, payload, requests, warmup),
                            client_cpus,
                            budget_s,
                        )
                    results.append({"tool": tool, "transport": transport, **stats_ms(lat)})
        finally:
            _stop_servers(server)
    return {
        "requests": requests,
        "warmup": warmup,
        "warmup_s": warmup_s,
        "cpus": {"client": sorted(client_cpus or []), "server": sorted(server_cpus or [])},
        "pinned": client_cpus is not None,
        "payload_bytes": payload_bytes,
        "k6_version": k6_version,
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "results": results,
    }


def _cpu_arg(cpus: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or []))


def format_table(floor: dict[str, Any]) -> str:
    lines = [f"{'tool':<8}{'transport':<11}{'n':>7}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}"]
    for r in floor["results"]:
        lines.append(
            f"{r['tool']:<8}{r['transport']:<11}{r['n']:>7}{r['p50_ms']:>10.3f}{r['p90_ms']:>10.3f}"
            f"{r['p99_ms']:>10.3f}{r['mean_ms']:>10.3f}"
        )
    pin = floor["cpus"]
    lines.append(
        f"client CPUs {pin['client'] or 'any'}, server CPUs {pin['server'] or 'any'}; "
        f"{floor['requests']} requests per row at concurrency 1, after {floor['warmup_s']:g} s "
        f"(k6) / {floor['warmup']} requests (python) of warm-up"
    )
    return "\n".join(lines)


def run_floor_cli(json_out: bool, requests: int) -> None:
    """`orchbench floor`: measure and print a table or one JSON object."""
    result = measure_floor(requests=requests, warmup=min(200, requests))
    print(json.dumps(result, indent=2, sort_keys=True) if json_out else format_table(result))


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchbench.core.floor")
    sub = parser.add_subparsers(dest="cmd", required=True)
    client = sub.add_parser("client")
    client.add_argument("transport", choices=("rest", "grpc"))
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--path", default=f"/v1/models/{MODEL_NAME}:predict")
    client.add_argument("--payload", type=Path, required=True)
    client.add_argument("-n", type=int, required=True)
    client.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args(argv)
    body = args.payload.read_bytes()
    if args.transport == "rest":
        lat = python_rest_latencies_ns("127.0.0.1", args.port, args.path, body, args.n, args.warmup)
    else:
        lat = python_grpc_latencies_ns(f"127.0.0.1:{args.port}", body, args.n, args.warmup)
    print(json.dumps(lat))


if __name__ == "__main__":
    _main()
