"""No-op servers: a minimal asyncio HTTP/1.1 keep-alive server answering a 218-byte prediction-shaped
JSON body, and a gRPC PredictionService answering a pre-serialised PredictResponse with a 5-float
`scores` output. They do nothing else, so a load tester measured against them shows its own latency
(orchbench's measurement floor, orchbench/core/floor.py, runs `python -m serving.noop` pinned to one
CPU). The answers are shaped like predictions so the per-request checks of the real load-test scripts
pass; they cost the server no more than an empty answer.

The same servers double as test targets: `status` makes them answer errors (503 / UNAVAILABLE) and
`record=True` keeps the raw request bytes they received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from serving.errors import ServingError
from serving.payloads import MODEL_NAME

REST_ANSWER_BYTES = 218
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"

# ---------------------------------------------------------------------------------------------------
# answers


def rest_answer(size: int = REST_ANSWER_BYTES) -> bytes:
    """A TF-Serving-shaped answer (`predictions[0].scores`) padded with JSON whitespace to `size`."""
    body = json.dumps(
        {"predictions": [{"scores": [0.0125, 0.0234, 0.9312, 0.0198, 0.0131], "prediction": 2, "key": "1"}]},
        separators=(",", ":"),
    ).encode()
    if len(body) > size:
        raise ValueError(f"answer needs {len(body)} bytes, more than {size}")
    return body[:-1] + b" " * (size - len(body)) + b"}"


def grpc_answer() -> bytes:
    """A serialised PredictResponse with outputs['scores'] (DT_FLOAT, shape [1, 5])."""
    from tensorflow_serving.apis import predict_pb2

    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = MODEL_NAME
    scores = resp.outputs["scores"]
    scores.dtype = 1  # DT_FLOAT
    scores.tensor_shape.dim.add().size = 1
    scores.tensor_shape.dim.add().size = 5
    scores.float_val.extend([0.0125, 0.0234, 0.9312, 0.0198, 0.0131])
    return resp.SerializeToString()


# ---------------------------------------------------------------------------------------------------
# servers


class HttpNoop(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive: enough for k6, vegeta and http.client."""

    def __init__(self, response: bytes, received: list[bytes] | None) -> None:
        self.response = response
        self.received = received
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            idx = head.find(b"content-length:")
            length = int(head[idx + 15 :].split(b"\r\n", 1)[0]) if idx >= 0 else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            if self.received is not None:
                self.received.append(bytes(self.buf[end + 4 : total]))
            del self.buf[:total]
            assert self.transport is not None
            self.transport.write(self.response)


def http_response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 503: "Service Unavailable", 500: "Internal Server Error"}.get(status, "Status")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def serve_in_thread(
    protocol: Callable[[], asyncio.Protocol], port: int, name: str, on_stop: Callable[[], None] | None = None
) -> tuple[asyncio.AbstractEventLoop, threading.Thread, int]:
    """An asyncio server on 127.0.0.1:`port` (0: any) on its own event loop in a daemon thread;
    returns (loop, thread, bound port). `stop_thread` ends it (`on_stop` runs first, on the loop)."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    bound: list[int] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", port))
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        if on_stop is not None:
            on_stop()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise ServingError(f"{name}: the no-op server did not start")
    return loop, thread, bound[0]


def stop_thread(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> None:
    if loop is not None and thread is not None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@dataclass
class RestNoopServer:
    """Answers every POST with `status` and `body` (default: a 218-byte prediction) on 127.0.0.1."""

    status: int = 200
    body: bytes = field(default_factory=rest_answer)
    record: bool = False
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        response = http_response(self.status, self.body)
        received = self.received if self.record else None
        self._loop, self._thread, self.port = serve_in_thread(
            lambda: HttpNoop(response, received), self.port, "rest-noop"
        )
        return self

    def stop(self) -> None:
        stop_thread(self._loop, self._thread)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class GrpcNoopServer:
    """A PredictionService whose Predict answers a canned PredictResponse (or fails with `status`,
    a grpc.StatusCode name such as "UNAVAILABLE"), without deserialising the request. Served by
    `serving.h2_grpc` (the model server's own gRPC transport) on an event loop in a thread, so the
    floor holds the load tester's cost and as little server as Python allows."""

    status: str = "OK"
    answer: bytes = field(default_factory=grpc_answer)
    record: bool = False
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        import grpc

        from serving.grpc_call import GrpcError
        from serving.h2_grpc import GrpcH2Server

        code = int(grpc.StatusCode[self.status].value[0])

        def predict(request: bytes) -> bytes:
            if self.record:
                self.received.append(request)
            if code != 0:
                raise GrpcError(code, "orchbench no-op server answers errors")
            return self.answer

        h2 = GrpcH2Server({PREDICT_PATH: predict})
        self._loop, self._thread, self.port = serve_in_thread(
            h2.protocol, self.port, "grpc-noop", h2.goaway_all
        )
        return self

    def stop(self) -> None:
        stop_thread(self._loop, self._thread)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_main(cpus: set[int] | None) -> None:
    """Child process: both no-op servers; prints one JSON line with their ports; exits on stdin EOF."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    rest = RestNoopServer().start()
    grpc_srv = GrpcNoopServer().start()
    print(json.dumps({"rest_port": rest.port, "grpc_port": grpc_srv.port}), flush=True)
    sys.stdin.read()
    grpc_srv.stop()
    rest.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m serving.noop",
        description="Serve the no-op REST and gRPC servers on 127.0.0.1 (any free ports); print one JSON "
        "line with their ports; exit when stdin closes.",
    )
    parser.add_argument("--cpus", default="", help="comma-separated CPUs to pin this process to")
    args = parser.parse_args(argv)
    serve_main({int(c) for c in args.cpus.split(",") if c} or None)


if __name__ == "__main__":
    main()
