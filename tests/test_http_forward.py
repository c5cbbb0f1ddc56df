"""The orchestrator's REST forwarders against a scripted upstream, in-process: the library-built
ones (serving.lib_rest_forward: httptools, the default; serving.aiohttp_forward: aiohttp), each
test run against both.

The end-to-end behaviour through the real model server is in tests/test_serving.py; here are the
HTTP/1.1 edge cases: pipelining, chunked answers, Connection: close, bad heads, upstream down or
silent, and that the body reaches the upstream byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from serving import runtime
from serving.aiohttp_forward import AiohttpForwarder
from serving.lib_rest_forward import HttptoolsForwarder
from serving.orchestrator import MARKER_KEY, MARKER_VALUE, rewrite_path

pytestmark = pytest.mark.asyncio

Answer = Callable[[bytes, bytes], bytes | None]  # (request head, body) -> raw response or None (silence)


def _ok(body: bytes = b'{"ok":1}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@dataclass
class Upstream:
    answer: Answer
    seen: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0


class _UpProto(asyncio.Protocol):
    def __init__(self, up: Upstream) -> None:
        self.up, self.buf = up, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t = transport
        self.up.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                return
            body, self.buf = rest[:length], rest[length:]
            self.up.seen.append((head, body))
            out = self.up.answer(head, body)
            if out is not None:
                self.t.write(out)


IMPLS = ["httptools", "aiohttp"]


@pytest_asyncio.fixture(params=IMPLS)
async def make(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., asyncio.Future[tuple[Upstream, int]]]]:
    impl = request.param
    servers: list = []
    sessions: list[AiohttpForwarder] = []

    async def _make(answer: Answer, upstream_port: int | None = None, **kw: float) -> tuple[Upstream, int]:
        loop = asyncio.get_running_loop()
        up = Upstream(answer)
        if upstream_port is None:
            srv = await loop.create_server(lambda: _UpProto(up), "127.0.0.1", 0)
            servers.append(srv)
            upstream_port = srv.sockets[0].getsockname()[1]
        args = (f"127.0.0.1:{upstream_port}", rewrite_path, (MARKER_KEY, MARKER_VALUE))
        if impl == "aiohttp":
            fwd = AiohttpForwarder(*args, **kw)
            sessions.append(fwd)
            runner = await runtime.start_rest(fwd.handler, "127.0.0.1", 0)
            servers.append(runner)
            return up, runner.addresses[0][1]
        front = await runtime.start_raw(HttptoolsForwarder(*args, **kw).protocol, "127.0.0.1", 0)
        servers.append(front)
        return up, front.sockets[0].getsockname()[1]

    _make.impl = impl  # type: ignore[attr-defined]
    yield _make  # type: ignore[misc]
    await runtime.stop_listeners(servers)
    for fwd in sessions:
        await fwd.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def test_body_forwarded_unchanged_path_rewritten_and_answer_marked(make) -> None:
    up, port = await make(lambda head, body: _ok(b'{"echo":%d}' % len(body)))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = bytes(range(256)) * 64  # 16 KiB, every byte value
    writer.write(_post("/v1/models/flowers/:predict", payload))
    status, headers, body = await _read_response(reader)
    assert (status, body) == (200, b'{"echo":16384}')
    assert headers[MARKER_KEY] == MARKER_VALUE and headers["content-type"] == "application/json"
    head, seen_body = up.seen[0]
    assert head.split(b"\r\n")[0] == b"POST /v1/models/flowers:predict HTTP/1.1"
    assert seen_body == payload
    writer.close()


async def test_pipelined_requests_answered_in_order_on_one_upstream_connection(make) -> None:
    up, port = await make(lambda head, body: _ok(body))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(_post("/v1/models/m:predict", b'{"n":%d}' % i) for i in range(5)))
    answers = [await _read_response(reader) for _ in range(5)]
    assert [a[2] for a in answers] == [b'{"n":%d}' % i for i in range(5)]
    assert up.connections == 1
    writer.close()


async def test_chunked_upstream_answer_is_reassembled(make) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    _, port = await make(lambda head, body: chunked)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/v1/models/m:predict", b"{}"))
    status, headers, body = await _read_response(reader)
    assert (status, body, headers["content-length"]) == (200, b'{"a":1}', "7")
    writer.close()


async def test_upstream_error_status_and_body_pass_through(make) -> None:
    err = b'{"error":"bad"}'
    _, port = await make(
        lambda head, body: b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(err), err)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/v1/models/m:predict", b"{}"))
    status, headers, body = await _read_response(reader)
    assert (status, body, headers[MARKER_KEY]) == (400, err, MARKER_VALUE)
    writer.close()


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ],
)
async def test_bad_requests_get_an_http_error_with_a_json_body(make, raw: bytes, status: int) -> None:
    if b"Host:" not in raw and make.impl == "aiohttp":
        pytest.skip("aiohttp answers a malformed head itself (400, text/plain, no marker; no Host included)")
    up, port = await make(lambda head, body: _ok())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got, headers, body = await _read_response(reader)
    assert got == status and "error" in json.loads(body) and headers[MARKER_KEY] == MARKER_VALUE
    assert up.seen == []
    writer.close()


async def test_upstream_down_is_503_and_the_connection_stays_usable(make) -> None:
    probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    _, port = await make(lambda head, body: _ok(), upstream_port=dead_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(_post("/v1/models/m:predict", b"{}"))
        status, _, body = await _read_response(reader)
        assert status == 503 and "unavailable" in json.loads(body)["error"]
    writer.close()


async def test_silent_upstream_times_out_with_504_and_late_answers_are_not_mixed_up(make) -> None:
    calls: list[int] = []

    def answer(head: bytes, body: bytes) -> bytes | None:
        calls.append(1)
        return None if len(calls) == 1 else _ok(b'{"second":1}')  # the first request gets no answer

    up, port = await make(answer, timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/v1/models/m:predict", b"{}"))
    status, _, _ = await _read_response(reader)
    assert status == 504
    writer.write(_post("/v1/models/m:predict", b"{}"))
    status, _, body = await _read_response(reader)
    assert (status, body) == (200, b'{"second":1}')
    assert up.connections == 2  # the silent connection was dropped, not reused
    writer.close()


async def test_connection_close_is_honoured(make) -> None:
    _, port = await make(lambda head, body: _ok())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/v1/models/m:predict", b"{}", extra="Connection: close\r\n"))
    status, headers, _ = await _read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the forwarder
    writer.close()


async def test_injected_delay_is_applied_per_request(make) -> None:
    loop = asyncio.get_running_loop()
    _, fast = await make(lambda head, body: _ok())
    _, slow = await make(lambda head, body: _ok(), delay_s=0.02)

    async def one(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post("/v1/models/m:predict", b"{}"))
        await _read_response(reader)  # connect + first request
        t = loop.time()
        writer.write(_post("/v1/models/m:predict", b"{}"))
        await _read_response(reader)
        writer.close()
        return loop.time() - t

    assert await one(slow) >= 0.02
    assert await one(fast) < 0.02
    # held on the way back: the request reaches the model at once, its answer waits the 20 ms
    arrived: list[float] = []
    _, held = await make(lambda head, body: (arrived.append(loop.time()), _ok())[1], delay_s=0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", held)
    writer.write(_post("/v1/models/m:predict", b"{}"))
    await _read_response(reader)  # connect + first request
    arrived.clear()
    t = loop.time()
    writer.write(_post("/v1/models/m:predict", b"{}"))
    await _read_response(reader)
    done = loop.time()
    writer.close()
    assert len(arrived) == 1 and arrived[0] - t < 0.015 and done - arrived[0] >= 0.02


async def test_chunked_request_body_is_forwarded_with_a_length(make) -> None:
    up, port = await make(lambda head, body: _ok(body))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    status, headers, body = await _read_response(reader)
    assert (status, body, headers[MARKER_KEY]) == (200, b'{"a":1}', MARKER_VALUE)
    assert b"content-length: 7" in up.seen[0][0].lower()
    writer.close()
