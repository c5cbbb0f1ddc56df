"""The model server's gRPC transport (`--grpc-server h2`, the default; also the floor's no-op gRPC
server, serving.noop): unary gRPC calls served over HTTP/2 on an asyncio protocol, hand-written.

Kept as the default because of a figure (benchmarks/README.md, "Protocol code", 2026-12-01): the
95 % CI half-width of the gRPC overhead a short `orchbench run` gets (5 blocks x 4 s per arm),
hand-written gRPC stack (serving.h2_forward + serving.h2_grpc) against the library-built one
(grpc.aio forwarder + grpc.aio model server), runs alternated: p50 ±0.408 / ±0.075 / ±0.226 ms
against ±0.623 / ±0.230 / ±0.350, mean ±0.181 / ±0.040 / ±0.050 against ±0.402 / ±0.225 / ±0.186
(the three pairs of a quieter hour; over all six pairs measured, with a noisy hour and two
gRPC-only pairs, hand narrower in 5 of 6 at p50, 4 of 6 at mean). benchmarks/protocol_bench.py,
which times each piece alone in one interleaved run, could not say which of the two pieces it is:
neither showed a lower per-request jitter by a clear margin.

A grpcio server (`grpc.aio`) hands every call from its C core to Python through a completion queue
and the event loop; a call answered at once took 0.43 ms p50 against grpcio's own client here, and
0.28 ms with this module (`benchmarks/README.md`). This module speaks the part of gRPC over HTTP/2
a unary service needs, in the style of the orchestrator's forwarders: one protocol object per
connection (`GrpcH2Protocol`, made by `GrpcH2Server`), frames parsed from the byte stream, the
handler called synchronously when a call's request is complete, the answer written in one `write`.
The gRPC side of a call, without I/O (statuses, `GrpcError`, answer blocks), is serving.grpc_call.

What it implements (RFC 9113, the gRPC HTTP/2 protocol spec):
- the connection preface and SETTINGS exchange (ACKs both ways), PING ACKs, GOAWAY both ways;
- HPACK decoding of every header block in order, through the `hpack` package (the dynamic table
  must track the client's); answers are encoded statelessly (static-table references and literals
  without indexing), so the client's decoder table never changes;
- flow control: a large receive window announced up front and refilled as DATA arrives; the
  client's windows honoured for DATA sent (queued until WINDOW_UPDATE), frames split at the
  client's SETTINGS_MAX_FRAME_SIZE;
- unary calls: `:method POST`, `content-type: application/grpc[+proto]`, one length-prefixed
  message (uncompressed), answered with HEADERS, DATA and trailers (`grpc-status: 0`), or a
  Trailers-Only answer for an error (`grpc-status`, percent-encoded `grpc-message`);
- RST_STREAM, CONTINUATION, padding, PRIORITY; unknown frame types are ignored.

Not implemented, by choice: message compression (answered UNIMPLEMENTED), streaming calls, server
push, TLS, deadlines (`grpc-timeout` is read past; the handler runs to completion).
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

import hpack

from serving.grpc_call import (
    INTERNAL,
    MAX_MESSAGE,
    OK_TRAILERS,
    RESOURCE_EXHAUSTED,
    RESPONSE_HEADERS,
    UNIMPLEMENTED,
    GrpcError,
    Handler,
    Stream,
    check_request_headers,
    trailers_only,
)
from serving.h2wire import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_HEADER,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    NO_ERROR,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    S_ENABLE_PUSH,
    S_INITIAL_WINDOW_SIZE,
    S_MAX_CONCURRENT_STREAMS,
    S_MAX_FRAME_SIZE,
    SETTINGS,
    WINDOW_UPDATE,
    ConnectionError_,
    FrameError,
    frame,
    header_fragment,
    unpad,
)

#: The receive window this server announces (stream and connection): a 16 KB request never waits.
RECV_WINDOW = 4 * 1024 * 1024
MAX_FRAME_SIZE = 16_384  # what this server accepts (the protocol's default; it never raises it)
MAX_STREAMS = 1024


class GrpcH2Protocol(asyncio.Protocol):
    def __init__(self, handlers: dict[bytes, Handler], server: GrpcH2Server | None = None) -> None:
        self.handlers = handlers
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.preface_ok = False
        self.decoder = hpack.Decoder()
        self.streams: dict[int, Stream] = {}
        self.last_sid = 0
        self.header_sid = 0  # a header block in progress (CONTINUATION expected) on this stream
        self.header_frag = bytearray()
        self.header_end_stream = False
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 16_384
        self.conn_send_window = DEFAULT_WINDOW
        self.out = bytearray()
        self.going_away = False

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        if self.server is not None:
            self.server.connections.add(self)
        settings = struct.pack(
            ">HIHIHI",
            S_MAX_CONCURRENT_STREAMS,
            MAX_STREAMS,
            S_INITIAL_WINDOW_SIZE,
            RECV_WINDOW,
            S_ENABLE_PUSH,
            0,
        )
        self.transport.write(
            frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECV_WINDOW - DEFAULT_WINDOW))
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._process()
        except FrameError as exc:
            self._goaway(exc.code, str(exc))
        finally:
            if self.out and self.transport is not None:
                self.transport.write(bytes(self.out))
            self.out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.streams.clear()
        if self.server is not None:
            self.server.connections.discard(self)

    def shutdown(self) -> None:
        """Server stopping: tell the client (GOAWAY, no error) and close."""
        if self.transport is not None:
            self.transport.write(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_sid, NO_ERROR)))
            self.transport.close()

    # framing ------------------------------------------------------------------------------------
    def _goaway(self, code: int, why: str) -> None:
        self.out += frame(GOAWAY, 0, 0, struct.pack(">II", self.last_sid, code) + why.encode()[:200])
        if self.transport is not None:
            self.transport.write(bytes(self.out))
            self.out.clear()
            self.transport.close()
        self.buf.clear()

    def _process(self) -> None:
        buf = self.buf
        if not self.preface_ok:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return
            if buf[: len(PREFACE)] != PREFACE:
                raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            del buf[: len(PREFACE)]
            self.preface_ok = True
        pos = 0
        n = len(buf)
        while n - pos >= FRAME_HEADER and self.transport is not None:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if length > MAX_FRAME_SIZE:
                raise ConnectionError_(FRAME_SIZE_ERROR, f"frame of {length} bytes")
            end = pos + FRAME_HEADER + length
            if end > n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + FRAME_HEADER : end])
            pos = end
            self._frame(ftype, flags, sid, payload)
        del buf[:pos]

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self.header_sid and (ftype != CONTINUATION or sid != self.header_sid):
            raise ConnectionError_(PROTOCOL_ERROR, "header block interrupted")
        if ftype == DATA:
            self._data(flags, sid, payload)
        elif ftype == HEADERS:
            self._headers(flags, sid, payload)
        elif ftype == CONTINUATION:
            if not self.header_sid:
                raise ConnectionError_(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self.header_frag += payload
            if flags & END_HEADERS:
                self._header_block()
        elif ftype == SETTINGS:
            self._settings(flags, sid, payload)
        elif ftype == PING:
            if sid or len(payload) != 8:
                raise ConnectionError_(PROTOCOL_ERROR, "bad PING")
            if not flags & ACK:
                self.out += frame(PING, ACK, 0, payload)
        elif ftype == WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif ftype == RST_STREAM:
            self.streams.pop(sid, None)
        elif ftype == GOAWAY:
            self.going_away = True
            if not self.streams and self.transport is not None:
                self.transport.close()
        elif ftype == PUSH_PROMISE:
            raise ConnectionError_(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # PRIORITY and unknown types: nothing to do

    def _settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise ConnectionError_(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS length")
        for i in range(0, len(payload), 6):
            ident, value = struct.unpack_from(">HI", payload, i)
            if ident == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for st in self.streams.values():
                    st.send_window += delta
            elif ident == S_MAX_FRAME_SIZE:
                if not 16_384 <= value <= 16_777_215:
                    raise ConnectionError_(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self.peer_max_frame = value
        self.out += frame(SETTINGS, ACK, 0)
        self._send_pending()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            self.conn_send_window += inc
        elif sid in self.streams:
            self.streams[sid].send_window += inc
        self._send_pending()

    def _headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0 or sid % 2 == 0:
            raise ConnectionError_(PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        payload = header_fragment(flags, payload)
        self.header_sid = sid
        self.header_frag = bytearray(payload)
        self.header_end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS:
            self._header_block()

    def _header_block(self) -> None:
        sid, end_stream = self.header_sid, self.header_end_stream
        self.header_sid = 0
        try:
            decoded = self.decoder.decode(bytes(self.header_frag), raw=True)  # (bytes, bytes) pairs
            headers = cast(list[tuple[bytes, bytes]], decoded)
        except hpack.HPACKError as exc:  # the table is out of step: the connection is lost
            raise ConnectionError_(COMPRESSION_ERROR, f"HPACK: {exc}") from None
        self.header_frag = bytearray()
        st = self.streams.get(sid)
        if st is None:
            if sid <= self.last_sid:  # trailers of a stream already answered or reset
                return
            self.last_sid = sid
            if self.going_away or len(self.streams) >= MAX_STREAMS:
                self.out += frame(RST_STREAM, 0, sid, struct.pack(">I", REFUSED_STREAM))
                return
            st = Stream(sid, send_window=self.peer_initial_window)
            self.streams[sid] = st
            check_request_headers(st, headers)
        # else: the client's trailers (gRPC clients send none for unary calls); nothing in them matters
        if end_stream:
            st.remote_closed = True
            self._call(st)

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        size = len(payload)
        if size:  # refill both receive windows by what arrived (padding included)
            inc = struct.pack(">I", size)
            self.out += frame(WINDOW_UPDATE, 0, 0, inc)
        st = self.streams.get(sid)
        if st is None or st.done:
            if sid == 0:
                raise ConnectionError_(PROTOCOL_ERROR, "DATA on stream 0")
            return  # a reset or answered stream: the data is dropped (its window was refilled)
        if size and not flags & END_STREAM:
            self.out += frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", size))
        st.body += unpad(flags, payload)
        if len(st.body) > MAX_MESSAGE + 5:
            self._finish(st, RESOURCE_EXHAUSTED, f"request larger than {MAX_MESSAGE} bytes")
            st.body.clear()
            return
        if flags & END_STREAM:
            st.remote_closed = True
            self._call(st)

    # calls --------------------------------------------------------------------------------------
    def _call(self, st: Stream) -> None:
        if st.done:
            return
        if not st.ok_headers:
            self._finish(st, UNIMPLEMENTED if "compression" in st.header_error else INTERNAL, st.header_error)
            return
        handler = self.handlers.get(st.path)
        if handler is None:
            path = st.path.decode("latin-1")
            self._finish(st, UNIMPLEMENTED, f"unknown method {path}")
            return
        body = st.body
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            self._finish(st, INTERNAL, "the request is not one length-prefixed gRPC message")
            return
        if body[0]:
            self._finish(st, UNIMPLEMENTED, "compressed messages are not supported")
            return
        try:
            answer = handler(bytes(body[5:]))
        except GrpcError as exc:
            self._finish(st, exc.code, exc.message)
            return
        except Exception as exc:  # never lose the connection over one call
            self._finish(st, INTERNAL, f"{type(exc).__name__}: {exc}")
            return
        st.body = bytearray()
        st.done = True
        self.out += frame(HEADERS, END_HEADERS, st.sid, RESPONSE_HEADERS)
        st.pending = bytearray(b"\x00" + len(answer).to_bytes(4, "big") + answer)
        st.trailers = OK_TRAILERS
        self._send_stream(st)

    def _finish(self, st: Stream, code: int, message: str) -> None:
        """A Trailers-Only answer: the status in the one and only header block."""
        self.out += frame(HEADERS, END_HEADERS | END_STREAM, st.sid, trailers_only(code, message))
        st.done = True
        self._close_stream(st)

    def _close_stream(self, st: Stream) -> None:
        if not st.remote_closed:  # answered before the request ended: the rest is not wanted
            self.out += frame(RST_STREAM, 0, st.sid, struct.pack(">I", NO_ERROR))
        self.streams.pop(st.sid, None)
        if self.going_away and not self.streams and self.transport is not None:
            if self.out:
                self.transport.write(bytes(self.out))
                self.out.clear()
            self.transport.close()

    def _send_stream(self, st: Stream) -> None:
        """Send what the windows allow of the stream's answer; the trailers when all of it is out."""
        while st.pending:
            n = min(len(st.pending), st.send_window, self.conn_send_window, self.peer_max_frame)
            if n <= 0:
                return
            self.out += frame(DATA, 0, st.sid, bytes(st.pending[:n]))
            del st.pending[:n]
            st.send_window -= n
            self.conn_send_window -= n
        self.out += frame(HEADERS, END_HEADERS | END_STREAM, st.sid, st.trailers)
        self._close_stream(st)

    def _send_pending(self) -> None:
        for st in list(self.streams.values()):
            if st.done and st.pending:
                self._send_stream(st)


class GrpcH2Server:
    """Serve `handlers` ({"/package.Service/Method": fn}); `protocol` is the asyncio factory."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = {k.encode(): v for k, v in handlers.items()}
        self.connections: set[GrpcH2Protocol] = set()

    def protocol(self) -> GrpcH2Protocol:
        return GrpcH2Protocol(self.handlers, self)

    def goaway_all(self) -> None:
        """Server stopping: GOAWAY (no error) on every open connection, then close them."""
        for conn in list(self.connections):
            conn.shutdown()
