"""The model server's gRPC transport (serving.h2_grpc) against real gRPC clients (grpcio, and k6's Go
client in the k6 tests): answers, status codes and messages, large messages through flow control,
concurrency on one connection, compression refused; and raw HTTP/2 where clients would not go:
a bad preface, PING, SETTINGS, GOAWAY on shutdown, RST_STREAM, a header block split by CONTINUATION."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import grpc
import hpack
import pytest
import pytest_asyncio

from serving import runtime
from serving.grpc_call import INVALID_ARGUMENT, GrpcError, grpc_message
from serving.h2_grpc import GrpcH2Server
from serving.h2wire import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)

METHOD = "/test.Echo/Call"


def _echo(request: bytes) -> bytes:
    if request == b"bad":
        raise GrpcError(INVALID_ARGUMENT, "bad request: ünïcode % and\nnewline")
    if request == b"boom":
        raise RuntimeError("handler blew up")
    if request.startswith(b"big:"):
        return b"x" * int(request[4:])
    return b"echo:" + request


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[int, GrpcH2Server]]:
    srv = GrpcH2Server({METHOD: _echo})
    port = runtime.free_port()
    listener = await runtime.start_raw(srv.protocol, "127.0.0.1", port)
    try:
        yield port, srv
    finally:
        srv.goaway_all()
        await runtime.stop_listeners([listener])


def _call(channel: grpc.aio.Channel, method: str = METHOD, **kw: object) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(method, **kw)  # raw bytes in and out


@pytest.mark.asyncio
async def test_unary_answers_and_errors(server: tuple[int, GrpcH2Server]) -> None:
    port, _ = server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = _call(ch)
        assert await call(b"hello", timeout=5) == b"echo:hello"
        assert await call(b"", timeout=5) == b"echo:"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"bad", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "bad request: ünïcode % and\nnewline"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"boom", timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "handler blew up" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(ch, "/test.Echo/Nope")(b"x", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # the connection is still good after errors
        assert await call(b"again", timeout=5) == b"echo:again"


@pytest.mark.asyncio
async def test_large_messages_both_ways_through_flow_control(server: tuple[int, GrpcH2Server]) -> None:
    port, _ = server
    opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        call = _call(ch)
        big = bytes(range(256)) * 8192  # 2 MiB request: many DATA frames, window refills
        assert await call(big, timeout=10) == b"echo:" + big
        # 1 MiB answer: more than the client's initial 64 KiB windows, so it waits for WINDOW_UPDATEs
        for _ in range(3):
            assert await call(b"big:1048576", timeout=10) == b"x" * 1048576


@pytest.mark.asyncio
async def test_many_calls_on_one_connection_sequential_and_concurrent(
    server: tuple[int, GrpcH2Server],
) -> None:
    port, srv = server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = _call(ch)
        for i in range(50):
            assert await call(b"%d" % i, timeout=5) == b"echo:%d" % i
        got = await asyncio.gather(*(call(b"c%d" % i, timeout=5) for i in range(32)))
        assert got == [b"echo:c%d" % i for i in range(32)]
        assert len(srv.connections) == 1


@pytest.mark.asyncio
async def test_compressed_request_is_refused(server: tuple[int, GrpcH2Server]) -> None:
    port, _ = server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(ch)(b"hello" * 100, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_message_percent_encoding() -> None:
    assert grpc_message("plain text: ok") == b"plain text: ok"
    assert grpc_message("100%") == b"100%25"
    assert grpc_message("é\n") == b"%C3%A9%0A"


# ---------------------------------------------------------------------------------------------------
# raw HTTP/2


class Raw:
    """A blocking HTTP/2 peer for the cases clients do not produce on purpose."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        f = self.buf[: 9 + n]
        self.buf = self.buf[9 + n :]
        return f[3], f[4], int.from_bytes(f[5:9], "big") & 0x7FFFFFFF, f[9:]

    def frames_until(self, pred: object, limit: int = 50) -> list[tuple[int, int, int, bytes]]:
        out = []
        for _ in range(limit):
            f = self.read_frame()
            if f is None:
                break
            out.append(f)
            if callable(pred) and pred(f):
                break
        return out

    def handshake(self) -> None:
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        got = self.frames_until(lambda f: f[0] == SETTINGS and f[1] & ACK)
        assert any(f[0] == SETTINGS and not f[1] & ACK for f in got), got

    def headers(self, sid: int, path: str = METHOD) -> bytes:
        return self.enc.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )

    def close(self) -> None:
        self.sock.close()


