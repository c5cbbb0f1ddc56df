"""A reference service orchestrator, modelled on Seldon Core v1's executor for the tensorflow protocol.

REST  POST /v1/models/{m}/:predict and /v1/models/{m}:predict → upstream /v1/models/{m}:predict
      GET  /v1/models/{m}[...]                               → passed through
gRPC  tensorflow.serving.PredictionService/Predict           → passed through

Both transports forward over kept-alive connections, one upstream connection per client connection:
REST through an HTTP/1.1 forwarder whose requests and answers are parsed by `httptools` on `uvloop`,
gRPC through `serving.h2_forward` (a hand-written HTTP/2 frame forwarder). Both return the model's
answer unchanged (status and body) and mark it:
the REST header and the gRPC initial metadata `x-orchbench-orchestrator: executor`, which is how a
run verifies that its "with" arm really has the orchestrator on the request path and its "without"
arm has not. `--inject-delay-ms` holds every answer from the model for a known time before it goes
back to the client (the known-answer calibration), timed by `runtime.after_delay`.

Implementations (`--rest-impl`, `--grpc-impl`; `benchmarks/protocol_bench.py` measures them side by
side in one interleaved run; `benchmarks/README.md`, "Protocol code", has the figures and why the
defaults, marked *, are these: for REST the hand-written forwarder (serving/http_forward.py, removed
after that measurement) showed no lower jitter and no narrower CI, so the httptools one replaced it;
for gRPC the hand-written stack gave the narrower CI of the overhead):
  REST  httptools* serving.lib_rest_forward.HttptoolsForwarder (httptools parsers, on uvloop)
        aiohttp    serving.aiohttp_forward.AiohttpForwarder (aiohttp server and client session)
  gRPC  hand*      serving.h2_forward (hand-written HTTP/2 frame pass-through)
        grpcio     serving.lib_grpc_forward.GrpcAioForwarder (grpc.aio server and channel)
        h2         serving.lib_grpc_forward.H2LibForwarder (the `h2` package, on uvloop)
`--loop auto` runs uvloop for httptools and h2 unless grpcio is also served, asyncio otherwise.

    python -m serving.orchestrator --rest-port 8000 --upstream-rest 127.0.0.1:9100
    python -m serving.orchestrator --grpc-port 8000 --upstream-grpc 127.0.0.1:9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from serving import runtime

MARKER_KEY = "x-orchbench-orchestrator"
MARKER_VALUE = "executor"
REQUEST_TIMEOUT_S = 30.0
REST_IMPLS = ("httptools", "aiohttp")
GRPC_IMPLS = ("hand", "grpcio", "h2")
DEFAULT_REST_IMPL = "httptools"
DEFAULT_GRPC_IMPL = "hand"


def rewrite_path(path: str) -> str | None:
    """Seldon's '/v1/models/{m}/:predict' → '/v1/models/{m}:predict'; other /v1/models paths as-is."""
    if not path.startswith("/v1/models/"):
        return None
    if path.endswith("/:predict"):
        return path[: -len("/:predict")] + ":predict"
    return path


def build_arg_parser(prog: str = "python -m serving.orchestrator") -> argparse.ArgumentParser:
    ap = runtime.OneLineArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rest-port", type=runtime.port, default=None)
    ap.add_argument("--grpc-port", type=runtime.port, default=None)
    ap.add_argument(
        "--upstream-rest", type=runtime.host_port, default=None, help="host:port of the model's REST server"
    )
    ap.add_argument(
        "--upstream-grpc", type=runtime.host_port, default=None, help="host:port of the model's gRPC server"
    )
    ap.add_argument("--inject-delay-ms", type=float, default=0.0, help="hold every answer this long")
    ap.add_argument(
        "--rest-impl",
        choices=REST_IMPLS,
        default=DEFAULT_REST_IMPL,
        help="REST forwarder (default %(default)s; see below)",
    )
    ap.add_argument(
        "--grpc-impl",
        choices=GRPC_IMPLS,
        default=DEFAULT_GRPC_IMPL,
        help="gRPC forwarder (default %(default)s; see below)",
    )
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop")
    ap.add_argument("--cpus", default=None, help="pin this process to these CPUs, e.g. '1'")
    return ap


