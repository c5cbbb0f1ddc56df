"""The orchestrator's gRPC forwarders: the hand-written one's (serving.h2_forward) HPACK and frame
pieces against the RFCs' own examples, and real gRPC calls through each implementation (hand, and
the library-built `h2` and `grpcio` ones of serving.lib_grpc_forward; a grpc.aio echo server
upstream, grpc clients in front): answers unchanged, the marker in the initial metadata only,
errors and concurrency, the delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from serving import runtime
from serving.h2_forward import H2Forwarder, add_to_header_block
from serving.h2wire import END_HEADERS, HEADERS, PADDED, literal_header
from serving.h2wire import hpack_int as _hpack_int
from serving.lib_grpc_forward import GrpcAioForwarder, H2LibForwarder

MARKER = ("x-orchbench-orchestrator", "executor")
METHOD = "/tensorflow.serving.PredictionService/Predict"


def test_hpack_integers_rfc7541_appendix_c1() -> None:
    assert _hpack_int(10, 5) == bytes([0x0A])
    assert _hpack_int(1337, 5) == bytes([0x1F, 0x9A, 0x0A])
    assert _hpack_int(42, 8) == bytes([0x2A])


def test_literal_without_indexing_rfc7541_appendix_c2_1() -> None:
    # C.2.1 encodes "custom-key: custom-header" as a literal *with* indexing, new name: 0x40 0x0a ...
    # Without indexing (§6.2.2) the first byte is 0x00 and the rest is the same.
    assert literal_header("custom-key", "custom-header") == (b"\x00\x0acustom-key\x0dcustom-header")


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def test_add_to_header_block_plain_and_padded() -> None:
    extra = literal_header(*MARKER)
    plain = _frame(HEADERS, END_HEADERS, 1, b"\x88")  # ":status: 200", indexed
    assert add_to_header_block(plain, extra) == _frame(HEADERS, END_HEADERS, 1, b"\x88" + extra)
    padded = _frame(HEADERS, END_HEADERS | PADDED, 3, b"\x02" + b"\x88" + b"\x00\x00")
    assert add_to_header_block(padded, extra) == _frame(
        HEADERS, END_HEADERS | PADDED, 3, b"\x02\x88" + extra + b"\x00\x00"
    )


# ---------------------------------------------------------------------------------------------------
# real gRPC through the forwarder


#: when the upstream received each call (time.perf_counter()), for the delay test
ARRIVALS: list[float] = []


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    ARRIVALS.append(time.perf_counter())
    if request == b"fail":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request body")
    await context.send_initial_metadata((("upstream-md", "yes"),))
    context.set_trailing_metadata((("upstream-trailer", "t"),))
    return b"echo:" + request


IMPLS = ["hand", "h2", "grpcio"]


async def _front(impl: str, upstream: str, delay: float = 0.0) -> tuple[object, int, object | None]:
    """(server to stop, its port, forwarder to close) for one implementation."""
    if impl == "grpcio":
        fwd = GrpcAioForwarder(upstream, MARKER, delay_s=delay)
        srv = grpc.aio.server()
        srv.add_generic_rpc_handlers(fwd.handlers())
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        return srv, port, fwd
    cls = H2Forwarder if impl == "hand" else H2LibForwarder
    raw = await runtime.start_raw(cls(upstream, MARKER, delay_s=delay).protocol, "127.0.0.1", 0)
    return raw, raw.sockets[0].getsockname()[1], None


@pytest_asyncio.fixture(params=IMPLS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, int]]:
    up = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    up.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": handler})]
    )
    up_port = up.add_insecure_port("127.0.0.1:0")
    await up.start()
    fronts = {}
    listeners: list = []
    closers: list = []
    for name, delay in (("fast", 0.0), ("slow", 0.02)):
        srv, port, fwd = await _front(request.param, f"127.0.0.1:{up_port}", delay)
        listeners.append(srv)
        closers += [fwd] if fwd is not None else []
        fronts[name] = port
    fronts["upstream"] = up_port
    yield fronts
    await runtime.stop_listeners(listeners)
    for fwd in closers:
        await fwd.close()
    await up.stop(None)


async def _call(port: int, body: bytes) -> tuple[grpc.StatusCode, bytes, dict, dict, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(METHOD)(body, timeout=5)
        try:
            answer = await call
            code, details = grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            answer, code, details = b"", exc.code(), exc.details() or ""
        initial = dict(await call.initial_metadata() or ())
        trailing = dict(await call.trailing_metadata() or ())
        return code, answer, initial, trailing, details


@pytest.mark.asyncio
async def test_answer_unchanged_and_marked_in_initial_metadata(stack: dict[str, int]) -> None:
    body = bytes(range(256)) * 64  # 16 KiB: several DATA frames
    code, answer, initial, trailing, _ = await _call(stack["fast"], body)
    assert (code, answer) == (grpc.StatusCode.OK, b"echo:" + body)
    assert initial[MARKER[0]] == MARKER[1] and initial["upstream-md"] == "yes"
    assert MARKER[0] not in trailing and trailing["upstream-trailer"] == "t"
    direct = await _call(stack["upstream"], body)
    assert MARKER[0] not in direct[2]


@pytest.mark.asyncio
async def test_errors_pass_through(stack: dict[str, int]) -> None:
    code, _, initial, trailing, details = await _call(stack["fast"], b"fail")
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "bad request body")
    # an error is one Trailers-Only header block: the marker is there, so gRPC reports it with the trailers
    assert trailing.get(MARKER[0]) == MARKER[1] and MARKER[0] not in initial


@pytest.mark.asyncio
async def test_many_calls_on_one_connection_and_concurrently(stack: dict[str, int]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack['fast']}") as ch:
        predict = ch.unary_unary(METHOD)
        for i in range(50):
            assert await predict(b"%d" % i, timeout=5) == b"echo:%d" % i
        answers = await asyncio.gather(*(predict(b"c%d" % i, timeout=5) for i in range(32)))
        assert answers == [b"echo:c%d" % i for i in range(32)]


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", IMPLS)
async def test_upstream_down_is_unavailable(impl: str) -> None:
    probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    dead = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    srv, port, fwd = await _front(impl, f"127.0.0.1:{dead}")
    try:
        code, *_ = await _call(port, b"x")
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        await runtime.stop_listeners([srv])
        if fwd is not None:
            await fwd.close()


@pytest.mark.asyncio
async def test_injected_delay_holds_each_call(stack: dict[str, int]) -> None:
    async def per_call(port: int) -> float:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            predict = ch.unary_unary(METHOD)
            await predict(b"warm", timeout=5)
            t = time.perf_counter()
            for _ in range(5):
                await predict(b"x", timeout=5)
            return (time.perf_counter() - t) / 5

    assert await per_call(stack["slow"]) >= 0.02
    assert await per_call(stack["fast"]) < 0.02
    # held on the way back: the call reaches the model at once, its answer waits the 20 ms
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack['slow']}") as ch:
        predict = ch.unary_unary(METHOD)
        await predict(b"warm", timeout=5)
        ARRIVALS.clear()
        t = time.perf_counter()
        await predict(b"x", timeout=5)
        done = time.perf_counter()
    assert len(ARRIVALS) == 1 and ARRIVALS[0] - t < 0.015 and done - ARRIVALS[0] >= 0.02
