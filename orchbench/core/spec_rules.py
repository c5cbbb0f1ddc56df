"""The rules across an experiment spec's sections (`orchbench.core.spec.Spec`): the payloads each
protocol defaults to, and the checks no single section can make (ports, replicates, SLO, protocol,
arms per platform, pilot). Each check raises ValueError, which pydantic words as the spec's error;
`check_spec` runs them in a fixed order, so the first broken rule is the one reported."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchbench.core.arms import ARMS, DEFAULT_BASELINE, PROTOCOLS
from orchbench.core.platform.k8s_kinds import KIND_ARMS
from orchbench.core.spec_sections import PROTOCOL_PAYLOADS, SHIPPED_PAYLOADS

if TYPE_CHECKING:
    from orchbench.core.spec import Spec


def protocol_defaults(data: Any) -> Any:
    """Default payloads per protocol (http: `http.body` for REST), and REST only for http."""
    if not isinstance(data, dict):
        return data
    protocol = data.get("protocol", "tfserving")
    if protocol not in PROTOCOLS:
        return data  # the field's validator words it
    out = dict(data)
    if protocol == "http":
        out.setdefault("transports", ["rest"])
        body = data["http"].get("body") if isinstance(data.get("http"), dict) else None
        if "payloads" not in data:
            out["payloads"] = {"rest": body or str(SHIPPED_PAYLOADS["rest"])}
    elif "payloads" not in data:
        out["payloads"] = {t: str(p) for t, p in PROTOCOL_PAYLOADS[protocol].items()}
    return out


def check_spec(spec: Spec) -> None:
    """Every rule below, in order; the first that fails raises."""
    for rule in RULES:
        rule(spec)


def unprivileged_ports(spec: Spec) -> None:
    """A local run binds local.ports as this user: below 1024 only root may (the deploy would fail)."""
    if spec.platform == "local" and os.geteuid() != 0:
        for key, port in spec.local.ports.model_dump(by_alias=True).items():
            if port < 1024:
                raise ValueError(
                    f"local.ports.{key}: port {port} is privileged (below 1024, root only); "
                    "choose one in 1024..65535"
                )


def replicates_fit(spec: Spec) -> None:
    r = spec.replicates
    if r == 1:
        return
    if spec.blocks % r or spec.blocks // r < 1:
        raise ValueError(f"replicates: {spec.blocks} blocks do not split into {r} replicates evenly")
    if spec.load.precision_ms is not None and r < 3:
        raise ValueError(
            f"replicates: {r}; with load.precision_ms the pilot is the replicates and needs at least 3 "
            "(Stein's rule over replicate means)"
        )
    if spec.load.stages is not None:
        raise ValueError("replicates: not with load.stages yet (one load per run)")


def slo_needs_rates(spec: Spec) -> None:
    if spec.slo is not None and (spec.load.stages is None or spec.load.stages.rates is None):
        raise ValueError("slo: capacity is a rate; it needs open-loop stages (load.stages.rates)")


def protocol_fits(spec: Spec) -> None:
    if spec.protocol == "http":
        if "grpc" in spec.transports:
            raise ValueError(
                "protocol http is plain HTTP, REST only: gRPC is refused (set transports: [rest])"
            )
    elif spec.http is not None:
        raise ValueError(f"http: applies to protocol http only (protocol is {spec.protocol})")
    if (
        spec.platform == "local"
        and spec.local.model_server == "kserve"
        and spec.protocol == "tfserving"
        and "grpc" in spec.transports
    ):  # refused before anything starts (the deploy step says the same: platform/kserve_local.py)
        raise ValueError(
            "local.model_server kserve serves the tfserving protocol over REST only (KServe's V1 "
            "API); over gRPC it speaks the Open Inference Protocol: use protocol: v2"
        )


def arms_make_sense(spec: Spec) -> None:
    """The arms: named once each, two or more, one baseline; then what each platform allows."""
    kind = spec.custom_kind()
    if kind and spec.protocol != "v2":
        raise ValueError(
            f"kubernetes.kind {kind}: the arms speak the v2 (Open Inference) protocol; "
            f"set protocol: v2 (got {spec.protocol})"
        )
    if spec.arms is None:
        if kind:
            raise ValueError(
                f"arms: kubernetes.kind {kind} needs its arms named (of {', '.join(KIND_ARMS[kind])}, "
                "one with baseline: true)"
            )
        return
    names = [a.name for a in spec.arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"arms: arm {twice[0]!r} is named twice")
    if len(spec.arms) < 2:
        raise ValueError("arms: name at least two arms (a baseline and one to compare with it)")
    baselines = [a.name for a in spec.arms if a.baseline]
    if len(baselines) != 1:
        raise ValueError(
            "arms: exactly one arm must have baseline: true, "
            + (f"got {len(baselines)} ({', '.join(baselines)})" if baselines else "got none")
        )
    if spec.platform == "endpoints":
        _endpoint_arms(spec)
        return
    for a in spec.arms:
        if a.url or a.grpc or a.headers or a.tls:
            raise ValueError(f"arms.{a.name}: url, grpc, headers and tls apply to platform endpoints only")
    if spec.custom_kind():
        _custom_kind_arms(spec, names)
    elif spec.platform == "kubernetes":
        _seldon_arms(spec, names, baselines)
    else:
        _local_arms(spec)


def _endpoint_arms(spec: Spec) -> None:
    assert spec.arms is not None
    for a in spec.arms:
        if a.hop or a.port or a.aa:
            raise ValueError(f"arms.{a.name}: hop, port and aa apply to the local platform only")
        for transport, where in (("rest", a.url), ("grpc", a.grpc)):
            if transport in spec.transports and not where:
                key = "url" if transport == "rest" else "grpc"
                raise ValueError(
                    f"arms.{a.name}: platform endpoints needs the arm's {key} for transport {transport}"
                )
    off = sorted(a.name for a in spec.arms if a.tls is not None and not a.tls.verify)
    on = sorted(a.name for a in spec.arms if a.tls is not None and a.tls.verify)
    if off and on:  # k6's insecureSkipTLSVerify holds for its whole process, every arm
        raise ValueError(
            f"arms: tls.verify false on {', '.join(off)} but true on {', '.join(on)}: the arms "
            "rotate in one load-test process, whose certificate checks are on or off for all"
        )


def _custom_kind_arms(spec: Spec, names: list[str]) -> None:
    assert spec.arms is not None
    kind = spec.kubernetes.kind
    unknown = [n for n in names if n not in KIND_ARMS[kind]]
    if unknown or any(a.hop or a.port or a.verify or a.aa for a in spec.arms):
        raise ValueError(
            f"arms: with kubernetes.kind {kind} the arms are {', '.join(KIND_ARMS[kind])} "
            "(any one the baseline), with no hop, port, verify or aa"
            + (f"; got {unknown[0]!r}" if unknown else "")
        )


def _seldon_arms(spec: Spec, names: list[str], baselines: list[str]) -> None:
    assert spec.arms is not None
    if (
        set(names) != set(ARMS)
        or baselines != [DEFAULT_BASELINE]
        or any(a.hop or a.port or a.verify or a.aa for a in spec.arms)
    ):
        raise ValueError(
            "arms: on kubernetes the arms are the SeldonDeployment with and without the "
            "orchestrator ('with', and 'without' the baseline), with no hop, port or verify"
        )


def _local_arms(spec: Spec) -> None:
    assert spec.arms is not None
    base = next(a for a in spec.arms if a.baseline)
    if base.local_hop() != "model":
        raise ValueError(
            f"arms.{base.name}: the baseline is the model server direct locally (hop: model), "
            f"got hop {base.local_hop()!r}"
        )
    if spec.local.aa_mode or not spec.local.shared_model:
        raise ValueError(
            "arms: local.aa_mode and local.shared_model: false apply to the default two arms only "
            "(an A/A control is an arm with hop: model)"
        )
    if sum(a.aa for a in spec.arms) > 1:
        raise ValueError("arms: at most one arm may have aa: true (the A/A control)")
    taken = {spec.local.ports.model_behind_orchestrator: "local.ports.model_behind_orchestrator"}
    for name, port in spec.arm_ports().items():
        if port in taken:
            raise ValueError(f"arms.{name}: port {port} is also {taken[port]}")
        taken[port] = f"arm {name}'s"


def pilot_fits_budget(spec: Spec) -> None:
    if spec.load.precision_ms is not None:
        if spec.blocks < 3:
            raise ValueError("with load.precision_ms, blocks is the pilot and must be at least 3")
        if spec.load.max_blocks is not None and spec.load.max_blocks < spec.blocks:
            raise ValueError(
                f"load.max_blocks {spec.load.max_blocks} is below the pilot's {spec.blocks} blocks"
            )


#: The order the checks run in (the order Spec's validators ran in before they moved here).
RULES: tuple[Callable[[Spec], None], ...] = (
    unprivileged_ports,
    replicates_fit,
    slo_needs_rates,
    protocol_fits,
    arms_make_sense,
    pilot_fits_budget,
)