def use_uvloop(args: argparse.Namespace) -> bool:
    """`--loop auto`: uvloop for the httptools and h2 forwarders, unless grpc.aio shares the loop."""
    if args.loop != "auto":
        return bool(args.loop == "uvloop")
    rest = args.rest_port is not None and args.rest_impl == "httptools"
    grpc_h2 = args.grpc_port is not None and args.grpc_impl == "h2"
    grpcio = args.grpc_port is not None and args.grpc_impl == "grpcio"
    return (rest or grpc_h2) and not grpcio


async def _start_rest(
    args: argparse.Namespace, marker: tuple[str, str], delay_s: float, forwarders: list[Any]
) -> Any:
    if args.rest_impl == "aiohttp":
        from serving.aiohttp_forward import AiohttpForwarder

        fwd = AiohttpForwarder(args.upstream_rest, rewrite_path, marker, delay_s, REQUEST_TIMEOUT_S)
        forwarders.append(fwd)
        return await runtime.start_rest(fwd.handler, args.host, args.rest_port)
    from serving.lib_rest_forward import HttptoolsForwarder

    rest = HttptoolsForwarder(args.upstream_rest, rewrite_path, marker, delay_s, REQUEST_TIMEOUT_S)
    return await runtime.start_raw(rest.protocol, args.host, args.rest_port)


async def _start_grpc(
    args: argparse.Namespace, marker: tuple[str, str], delay_s: float, forwarders: list[Any]
) -> Any:
    if args.grpc_impl == "grpcio":
        from serving.lib_grpc_forward import GrpcAioForwarder

        fwd = GrpcAioForwarder(args.upstream_grpc, marker, delay_s)
        forwarders.append(fwd)
        return await runtime.start_grpc(fwd.handlers(), args.host, args.grpc_port)
    if args.grpc_impl == "h2":
        from serving.lib_grpc_forward import H2LibForwarder as Forwarder
    else:
        from serving.h2_forward import H2Forwarder as Forwarder  # type: ignore[assignment]
    grpc_fwd = Forwarder(args.upstream_grpc, marker, delay_s)
    return await runtime.start_raw(grpc_fwd.protocol, args.host, args.grpc_port)


async def amain(args: argparse.Namespace) -> int:
    runtime.pin_current_process(args.cpus)
    delay_s = max(0.0, args.inject_delay_ms) / 1000.0
    marker = (MARKER_KEY, MARKER_VALUE)

    forwarders: list[Any] = []  # the library forwarders' client sessions and channels, closed last

    async def start() -> list[Any]:
        listeners: list[Any] = []
        try:
            if args.rest_port is not None:
                listeners.append(await _start_rest(args, marker, delay_s, forwarders))
            if args.grpc_port is not None:
                listeners.append(await _start_grpc(args, marker, delay_s, forwarders))
        except runtime.BindError:
            await runtime.stop_listeners(listeners)
            await cleanup()
            raise
        return listeners

    async def cleanup() -> None:
        for fwd in forwarders:
            with contextlib.suppress(Exception):
                await fwd.close()

    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    desc = (
        f"orchestrator rest={args.rest_port}->{args.upstream_rest} ({args.rest_impl})"
        f" grpc={args.grpc_port}->{args.upstream_grpc} ({args.grpc_impl})"
        f" delay_ms={args.inject_delay_ms} loop={loop_name}"
    )
    return await runtime.serve_until_signal(start, desc, cleanup)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    args = (build_arg_parser(prog) if prog else build_arg_parser()).parse_args(argv)
    if (
        (args.rest_port is None) == (args.upstream_rest is None)
        and (args.grpc_port is None) == (args.upstream_grpc is None)
        and (args.rest_port is not None or args.grpc_port is not None)
    ):
        if use_uvloop(args):
            import uvloop

            runtime.exit_with(uvloop.run(amain(args)))
        runtime.exit_with(asyncio.run(amain(args)))
    print(
        "error: give --rest-port with --upstream-rest and/or --grpc-port with --upstream-grpc",
        file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
    main()
