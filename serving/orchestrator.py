"""A reference service orchestrator, modelled on Seldon Core v1's executor for the tensorflow protocol.

REST  POST /v1/models/{m}/:predict and /v1/models/{m}:predict → upstream /v1/models/{m}:predict
      GET  /v1/models/{m}[...]                               → passed through
gRPC  tensorflow.serving.PredictionService/Predict           → passed through

Both transports forward over kept-alive connections, one upstream connection per client connection:
REST through `serving.http_forward` (an HTTP/1.1 forwarder), gRPC through `serving.h2_forward` (an
HTTP/2 frame forwarder). Both return the model's answer unchanged (status and body) and mark it:
the REST header and the gRPC initial metadata `x-orchbench-orchestrator: executor`, which is how a
run verifies that its "with" arm really has the orchestrator on the request path and its "without"
arm has not. `--inject-delay-ms` holds every request for a known time before it is forwarded (the
known-answer calibration), timed by `runtime.after_delay`.

Why forwarders and not a web framework plus a gRPC server and client: this process stands for the
orchestrator in the local "with" arm, so what it costs itself must be as small as Python allows
(`benchmarks/README.md` has the figures); a Python gRPC server plus client cost about 0.5 ms a call.

    python -m serving.orchestrator --rest-port 8000 --upstream-rest 127.0.0.1:9100
    python -m serving.orchestrator --grpc-port 8000 --upstream-grpc 127.0.0.1:9100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from serving import runtime
from serving.h2_forward import H2Forwarder
from serving.http_forward import HttpForwarder

MARKER_KEY = "x-orchbench-orchestrator"
MARKER_VALUE = "executor"
REQUEST_TIMEOUT_S = 30.0


def rewrite_path(path: str) -> str | None:
    """Seldon's '/v1/models/{m}/:predict' → '/v1/models/{m}:predict'; other /v1/models paths as-is."""
    if not path.startswith("/v1/models/"):
        return None
    if path.endswith("/:predict"):
        return path[: -len("/:predict")] + ":predict"
    return path


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m serving.orchestrator", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rest-port", type=int, default=None)
    ap.add_argument("--grpc-port", type=int, default=None)
    ap.add_argument("--upstream-rest", default=None, help="host:port of the model's REST server")
    ap.add_argument("--upstream-grpc", default=None, help="host:port of the model's gRPC server")
    ap.add_argument("--inject-delay-ms", type=float, default=0.0)
    ap.add_argument("--cpus", default=None, help="pin this process to these CPUs, e.g. '1'")
    return ap


async def amain(args: argparse.Namespace) -> int:
    runtime.pin_current_process(args.cpus)
    delay_s = max(0.0, args.inject_delay_ms) / 1000.0
    marker = (MARKER_KEY, MARKER_VALUE)

    async def start() -> list[Any]:
        listeners: list[Any] = []
        try:
            if args.rest_port is not None:
                rest = HttpForwarder(args.upstream_rest, rewrite_path, marker, delay_s, REQUEST_TIMEOUT_S)
                listeners.append(await runtime.start_raw(rest.protocol, args.host, args.rest_port))
            if args.grpc_port is not None:
                grpc_fwd = H2Forwarder(args.upstream_grpc, marker, delay_s)
                listeners.append(await runtime.start_raw(grpc_fwd.protocol, args.host, args.grpc_port))
        except runtime.BindError:
            await runtime.stop_listeners(listeners)
            raise
        return listeners

    desc = (
        f"orchestrator rest={args.rest_port}->{args.upstream_rest}"
        f" grpc={args.grpc_port}->{args.upstream_grpc} delay_ms={args.inject_delay_ms}"
    )
    return await runtime.serve_until_signal(start, desc)


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    if (
        (args.rest_port is None) == (args.upstream_rest is None)
        and (args.grpc_port is None) == (args.upstream_grpc is None)
        and (args.rest_port is not None or args.grpc_port is not None)
    ):
        runtime.exit_with(asyncio.run(amain(args)))
    print(
        "error: give --rest-port with --upstream-rest and/or --grpc-port with --upstream-grpc",
        file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
    main()
