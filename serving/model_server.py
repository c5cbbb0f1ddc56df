"""A model server speaking the subset of the TF Serving API the seed uses, for the flowers signature.

REST  POST /v1/models/{name}[/versions/{v}]:predict  {"instances":[{"image_bytes":{"b64":...},"key":"1"}]}
      → {"predictions":[{"scores":[top-5], "prediction": class, "key": "1", "label": "..."}]}
      GET  /v1/models/{name}  → TF Serving's model status (state AVAILABLE)
gRPC  tensorflow.serving.PredictionService/Predict (image_bytes, key → scores, prediction, key)

Errors are TF Serving's: HTTP 400 {"error": ...} / INVALID_ARGUMENT for bad input, 404 / NOT_FOUND
for an unknown model. Inference runs on the event loop thread by default (at concurrency 1 this is
the fastest: no thread hand-off); `--offload` runs it in one worker thread instead (REST, and gRPC
with `--grpc-server grpcio`).

gRPC is served by `serving.h2_grpc` (unary gRPC over HTTP/2 on an asyncio protocol, hand-written)
by default, or by grpcio's `grpc.aio` server with `--grpc-server grpcio`; both answer byte-for-byte
alike. Why the hand-written one stays the default is at the top of serving/h2_grpc.py (the figures:
benchmarks/README.md, "Protocol code").

    python -m serving.model_server --rest-port 9000 [--grpc-port 9001] [--model-name flowers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from aiohttp import web

from serving import grpc_call, h2_grpc, runtime, v2
from serving.model import BadImageError, Classifier, decode_image
from serving.protos import BadRequestError, make_predict_response, parse_predict_request, parse_rest_body
from serving.v2_server import V2Endpoints

MODEL_VERSION = 1
PREDICT_METHOD = "Predict"
SERVICE = "tensorflow.serving.PredictionService"
JSON_HEADERS = {"Content-Type": "application/json"}


class NotFoundError(LookupError):
    pass


def parse_model_path(path: str) -> tuple[str, str] | None:
    """'/v1/models/flowers:predict' → ('flowers', 'predict'); '/v1/models/flowers' → ('flowers', '').

    Also accepts '/v1/models/{name}/versions/{v}[:verb]' and '/v1/models/{name}/labels/{l}[:verb]'."""
    if not path.startswith("/v1/models/"):
        return None
    rest = path[len("/v1/models/") :]
    rest, _, verb = rest.partition(":")
    parts = rest.split("/")
    if (
        not parts[0]
        or (len(parts) not in (1, 3))
        or (len(parts) == 3 and parts[1] not in ("versions", "labels"))
    ):
        return None
    return parts[0], verb


class ModelService:
    """Request decoding, inference and answer encoding, independent of the transport's server."""

    def __init__(self, classifier: Classifier, model_name: str, version: int = MODEL_VERSION) -> None:
        self.classifier = classifier
        self.model_name = model_name
        self.version = version

    def check_name(self, name: str) -> None:
        if name != self.model_name:
            raise NotFoundError(f"Servable not found for request: Latest({name})")

    # REST ------------------------------------------------------------------------------------------
    def rest_instances(self, body: bytes) -> list[tuple[np.ndarray, Any]]:
        out = []
        for i, (raw, key) in enumerate(parse_rest_body(body)):
            try:
                out.append((decode_image(raw), key))
            except BadImageError as exc:
                raise BadRequestError(f"instance {i}: {exc}") from None
        return out

    def rest_predict(self, instances: list[tuple[np.ndarray, Any]]) -> bytes:
        preds = [self.classifier.predict_image(img).to_dict(key) for img, key in instances]
        return json.dumps({"predictions": preds}, separators=(",", ":")).encode()

    def status_json(self) -> bytes:
        status = {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        return json.dumps(status).encode()

    # gRPC ------------------------------------------------------------------------------------------
    def grpc_parse(self, data: bytes) -> tuple[np.ndarray, str | None]:
        req = parse_predict_request(data)
        if not req.model_name:
            raise BadRequestError("Missing ModelSpec")
        self.check_name(req.model_name)
        try:
            return decode_image(req.image), req.key
        except BadImageError as exc:
            raise BadRequestError(str(exc)) from None

    def grpc_predict(self, image: np.ndarray, key: str | None) -> bytes:
        return make_predict_response(self.classifier.predict_image(image), key, self.model_name, self.version)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode(), headers=JSON_HEADERS)


