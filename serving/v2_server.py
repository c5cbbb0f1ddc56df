"""The Open Inference Protocol's model-server side for the flowers model: routes, REST handlers and the
gRPC methods for either gRPC server (`serving.h2_grpc` or grpcio's `grpc.aio`). The messages, the
parsers and the answer checks are in `serving.v2` (the load-test side imports only that).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import service_pb2

from serving import grpc_call
from serving.model import BadImageError, Prediction, decode_image
from serving.protos import BadRequestError
from serving.v2 import (
    INFER_METHOD,
    INFER_PATH,
    INPUT_NAME,
    JSON_HEADERS,
    OUTPUTS,
    PLATFORM,
    REST_PREFIX,
    SERVER_NAME,
    SERVICE,
    InferRequest,
    NotFoundError,
    grpc_answer,
    output_tensors,
    parse_infer_request,
    parse_rest_infer,
    rest_answer,
)

if TYPE_CHECKING:
    import grpc
    from aiohttp import web

    from serving.model import Classifier


@dataclass(frozen=True)
class Route:
    kind: str  # live | ready | server_metadata | model_metadata | model_ready | infer
    model: str | None = None
    version: str | None = None


def parse_path(path: str) -> Route | None:
    """'/v2/models/flowers/infer' → Route('infer', 'flowers', None); None for no v2 route."""
    if path != REST_PREFIX and not path.startswith(REST_PREFIX + "/"):
        return None
    rest_of_path = path[len(REST_PREFIX) :].strip("/")
    parts = rest_of_path.split("/") if rest_of_path else []
    if not parts:
        return Route("server_metadata")
    if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        return Route(parts[1])
    if parts[0] != "models" or len(parts) < 2 or not parts[1]:
        return None
    model, rest, version = parts[1], parts[2:], None
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            return None
        version, rest = rest[1], rest[2:]
    if not rest:
        return Route("model_metadata", model, version)
    if rest in (["ready"], ["infer"]):
        return Route("model_ready" if rest == ["ready"] else "infer", model, version)
    return None


@contextlib.contextmanager
def _h2_status() -> Iterator[None]:
    """Errors of a call as `serving.grpc_call` statuses (for `serving.h2_grpc`)."""
    try:
        yield
    except BadRequestError as exc:
        raise grpc_call.GrpcError(grpc_call.INVALID_ARGUMENT, str(exc)) from None
    except NotFoundError as exc:
        raise grpc_call.GrpcError(grpc_call.NOT_FOUND, str(exc)) from None
    except Exception as exc:  # a protobuf DecodeError of a small request
        raise grpc_call.GrpcError(grpc_call.INVALID_ARGUMENT, f"{type(exc).__name__}: {exc}") from None


def _h2_wrapped(fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def handler(data: bytes) -> bytes:
        with _h2_status():
            return fn(data)

    return handler


class V2Endpoints:
    """The v2 routes of the model server, on the same classifier as its TF-Serving routes.

    `run(fn, *args)` runs inference (the server's offload choice); `handle_rest` takes every request
    under /v2, `h2_handlers()` and `grpcio_handlers()` the gRPC methods for either gRPC server."""

    def __init__(
        self,
        classifier: Classifier,
        model_name: str,
        version: int | str,
        run: Callable[..., Awaitable[bytes]],
    ) -> None:
        self.classifier = classifier
        self.model_name = model_name
        self.version = str(version)
        self.run = run

    def check_model(self, name: str, version: str | None) -> None:
        if name != self.model_name:
            raise NotFoundError(f"model {name!r} not found (this server has {self.model_name!r})")
        if version not in (None, "", self.version):
            raise NotFoundError(f"model {name!r} has no version {version!r} (it has {self.version!r})")

    def _decode(self, req: InferRequest) -> Any:
        try:
            return decode_image(req.image)
        except BadImageError as exc:
            raise BadRequestError(f"input {INPUT_NAME!r}: {exc}") from None

    def metadata(self) -> dict[str, Any]:
        tensors = output_tensors(Prediction([0.0] * 5, [0] * 5, 0, ""))
        return {
            "name": self.model_name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": n, "datatype": tensors[n][0], "shape": tensors[n][1]} for n in OUTPUTS],
        }

    def infer_rest(self, req: InferRequest, image: Any) -> bytes:
        return rest_answer(self.classifier.predict_image(image), req, self.model_name, self.version)

    def infer_grpc(self, req: InferRequest, image: Any) -> bytes:
        return grpc_answer(self.classifier.predict_image(image), req, self.model_name, self.version)

    # REST ------------------------------------------------------------------------------------------
    async def handle_rest(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        def answer(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
            body = doc if isinstance(doc, bytes) else json.dumps(doc, separators=(",", ":")).encode()
            return web.Response(status=status, body=body, headers={**JSON_HEADERS, **(headers or {})})

        try:
            route = parse_path(request.path)
            if route is None:
                return answer(404, {"error": f"no such Open Inference Protocol route: {request.path}"})
            wanted = "POST" if route.kind == "infer" else "GET"
            if request.method != wanted:
                return answer(
                    405,
                    {"error": f"{request.method} not allowed on {request.path}; use {wanted}"},
                    {"Allow": wanted},
                )
            if route.kind in ("live", "ready"):
                return answer(200, {route.kind: True})
            if route.kind == "server_metadata":
                return answer(200, {"name": SERVER_NAME, "version": "1", "extensions": []})
            assert route.model is not None
            self.check_model(route.model, route.version)
            if route.kind == "model_ready":
                return answer(200, {"name": self.model_name, "ready": True})
            if route.kind == "model_metadata":
                return answer(200, self.metadata())
            req = parse_rest_infer(await request.read())
            image = self._decode(req)
            return answer(200, await self.run(self.infer_rest, req, image))
        except BadRequestError as exc:
            return answer(400, {"error": str(exc)})
        except NotFoundError as exc:
            return answer(404, {"error": str(exc)})
        except Exception as exc:  # never crash the server on one request
            return answer(500, {"error": f"Internal: {type(exc).__name__}: {exc}"})

    # gRPC ------------------------------------------------------------------------------------------
    def _infer_parse(self, data: bytes) -> tuple[InferRequest, Any]:
        req = parse_infer_request(data)
        self.check_model(req.model_name, req.model_version)
        return req, self._decode(req)

    def _model_ready(self, data: bytes) -> bytes:
        req = service_pb2.ModelReadyRequest.FromString(data)
        try:
            self.check_model(req.name, req.version)
            ready = True
        except NotFoundError:
            ready = False
        return service_pb2.ModelReadyResponse(ready=ready).SerializeToString()

    def _model_metadata(self, data: bytes) -> bytes:
        req = service_pb2.ModelMetadataRequest.FromString(data)
        self.check_model(req.name, req.version)
        meta = self.metadata()
        resp = service_pb2.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for key in ("inputs", "outputs"):
            for t in meta[key]:
                getattr(resp, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return resp.SerializeToString(deterministic=True)

    def _small_methods(self) -> dict[str, Callable[[bytes], bytes]]:
        return {
            "ServerLive": lambda _d: service_pb2.ServerLiveResponse(live=True).SerializeToString(),
            "ServerReady": lambda _d: service_pb2.ServerReadyResponse(ready=True).SerializeToString(),
            "ServerMetadata": lambda _d: service_pb2.ServerMetadataResponse(
                name=SERVER_NAME, version="1"
            ).SerializeToString(),
            "ModelReady": self._model_ready,
            "ModelMetadata": self._model_metadata,
        }

    def _h2_infer(self, data: bytes) -> bytes:
        with _h2_status():
            req, image = self._infer_parse(data)
        return self.infer_grpc(req, image)

    def h2_handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        """{"/inference.GRPCInferenceService/Method": fn} for `serving.h2_grpc.GrpcH2Server`."""
        out: dict[str, Callable[[bytes], bytes]] = {INFER_PATH: self._h2_infer}
        for method, fn in self._small_methods().items():
            out[f"/{SERVICE}/{method}"] = _h2_wrapped(fn)
        return out

    def grpcio_handlers(self) -> list[grpc.GenericRpcHandler]:
        """The same methods as a generic handler for grpcio's `grpc.aio` server (raw bytes in and out)."""
        import grpc

        async def call(fn: Callable[[bytes], Any], data: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return fn(data)
            except BadRequestError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except NotFoundError as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            except Exception as exc:  # a protobuf DecodeError of a small request
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(exc).__name__}: {exc}")
            raise AssertionError("unreachable")  # context.abort raises

        async def infer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            req, image = await call(self._infer_parse, data, context)
            return await self.run(self.infer_grpc, req, image)

        def small(fn: Callable[[bytes], bytes]) -> Callable[..., Awaitable[bytes]]:
            async def handler(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
                return await call(fn, data, context)

            return handler

        handlers = {INFER_METHOD: grpc.unary_unary_rpc_method_handler(infer)}
        for method, fn in self._small_methods().items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(small(fn))
        return [grpc.method_handlers_generic_handler(SERVICE, handlers)]
