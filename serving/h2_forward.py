"""The orchestrator's gRPC hot path (`--grpc-impl hand`, the default): an HTTP/2 frame forwarder on
asyncio protocols, hand-written.

Kept as the default because of a figure (benchmarks/README.md, "Protocol code", 2026-12-01): the
95 % CI half-width of the gRPC overhead a short `orchbench run` gets (5 blocks x 4 s per arm),
hand-written gRPC stack (serving.h2_forward + serving.h2_grpc) against the library-built one
(grpc.aio forwarder + grpc.aio model server), runs alternated: p50 ±0.408 / ±0.075 / ±0.226 ms
against ±0.623 / ±0.230 / ±0.350, mean ±0.181 / ±0.040 / ±0.050 against ±0.402 / ±0.225 / ±0.186
(the three pairs of a quieter hour; over all six pairs measured, with a noisy hour and two
gRPC-only pairs, hand narrower in 5 of 6 at p50, 4 of 6 at mean). benchmarks/protocol_bench.py,
which times each piece alone in one interleaved run, could not say which of the two pieces it is:
neither showed a lower per-request jitter by a clear margin.

Each client connection is paired with its own upstream connection to the model's gRPC port, and
frames pass through unchanged (both peers negotiate SETTINGS, flow control and HPACK between
themselves), so a call costs this process two socket reads and two writes, not a gRPC server and a
gRPC client in Python. Two things are done to the frames:

- the marker: the first HEADERS block of every stream from the model (the response's initial
  metadata, or a Trailers-Only error) gets one more header field, `x-orchbench-orchestrator:
  executor`, encoded as an HPACK "literal header field without indexing" with a literal name, which
  leaves both HPACK dynamic tables untouched, so the rest of the connection decodes as before;
- the injected delay: the model's first HEADERS frame of a stream (a call's answer) is held for the
  configured delay before it (and everything the model sends after it meanwhile) goes back to the
  client. On the way back, not on the way in: the model's idle time before a call must not grow
  with the delay (a model that has idled longer answers more slowly here; orchbench/cli/calibrate.py).

A model that cannot be reached closes the client's connection: the client sees UNAVAILABLE, as it
would behind any proxy. Frames are parsed only as far as the 9-byte frame header (RFC 9113 §4.1).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import cast

from serving.h2wire import (
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    HEADERS,
    MIN_MAX_FRAME_SIZE,
    PADDED,
    literal_header,
)
from serving.runtime import after_delay


def add_to_header_block(frame: bytes, extra: bytes) -> bytes:
    """A HEADERS or CONTINUATION frame with `extra` appended to its header block fragment (before any
    padding), its length field updated."""
    length = int.from_bytes(frame[:3], "big")
    ftype, flags = frame[3], frame[4]
    payload = frame[FRAME_HEADER : FRAME_HEADER + length]
    pad = payload[0] if ftype == HEADERS and flags & PADDED else 0
    cut = len(payload) - pad
    payload = payload[:cut] + extra + payload[cut:]
    return len(payload).to_bytes(3, "big") + frame[3:FRAME_HEADER] + payload


class _Side(asyncio.Protocol):
    """One end of a forwarded connection; hands received bytes to the pair, propagates back-pressure."""

    def __init__(self, pair: _Pair, client: bool) -> None:
        self.pair, self.client = pair, client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        if self.client:
            self.pair.client_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.client:
            self.pair.from_client(data)
        else:
            self.pair.from_upstream(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pair.close()

    def pause_writing(self) -> None:
        other = self.pair.upstream if self.client else self.pair.downstream
        if other is not None and other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.pair.upstream if self.client else self.pair.downstream
        if other is not None and other.transport is not None:
            other.transport.resume_reading()


class _Pair:
    """A client connection and its upstream connection."""

    def __init__(self, fwd: H2Forwarder) -> None:
        self.fwd = fwd
        self.loop = asyncio.get_running_loop()
        self.downstream: _Side | None = None
        self.upstream: _Side | None = None
        self.to_up = bytearray()  # client bytes not yet forwarded (upstream still connecting)
        self.held = False  # an answer held for the injected delay
        self.to_down = bytearray()  # model bytes held with it
        self.up_buf = bytearray()  # upstream bytes not yet a whole frame
        self.answered: set[int] = set()  # streams whose first header block from the model went by
        self.ending: set[int] = set()  # streams whose header block now in progress ends them
        self.closed = False

    def client_connected(self, side: _Side) -> None:
        self.downstream = side
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, up = await self.loop.create_connection(
                lambda: _Side(self, client=False), self.fwd.upstream_host, self.fwd.upstream_port
            )
        except OSError:
            self.close()
            return
        if self.closed:
            assert up.transport is not None
            up.transport.close()
            return
        self.upstream = up
        self._flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.downstream, self.upstream):
            if side is not None and side.transport is not None:
                side.transport.close()

    # client → model ---------------------------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        up = self.upstream
        if not self.to_up and up is not None and up.transport is not None:
            up.transport.write(data)  # the hot path: no copy, no framing
        else:
            self.to_up += data
            self._flush()

    def _flush(self) -> None:
        up = self.upstream
        if not self.to_up or up is None or up.transport is None:
            return
        up.transport.write(bytes(self.to_up))
        self.to_up.clear()

    # model → client ---------------------------------------------------------------------------------
    @staticmethod
    def _stream_id(frame: bytes | bytearray) -> int:
        return int(struct.unpack_from(">I", frame, 5)[0]) & 0x7FFFFFFF

    def from_upstream(self, data: bytes) -> None:
        self.up_buf += data
        out = bytearray()
        buf = self.up_buf
        pos = 0
        while len(buf) - pos >= FRAME_HEADER:
            size = FRAME_HEADER + int.from_bytes(buf[pos : pos + 3], "big")
            if len(buf) - pos < size:
                break
            ftype = buf[pos + 3]
            if ftype in (HEADERS, CONTINUATION):
                frame = bytes(buf[pos : pos + size])
                if self.fwd.delay_s > 0 and ftype == HEADERS and not self.held and self._answer_starts(frame):
                    self._send_down(out)  # a call's answer begins: held for the injected delay
                    out = bytearray()
                    self.held = True
                    after_delay(self.loop, time.perf_counter() + self.fwd.delay_s, self._release)
                out += self._mark(frame)
            else:
                out += buf[pos : pos + size]
            pos += size
        del buf[:pos]
        if self.held:  # an answer is being held: everything after it waits too (order kept)
            self.to_down += out
        else:
            self._send_down(out)

    def _answer_starts(self, frame: bytes) -> bool:
        """A HEADERS frame opening the model's answer on its stream (its first header block)."""
        return self._stream_id(frame) not in self.answered

    def _send_down(self, data: bytes | bytearray) -> None:
        down = self.downstream
        if data and down is not None and down.transport is not None:
            down.transport.write(bytes(data))

    def _release(self) -> None:
        """The injected delay is over: the held answer, and what came after it, go to the client."""
        self.held = False
        self._send_down(self.to_down)
        self.to_down.clear()

    def _mark(self, frame: bytes) -> bytes:
        """Add the marker to the last frame of each stream's first header block from the model."""
        sid = self._stream_id(frame)
        flags = frame[4]
        if frame[3] == HEADERS and flags & END_STREAM:
            self.ending.add(sid)
        if flags & END_HEADERS:
            if sid not in self.answered:
                # a frame may not outgrow the smallest SETTINGS_MAX_FRAME_SIZE a peer can set; a
                # header block that large (never seen with gRPC) goes unmarked, and the arm check says so
                if len(frame) - FRAME_HEADER + len(self.fwd.marker) <= MIN_MAX_FRAME_SIZE:
                    frame = add_to_header_block(frame, self.fwd.marker)
                self.answered.add(sid)
            if sid in self.ending:  # the stream is over: forget it
                self.ending.discard(sid)
                self.answered.discard(sid)
        return frame


class H2Forwarder:
    """Forward HTTP/2 (gRPC) connections to `upstream` ("host:port"), marking answers with `marker`."""

    def __init__(self, upstream: str, marker: tuple[str, str], delay_s: float = 0.0) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.marker = literal_header(*marker)
        self.delay_s = delay_s

    def protocol(self) -> _Side:
        return _Side(_Pair(self), client=True)
