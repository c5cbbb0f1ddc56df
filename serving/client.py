"""Small, low-overhead clients for the serving stack (readiness checks, arm checks, tests, benchmark).

`HttpClient` keeps one HTTP/1.1 connection alive over a blocking socket and sends pre-built bytes,
so the client itself adds only tens of µs to a measured request. `GrpcClient` is a sync gRPC channel
calling Predict with raw bytes (no proto (de)serialisation on the measured path).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import grpc

GRPC_METHOD = "/tensorflow.serving.PredictionService/Predict"


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""


class HttpClient:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._buf = s, b""
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + body

    def send_raw(self, request: bytes) -> HttpResponse:
        """Send pre-built request bytes; reconnects once if the kept-alive connection was closed."""
        try:
            return self._exchange(request)
        except (ConnectionError, _Closed):
            self.close()
            return self._exchange(request)

    def request(self, method: str, path: str, body: bytes = b"") -> HttpResponse:
        return self.send_raw(self.build(method, path, body))

    def _recv(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed
        self._buf += chunk

    def _exchange(self, request: bytes) -> HttpResponse:
        sock = self._connect()
        sock.sendall(request)
        while b"\r\n\r\n" not in self._buf:
            self._recv(sock)
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raise ConnectionError("chunked responses are not supported by this client")
        length = int(headers.get("content-length", "0"))
        self._buf = rest
        while len(self._buf) < length:
            self._recv(sock)
        body, self._buf = self._buf[:length], self._buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return HttpResponse(status, headers, body)


class _Closed(Exception):
    pass


@dataclass
class GrpcResult:
    code: grpc.StatusCode
    details: str
    body: bytes
    initial_metadata: dict[str, str]


class GrpcClient:
    def __init__(self, target: str, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.enable_retries", 0)],
        )
        self._predict = self._channel.unary_unary(GRPC_METHOD)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict_raw(self, request: bytes) -> bytes:
        """The fast path: raw bytes in, raw bytes out; raises grpc.RpcError on failure."""
        return bytes(self._predict(request, timeout=self.timeout_s))

    def predict(self, request: bytes) -> GrpcResult:
        """With status and initial metadata (for checks, not for timing)."""
        try:
            body, call = self._predict.with_call(request, timeout=self.timeout_s)
            md = {k: str(v) for k, v in (call.initial_metadata() or ())}
            return GrpcResult(grpc.StatusCode.OK, "", bytes(body), md)
        except grpc.RpcError as exc:
            md = {k: str(v) for k, v in (exc.initial_metadata() or ())}
            return GrpcResult(exc.code(), exc.details() or "", b"", md)
