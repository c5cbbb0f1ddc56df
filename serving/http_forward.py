"""A hand-written HTTP/1.1 forwarder on asyncio protocols, no framework: the orchestrator's
`--rest-impl hand`, no longer its default. benchmarks/protocol_bench.py (one interleaved run, 2026-12-01,
benchmarks/README.md "Protocol code") measured it against the httptools-based forwarder now used:
p50 overhead +0.413 ms ±0.161 (95 % CI) against +0.439 ±0.104, per-request stdev 2.600 against
2.613 ms: no lower jitter, no narrower CI. Kept so that figure can be reproduced.

Each client connection gets its own kept-alive upstream connection (opened on its first request), so
N concurrent clients use N upstream connections and requests on one connection stay in order, as
with Seldon's executor behind a keep-alive client. A request is parsed only as far as forwarding
needs (request line, Content-Length, Content-Type, Connection); its body is passed on as the bytes
that came in, and the upstream's answer goes back with its status and body unchanged, plus the
orchestrator's marker header. No coroutine, no task and no copy of the body beyond the socket
buffers is made per request: callbacks only, which is what keeps this hop at tens of µs in Python.

Not supported (answered with an HTTP error, never a crash): chunked request bodies (411),
malformed request heads (400), heads over 64 KiB (431), bodies over 64 MiB (413).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import cast

from serving.runtime import after_delay

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024

PathRewrite = Callable[[str], "str | None"]


def _error_response(status: int, message: str, marker: bytes, close: bool = False) -> bytes:
    body = json.dumps({"error": message}).encode()
    reason = {
        400: "Bad Request",
        404: "Not Found",
        411: "Length Required",
        413: "Payload Too Large",
        431: "Request Header Fields Too Large",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode() + marker
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def _headers(lines: list[bytes]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("header line without ':'")
        out[name.strip().lower()] = value.strip()
    return out


class _Upstream(asyncio.Protocol):
    """One upstream connection; parses responses (Content-Length or chunked) and hands them back."""

    def __init__(self, down: _Downstream) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            parsed = self._parse()
            if parsed is None:
                return
            self.down.on_response(*parsed)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.down.on_upstream_lost(self, exc)

    def _parse(self) -> tuple[bytes, bytes, bytes, bool] | None:
        """(status line, content type, body, upstream wants close) once a whole response is in."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buf[:end]).split(b"\r\n")
        headers = _headers(lines[1:])
        start = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            pos = start
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
                if len(self.buf) < eol + 2 + size + 2:
                    return None
                if size == 0:
                    trailer_end = self.buf.find(b"\r\n\r\n", eol)
                    if trailer_end < 0:
                        return None
                    done = trailer_end + 4
                    break
                body += self.buf[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
            data = bytes(body)
        else:
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buf) < start + length:
                return None
            done = start + length
            data = bytes(self.buf[start:done])
        del self.buf[:done]
        ctype = headers.get(b"content-type", b"application/json")
        return lines[0], ctype, data, headers.get(b"connection", b"").lower() == b"close"


