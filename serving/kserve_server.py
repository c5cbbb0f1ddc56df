"""KServe's Python model server (PyPI `kserve`) serving the flowers model (`serving.kserve_model`).

Run with the Python of KServe's own virtual environment (orchbench.core.platform.kserve_local builds
it and puts this package on its path):

    python -m serving.kserve_server --model-path F.onnx --rest-port 9000 [--grpc-port 9001]

KServe's own pieces answer: its ModelServer's data plane and model repository, its FastAPI
application with the V1 (`/v1/models/{m}:predict`) and V2 (`/v2/models/{m}/infer`, health, metadata)
routes on uvicorn, and its gRPC `inference.GRPCInferenceService` servicer with its interceptors on
grpcio's asyncio server. What differs from `ModelServer.start()`, and why:
- every listener binds --host (127.0.0.1), on a socket bound here: `start()` binds 0.0.0.0 and [::];
- REST and gRPC only where a port is given (`start()` always serves REST): one arm, one transport;
- per-request logs (uvicorn's access log, the gRPC interceptor's line per call, KServe's latency
  line) are off unless --request-logs: each run's log would grow by ~100 bytes a request;
- SIGTERM, SIGINT and the run's lease (serving.lease) stop it, with a 2 s grace for open requests;
  a port that cannot be bound exits with serving.runtime.EXIT_BIND.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from serving import lease, runtime

GRACE_S = 2


def build_arg_parser(prog: str = "python -m serving.kserve_server") -> argparse.ArgumentParser:
    ap = runtime.OneLineArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rest-port", type=runtime.port, default=None)
    ap.add_argument("--grpc-port", type=runtime.port, default=None)
    ap.add_argument("--model-name", default="flowers")
    ap.add_argument(
        "--model-path", type=Path, required=True, help="the ONNX file (serving.model.build_model)"
    )
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    ap.add_argument("--cpus", default=None, help="pin this process to these CPUs, e.g. '1'")
    ap.add_argument("--request-logs", action="store_true", help="KServe's per-request log lines")
    return ap


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (SO_REUSEADDR as the bundled servers; no SO_REUSEPORT,
    so a port in use is refused). IPPROTO_TCP named, as uvicorn's own bind gets it from getaddrinfo:
    asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket says so, and with Nagle
    on, uvicorn's two writes per answer (headers, body) wait ~40 ms for the client's delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise runtime.BindError(host, port, exc.strerror or str(exc)) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _quiet() -> None:
    """uvicorn's access log and KServe's logger (its gRPC interceptor logs every call) to warnings."""
    for name in ("uvicorn.access", "kserve", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _grpc_server(model_server: Any, host: str, port: int) -> Any:
    """KServe's gRPC inference servicer and interceptors, as GRPCServer.start() sets them up, bound
    to host:port only."""
    from concurrent import futures

    from grpc import aio
    from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.servicer import InferenceServicer

    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=model_server.max_threads),
        interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
        options=[
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_LENGTH),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_LENGTH),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = InferenceServicer(model_server.dataplane, model_server.model_repository_extension)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise runtime.BindError(host, port, str(exc)) from None
    if bound != port:
        raise runtime.BindError(host, port, "address already in use")
    return server


async def amain(args: argparse.Namespace) -> int:
    import kserve
    import uvicorn
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    from serving.kserve_model import FlowersModel

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    unwatch = lease.watch_owner(loop, stop.set)

    model = FlowersModel(args.model_name, args.model_path, args.threads)
    model.load()
    model.enable_latency_logging = args.request_logs
    ms = kserve.ModelServer(workers=1, enable_grpc=False, grace_period=GRACE_S)
    ms.register_model(model)
    ms.setup_event_loop()  # KServe's default executor and exception handler on this loop

    rest: Any = None
    rest_task: asyncio.Task[Any] | None = None
    grpc_server: Any = None
    try:
        if args.rest_port is not None:
            sock = _listen(args.host, args.rest_port)
            app = RESTServer(
                FASTAPI_APP_IMPORT_STRING,
                ms.dataplane,
                ms.model_repository_extension,
                args.rest_port,
                grace_period=GRACE_S,
                timeout_keep_alive=ms.timeout_keep_alive,
            )
            app.create_application()  # KServe's routes, middlewares and error handlers on its app
            rest = uvicorn.Server(app.config)
            rest_task = asyncio.create_task(rest.serve(sockets=[sock]))
            while not rest.started and not rest_task.done():
                await asyncio.sleep(0.02)
            if rest_task.done():
                rest_task.result()
                print("error: uvicorn stopped while starting", file=sys.stderr, flush=True)
                return 1
        if args.grpc_port is not None:
            grpc_server = _grpc_server(ms, args.host, args.grpc_port)
            await grpc_server.start()
    except runtime.BindError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        if rest is not None:
            rest.should_exit = True
        return runtime.EXIT_BIND
    if not args.request_logs:
        _quiet()
    print(
        f"{runtime.READY_PREFIX} kserve {version('kserve')} model={args.model_name} "
        f"rest={args.rest_port} grpc={args.grpc_port}",
        flush=True,
    )
    # uvicorn holds SIGTERM / SIGINT while it serves and raises them again once it has stopped
    waits = [asyncio.create_task(stop.wait()), *([rest_task] if rest_task else [])]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    unwatch()
    if rest is not None and rest_task is not None:
        rest.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(rest_task, GRACE_S + 3)
    if grpc_server is not None:
        await grpc_server.stop(grace=GRACE_S)
    for task in waits:
        task.cancel()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    if args.rest_port is None and args.grpc_port is None:
        print("error: give --rest-port and/or --grpc-port", file=sys.stderr)
        sys.exit(2)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        sys.exit(2)
    runtime.pin_current_process(args.cpus)  # before KServe and onnxruntime start their threads
    sys.argv = sys.argv[:1]  # kserve.model_server parses the command line when it is imported
    runtime.exit_with(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