class ModelServer:
    def __init__(self, service: ModelService, offload: bool = False) -> None:
        self.service = service
        self.offload = offload
        self._pool: Any = None
        if offload:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        # the Open Inference Protocol routes (/v2/..., inference.GRPCInferenceService) on the same model
        self.v2 = V2Endpoints(service.classifier, service.model_name, service.version, self._run)

    async def _run(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        if self._pool is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def handle_rest(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(v2.REST_PREFIX):
            return await self.v2.handle_rest(request)
        try:
            parsed = parse_model_path(request.path)
            if parsed is None:
                return _error(404, f"Malformed request: {request.method} {request.path}")
            name, verb = parsed
            self.service.check_name(name)
            if request.method == "GET" and verb == "":
                return web.Response(body=self.service.status_json(), headers=JSON_HEADERS)
            if request.method != "POST" or verb != "predict":
                return _error(
                    404 if verb not in ("predict", "") else 405,
                    f"Malformed request: {request.method} {request.path}",
                )
            body = await request.read()
            instances = self.service.rest_instances(body)
            out = await self._run(self.service.rest_predict, instances)
            return web.Response(body=out, headers=JSON_HEADERS)
        except BadRequestError as exc:
            return _error(400, str(exc))
        except NotFoundError as exc:
            return _error(404, str(exc))
        except Exception as exc:  # never crash the server on one request
            return _error(500, f"Internal: {type(exc).__name__}: {exc}")

    async def handle_grpc(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            image, key = self.service.grpc_parse(request)
            return await self._run(self.service.grpc_predict, image, key)
        except BadRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        raise AssertionError("unreachable")  # context.abort raises

    def grpc_unary(self, request: bytes) -> bytes:
        """The Predict call for `serving.h2_grpc` (synchronous, on the event loop thread)."""
        try:
            image, key = self.service.grpc_parse(request)
        except BadRequestError as exc:
            raise grpc_call.GrpcError(grpc_call.INVALID_ARGUMENT, str(exc)) from None
        except NotFoundError as exc:
            raise grpc_call.GrpcError(grpc_call.NOT_FOUND, str(exc)) from None
        return self.service.grpc_predict(image, key)

    def grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        handler = grpc.unary_unary_rpc_method_handler(self.handle_grpc)  # raw bytes in and out
        return [
            grpc.method_handlers_generic_handler(SERVICE, {PREDICT_METHOD: handler}),
            *self.v2.grpcio_handlers(),
        ]

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def build_arg_parser(prog: str = "python -m serving.model_server") -> argparse.ArgumentParser:
    ap = runtime.OneLineArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rest-port", type=runtime.port, default=None)
    ap.add_argument("--grpc-port", type=runtime.port, default=None)
    ap.add_argument("--model-name", default="flowers")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    ap.add_argument("--offload", action="store_true", help="run inference in a worker thread")
    ap.add_argument(
        "--grpc-server",
        choices=("h2", "grpcio"),
        default="h2",
        help="gRPC implementation: serving.h2_grpc (hand-written; default) or grpcio's grpc.aio server",
    )
    ap.add_argument("--cpus", default=None, help="pin this process to these CPUs, e.g. '1'")
    return ap


async def amain(args: argparse.Namespace) -> int:
    runtime.pin_current_process(args.cpus)
    server = ModelServer(
        ModelService(Classifier(threads=args.threads), args.model_name), offload=args.offload
    )

    h2 = h2_grpc.GrpcH2Server({f"/{SERVICE}/{PREDICT_METHOD}": server.grpc_unary, **server.v2.h2_handlers()})

    async def start() -> list[Any]:
        listeners: list[Any] = []
        try:
            if args.rest_port is not None:
                listeners.append(await runtime.start_rest(server.handle_rest, args.host, args.rest_port))
            if args.grpc_port is not None and args.grpc_server == "grpcio":
                listeners.append(await runtime.start_grpc(server.grpc_handlers(), args.host, args.grpc_port))
            elif args.grpc_port is not None:
                listeners.append(await runtime.start_raw(h2.protocol, args.host, args.grpc_port))
        except runtime.BindError:
            await runtime.stop_listeners(listeners)
            raise
        return listeners

    async def cleanup() -> None:
        h2.goaway_all()
        await server.close()

    desc = f"model={args.model_name} rest={args.rest_port} grpc={args.grpc_port} ({args.grpc_server})"
    return await runtime.serve_until_signal(start, desc, cleanup)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    args = (build_arg_parser(prog) if prog else build_arg_parser()).parse_args(argv)
    if args.rest_port is None and args.grpc_port is None:
        print("error: give --rest-port and/or --grpc-port", file=sys.stderr)
        sys.exit(2)
    runtime.exit_with(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