class _Downstream(asyncio.Protocol):
    """One client connection: parse a request, forward it, write the answer back; then the next."""

    def __init__(self, fwd: HttpForwarder) -> None:
        self.fwd = fwd
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.up: _Upstream | None = None
        self.connecting = False
        self.pending: bytes | None = None  # the request to send once connected (or once delayed)
        self.in_flight = False
        self.keep_alive = True
        self.timer: asyncio.TimerHandle | None = None

    # client side ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.in_flight:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._cancel_timer()
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()

    def _reply(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not self.keep_alive:
            self.transport.close()

    def _fail(self, status: int, message: str, close: bool = True) -> None:
        self.in_flight = False
        self.keep_alive = self.keep_alive and not close
        self._reply(_error_response(status, message, self.fwd.marker, close=not self.keep_alive))

    def _next(self) -> None:
        """Take the next whole request from the buffer, if there is one, and send it on."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._fail(431, "request head too large")
            return
        try:
            lines = bytes(self.buf[:end]).split(b"\r\n")
            method, target, version = lines[0].split(b" ")
            headers = _headers(lines[1:])
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            self._fail(400, "malformed request head")
            return
        if headers.get(b"transfer-encoding"):
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return
        if length < 0 or length > MAX_BODY:
            self._fail(413, f"request body of {length} bytes is over the limit")
            return
        start = end + 4
        if len(self.buf) < start + length:
            return
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        conn = headers.get(b"connection", b"").lower()
        self.keep_alive = conn != b"close" and (version == b"HTTP/1.1" or conn == b"keep-alive")
        self.in_flight = True
        path = target.decode("latin-1")
        upstream_path = self.fwd.rewrite(path)
        if upstream_path is None:
            self._fail(404, f"Malformed request: {method.decode('latin-1')} {path}", close=False)
            self._after_reply()
            return
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, upstream_path.encode("latin-1"), self.fwd.host)
        if b"content-type" in headers:
            head += b"Content-Type: %s\r\n" % headers[b"content-type"]
        if length or method == b"POST":
            head += b"Content-Length: %d\r\n" % length
        self.pending = head + b"\r\n" + body
        self.timer = self.loop.call_later(self.fwd.timeout_s, self._timeout)
        if self.fwd.delay_s > 0:
            after_delay(self.loop, time.perf_counter() + self.fwd.delay_s, self._send)
        else:
            self._send()

    def _send(self) -> None:
        if self.transport is None:
            return
        if self.up is not None and self.up.transport is not None:
            assert self.pending is not None
            self.up.transport.write(self.pending)
            self.pending = None
        elif not self.connecting:
            self.connecting = True
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, up = await self.loop.create_connection(
                lambda: _Upstream(self), self.fwd.upstream_host, self.fwd.upstream_port
            )
        except OSError as exc:
            self.connecting = False
            self._upstream_error(f"{type(exc).__name__}: {exc.strerror or exc}")
            return
        self.connecting = False
        self.up = up
        if self.pending is not None and self.in_flight:
            self._send()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _after_reply(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.buf:
            self._next()

    # upstream side ----------------------------------------------------------------------------------
    def on_response(self, status_line: bytes, ctype: bytes, body: bytes, close: bool) -> None:
        if not self.in_flight:
            return  # an answer after we gave up (timeout): drop it
        self._cancel_timer()
        self.in_flight = False
        if close and self.up is not None and self.up.transport is not None:
            self.up.transport.close()
        head = b"%s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
            status_line,
            ctype,
            len(body),
            self.fwd.marker,
        )
        if not self.keep_alive:
            head += b"Connection: close\r\n"
        self._reply(head + b"\r\n" + body)
        self._after_reply()

    def on_upstream_lost(self, up: _Upstream, exc: Exception | None) -> None:
        if up is not self.up:
            return  # one we already dropped (after a timeout)
        self.up = None
        if self.in_flight:
            self._upstream_error("connection closed" if exc is None else f"{type(exc).__name__}: {exc}")

    def _upstream_error(self, why: str) -> None:
        self._cancel_timer()
        self.pending = None
        self._fail(
            503, f"upstream {self.fwd.upstream_host}:{self.fwd.upstream_port} unavailable: {why}", close=False
        )
        self._after_reply()

    def _timeout(self) -> None:
        self.timer = None
        if self.in_flight:
            if self.up is not None and self.up.transport is not None:
                self.up.transport.close()  # its late answer must not be taken for the next request's
            self.up = None
            self.pending = None
            self._fail(504, f"upstream did not answer within {self.fwd.timeout_s:g} s", close=False)
            self._after_reply()


class HttpForwarder:
    """Forward HTTP/1.1 requests to `upstream` ("host:port"), rewriting paths with `rewrite`
    (None → 404), adding the `marker` header to every answer, after an optional injected delay."""

    def __init__(
        self,
        upstream: str,
        rewrite: PathRewrite,
        marker: tuple[str, str],
        delay_s: float = 0.0,
        timeout_s: float = 30.0,
    ) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.host = upstream.encode("latin-1")
        self.rewrite = rewrite
        self.marker = f"{marker[0]}: {marker[1]}\r\n".encode("latin-1")
        self.delay_s = delay_s
        self.timeout_s = timeout_s

    def protocol(self) -> _Downstream:
        return _Downstream(self)
