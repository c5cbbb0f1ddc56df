"""The orchestrator's default REST forwarder, `HttptoolsForwarder`: requests and the upstream's answers
parsed by `httptools` (llhttp, Node's parser) on asyncio protocols, meant to run on `uvloop`;
callbacks only, no task per request. Chunked request bodies are accepted (llhttp decodes them; the
upstream gets Content-Length). It replaced a hand-written HTTP/1.1 forwarder that measured no better
(benchmarks/README.md, "Protocol code"); `serving.aiohttp_forward` is the other library-built one.

Both forward one request at a time per client connection (HTTP/1.1 answers stay in order), rewrite
the path with `rewrite` (None → 404), pass the upstream's status, Content-Type and body back
unchanged, add the orchestrator's marker header to every answer (errors included), and hold each
answer from the model for the injected delay (`runtime.after_delay`) before it goes back: held on the
way back, not on the way in, so the model's idle time before a request does not grow with the
delay (a model that has idled longer answers more slowly here; see orchbench/cli/calibrate.py).
Upstream unreachable → 503, silent past `timeout_s` → 504 (its connection is dropped), malformed
head → 400, body over 64 MiB (`rest_common.MAX_BODY`) → 413.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from serving.rest_common import MAX_BODY, PathRewrite, error_body, reason_phrase
from serving.runtime import after_delay


class _TooLarge(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# httptools


class _HtRequest:
    __slots__ = ("body", "ctype", "method", "path")

    def __init__(self, method: bytes, path: str, ctype: bytes | None, body: bytes) -> None:
        self.method, self.path, self.ctype, self.body = method, path, ctype, body


class _HtUpstream(asyncio.Protocol):
    """One upstream connection; its answers parsed by httptools.HttpResponseParser."""

    def __init__(self, down: _HtDownstream) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.ctype = b"application/json"
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.down.on_upstream_lost(self, exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.down.on_upstream_lost(self, exc)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.reason, self.ctype, self.body = b"", b"application/json", []

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.ctype = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.down.on_response(
            self.parser.get_status_code(),
            self.reason,
            self.ctype,
            b"".join(self.body),
            not self.parser.should_keep_alive(),
        )


class _HtDownstream(asyncio.Protocol):
    """One client connection: httptools parses its requests; each is forwarded once the previous
    one is answered."""

    def __init__(self, fwd: HttptoolsForwarder) -> None:
        self.fwd = fwd
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_HtRequest | str] = deque()  # str: a request to refuse with 404, why
        self.up: _HtUpstream | None = None
        self.connecting = False
        self.pending: bytes | None = None
        self.in_flight = False
        self.keep_alive = True
        self.broken = False  # a parse error was answered: the connection ends after it
        self.timer: asyncio.TimerHandle | None = None
        self.url = b""
        self.ctype: bytes | None = None
        self.body: list[bytes] = []
        self.size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._refuse(413 if isinstance(exc.__context__, _TooLarge) else 400, str(exc.__context__ or exc))
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}")
            return
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._cancel_timer()
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.ctype, self.body, self.size = b"", None, [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-type":
            self.ctype = value
        elif lname == b"content-length" and int(value) > MAX_BODY:
            raise _TooLarge(f"request body of {int(value)} bytes is over the limit")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            raise _TooLarge(f"request body over {MAX_BODY} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.decode("latin-1")
        upstream_path = self.fwd.rewrite(path)
        method = self.parser.get_method()
        if upstream_path is None:
            self.queue.append(f"Malformed request: {method.decode('latin-1')} {path}")
        else:
            self.queue.append(_HtRequest(method, upstream_path, self.ctype, b"".join(self.body)))
        self.keep_alive = self.parser.should_keep_alive()

    # forwarding
    def _reply(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not self.keep_alive and not self.queue:
            self.transport.close()

    def _answer(self, status: int, reason: bytes, ctype: bytes, body: bytes) -> None:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
            status,
            reason,
            ctype,
            len(body),
            self.fwd.marker,
        )
        if not self.keep_alive and not self.queue:
            head += b"Connection: close\r\n"
        self._reply(head + b"\r\n" + body)

    def _error(self, status: int, message: str) -> None:
        self._answer(status, reason_phrase(status), b"application/json", error_body(message))

    def _refuse(self, status: int, message: str) -> None:
        """A request that could not be parsed: answer it and close (the parser's state is lost)."""
        self.broken = True
        self.queue.clear()
        self.keep_alive = False
        if not self.in_flight:
            self._error(status, message)

    def _next(self) -> None:
        while not self.in_flight and self.queue and self.transport is not None:
            req = self.queue.popleft()
            if isinstance(req, str):
                self._error(404, req)
                continue
            self.in_flight = True
            head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (req.method, req.path.encode("latin-1"), self.fwd.host)
            if req.ctype is not None:
                head += b"Content-Type: %s\r\n" % req.ctype
            if req.body or req.method == b"POST":
                head += b"Content-Length: %d\r\n" % len(req.body)
            self.pending = head + b"\r\n" + req.body
            self.timer = self.loop.call_later(self.fwd.timeout_s, self._timeout)
            self._send()

    def _send(self) -> None:
        if self.transport is None or not self.in_flight:
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
                lambda: _HtUpstream(self), self.fwd.upstream_host, self.fwd.upstream_port
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

    def _done(self) -> None:
        self._cancel_timer()
        self.in_flight = False
        self.pending = None
        if self.broken and self.transport is not None:
            self._error(400, "malformed request")
            return
        self._next()

    def on_response(self, status: int, reason: bytes, ctype: bytes, body: bytes, close: bool) -> None:
        if not self.in_flight:
            return  # an answer after we gave up (timeout): dropped
        if close and self.up is not None and self.up.transport is not None:
            self.up.transport.close()
        self._cancel_timer()
        if self.fwd.delay_s > 0:  # the injected delay: the model's answer held on its way back
            deadline = time.perf_counter() + self.fwd.delay_s
            after_delay(self.loop, deadline, lambda: self._deliver(status, reason, ctype, body))
        else:
            self._deliver(status, reason, ctype, body)

    def _deliver(self, status: int, reason: bytes, ctype: bytes, body: bytes) -> None:
        if self.transport is None:
            return  # the client left while its answer was held
        self._answer(status, reason or reason_phrase(status), ctype, body)
        self.in_flight = False
        self._next()

    def on_upstream_lost(self, up: _HtUpstream, exc: Exception | None) -> None:
        if up is not self.up:
            return
        self.up = None
        if self.in_flight:
            self._upstream_error("connection closed" if exc is None else f"{type(exc).__name__}: {exc}")

    def _upstream_error(self, why: str) -> None:
        self._error(503, f"upstream {self.fwd.upstream_host}:{self.fwd.upstream_port} unavailable: {why}")
        self._done()

    def _timeout(self) -> None:
        self.timer = None
        if self.in_flight:
            if self.up is not None and self.up.transport is not None:
                self.up.transport.close()  # its late answer must not be taken for the next request's
            self.up = None
            self._error(504, f"upstream did not answer within {self.fwd.timeout_s:g} s")
            self._done()


class HttptoolsForwarder:
    """`HttpForwarder`'s interface, parsing with httptools."""

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

    def protocol(self) -> _HtDownstream:
        return _HtDownstream(self)
