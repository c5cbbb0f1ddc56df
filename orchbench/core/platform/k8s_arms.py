"""What the KServe and Seldon Core v2 renderers hand the load tester, and the rule that keeps arms honest.

An arm is the request path a load tester exercises: the hops between it and the model server. Each
renderer (kserve_render.py, seldon2_render.py) returns one `ArmTarget` per arm: where to send REST and
gRPC requests in-cluster, which Host header / `:authority` and extra headers to send, the model name
in the v2 path, and the hops on the path.

`refuse_shared_hops` is the "same hop in two arms" rule: each arm is compared with the baseline, so
what an arm adds over the baseline is what its measured overhead is attributed to. If two arms add the
same hop (say, a graph router fronting a Knative service, next to the Knative arm itself), the two
overheads overlap and neither is what it claims; such a rendering is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchbench.core.errors import ConfigError

#: The label naming the workflow (its uid) that created an object: SeldonDeployments (kubernetes.py),
#: and every KServe and Seldon v2 object (labels_for). A run never replaces or deletes an
#: object another run owns, and its exit handler deletes what carries its own uid (k8s_custom.py).
OWNER_LABEL = "orchbench.io/owner"
#: (Here, not in k8s_common: this module is imported by every spec load, and k8s_common imports the
#: Kubernetes client, 0.15 s of start-up for every step that never talks to a cluster.)

#: Labels on every object orchbench renders for KServe and Seldon Core v2.
NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
ARM_LABEL = "orchbench.io/arm"
TRANSPORT_LABEL = "orchbench.io/transport"
ORCHBENCH = "orchbench"

PROTOCOLS = ("v2", "v1")
TRANSPORTS = ("rest", "grpc")
#: The gRPC method of the v2 (Open Inference) protocol, for ghz.
GRPC_V2_METHOD = "inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class ArmTarget:
    """Where one arm answers in-cluster, and what a request must carry to get there.

    `url` is the REST URL (empty for gRPC arms); `grpc_target` is host:port (empty for REST arms);
    `host_header` is the HTTP Host header (REST) or `:authority` (gRPC) the path routes by; `headers`
    are further headers (gRPC metadata) the request must carry, e.g. Seldon's `seldon-model`.
    """

    arm: str
    transport: str
    protocol: str
    host: str
    port: int
    model_name: str
    host_header: str
    url: str = ""
    grpc_target: str = ""
    grpc_method: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    hops: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["headers"] = dict(self.headers)
        out["hops"] = list(self.hops)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmTarget:
        return cls(**{**d, "headers": dict(d.get("headers") or {}), "hops": tuple(d.get("hops") or ())})


def labels_for(arm: str, transport: str, owner: str = "") -> dict[str, str]:
    """The labels of every object (and, through KServe's component labels, pod) orchbench renders;
    with `owner` (the workflow's uid) also OWNER_LABEL, by which the exit handler finds what its run
    created and a run refuses to replace or delete another run's objects."""
    out = {NAME_LABEL: ORCHBENCH, MANAGED_BY_LABEL: ORCHBENCH, ARM_LABEL: arm, TRANSPORT_LABEL: transport}
    if owner:
        out[OWNER_LABEL] = owner
    return out


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_owner(owner: str, what: str) -> None:
    """The owner (a workflow's uid) must be a label value: at most 63 characters of [-A-Za-z0-9_.]."""
    if len(owner) > 63 or not _LABEL_VALUE.match(owner):
        raise ConfigError(f"{what}: owner {owner[:80]!r} is not a Kubernetes label value")


def check_transport(transport: str, protocol: str, what: str) -> None:
    if transport not in TRANSPORTS:
        raise ConfigError(f"{what}: transport must be rest or grpc, got {transport!r}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{what}: protocol must be v2 or v1, got {protocol!r}")
    if protocol == "v1" and transport == "grpc":
        raise ConfigError(f"{what}: the v1 protocol is REST only; use protocol v2 for gRPC")


def check_arms(arms: tuple[str, ...], known: tuple[str, ...], baseline: str, what: str) -> None:
    """The arm list names known arms, each once, with the baseline among them."""
    if not arms:
        raise ConfigError(f"{what}: no arms to render (known: {', '.join(known)})")
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ConfigError(f"{what}: unknown arms {unknown} (known: {', '.join(known)})")
    twice = sorted({a for a in arms if arms.count(a) > 1})
    if twice:
        raise ConfigError(f"{what}: arms {twice} listed twice (the same hops in two arms)")
    if baseline not in arms:
        raise ConfigError(f"{what}: baseline {baseline!r} is not one of the arms {list(arms)}")


def refuse_shared_hops(hops: Mapping[str, frozenset[str]], baseline: str, what: str) -> None:
    """ConfigError (one line) if two arms add the same hop over the baseline, or an arm's path is the
    baseline's (it would measure nothing)."""
    base = hops[baseline]
    added = {arm: h - base for arm, h in hops.items() if arm != baseline}
    for arm, h in hops.items():
        if arm != baseline and h == base:
            raise ConfigError(
                f"{what}: arm {arm!r} has the same path as the baseline {baseline!r} "
                f"({', '.join(sorted(h))}): it would measure no hop"
            )
    names = sorted(added)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = added[a] & added[b]
            if shared:
                raise ConfigError(
                    f"{what}: arms {a!r} and {b!r} both put {', '.join(sorted(shared))} on the path "
                    f"over the baseline {baseline!r}; an overhead would be counted in two arms"
                )
