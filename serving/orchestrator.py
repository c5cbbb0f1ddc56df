"""A reference service orchestrator, modelled on Seldon Core v1's executor for the tensorflow protocol.

REST  POST /v1/models/{m}/:predict and /v1/models/{m}:predict → upstream /v1/models/{m}:predict
      GET  /v1/models/{m}[...]                               → passed through
gRPC  tensorflow.serving.PredictionService/Predict           → forwarded as raw bytes

It forwards over kept-alive connections (REST: `serving.http_forward`, one upstream connection per
client connection; gRPC: one grpc.aio channel), returns
the model's answer unchanged (body and status) and marks it: REST header and gRPC initial metadata
`x-orchbench-orchestrator: executor`. `--inject-delay-ms` adds a known delay per request (used to
calibrate the measurement): asyncio.sleep for all but the last ~1.5 ms, then a busy-wait on
perf_counter, because asyncio.sleep alone overshoots sub-millisecond delays by tens of µs or more.

    python -m serving.orchestrator --rest-port 8000 --upstream-rest 127.0.0.1:9100
    python -m serving.orchestrator --grpc-port 8000 --upstream-grpc 127.0.0.1:9100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import grpc

from serving import runtime
from serving.http_forward import HttpForwarder

MARKER_KEY = "x-orchbench-orchestrator"
MARKER_VALUE = "executor"
GRPC_METHOD = "/tensorflow.serving.PredictionService/Predict"
_MARKER_METADATA = ((MARKER_KEY, MARKER_VALUE),)
#: Below this much remaining delay, busy-wait instead of sleeping.
_SPIN_S = 0.0015


async def inject_delay(delay_s: float) -> None:
    """Wait `delay_s` precisely: sleep for the bulk, spin for the last stretch."""
    if delay_s <= 0:
        return
    deadline = time.perf_counter() + delay_s
    if delay_s > _SPIN_S:
        await asyncio.sleep(delay_s - _SPIN_S)
    while time.perf_counter() < deadline:
        pass


def rewrite_path(path: str) -> str | None:
    """Seldon's '/v1/models/{m}/:predict' → '/v1/models/{m}:predict'; other /v1/models paths as-is."""
    if not path.startswith("/v1/models/"):
        return None
    if path.endswith("/:predict"):
        return path[: -len("/:predict")] + ":predict"
    return path


class Orchestrator:
    def __init__(
        self,
        upstream_rest: str | None,
        upstream_grpc: str | None,
        delay_ms: float = 0.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.upstream_rest = upstream_rest
        self.upstream_grpc = upstream_grpc
        self.delay_s = max(0.0, delay_ms) / 1000.0
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._predict: Any = None

    def rest_forwarder(self) -> HttpForwarder:
        assert self.upstream_rest is not None
        return HttpForwarder(
            self.upstream_rest, rewrite_path, (MARKER_KEY, MARKER_VALUE), self.delay_s, self.timeout_s
        )

    async def open(self) -> None:
        if self.upstream_grpc:
            self._channel = grpc.aio.insecure_channel(
                self.upstream_grpc,
                options=[
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ("grpc.max_send_message_length", 64 * 1024 * 1024),
                    ("grpc.keepalive_time_ms", 30_000),
                ],
            )
            # No (de)serializers: the request and the answer stay bytes end to end.
            self._predict = self._channel.unary_unary(GRPC_METHOD)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def handle_grpc(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if self.delay_s:
            await inject_delay(self.delay_s)
        await context.send_initial_metadata(_MARKER_METADATA)
        try:
            return bytes(await self._predict(request, timeout=self.timeout_s))
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        raise AssertionError("unreachable")  # context.abort raises

    def grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        handler = grpc.unary_unary_rpc_method_handler(self.handle_grpc)
        return [
            grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": handler})
        ]


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
    orch = Orchestrator(args.upstream_rest, args.upstream_grpc, args.inject_delay_ms)
    await orch.open()

    async def start() -> list[Any]:
        listeners: list[Any] = []
        try:
            if args.rest_port is not None:
                forwarder = orch.rest_forwarder()
                listeners.append(await runtime.start_raw(forwarder.protocol, args.host, args.rest_port))
            if args.grpc_port is not None:
                listeners.append(await runtime.start_grpc(orch.grpc_handlers(), args.host, args.grpc_port))
        except runtime.BindError:
            await runtime.stop_listeners(listeners)
            raise
        return listeners

    desc = (
        f"orchestrator rest={args.rest_port}->{args.upstream_rest}"
        f" grpc={args.grpc_port}->{args.upstream_grpc} delay_ms={args.inject_delay_ms}"
    )
    return await runtime.serve_until_signal(start, desc, orch.close)


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
