"""The real model server as a child process on ephemeral loopback ports, and a raw-bytes gRPC call
that keeps the initial metadata (for the v2 protocol and proxy tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from serving.client import HttpClient
from serving.runtime import free_port


@dataclass
class ModelServer:
    rest_port: int | None
    grpc_port: int | None
    proc: subprocess.Popen[bytes]

    @property
    def rest(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class GrpcAnswer:
    code: grpc.StatusCode
    details: str
    metadata: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def grpc_call(target: str, method: str, body: bytes, timeout_s: float = 20.0) -> GrpcAnswer:
    """One unary call with raw bytes in and out; the status, details and initial metadata."""
    with grpc.insecure_channel(target) as channel:
        fn = channel.unary_unary(method)
        try:
            resp, call = fn.with_call(body, timeout=timeout_s)
        except grpc.RpcError as exc:
            return GrpcAnswer(exc.code(), exc.details() or "", dict(exc.initial_metadata() or ()))
        return GrpcAnswer(grpc.StatusCode.OK, "", dict(call.initial_metadata() or ()), resp)


def _wait_ready(server: ModelServer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            out = server.proc.stdout.read() if server.proc.stdout else b""
            raise RuntimeError(f"model server exited {server.proc.returncode}: {out[-2000:]!r}")
        try:
            if server.rest_port is not None:
                with HttpClient("127.0.0.1", server.rest_port, timeout_s=1) as c:
                    if c.request("GET", "/v2/health/ready").status == 200:
                        return
            else:
                from tritonclient.grpc import service_pb2

                ans = grpc_call(
                    server.grpc,
                    "/inference.GRPCInferenceService/ServerReady",
                    service_pb2.ServerReadyRequest().SerializeToString(),
                    timeout_s=1,
                )
                if ans.code == grpc.StatusCode.OK:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("model server not ready")


@contextmanager
def model_server(*extra: str, rest: bool = True, grpc_: bool = True) -> Iterator[ModelServer]:
    """`python -m serving.model_server` on free ports; stopped (and checked gone) afterwards."""
    rest_port = free_port() if rest else None
    grpc_port = free_port() if grpc_ else None
    args = [
        *(["--rest-port", str(rest_port)] if rest else []),
        *(["--grpc-port", str(grpc_port)] if grpc_ else []),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.model_server", *args, *extra],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = ModelServer(rest_port, grpc_port, proc)
    try:
        _wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        assert not os.path.exists(f"/proc/{proc.pid}"), f"model server pid {proc.pid} still exists"
