"""The orchestrator's gRPC forwarders built on maintained libraries (the counterparts of the
hand-written frame forwarder `serving.h2_forward`, with the same answers and the same marker):

- `H2LibForwarder`: the `h2` package's HTTP/2 state machines on both sides of asyncio protocols
  (a server connection to the client, a client connection to the model, one per client
  connection). Every call's headers, messages and trailers are re-sent on the paired stream, with
  each side's flow control, SETTINGS and HPACK kept by `h2`. The first header block of each answer
  (initial metadata, or a Trailers-Only error) gets the marker. Meant to run on `uvloop`.
- `GrpcAioForwarder`: a `grpc.aio` server with a generic handler for every method, raw bytes in
  and out, calling the model through a `grpc.aio` channel: metadata passed both ways, the marker
  added to the initial metadata (to the trailers of an answer that has no initial metadata, as a
  Trailers-Only error has), the client's deadline passed on.

Both hold every call's answer from the model for the injected delay (`runtime.after_delay`) before
it goes back (on the way back, as serving.h2_forward does) and answer UNAVAILABLE when the model
cannot be reached. Unary and streaming calls pass through `H2LibForwarder`; the
grpc.aio one forwards unary calls only (all the model serves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from serving.runtime import after_delay, hold

Header = tuple[bytes, bytes]

# --------------------------------------------------------------------------------------------------
# h2


class _Side(asyncio.Protocol):
    """One TCP end of a forwarded connection, with its h2 state machine."""

    def __init__(self, pair: _H2Pair, client_side: bool) -> None:
        self.pair = pair
        cfg = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.transport: asyncio.Transport | None = None
        #: per stream: what waits for a flow-control window, in order (DATA bytes, then headers/end)
        self.queued: dict[int, list[tuple[str, Any]]] = {}
        self.is_upstream = client_side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.conn.initiate_connection()
        self.flush()
        if not self.is_upstream:
            self.pair.client_connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            self.pair.close()
            return
        for ev in events:
            self.pair.event(self, ev)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pair.close()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    # sending with flow control --------------------------------------------------------------------
    def send(self, sid: int, kind: str, value: Any = None) -> None:
        """Queue ('data', bytes) / ('headers', (headers, end)) / ('end', None) / ('reset', code) on
        stream `sid`, and send what the windows allow."""
        self.queued.setdefault(sid, []).append((kind, value))
        self.drain(sid)

    def drain(self, sid: int) -> None:
        items = self.queued.get(sid)
        conn = self.conn
        while items:
            kind, value = items[0]
            try:
                if kind == "data":
                    window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if window <= 0:
                        return
                    chunk, rest = value[:window], value[window:]
                    conn.send_data(sid, chunk)
                    if rest:
                        items[0] = (kind, rest)
                        continue
                elif kind == "headers":
                    conn.send_headers(sid, value[0], end_stream=value[1])
                elif kind == "end":
                    conn.end_stream(sid)
                else:
                    conn.reset_stream(sid, value)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                items.clear()  # the stream went away meanwhile
                break
            items.pop(0)
        self.queued.pop(sid, None)

    def drain_all(self) -> None:
        for sid in list(self.queued):
            self.drain(sid)


class _H2Pair:
    """A client connection and its upstream connection; stream ids mapped both ways."""

    def __init__(self, fwd: H2LibForwarder) -> None:
        self.fwd = fwd
        self.loop = asyncio.get_running_loop()
        self.down: _Side | None = None
        self.up: _Side | None = None
        self.up_of: dict[int, int] = {}  # client stream id -> upstream stream id
        self.down_of: dict[int, int] = {}
        self.waiting: list[tuple[_Side, Any]] = []  # client events before the model is connected
        self.held = False  # an answer held for the injected delay
        self.from_model: list[tuple[_Side, Any]] = []  # the model's events held with it
        self.closed = False

    def client_connected(self, side: _Side) -> None:
        self.down = side
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, up = await self.loop.create_connection(
                lambda: _Side(self, client_side=True), self.fwd.upstream_host, self.fwd.upstream_port
            )
        except OSError:
            self.close()
            return
        if self.closed:
            if up.transport is not None:
                up.transport.close()
            return
        self.up = up
        self._replay()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.down, self.up):
            if side is not None and side.transport is not None:
                side.conn.close_connection()
                side.flush()
                side.transport.close()

    def _replay(self) -> None:
        while self.waiting and self.up is not None:
            _, ev = self.waiting.pop(0)
            self._from_client(ev)
        if self.up is not None:
            self.up.flush()

    def _release(self) -> None:
        """The injected delay is over: the held answer, and what the model sent after it."""
        self.held = False
        held, self.from_model = self.from_model, []
        for side, ev in held:
            self._from_model(side, ev)
        if self.down is not None:
            self.down.flush()

    def event(self, side: _Side, ev: Any) -> None:
        if side is self.down:
            if isinstance(ev, h2.events.DataReceived):  # give the client its window back at once
                side.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                side.drain_all()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.close()
            elif self.waiting or self.up is None:
                self.waiting.append((side, ev))
            else:
                self._from_client(ev)
                self.up.flush()
        elif self.held:  # an answer is being held: what the model sends after it waits too
            self.from_model.append((side, ev))
        elif isinstance(ev, h2.events.ResponseReceived) and self.fwd.delay_s > 0:
            self.from_model.append((side, ev))
            self.held = True
            after_delay(self.loop, time.perf_counter() + self.fwd.delay_s, self._release)
        else:
            self._from_model(side, ev)
            if self.down is not None:
                self.down.flush()

    def _from_client(self, ev: Any) -> None:
        up = self.up
        assert up is not None
        if isinstance(ev, h2.events.RequestReceived):
            if ev.stream_id not in self.up_of:
                usid = up.conn.get_next_available_stream_id()
                self.up_of[ev.stream_id], self.down_of[usid] = usid, ev.stream_id
                up.send(usid, "headers", (ev.headers, ev.stream_ended is not None))
                if ev.stream_ended is not None:
                    self.up_of.pop(ev.stream_id, None)
            return
        usid = self.up_of.get(getattr(ev, "stream_id", 0), 0)
        if not usid:
            return
        if isinstance(ev, h2.events.DataReceived):
            up.send(usid, "data", ev.data)
        elif isinstance(ev, h2.events.TrailersReceived):
            up.send(usid, "headers", (ev.headers, True))
            self.up_of.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.StreamEnded):
            up.send(usid, "end")
            self.up_of.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.StreamReset):
            up.send(usid, "reset", ev.error_code)
            self.up_of.pop(ev.stream_id, None)

    def _from_model(self, up: _Side, ev: Any) -> None:
        down = self.down
        if isinstance(ev, h2.events.DataReceived):
            up.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        if isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            up.drain_all()
            return
        if isinstance(ev, h2.events.ConnectionTerminated):
            self.close()
            return
        sid = self.down_of.get(getattr(ev, "stream_id", 0), 0)
        if not sid or down is None:
            return
        if isinstance(ev, h2.events.ResponseReceived):
            ended = ev.stream_ended is not None
            down.send(sid, "headers", ([*ev.headers, self.fwd.marker], ended))
            if ended:
                self._forget(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            down.send(sid, "data", ev.data)
        elif isinstance(ev, h2.events.TrailersReceived):
            down.send(sid, "headers", (ev.headers, True))
            self._forget(ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            down.send(sid, "end")
            self._forget(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            down.send(sid, "reset", ev.error_code)
            self._forget(ev.stream_id)

    def _forget(self, usid: int) -> None:
        sid = self.down_of.pop(usid, 0)
        self.up_of.pop(sid, None)


class H2LibForwarder:
    """Forward HTTP/2 (gRPC) connections to `upstream` ("host:port") through `h2`, marking answers."""

    def __init__(self, upstream: str, marker: tuple[str, str], delay_s: float = 0.0) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.marker: Header = (marker[0].encode("ascii"), marker[1].encode("ascii"))
        self.delay_s = delay_s

    def protocol(self) -> _Side:
        return _Side(_H2Pair(self), client_side=False)


# --------------------------------------------------------------------------------------------------
# grpc.aio

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 0),
]
#: Request metadata not passed on: set by the channel itself.
_OWN_KEYS = ("user-agent",)


class GrpcAioForwarder:
    """Generic grpc.aio handlers (`handlers()`, for `runtime.start_grpc`) calling `upstream`."""

    def __init__(self, upstream: str, marker: tuple[str, str], delay_s: float = 0.0) -> None:
        self.upstream = upstream
        self.marker = marker
        self.delay_s = delay_s
        self._channel: grpc.aio.Channel | None = None
        self._methods: dict[str, Callable[..., Any]] = {}

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [_Generic(self)]

    def _method(self, name: str) -> Callable[..., Any]:
        fn = self._methods.get(name)
        if fn is None:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self.upstream, options=CHANNEL_OPTIONS)
            fn = self._methods[name] = self._channel.unary_unary(name)
        return fn

    async def call(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = tuple(
            (k, v)
            for k, v in (context.invocation_metadata() or ())
            if not k.startswith((":", "grpc-")) and k not in _OWN_KEYS
        )
        call = self._method(method)(request, metadata=metadata or None, timeout=context.time_remaining())
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            await hold(self.delay_s)  # the injected delay, on the answer's way back
            initial = tuple(exc.initial_metadata() or ())
            trailing = tuple(exc.trailing_metadata() or ())
            if initial:
                await context.send_initial_metadata((*initial, self.marker))
                await context.abort(exc.code(), exc.details() or "", trailing_metadata=trailing)
            await context.abort(exc.code(), exc.details() or "", trailing_metadata=(*trailing, self.marker))
            raise  # context.abort raises
        await hold(self.delay_s)
        await context.send_initial_metadata((*tuple(await call.initial_metadata() or ()), self.marker))
        context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
        return bytes(answer)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, fwd: GrpcAioForwarder) -> None:
        self.fwd = fwd

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = str(details.method)

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self.fwd.call(method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)
