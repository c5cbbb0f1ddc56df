"""A spec's `kubernetes.kind` (seldon | kserve | seldon2) as renderer options (pure: no API calls).

The SeldonDeployment kind (`seldon`, the seed's) goes through manifest.py and kubernetes.py as ever; for
`kserve` and `seldon2` this module turns the spec's `kubernetes.kserve` / `kubernetes.seldon2` section
and its arms into KServeOptions / Seldon2Options per transport, loads and checks the manifest of that
kind, renders every arm (which is where a rendering that puts the same hop in two arms is refused,
k8s_arms.refuse_shared_hops), and turns an arm's ArmTarget into the endpoint dict the load tester reads
(orchbench.core.arms.Endpoint: protocol v2, the extra headers such as `seldon-model`, and the Host
header / `:authority` when it is not the host itself).

The spec is taken as `Any` (duck-typed: `.kubernetes`, `.arm_names()`, `.baseline`, `.transports`) so
that spec.py can call this module without an import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from orchbench.core.errors import ConfigError
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.kserve_render import (
    KSERVE_ARMS,
    KServeArm,
    KServeOptions,
    inspect_isvc,
    render_kserve,
)
from orchbench.core.platform.seldon2_render import (
    SELDON2_ARMS,
    Seldon2Arm,
    Seldon2Options,
    inspect_model,
    render_seldon2,
)
from orchbench.core.safeio import MAX_MANIFEST_BYTES, MAX_PAYLOAD_BYTES, load_yaml_file, read_bytes

#: The arms each custom kind renders (the `seldon` kind: the SeldonDeployment's with / without).
KIND_ARMS: dict[str, tuple[str, ...]] = {"kserve": KSERVE_ARMS, "seldon2": SELDON2_ARMS}
CUSTOM_KINDS = tuple(KIND_ARMS)


def kind_of(spec: Any) -> str:
    return str(getattr(spec.kubernetes, "kind", "seldon"))


def check_manifest(kind: str, manifest: Any, source: str) -> None:
    """ConfigError (one line) unless `manifest` is an object of the kind's type orchbench renders from."""
    if kind == "kserve":
        inspect_isvc(manifest, source=source)
    else:
        inspect_model(manifest, source=source)


def load_kind_manifest(kind: str, path: str | Path) -> dict[str, Any]:
    data = load_yaml_file(path, "manifest", MAX_MANIFEST_BYTES)
    check_manifest(kind, data, str(path))
    return dict(data)


def kserve_options(spec: Any, transport: str, owner: str = "") -> KServeOptions:
    """`owner`: the workflow's uid (the label orchbench.io/owner on every object rendered)."""
    section = spec.kubernetes.kserve
    return KServeOptions(
        owner=owner,
        arms=tuple(spec.arm_names()),
        baseline=spec.baseline,
        transport=transport,
        protocol="v2",
        activator=bool(section.activator) if section else False,
        graph_backend=section.graph_backend if section else "raw",
        grpc_port=section.grpc_port if section else None,
    )


def seldon2_options(spec: Any, transport: str, owner: str = "") -> Seldon2Options:
    section = spec.kubernetes.seldon2
    extra: dict[str, Any] = {}
    if section is not None:
        extra = {
            "server": section.server,
            "mesh_service": section.mesh_service,
            "model_version": section.model_version,
        }
    return Seldon2Options(
        arms=tuple(spec.arm_names()),
        baseline=spec.baseline,
        transport=transport,
        protocol="v2",
        owner=owner,
        **extra,
    )


def options_for(spec: Any, transport: str) -> KServeOptions | Seldon2Options:
    return kserve_options(spec, transport) if kind_of(spec) == "kserve" else seldon2_options(spec, transport)


def render_arms(
    spec: Any, manifest: dict[str, Any], transport: str, placement: dict[str, Any] | None = None
) -> dict[str, KServeArm] | dict[str, Seldon2Arm]:
    """Every arm of the spec for one transport (ConfigError, one line, if they are not distinct,
    measurable arms)."""
    ns = spec.kubernetes.namespace
    if kind_of(spec) == "kserve":
        return render_kserve(manifest, kserve_options(spec, transport), ns, placement)
    return render_seldon2(manifest, seldon2_options(spec, transport), ns)


def check_renders(spec: Any, manifest: dict[str, Any]) -> None:
    """Render every transport's arms once: what `deploy` would refuse is refused before the run."""
    for transport in spec.transports:
        render_arms(spec, manifest, transport)


def endpoint_dict(target: ArmTarget) -> dict[str, Any]:
    """The ArmTarget plus what orchbench.core.arms.Endpoint (and so the k6 adapter) reads: the arm's
    extra headers (`seldon-model`: REST header, gRPC metadata), `host` (REST) when the path routes by a
    name that is not the host it connects to, and the protocol.

    REST goes as protocol `http` with the target's own path (the graph router's `/`, a v2 infer path
    otherwise) and the check "200 and outputs[0].data present": a third-party runtime's v2 answer names
    its outputs itself (MLServer's sklearn: `predict`), not as orchbench's model server does, which is
    what protocol v2's answer check expects. gRPC goes as protocol v2 (ModelInfer) with the target's
    own model name in each request and the check "status OK and at least one non-empty output"
    (`answer_check: outputs`), for the same reason."""
    out = target.to_dict()
    headers = dict(target.headers)
    if target.host_header and target.host_header != target.host:
        if target.transport == "grpc":
            # A gRPC client's `:authority` is the host it dials (grpc-go, as in k6 and ghz, drops
            # pseudo-headers given as metadata), so a target must dial the name its path routes by,
            # as every rendered target does (Knative: the service's cluster-local host).
            raise ConfigError(
                f"arm {target.arm}: gRPC target {target.grpc_target} would need :authority "
                f"{target.host_header}; dial that host instead"
            )
        headers["host"] = target.host_header
    out["headers"] = headers
    if target.transport == "rest":
        path = "/" + target.url.split("://", 1)[-1].partition("/")[2]
        out["protocol"] = "http"
        out["http"] = {
            "method": "POST",
            "path": path,
            "success_status": 200,
            "json_field": "outputs.0.data" if target.protocol == "v2" else "predictions",
            "send_body": True,
        }
    else:
        out["protocol"] = "v2"
        out["answer_check"] = "outputs"
    return out


def check_tensor_payload(path: Path, transport: str) -> None:
    """A v2 (Open Inference) request for a third-party runtime's model (KServe's, Seldon's MLServer):
    REST a JSON object with a non-empty `inputs` list of named tensors, gRPC a serialized
    inference.ModelInferRequest with at least one input. What the tensors hold is the model's affair."""
    data = read_bytes(path, "payload", MAX_PAYLOAD_BYTES)
    if transport == "rest":
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            raise ConfigError(f"{path}: not a usable v2 REST payload: not JSON") from None
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise ConfigError(f"{path}: not a usable v2 REST payload: no `inputs` list")
        for i, t in enumerate(inputs):
            missing = [
                k for k in ("name", "shape", "datatype", "data") if not isinstance(t, dict) or k not in t
            ]
            if missing:
                raise ConfigError(f"{path}: not a usable v2 REST payload: inputs[{i}] has no {missing[0]}")
        return
    try:
        req = service_pb2.ModelInferRequest.FromString(data)
    except DecodeError:
        raise ConfigError(f"{path}: not a usable v2 gRPC payload: not a ModelInferRequest") from None
    if not req.inputs:
        raise ConfigError(f"{path}: not a usable v2 gRPC payload: no inputs")
