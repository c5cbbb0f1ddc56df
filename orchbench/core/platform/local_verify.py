"""Readiness probe and arm verification for the local platform: a model endpoint answers, and the
orchestrator's marker (a REST header or gRPC initial metadata) is on the path of the "with" arm only."""

from __future__ import annotations

from typing import Any

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ArmVerificationError, PlatformError
from orchbench.core.paths import PAYLOADS
from orchbench.core.platform.base import ArmEvidence

MARKER = "x-orchbench-orchestrator"


def probe(endpoint: Endpoint) -> None:
    """Raises unless the endpoint's model is ready (REST: model status AVAILABLE; gRPC: a predict)."""
    if endpoint.transport == "rest":
        from serving.client import HttpClient

        with HttpClient(endpoint.host, endpoint.port, timeout_s=2.0) as c:
            r = c.request("GET", f"/v1/models/{endpoint.model_name}")
        if r.status != 200 or b"AVAILABLE" not in r.body:
            raise PlatformError(f"status {r.status}: {r.body[:200]!r}")
    else:
        result = grpc_predict(endpoint, timeout_s=5.0)
        if result.code.name != "OK":
            raise PlatformError(f"gRPC {result.code.name}: {result.details}")


def grpc_payload(model_name: str) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.ParseFromString((PAYLOADS / "flowers.bin").read_bytes())
    req.model_spec.name = model_name
    return req.SerializeToString()


def grpc_predict(endpoint: Endpoint, timeout_s: float) -> Any:
    from serving.client import GrpcClient

    with GrpcClient(endpoint.grpc_target, timeout_s=timeout_s) as c:
        return c.predict(grpc_payload(endpoint.model_name))


def verify_arm(endpoint: Endpoint) -> ArmEvidence:
    """The orchestrator is on the path of `endpoint` exactly when its arm is "with"."""
    if endpoint.transport == "rest":
        from serving.client import HttpClient

        with HttpClient(endpoint.host, endpoint.port) as c:
            r = c.request(
                "POST",
                f"/v1/models/{endpoint.model_name}:predict",
                (PAYLOADS / "flowers.json").read_bytes(),
            )
        if r.status != 200:
            raise ArmVerificationError(f"{endpoint.url} answered HTTP {r.status}: {r.body[:200]!r}")
        marker = r.headers.get(MARKER)
        how = (
            f"REST response header {MARKER}={marker}" if marker else f"REST response without {MARKER} header"
        )
    else:
        res = grpc_predict(endpoint, timeout_s=10.0)
        if res.code.name != "OK":
            raise ArmVerificationError(f"gRPC {endpoint.grpc_target} answered {res.code.name}: {res.details}")
        marker = res.initial_metadata.get(MARKER)
        how = (
            f"gRPC initial metadata {MARKER}={marker}"
            if marker
            else f"gRPC initial metadata without {MARKER}"
        )
    on_path = marker == "executor"
    if on_path != (endpoint.arm == "with"):
        raise ArmVerificationError(
            f"arm {endpoint.arm!r} on port {endpoint.port}: orchestrator "
            f"{'present' if on_path else 'absent'} ({how})"
        )
    return ArmEvidence(arm=endpoint.arm, orchestrator_on_path=on_path, how=how)
