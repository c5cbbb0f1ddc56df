"""Model server and orchestrator as real processes on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2

from orchbench.core.paths import PAYLOADS
from serving.client import GrpcClient, H2GrpcClient, HttpClient
from serving.orchestrator import rewrite_path
from serving.runtime import EXIT_BIND, SPIN_S, after_delay, free_port, sleep_part_s

REST_BODY = (PAYLOADS / "flowers.json").read_bytes()
GRPC_BODY = (PAYLOADS / "flowers.bin").read_bytes()
MARKER = "x-orchbench-orchestrator"


def _start(module: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"serving.{module}", *args],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert not os.path.exists(f"/proc/{proc.pid}"), f"pid {proc.pid} still exists"


def _wait_rest(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''!r}"
            )
        try:
            with HttpClient("127.0.0.1", port, timeout_s=1) as c:
                if c.request("GET", "/v1/models/flowers").status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"port {port} not ready")


@dataclass
class Stack:
    model_rest: int
    model_grpc: int
    orch_rest: int
    orch_grpc: int


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(free_port(), free_port(), free_port(), free_port())
    model = _start("model_server", "--rest-port", str(s.model_rest), "--grpc-port", str(s.model_grpc))
    orch = _start(
        "orchestrator",
        "--rest-port",
        str(s.orch_rest),
        "--grpc-port",
        str(s.orch_grpc),
        "--upstream-rest",
        f"127.0.0.1:{s.model_rest}",
        "--upstream-grpc",
        f"127.0.0.1:{s.model_grpc}",
    )
    try:
        _wait_rest(s.model_rest, model)
        _wait_rest(s.orch_rest, orch)
        yield s
    finally:
        _stop(orch)
        _stop(model)


def _post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    with HttpClient("127.0.0.1", port) as c:
        r = c.request("POST", path, body)
    return r.status, r.headers, r.body


@pytest.mark.slow
def test_rest_same_answer_direct_and_through_both_orchestrator_paths(stack: Stack) -> None:
    status, headers, direct = _post(stack.model_rest, "/v1/models/flowers:predict", REST_BODY)
    assert status == 200 and MARKER not in headers
    answer = json.loads(direct)
    pred = answer["predictions"][0]
    assert pred["key"] == "1" and len(pred["scores"]) == 5 and isinstance(pred["prediction"], int)
    assert 150 < len(direct) < 300  # the seed's answer was 218 bytes
    for path in ("/v1/models/flowers:predict", "/v1/models/flowers/:predict"):
        status, headers, via = _post(stack.orch_rest, path, REST_BODY)
        assert status == 200
        assert headers[MARKER] == "executor"
        assert via == direct, path


@pytest.mark.slow
def test_grpc_same_answer_direct_and_through_orchestrator(stack: Stack) -> None:
    with GrpcClient(f"127.0.0.1:{stack.model_grpc}") as c:
        direct = c.predict(GRPC_BODY)
    with GrpcClient(f"127.0.0.1:{stack.orch_grpc}") as c:
        via = c.predict(GRPC_BODY)
    assert direct.code == via.code == grpc.StatusCode.OK
    assert MARKER not in direct.initial_metadata
    assert via.initial_metadata[MARKER] == "executor"
    assert via.body == direct.body
    resp = predict_pb2.PredictResponse.FromString(direct.body)
    assert list(resp.outputs["scores"].tensor_shape.dim[i].size for i in range(2)) == [1, 5]
    assert resp.outputs["key"].string_val == [b"1"]
    rest = json.loads(_post(stack.model_rest, "/v1/models/flowers:predict", REST_BODY)[2])["predictions"][0]
    assert resp.outputs["prediction"].int64_val == [rest["prediction"]]  # both transports agree
    assert list(resp.outputs["scores"].float_val) == pytest.approx(rest["scores"], rel=1e-6)


@pytest.mark.slow
def test_status_directly_and_passed_through(stack: Stack) -> None:
    for port in (stack.model_rest, stack.orch_rest):
        with HttpClient("127.0.0.1", port) as c:
            r = c.request("GET", "/v1/models/flowers")
        assert r.status == 200
        assert json.loads(r.body)["model_version_status"][0]["state"] == "AVAILABLE"


BAD_REST = [
    ("/v1/models/flowers:predict", b"{not json", 400, "JSON"),
    ("/v1/models/flowers:predict", b'{"inputs": []}', 400, "instances"),
    ("/v1/models/flowers:predict", b'{"instances":[{"image_bytes":{"b64":"%%%"},"key":"1"}]}', 400, "base64"),
    (
        "/v1/models/flowers:predict",
        b'{"instances":[{"image_bytes":{"b64":"aGVsbG8="},"key":"1"}]}',
        400,
        "image",
    ),
    ("/v1/models/flowers:predict", b'{"instances":[{"key":"1"}]}', 400, "image_bytes"),
    ("/v1/models/tulips:predict", REST_BODY, 404, "Servable not found"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body", "status", "text"), BAD_REST)
def test_rest_errors_tf_serving_style_direct_and_passed_through(
    stack: Stack, path: str, body: bytes, status: int, text: str
) -> None:
    got, _, direct = _post(stack.model_rest, path, body)
    assert got == status
    assert text in json.loads(direct)["error"]
    got, headers, via = _post(stack.orch_rest, path, body)
    assert (got, via) == (status, direct)
    assert headers[MARKER] == "executor"


def _with_name(name: str) -> bytes:
    req = predict_pb2.PredictRequest.FromString(GRPC_BODY)
    req.model_spec.name = name
    return req.SerializeToString()


def _not_an_image() -> bytes:
    req = predict_pb2.PredictRequest.FromString(GRPC_BODY)
    req.inputs["image_bytes"].string_val[0] = b"hello"
    return req.SerializeToString()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT),
        (_with_name("tulips"), grpc.StatusCode.NOT_FOUND),
        (_not_an_image(), grpc.StatusCode.INVALID_ARGUMENT),
        (
            predict_pb2.PredictRequest(model_spec={"name": "flowers"}).SerializeToString(),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_grpc_errors_direct_and_passed_through(stack: Stack, body: bytes, code: grpc.StatusCode) -> None:
    with GrpcClient(f"127.0.0.1:{stack.model_grpc}") as c:
        direct = c.predict(body)
    with GrpcClient(f"127.0.0.1:{stack.orch_grpc}") as c:
        via = c.predict(body)
    assert direct.code == via.code == code
    assert via.details == direct.details and direct.details


@pytest.fixture(scope="module")
def grpcio_model() -> Iterator[int]:
    """The same model server with grpcio's server on its gRPC port instead of serving.h2_grpc."""
    rest, port = free_port(), free_port()
    proc = _start(
        "model_server", "--rest-port", str(rest), "--grpc-port", str(port), "--grpc-server", "grpcio"
    )
    try:
        _wait_rest(rest, proc)
        yield port
    finally:
        _stop(proc)


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [GRPC_BODY, b"\xff\xff\xff garbage", _with_name("tulips"), _not_an_image()],
    ids=["ok", "garbage", "name", "image"],
)
def test_grpc_answers_alike_from_h2_and_grpcio_servers(stack: Stack, grpcio_model: int, body: bytes) -> None:
    """serving.h2_grpc (the default) and grpcio's server give the same status, details and bytes."""
    with GrpcClient(f"127.0.0.1:{stack.model_grpc}") as c:
        h2 = c.predict(body)
    with GrpcClient(f"127.0.0.1:{grpcio_model}") as c:
        ref = c.predict(body)
    assert (h2.code, h2.details, h2.body) == (ref.code, ref.details, ref.body)


