"""The experiment spec: YAML validated with pydantic. Unknown keys and bad values fail before any run."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from orchbench.core.arms import (
    ARMS,
    DEFAULT_BASELINE,
    PROTOCOLS,
    ArmName,
    Protocol,
    Transport,
)
from orchbench.core.errors import ConfigError
from orchbench.core.manifest import inspect, load_manifest
from orchbench.core.paths import MANIFESTS, PAYLOADS, SPECS, shipped_spec, shipped_spec_names
from orchbench.core.payload_check import check_payload
from orchbench.core.platform.k8s_kinds import (
    KIND_ARMS,
    check_manifest,
    check_renders,
    check_tensor_payload,
    load_kind_manifest,
)
from orchbench.core.safeio import MAX_SPEC_BYTES, load_yaml, read_text
from orchbench.core.spec_sections import (
    DEFAULT_ARMS,
    Argo,
    Arm,
    EnvRef,
    HttpRequest,
    Kubernetes,
    Load,
    Local,
    Thresholds,
    _Strict,
)
from orchbench.core.spec_stages import Slo
from orchbench.core.stages import Stage

DEFAULT_SPEC = SPECS / "default.yaml"
SHIPPED_MANIFEST = MANIFESTS / "tf_flowers.yaml"
SHIPPED_PAYLOADS: dict[Transport, Path] = {
    "rest": PAYLOADS / "flowers.json",
    "grpc": PAYLOADS / "flowers.bin",
}
#: The default payloads of each protocol (http: the spec's `http.body`).
PROTOCOL_PAYLOADS: dict[str, dict[Transport, Path]] = {
    "tfserving": SHIPPED_PAYLOADS,
    "v2": {"rest": PAYLOADS / "flowers_v2.json", "grpc": PAYLOADS / "flowers_v2.bin"},
}


class Spec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    platform: Literal["local", "kubernetes", "endpoints"] = "local"
    protocol: Protocol = Field(
        "tfserving",
        description="tfserving (REST :predict, gRPC PredictionService/Predict), v2 (Open Inference "
        "Protocol) or http (plain HTTP, REST only: see `http`)",
    )
    http: HttpRequest | None = Field(None, description="protocol http: the request and its success")
    model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$",
        description="the model name in request paths and gRPC requests (unset: the manifest's)",
    )
    manifest: str | dict[str, Any] = Field(
        str(SHIPPED_MANIFEST),
        description="the SeldonDeployment: a path (relative to the spec file's folder) or the document "
        "itself; `orchbench compile` embeds the document so no step reads the submitting machine's files",
    )
    transports: list[Transport] = Field(["rest", "grpc"])
    payloads: dict[Transport, str] = Field(
        {t: str(p) for t, p in SHIPPED_PAYLOADS.items()},
        description="request body per transport, a path relative to the spec file's folder; compiled "
        "workflows carry the bytes as raw input artifacts",
    )
    load: Load = Load()
    blocks: int = Field(
        4,
        ge=1,
        le=100,
        description="blocks per arm; each block measures both arms once, in an order drawn from "
        "order_seed (interleave request: one paired run, that arm first)",
    )
    order_seed: int = Field(20200712, ge=0, description="seeds the random arm order inside each block")
    replicates: int = Field(
        1,
        ge=1,
        le=20,
        description="deployment replicates: every arm deployed afresh this many times, one after the "
        "other, each holding blocks / replicates of the blocks; the interval is then over replicates, "
        "blocks nested inside (orchbench.core.replicates)",
    )
    thresholds: Thresholds = Thresholds()
    arms: list[Arm] | None = Field(
        None,
        description="the arms, exactly one with baseline: true; unset: the seed's 'without' (baseline) "
        "and 'with'",
    )
    slo: Slo | None = Field(
        None, description="open-loop stages: the bound a rate must meet to count towards an arm's capacity"
    )
    local: Local = Local()
    kubernetes: Kubernetes = Kubernetes()
    argo: Argo = Argo()
    #: The folder relative paths resolve against: the spec file's folder (None: the working directory).
    _base_dir: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _unprivileged_ports(self) -> Spec:
        """A local run binds local.ports as this user: below 1024 only root may (the deploy would fail)."""
        if self.platform == "local" and os.geteuid() != 0:
            for key, port in self.local.ports.model_dump(by_alias=True).items():
                if port < 1024:
                    raise ValueError(
                        f"local.ports.{key}: port {port} is privileged (below 1024, root only); "
                        "choose one in 1024..65535"
                    )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_arms(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No `arms:` stays no `arms:`: specs (and compiled workflows) of before read as they did."""
        data = dict(handler(self))
        if data.get("arms") is None:
            data.pop("arms", None)
        if data.get("protocol") == "tfserving":
            data.pop("protocol", None)
        if data.get("http") is None:
            data.pop("http", None)
        if data.get("model") is None:
            data.pop("model", None)
        if data.get("slo") is None:
            data.pop("slo", None)
        if data.get("replicates") == 1:
            data.pop("replicates", None)
        return data

    @model_validator(mode="after")
    def _replicates_fit(self) -> Spec:
        r = self.replicates
        if r == 1:
            return self
        if self.blocks % r or self.blocks // r < 1:
            raise ValueError(f"replicates: {self.blocks} blocks do not split into {r} replicates evenly")
        if self.load.precision_ms is not None:
            raise ValueError("replicates: not with load.precision_ms (a pilot sizes blocks, not replicates)")
        if self.load.stages is not None:
            raise ValueError("replicates: not with load.stages yet (one load per run)")
        return self

    def replicate_of(self, block: int) -> int:
        """The deployment replicate block `block` belongs to (0 without replicates)."""
        return block // (self.blocks // self.replicates)

    @model_validator(mode="after")
    def _slo_needs_rates(self) -> Spec:
        if self.slo is not None and (self.load.stages is None or self.load.stages.rates is None):
            raise ValueError("slo: capacity is a rate; it needs open-loop stages (load.stages.rates)")
        return self

    def stage_plan(self) -> list[Stage]:
        """The load stages (orchbench.core.stages), [] for one load."""
        return self.load.stages.plan() if self.load.stages is not None else []

    def model_name(self) -> str:
        """The model name requests carry: `model`, else the manifest's."""
        return self.model or inspect(self.manifest_document()).model_name

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: Any) -> Any:
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

    @model_validator(mode="after")
    def _protocol_fits(self) -> Spec:
        if self.protocol == "http":
            if "grpc" in self.transports:
                raise ValueError(
                    "protocol http is plain HTTP, REST only: gRPC is refused (set transports: [rest])"
                )
        elif self.http is not None:
            raise ValueError(f"http: applies to protocol http only (protocol is {self.protocol})")
        if (
            self.platform == "local"
            and self.local.model_server == "kserve"
            and self.protocol == "tfserving"
            and "grpc" in self.transports
        ):  # refused before anything starts (the deploy step says the same: platform/kserve_local.py)
            raise ValueError(
                "local.model_server kserve serves the tfserving protocol over REST only (KServe's V1 "
                "API); over gRPC it speaks the Open Inference Protocol: use protocol: v2"
            )
        return self

    def http_request(self) -> dict[str, Any] | None:
        """protocol http: what each request is (the Endpoint's `http`), without the headers."""
        if self.protocol != "http":
            return None
        h = self.http or HttpRequest()
        return {
            "method": h.method,
            "path": h.path,
            "success_status": h.success_status,
            "json_field": h.json_field,
            "send_body": h.body is not None or h.method in ("POST", "PUT", "PATCH"),
        }

    def request_headers(self, arm: ArmName | None = None) -> dict[str, Any]:
        """Extra request headers (protocol http's, then the arm's): env-sourced ones as {"env": NAME}."""
        out: dict[str, Any] = {}
        sources = [self.http.headers if self.http else {}]
        if arm is not None:
            sources.append(self.arm(arm).headers)
        for headers in sources:
            for name, value in headers.items():
                out[name] = value.model_dump() if isinstance(value, EnvRef) else value
        return out

    def endpoint_extras(self, arm: ArmName | None = None) -> dict[str, Any]:
        """What every Endpoint of this spec carries besides where it is (orchbench.core.arms.Endpoint)."""
        return {"protocol": self.protocol, "http": self.http_request(), "headers": self.request_headers(arm)}

    @model_validator(mode="after")
    def _arms_make_sense(self) -> Spec:
        kind = self.custom_kind()
        if kind and self.protocol != "v2":
            raise ValueError(
                f"kubernetes.kind {kind}: the arms speak the v2 (Open Inference) protocol; "
                f"set protocol: v2 (got {self.protocol})"
            )
        if self.arms is None:
            if kind:
                raise ValueError(
                    f"arms: kubernetes.kind {kind} needs its arms named (of {', '.join(KIND_ARMS[kind])}, "
                    "one with baseline: true)"
                )
            return self
        names = [a.name for a in self.arms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"arms: arm {twice[0]!r} is named twice")
        if len(self.arms) < 2:
            raise ValueError("arms: name at least two arms (a baseline and one to compare with it)")
        baselines = [a.name for a in self.arms if a.baseline]
        if len(baselines) != 1:
            raise ValueError(
                "arms: exactly one arm must have baseline: true, "
                + (f"got {len(baselines)} ({', '.join(baselines)})" if baselines else "got none")
            )
        if self.platform == "endpoints":
            for a in self.arms:
                if a.hop or a.port or a.aa:
                    raise ValueError(f"arms.{a.name}: hop, port and aa apply to the local platform only")
                for transport, where in (("rest", a.url), ("grpc", a.grpc)):
                    if transport in self.transports and not where:
                        key = "url" if transport == "rest" else "grpc"
                        raise ValueError(
                            f"arms.{a.name}: platform endpoints needs the arm's {key} for transport "
                            f"{transport}"
                        )
            off = sorted(a.name for a in self.arms if a.tls is not None and not a.tls.verify)
            on = sorted(a.name for a in self.arms if a.tls is not None and a.tls.verify)
            if off and on:  # k6's insecureSkipTLSVerify holds for its whole process, every arm
                raise ValueError(
                    f"arms: tls.verify false on {', '.join(off)} but true on {', '.join(on)}: the arms "
                    "rotate in one load-test process, whose certificate checks are on or off for all"
                )
            return self
        for a in self.arms:
            if a.url or a.grpc or a.headers or a.tls:
                raise ValueError(
                    f"arms.{a.name}: url, grpc, headers and tls apply to platform endpoints only"
                )
        if self.custom_kind():
            kind = self.kubernetes.kind
            unknown = [n for n in names if n not in KIND_ARMS[kind]]
            if unknown or any(a.hop or a.port or a.verify or a.aa for a in self.arms):
                raise ValueError(
                    f"arms: with kubernetes.kind {kind} the arms are {', '.join(KIND_ARMS[kind])} "
                    "(any one the baseline), with no hop, port, verify or aa"
                    + (f"; got {unknown[0]!r}" if unknown else "")
                )
            return self
        if self.platform == "kubernetes":
            if (
                set(names) != set(ARMS)
                or baselines != [DEFAULT_BASELINE]
                or any(a.hop or a.port or a.verify or a.aa for a in self.arms)
            ):
                raise ValueError(
                    "arms: on kubernetes the arms are the SeldonDeployment with and without the "
                    "orchestrator ('with', and 'without' the baseline), with no hop, port or verify"
                )
            return self
        base = next(a for a in self.arms if a.baseline)
        if base.local_hop() != "model":
            raise ValueError(
                f"arms.{base.name}: the baseline is the model server direct locally (hop: model), "
                f"got hop {base.local_hop()!r}"
            )
        if self.local.aa_mode or not self.local.shared_model:
            raise ValueError(
                "arms: local.aa_mode and local.shared_model: false apply to the default two arms only "
                "(an A/A control is an arm with hop: model)"
            )
        if sum(a.aa for a in self.arms) > 1:
            raise ValueError("arms: at most one arm may have aa: true (the A/A control)")
        ports = self.arm_ports()
        taken = {self.local.ports.model_behind_orchestrator: "local.ports.model_behind_orchestrator"}
        for name, port in ports.items():
            if port in taken:
                raise ValueError(f"arms.{name}: port {port} is also {taken[port]}")
            taken[port] = f"arm {name}'s"
        return self

    def arm_list(self) -> list[Arm]:
        """The arms, the baseline first (deploy order: the hops front the baseline's model)."""
        arms = list(self.arms) if self.arms is not None else list(DEFAULT_ARMS)
        return sorted(arms, key=lambda a: not a.baseline)

    def arm(self, name: str) -> Arm:
        for a in self.arm_list():
            if a.name == name:
                return a
        raise ConfigError(f"no arm {name!r} in the spec (arms: {', '.join(self.arm_names())})")

    def arm_names(self) -> list[ArmName]:
        return [a.name for a in self.arm_list()]

    @property
    def baseline(self) -> ArmName:
        return self.arm_list()[0].name

    def compared_arms(self) -> list[ArmName]:
        """The non-baseline arms, in spec order: each is compared with the baseline."""
        return [a.name for a in self.arm_list() if not a.baseline]

    def aa_arm(self) -> ArmName | None:
        """The A/A control arm (`aa: true`), if the spec has one."""
        return next((a.name for a in self.arm_list() if a.aa), None)

    def arm_ports(self) -> dict[ArmName, int]:
        """Local: where each arm listens. The baseline on local.ports.without, the others on their
        `port` or local.ports.with, with + 1, ... in spec order (the default 'with': 8000)."""
        out: dict[ArmName, int] = {}
        used = {a.port for a in self.arm_list() if a.port is not None}
        nxt = self.local.ports.with_
        for a in self.arm_list():
            if a.port is not None:
                out[a.name] = a.port
            elif a.baseline:
                out[a.name] = self.local.ports.without
            else:
                while nxt in used or nxt in (
                    self.local.ports.without,
                    self.local.ports.model_behind_orchestrator,
                ):
                    nxt += 1
                out[a.name] = nxt
                used.add(nxt)
        return out

    def proxies_needed(self) -> list[str]:
        """The third-party proxies a local run of this spec starts."""
        if self.platform != "local":
            return []
        return sorted({a.local_hop() for a in self.arm_list()} & {"nginx", "haproxy"})

    @model_validator(mode="after")
    def _pilot_fits_budget(self) -> Spec:
        if self.load.precision_ms is not None:
            if self.blocks < 3:
                raise ValueError("with load.precision_ms, blocks is the pilot and must be at least 3")
            if self.load.max_blocks is not None and self.load.max_blocks < self.blocks:
                raise ValueError(
                    f"load.max_blocks {self.load.max_blocks} is below the pilot's {self.blocks} blocks"
                )
        return self

    @field_validator("transports")
    @classmethod
    def _unique_transports(cls, value: list[Transport]) -> list[Transport]:
        if not value or len(set(value)) != len(value):
            raise ValueError("transports must be a non-empty list without repeats")
        return value

    def resolve(self, path: str) -> Path:
        """A path named in the spec: relative paths resolve against the spec file's folder (for a spec
        that came from no file, such as the workflow parameter, against the working directory)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return (self._base_dir or Path.cwd()) / p

    def with_overrides(self, overrides: dict[str, Any]) -> Spec:
        """This spec with dotted keys set (`local.inject_delay_ms`), validated again; relative paths
        still resolve against this spec's folder."""
        data = self.to_json_dict()
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        spec = parse_spec(data, "spec with overrides")
        spec._base_dir = self._base_dir
        return spec

    def manifest_document(self) -> dict[str, Any]:
        """The manifest: inline in the spec (as compiled workflows carry it) or read from its path."""
        kind = self.custom_kind()
        if isinstance(self.manifest, dict):
            if kind:
                check_manifest(kind, self.manifest, source="spec manifest")
            else:
                inspect(self.manifest, source="spec manifest")
            return self.manifest
        if kind:
            return load_kind_manifest(kind, self.resolve(self.manifest))
        return load_manifest(self.resolve(self.manifest))

    def custom_kind(self) -> str | None:
        """`kserve` or `seldon2` on a cluster whose arms are those kinds' objects, else None."""
        if self.platform == "kubernetes" and self.kubernetes.kind in KIND_ARMS:
            return self.kubernetes.kind
        return None

    def threshold_ms(self, transport: Transport, arm: ArmName | None = None) -> float | None:
        """The regression threshold: the arm's own `threshold_ms`, else `thresholds.<transport>_ms`."""
        if arm is not None:
            own = self.arm(arm).threshold_ms
            if own is not None:
                return own
        return self.thresholds.rest_ms if transport == "rest" else self.thresholds.grpc_ms

    def interleave(self) -> Literal["request", "block"]:
        """How the arms are interleaved: `load.interleave` with `auto` resolved."""
        mode = self.load.interleave
        if mode == "auto":
            k6 = self.load.tool == "k6" or (
                self.load.tool == "auto" and self.platform in ("local", "endpoints")
            )
            return "request" if k6 else "block"
        return mode

    def block_order(self) -> list[list[ArmName]]:
        """Arm order per block: each block runs every arm once, in an order drawn from `order_seed`
        (shuffled from the spec's order; the default arms from ("with", "without"), as ever)."""
        rng = random.Random(self.order_seed)
        names = list(ARMS) if self.arms is None else [a.name for a in self.arms]
        out: list[list[ArmName]] = []
        for _ in range(self.blocks):
            arms = list(names)
            rng.shuffle(arms)
            out.append(arms)
        return out

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"]) or "spec"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"].endswith(("_type", "_parsing", "finite_number")) or err["type"] == "literal_error":
        shown = repr(err.get("input"))
        if len(shown) <= 40:
            msg = f"{msg}, got {shown}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not err["loc"] or msg.startswith(f"{where}.") or msg.startswith(f"{where} "):
        return f"{msg}{more}"  # a check of the whole spec, or the validator named the field itself
    return f"{where}: {msg}{more}"


