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
    """Raises unless the endpoint's model is ready (REST: model status AVAILABLE, v2: the model's
    ready path; gRPC: a predict / ModelInfer; http: the spec's request answered at all)."""
    if endpoint.protocol != "tfserving":
        from orchbench.core.platform.answer import answer

        if endpoint.protocol == "v2" and endpoint.transport == "rest":
            from serving.client import HttpClient

            with HttpClient(endpoint.host, endpoint.port, timeout_s=2.0) as c:
                r = c.request("GET", f"/v2/models/{endpoint.model_name}/ready")
            if r.status != 200:
                raise PlatformError(f"v2 model ready: status {r.status}: {r.body[:200]!r}")
            return
        got = answer(endpoint, timeout_s=5.0)
        if endpoint.transport == "grpc" and not got.ok:
            raise PlatformError(got.why)
        return
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


#: What answers of each local hop carry: (header, value it must have, or None: must be absent).
def hop_markers(hop: str) -> list[tuple[str, str | None]]:
    from orchbench.core.platform.proxies import HOP_HEADER, KINDS

    return [
        (MARKER, "executor" if hop == "orchestrator" else None),
        (HOP_HEADER, hop if hop in KINDS else None),
    ]


def _answer_headers(endpoint: Endpoint) -> tuple[dict[str, str], str]:
    """One real predict through the endpoint: its response headers (REST) or initial metadata
    (gRPC), and how they were obtained."""
    if endpoint.protocol != "tfserving":
        from orchbench.core.platform.answer import answer

        got = answer(endpoint)
        if not got.ok:
            where = endpoint.url if endpoint.transport == "rest" else f"gRPC {endpoint.grpc_target}"
            raise ArmVerificationError(f"arm {endpoint.arm!r}: {where} ({endpoint.protocol}): {got.why}")
        return got.headers, got.where
    if endpoint.transport == "rest":
        from serving.client import HttpClient

        with HttpClient(endpoint.host, endpoint.port) as c:
            r = c.request(
                "POST",
                f"/v1/models/{endpoint.model_name}:predict",
                (PAYLOADS / "flowers.json").read_bytes(),
            )
        if r.status != 200:
            raise ArmVerificationError(
                f"arm {endpoint.arm!r}: {endpoint.url} answered HTTP {r.status}: {r.body[:200]!r}"
            )
        return {k.lower(): v for k, v in r.headers.items()}, "REST response header"
    res = grpc_predict(endpoint, timeout_s=10.0)
    if res.code.name != "OK":
        raise ArmVerificationError(
            f"arm {endpoint.arm!r}: gRPC {endpoint.grpc_target} answered {res.code.name}: {res.details}"
        )
    return {k.lower(): v for k, v in dict(res.initial_metadata).items()}, "gRPC initial metadata"


def legacy_hop(arm: str) -> str:
    """The seed's arms: "with" is the orchestrator, "without" the model server direct."""
    return "orchestrator" if arm == "with" else "model"


def verify_arm(
    endpoint: Endpoint, hop: str | None = None, checks: list[dict[str, Any]] | None = None
) -> ArmEvidence:
    """The arm's answers carry its hop's marker and no other hop's (the model server direct: none),
    plus the spec's own `verify` checks (header present, optionally with a value, or absent)."""
    hop = hop or legacy_hop(endpoint.arm)
    headers, where = _answer_headers(endpoint)
    wanted = [(h, v, v is not None) for h, v in hop_markers(hop)]
    wanted += [(c["header"].lower(), c.get("value"), bool(c.get("present", True))) for c in checks or []]
    seen = []
    for header, value, present in wanted:
        got = headers.get(header)
        ok = (got is not None and (value is None or got == value)) if present else got is None
        if not ok:
            what = f"{header}={got}" if got is not None else f"no {header}"
            need = f"{header}={value}" if present and value else (header if present else f"no {header}")
            raise ArmVerificationError(
                f"arm {endpoint.arm!r} (hop {hop}) on port {endpoint.port}: {where} has {what}, "
                f"expected {need}"
            )
        seen.append(f"{header}={got}" if got is not None else f"no {header}")
    how = f"{where} " + ", ".join(seen)
    return ArmEvidence(
        arm=endpoint.arm,
        orchestrator_on_path=headers.get(MARKER) == "executor",
        how=how,
        verified=True,
        hop=hop,
    )