@pytest.mark.slow
def test_thin_grpc_client_agrees_with_grpcio_client(stack: Stack, grpcio_model: int) -> None:
    """The serving benchmark's H2GrpcClient, against both gRPC servers and through the orchestrator:
    the same status, details and answer bytes as grpcio's client, over many calls on one connection."""
    for port in (stack.model_grpc, grpcio_model, stack.orch_grpc):
        with GrpcClient(f"127.0.0.1:{port}") as ref, H2GrpcClient("127.0.0.1", port) as thin:
            want = ref.predict(GRPC_BODY)
            for _ in range(20):
                assert thin.call(GRPC_BODY) == (0, "", want.body), port
            bad = ref.predict(b"\xff\xff\xff garbage")
            status, details, body = thin.call(b"\xff\xff\xff garbage")
            assert (status, details, body) == (bad.code.value[0], bad.details, b""), port
            assert thin.call(GRPC_BODY)[0] == 0  # the connection is still good


@pytest.mark.slow
def test_servers_survive_bad_input(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.model_rest)) as s:
        s.sendall(b"GARBAGE / NOT-HTTP\r\n\r\n")
        s.recv(1024)
    assert _post(stack.orch_rest, "/v1/models/flowers:predict", REST_BODY)[0] == 200


@pytest.mark.slow
def test_port_in_use_is_reported(tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for module, extra in (("model_server", []), ("orchestrator", ["--upstream-rest", "127.0.0.1:1"])):
            proc = _start(module, "--rest-port", str(port), *extra)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == EXIT_BIND, out
            assert f"127.0.0.1:{port}" in out.decode()
        proc = _start("model_server", "--grpc-port", str(port))
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_BIND, out


def test_rewrite_path_accepts_both_seldon_forms() -> None:
    assert rewrite_path("/v1/models/flowers/:predict") == "/v1/models/flowers:predict"
    assert rewrite_path("/v1/models/flowers:predict") == "/v1/models/flowers:predict"
    assert rewrite_path("/v1/models/flowers") == "/v1/models/flowers"
    assert rewrite_path("/api/v1.0/predictions") is None


def test_injected_delay_is_precise() -> None:
    """runtime.after_delay, which both forwarders use for --inject-delay-ms, meets its deadline."""

    async def measure(delay_s: float) -> list[float]:
        loop = asyncio.get_running_loop()
        out = []
        for _ in range(50):
            done = loop.create_future()
            t = time.perf_counter()
            after_delay(loop, t + delay_s, lambda f=done: f.set_result(time.perf_counter()))
            out.append(await done - t)
        return sorted(out)

    for delay in (0.0005, 0.003, 0.005):
        got = asyncio.run(measure(delay))
        median = got[len(got) // 2]
        assert delay <= median < delay + 0.0001, (delay, median)


def test_the_sleep_part_of_a_delay_is_whole_ms_or_none() -> None:
    """uvloop rounds a timer's delay to whole ms (call_later(0.0005) fires at once): after_delay only
    ever asks for whole ms, and none when less than 1 ms is left above SPIN_S (a busy-wait then)."""
    assert SPIN_S == 0.0015
    assert sleep_part_s(0.0005) == 0.0 and sleep_part_s(0.002) == 0.0 and sleep_part_s(0.00249) == 0.0
    assert sleep_part_s(0.0025) == 0.001 and sleep_part_s(0.0034999) == 0.001
    assert sleep_part_s(0.005) == 0.003 and sleep_part_s(0.0055) == 0.004 and sleep_part_s(0.007) == 0.005
    for left in (0.0026, 0.004, 0.0109, 1.0):
        sleep = sleep_part_s(left)
        assert sleep * 1000 == int(sleep * 1000) and SPIN_S <= left - sleep < SPIN_S + 0.001


@pytest.fixture(scope="module", params=["aiohttp+grpcio", "aiohttp+h2"])
def other_orch(request: pytest.FixtureRequest, stack: Stack) -> Iterator[tuple[int, int]]:
    """The orchestrator with the non-default forwarders (REST impl + gRPC impl: aiohttp + grpc.aio;
    aiohttp + the `h2` package) in front of the same
    model server as the default one (httptools + the hand-written serving.h2_forward)."""
    rest_impl, grpc_impl = request.param.split("+")
    rest, port = free_port(), free_port()
    proc = _start(
        "orchestrator",
        *("--rest-port", str(rest), "--upstream-rest", f"127.0.0.1:{stack.model_rest}"),
        *("--grpc-port", str(port), "--upstream-grpc", f"127.0.0.1:{stack.model_grpc}"),
        *("--rest-impl", rest_impl, "--grpc-impl", grpc_impl),
    )
    try:
        _wait_rest(rest, proc)
        yield rest, port
    finally:
        _stop(proc)


@pytest.mark.slow
def test_every_forwarder_implementation_answers_alike(stack: Stack, other_orch: tuple[int, int]) -> None:
    """Real requests (thin REST client, grpcio and thin gRPC clients) through the other forwarders:
    the same status, body, details and answer bytes as through the default ones, and the marker on
    every answer."""
    rest, port = other_orch
    for path, body in [("/v1/models/flowers/:predict", REST_BODY), *((p, b) for p, b, _, _ in BAD_REST)]:
        want = _post(stack.orch_rest, path, body)
        got = _post(rest, path, body)
        assert (got[0], got[2]) == (want[0], want[2]), path
        assert got[1][MARKER] == want[1][MARKER] == "executor"
    with HttpClient("127.0.0.1", rest) as c:
        assert [c.request("GET", "/v1/models/flowers").status for _ in range(3)] == [200] * 3
        assert c.request("GET", "/metrics").status == 404
    for body in (GRPC_BODY, b"\xff\xff\xff garbage", _with_name("tulips"), _not_an_image()):
        with GrpcClient(f"127.0.0.1:{stack.orch_grpc}") as c:
            want_g = c.predict(body)
        with GrpcClient(f"127.0.0.1:{port}") as c:
            got_g = c.predict(body)
        assert (got_g.code, got_g.details, got_g.body) == (want_g.code, want_g.details, want_g.body)
        if got_g.code == grpc.StatusCode.OK:
            assert got_g.initial_metadata[MARKER] == want_g.initial_metadata[MARKER] == "executor"
    with GrpcClient(f"127.0.0.1:{stack.model_grpc}") as c:
        direct = c.predict(GRPC_BODY).body
    with H2GrpcClient("127.0.0.1", port) as thin:  # many calls on one connection
        assert [thin.call(GRPC_BODY) for _ in range(20)] == [(0, "", direct)] * 20