def _msg(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


def _answer(raw: Raw, sid: int) -> tuple[dict[bytes, bytes], bytes]:
    """Headers (initial + trailers, merged) and DATA of stream `sid`, until its END_STREAM."""
    headers: dict[bytes, bytes] = {}
    data = b""
    for ftype, _flags, fsid, payload in raw.frames_until(lambda f: f[2] == sid and f[1] & END_STREAM):
        if fsid != sid:
            continue
        if ftype == HEADERS:
            headers.update(dict(raw.dec.decode(payload, raw=True)))
        elif ftype == DATA:
            data += payload
    return headers, data


@pytest.mark.asyncio
async def test_raw_ping_settings_continuation_padding_rst(server: tuple[int, GrpcH2Server]) -> None:
    port, _ = server

    def run() -> None:
        raw = Raw(port)
        try:
            raw.handshake()
            raw.send(frame(PING, 0, 0, b"12345678"))
            got = raw.frames_until(lambda f: f[0] == PING)
            assert got[-1] == (PING, ACK, 0, b"12345678")
            # a header block split across HEADERS + CONTINUATION, then padded DATA
            block = raw.headers(1)
            raw.send(frame(HEADERS, 0, 1, block[:5]) + frame(CONTINUATION, END_HEADERS, 1, block[5:]))
            body = _msg(b"split")
            raw.send(frame(DATA, END_STREAM | PADDED, 1, b"\x03" + body + b"\x00\x00\x00"))
            headers, data = _answer(raw, 1)
            assert headers[b":status"] == b"200" and headers[b"grpc-status"] == b"0"
            assert data == _msg(b"echo:split")
            # a call reset by the client is dropped; the next one is answered
            raw.send(
                frame(HEADERS, END_HEADERS, 3, raw.headers(3)) + frame(RST_STREAM, 0, 3, b"\x00\x00\x00\x08")
            )
            raw.send(frame(HEADERS, END_HEADERS, 5, raw.headers(5)) + frame(DATA, END_STREAM, 5, _msg(b"5")))
            headers, data = _answer(raw, 5)
            assert data == _msg(b"echo:5") and headers[b"grpc-status"] == b"0"
        finally:
            raw.close()

    await asyncio.to_thread(run)


@pytest.mark.asyncio
async def test_raw_bad_preface_and_goaway_on_shutdown(server: tuple[int, GrpcH2Server]) -> None:
    port, srv = server

    def bad() -> None:
        raw = Raw(port)
        try:
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = raw.frames_until(lambda f: f[0] == GOAWAY)
            assert got and got[-1][0] == GOAWAY
            assert struct.unpack(">II", got[-1][3][:8])[1] == 0x1  # PROTOCOL_ERROR
            assert raw.read_frame() is None  # and the connection is closed
        finally:
            raw.close()

    await asyncio.to_thread(bad)

    raw = Raw(port)
    try:
        await asyncio.to_thread(raw.handshake)
        srv.goaway_all()
        got = await asyncio.to_thread(raw.frames_until, lambda f: f[0] == GOAWAY)
        assert got[-1][0] == GOAWAY and struct.unpack(">II", got[-1][3][:8])[1] == 0  # NO_ERROR
    finally:
        raw.close()


@pytest.mark.asyncio
async def test_raw_window_update_releases_a_held_answer(server: tuple[int, GrpcH2Server]) -> None:
    """A client announcing a 10-byte stream window gets 10 bytes of DATA, the rest after its
    WINDOW_UPDATE, then the trailers."""
    port, _ = server

    def run() -> None:
        raw = Raw(port)
        try:
            raw.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 10)))
            raw.frames_until(lambda f: f[0] == SETTINGS and f[1] & ACK)
            raw.send(
                frame(HEADERS, END_HEADERS, 1, raw.headers(1)) + frame(DATA, END_STREAM, 1, _msg(b"12345"))
            )
            first = raw.frames_until(lambda f: f[0] == DATA)
            assert first[-1][0] == DATA and len(first[-1][3]) == 10
            raw.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1000)))
            headers, data = _answer(raw, 1)
            assert first[-1][3] + data == _msg(b"echo:12345")
            assert headers[b"grpc-status"] == b"0"
        finally:
            raw.close()

    await asyncio.to_thread(run)