def parse_spec(data: Any, source: str = "spec") -> Spec:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a spec must be a YAML mapping")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def find_spec(name: str | Path | None) -> Path:
    """The spec file a user means: none -> the shipped default; a short name (`seed`, `default`) -> the
    shipped spec of that name unless a file of that name exists here; anything else -> that path."""
    if name is None or str(name) == "":
        return DEFAULT_SPEC
    path = Path(name).expanduser()
    if path.exists():
        return path
    shipped = shipped_spec(str(name))
    if shipped is not None:
        return shipped
    if "/" not in str(name) and not str(name).endswith((".yaml", ".yml")):
        raise ConfigError(
            f"{name}: no such spec file, and no shipped spec of that name "
            f"(shipped: {', '.join(shipped_spec_names())})"
        )
    return path


def load_spec(path: str | Path | None = None) -> Spec:
    path = find_spec(path)
    data = load_yaml(read_text(path, "spec", MAX_SPEC_BYTES), str(path))
    spec = parse_spec(data, str(path))
    spec._base_dir = path.resolve().parent
    check_inputs(spec, str(path))
    return spec


def check_inputs(spec: Spec, source: str = "spec") -> None:
    """The files a spec names, read and checked before anything starts: the SeldonDeployment
    manifest (`orchbench.core.manifest.load_manifest`) and the payload of every transport it runs."""
    try:
        document = spec.manifest_document()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        where = spec.resolve(spec.manifest) if isinstance(spec.manifest, str) else "inline"
        raise ConfigError(f"{source}: manifest {where}: not readable ({reason})") from None
    if spec.custom_kind():
        try:  # the renderings deploy would make: the same hop in two arms is refused here, in one line
            check_renders(spec, document)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for transport in spec.transports:
        if not spec.payloads.get(transport):
            raise ConfigError(f"{source}: payloads.{transport}: no payload for transport {transport}")
        payload = spec.resolve(spec.payloads[transport])
        if not payload.exists():
            raise ConfigError(f"{source}: payloads.{transport}: file {payload} not found")
        if spec.custom_kind():  # a third-party runtime's model: any v2 tensors, not the flowers image
            check_tensor_payload(payload, transport)
        else:
            check_payload(payload, transport, spec.protocol)
    if spec.platform == "endpoints" and spec.arms is None:
        raise ConfigError(f"{source}: platform endpoints needs arms: (each with its url and/or grpc)")
    for a in spec.arms or []:
        ca = a.tls.ca_file if a.tls else None
        if ca and not spec.resolve(ca).is_file():
            raise ConfigError(f"{source}: arms.{a.name}.tls.ca_file: file {spec.resolve(ca)} not found")


def spec_from_json(text: str) -> Spec:
    """Steps receive the spec as the workflow parameter `spec` (JSON)."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"workflow parameter spec: not valid JSON ({exc.msg})") from None
    return parse_spec(data, "workflow parameter spec")
