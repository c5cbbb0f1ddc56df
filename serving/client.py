"""Small, low-overhead clients for the serving stack (readiness checks, arm checks, tests, benchmark).

`HttpClient` keeps one HTTP/1.1 connection alive over a blocking socket and sends pre-built bytes,
so the client itself adds only tens of µs to a measured request. `GrpcClient` is a sync gRPC channel
calling Predict with raw bytes (no proto (de)serialisation on the measured path). `H2GrpcClient` is
the gRPC counterpart of `HttpClient`: unary calls over one HTTP/2 connection on a blocking socket.
"""

from __future__ import annotations

import socket
import struct
import urllib.parse
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


class H2GrpcClient:
    """A thin blocking gRPC client for unary calls over one HTTP/2 connection: no channel, no
    threads, no completion queue, so what it measures is the server (the benchmark's gRPC
    counterpart of `HttpClient`; grpcio's sync client took ~0.3 ms more per call in
    benchmarks/serving_bench.py).

    Request headers are encoded statelessly (HPACK static-table references and literals without
    indexing); the server's header blocks are decoded with `hpack` (its table must be followed).
    Honours the server's flow-control windows and frame size, ACKs SETTINGS and PING."""

    def __init__(self, host: str, port: int, path: str = GRPC_METHOD, timeout_s: float = 10.0) -> None:
        import hpack

        from serving import h2wire as h2

        self._h2 = h2
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.sid = 1
        self.send_window = self.stream_initial = h2.DEFAULT_WINDOW
        self.max_frame = 16_384
        self.stream_window = 0
        self.unacked = 0  # answer bytes received and not yet given back in a WINDOW_UPDATE
        window = 16 * 1024 * 1024
        self.sock.sendall(
            h2.PREFACE
            + h2.frame(
                h2.SETTINGS,
                0,
                0,
                struct.pack(">HIHI", h2.S_ENABLE_PUSH, 0, h2.S_INITIAL_WINDOW_SIZE, window),
            )
            + h2.frame(h2.WINDOW_UPDATE, 0, 0, struct.pack(">I", window - h2.DEFAULT_WINDOW))
        )
        authority = f"{host}:{port}".encode()
        self.header_block = (
            b"\x83\x86"  # :method POST, :scheme http (static table 3 and 6)
            + h2.literal_indexed_name(4, path.encode())  # :path (static 4)
            + h2.literal_indexed_name(1, authority)  # :authority (static 1)
            + h2.literal_indexed_name(31, b"application/grpc")  # content-type (static 31)
            + h2.literal_header(b"te", b"trailers")
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame(self) -> tuple[int, int, int, bytes]:
        while True:
            if len(self.buf) >= 9:
                n = 9 + int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= n:
                    f = bytes(self.buf[:n])
                    del self.buf[:n]
                    return f[3], f[4], int.from_bytes(f[5:9], "big") & 0x7FFFFFFF, f[9:]
            chunk = self.sock.recv(262_144)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk

    def _control(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        h2 = self._h2
        if ftype == h2.SETTINGS and not flags & h2.ACK:
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack_from(">HI", payload, i)
                if ident == h2.S_INITIAL_WINDOW_SIZE:
                    self.stream_window += value - self.stream_initial
                    self.stream_initial = value
                elif ident == h2.S_MAX_FRAME_SIZE:
                    self.max_frame = value
            self.sock.sendall(h2.frame(h2.SETTINGS, h2.ACK, 0))
        elif ftype == h2.PING and not flags & h2.ACK:
            self.sock.sendall(h2.frame(h2.PING, h2.ACK, 0, payload))
        elif ftype == h2.WINDOW_UPDATE:
            inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
            elif sid == self.sid:
                self.stream_window += inc
        elif ftype == h2.GOAWAY:
            raise ConnectionError("the server sent GOAWAY")

    def call(self, message: bytes) -> tuple[int, str, bytes]:
        """One unary call: (grpc-status, grpc-message, answer message bytes)."""
        h2 = self._h2
        sid = self.sid
        self.sid += 2
        self.stream_window = self.stream_initial
        data = b"\x00" + len(message).to_bytes(4, "big") + message
        out = bytearray(h2.frame(h2.HEADERS, h2.END_HEADERS, sid, self.header_block))
        while True:
            n = min(len(data), self.max_frame, self.send_window, self.stream_window)
            if n == len(data):
                out += h2.frame(h2.DATA, h2.END_STREAM, sid, data)
                self.sock.sendall(out)
                self.send_window -= n
                break
            if n > 0:
                out += h2.frame(h2.DATA, 0, sid, data[:n])
                data = data[n:]
                self.send_window -= n
                self.stream_window -= n
            self.sock.sendall(out)
            out.clear()
            if n <= 0:  # blocked by flow control: read until a WINDOW_UPDATE
                ftype, flags, fsid, payload = self._frame()
                if fsid == sid and ftype != h2.WINDOW_UPDATE:  # an answer before the whole request
                    raise ConnectionError("the server answered before the request was sent")
                self._control(ftype, flags, fsid, payload)
        headers: dict[bytes, bytes] = {}
        body = bytearray()
        block = bytearray()
        ended = False
        while True:
            ftype, flags, fsid, payload = self._frame()
            if fsid in (0, sid) and ftype in (h2.HEADERS, h2.CONTINUATION):
                if ftype == h2.HEADERS:
                    payload = h2.header_fragment(flags, payload)
                    ended = bool(flags & h2.END_STREAM)
                block += payload
                if flags & h2.END_HEADERS:
                    headers.update(self.decoder.decode(bytes(block), raw=True))
                    block.clear()
                    if ended:
                        break
            elif fsid == sid and ftype == h2.DATA:
                body += h2.unpad(flags, payload)
                self.unacked += len(payload)
                if self.unacked >= 1024 * 1024:  # the connection window (16 MiB) never runs dry
                    self.sock.sendall(h2.frame(h2.WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacked)))
                    self.unacked = 0
                if flags & h2.END_STREAM:
                    break
            elif fsid == sid and ftype == h2.RST_STREAM:
                raise ConnectionError(f"stream reset by the server (code {int.from_bytes(payload, 'big')})")
            elif fsid == 0:
                self._control(ftype, flags, fsid, payload)
        status = int(headers.get(b"grpc-status", b"2"))
        text = urllib.parse.unquote(headers.get(b"grpc-message", b"").decode("ascii", "replace"))
        return status, text, bytes(body[5:]) if len(body) >= 5 else b""
