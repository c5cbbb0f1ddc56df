"""The experiment spec: YAML validated with pydantic. Unknown keys and bad values fail before any run."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from orchbench.core.arms import (
    ARM_NAME_PATTERN,
    ARMS,
    DEFAULT_BASELINE,
    HOPS,
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


#: strict: no bool for an int, no "2" for a number (YAML's `blocks: true` ran one block); ints are
#: still taken for floats. No NaN or infinity anywhere (a NaN threshold turned the gate off).
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _CONFIG


class Load(_Strict):
    tool: Literal["auto", "k6", "vegeta", "ghz"] = "auto"
    mode: Literal["closed", "open"] = "closed"
    workers: int = Field(1, ge=1, le=256)
    rate: float | None = Field(None, gt=0, le=100_000, description="requests/s, open loop only")
    duration_s: float = Field(20.0, gt=0, le=24 * 3600, description="measured time per block and arm")
    warmup_s: float = Field(3.0, ge=0, le=3600, description="run before each measurement, then discarded")
    timeout_s: float = Field(20.0, gt=0, le=600, description="per request")
    max_error_rate: float = Field(0.0, ge=0, le=1, description="a block with more failed requests fails")
    interleave: Literal["auto", "request", "block"] = Field(
        "auto",
        description="request: one k6 process per block alternates the arms request by request; "
        "block: one load-test run per arm and block (the seed's way; vegeta and ghz); "
        "auto: request when the tool is k6 (or auto on the local platform), else block",
    )

    precision_ms: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="target 95 % CI half-width (ms) of the mean and p50 overheads: the spec's `blocks` "
        "are a pilot that sizes the run (orchbench.core.design, Stein's two-stage rule)",
    )
    max_blocks: int | None = Field(
        None,
        ge=2,
        le=1000,
        description="with precision_ms: at most this many blocks in all (unset: 40)",
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        description="with precision_ms: at most this many seconds of load testing in all",
    )

    @model_validator(mode="after")
    def _precision_budget(self) -> Load:
        if self.precision_ms is None and (self.max_blocks is not None or self.max_duration_s is not None):
            raise ValueError("load.max_blocks and load.max_duration_s apply with load.precision_ms only")
        return self

    @model_validator(mode="after")
    def _interleave_needs_k6(self) -> Load:
        if self.interleave == "request" and self.tool in ("vegeta", "ghz"):
            raise ValueError(
                f"load.interleave 'request' needs k6; {self.tool} drives one target per run (use 'block')"
            )
        return self

    @model_validator(mode="after")
    def _k6_durations(self) -> Load:
        """What k6 would refuse when the block starts (orchbench.core.loadtools.k6.build_options)."""
        if self.tool in ("auto", "k6"):
            if self.duration_s < 1:
                raise ValueError(
                    f"load.duration_s: k6 needs a duration of at least 1 s, got {self.duration_s:g}"
                )
            if 0 < self.warmup_s < 1:
                raise ValueError(
                    f"load.warmup_s: k6 needs a warm-up of 0 or at least 1 s, got {self.warmup_s:g}"
                )
        rate = self.rate if self.tool == "ghz" and self.mode == "open" else None
        if rate is not None and (rate < 1 or not float(rate).is_integer()):
            raise ValueError(f"load.rate: ghz needs a whole open-loop rate >= 1 request/s, got {rate:g}")
        return self

    @model_validator(mode="after")
    def _rate_matches_mode(self) -> Load:
        if self.mode == "open" and self.rate is None:
            raise ValueError("load.rate is required when load.mode is 'open'")
        if self.mode == "closed" and self.rate is not None:
            raise ValueError("load.rate applies to mode 'open' only; remove it or set mode: open")
        return self


class Ports(_Strict):
    with_: int = Field(8000, alias="with", ge=1, le=65535)
    without: int = Field(9000, ge=1, le=65535)
    model_behind_orchestrator: int = Field(9100, ge=1, le=65535)

    model_config = ConfigDict(**_CONFIG, populate_by_name=True)

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        if len({self.with_, self.without, self.model_behind_orchestrator}) != 3:
            raise ValueError("local.ports must be three different ports")
        return self


class Local(_Strict):
    cpu_pinning: bool = True
    shared_model: bool = Field(
        True,
        description="the 'with' arm's orchestrator fronts the 'without' arm's model process "
        "(false: each arm runs its own model process, on ports.model_behind_orchestrator for 'with')",
    )
    inject_delay_ms: float = Field(0.0, ge=0, le=1000, description="added by the reference orchestrator")
    model_threads: int = Field(1, ge=1, le=64)
    ready_timeout_s: float = Field(120.0, gt=0, le=3600)
    ports: Ports = Ports()
    aa_mode: bool = Field(False, description="A/A: both arms hit the 'without' deployment (CI must cover 0)")
    # the serving stack's protocol implementations (benchmarks/protocol_bench.py); unset: the defaults
    orchestrator_rest_impl: Literal["hand", "httptools", "aiohttp"] | None = Field(
        None, description="the orchestrator's REST forwarder (serving.orchestrator --rest-impl)"
    )
    orchestrator_grpc_impl: Literal["hand", "h2", "grpcio"] | None = Field(
        None, description="the orchestrator's gRPC forwarder (serving.orchestrator --grpc-impl)"
    )
    model_grpc_impl: Literal["h2", "grpcio"] | None = Field(
        None, description="the model server's gRPC server (serving.model_server --grpc-server)"
    )

    @model_serializer(mode="wrap")
    def _omit_unset_impls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Unset implementation keys are left out, so specs (and compiled workflows) that do not name
        one read exactly as before."""
        data = dict(handler(self))
        for key in ("orchestrator_rest_impl", "orchestrator_grpc_impl", "model_grpc_impl"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class NodeSelection(_Strict):
    names: list[str] = []
    labels: dict[str, str] = {}


class KServe(_Strict):
    """kubernetes.kind kserve: how the InferenceService arms are rendered (kserve_render.py)."""

    activator: bool = Field(
        False, description="serverless: keep Knative's activator on the path (target-burst-capacity -1)"
    )
    graph_backend: Literal["raw", "serverless"] = Field(
        "raw", description="the deployment mode of the InferenceService the graph arm's router fronts"
    )
    grpc_port: int | None = Field(None, ge=1, le=65535, description="the model container's gRPC port")


class Seldon2(_Strict):
    """kubernetes.kind seldon2: how the Seldon Core v2 Model arms are rendered (seldon2_render.py)."""

    server: str = Field("mlserver", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    mesh_service: str = Field("seldon-mesh", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    model_version: int = Field(1, ge=1, description="the version MLServer serves a new Model under")


class Kubernetes(_Strict):
    namespace: str = "seldon"
    loadtester_nodes: NodeSelection = NodeSelection()
    model_nodes: NodeSelection = NodeSelection()
    ready_timeout_s: float = Field(600.0, gt=0, le=7200)
    kind: Literal["seldon", "kserve", "seldon2"] = Field(
        "seldon",
        description="what the manifest is and the arms are: a SeldonDeployment v1 (arms with / without), "
        "a KServe InferenceService (raw, serverless, graph) or a Seldon Core v2 Model (mesh, direct)",
    )
    kserve: KServe | None = None
    seldon2: Seldon2 | None = None

    @model_validator(mode="after")
    def _section_matches_kind(self) -> Kubernetes:
        for key in ("kserve", "seldon2"):
            if getattr(self, key) is not None and self.kind != key:
                raise ValueError(f"kubernetes.{key} applies with kubernetes.kind {key} only")
        return self

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The seed's kind and unset sections are left out: SeldonDeployment specs (and their compiled
        workflows) read exactly as before."""
        data = dict(handler(self))
        if data.get("kind") == "seldon":
            data.pop("kind", None)
        for key in ("kserve", "seldon2"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Argo(_Strict):
    namespace: str = "argo"
    service_account: str = "orchbench"
    image: str = "ghcr.io/orchbench/steps:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    schedule: str = "0 2 * * *"
    timezone: str = "UTC"
    dataset_key: str = "orchbench/runs"


class Thresholds(_Strict):
    rest_ms: float | None = Field(None, ge=0, description="largest allowed mean overhead over REST")
    grpc_ms: float | None = Field(None, ge=0, description="largest allowed mean overhead over gRPC")


class EnvRef(_Strict):
    """A header value read from this environment variable where the request is made; only the
    variable's NAME is ever written (spec dumps, the compiled workflow, records, results)."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
Headers = dict[str, str | EnvRef]


def _check_headers(headers: Headers) -> Headers:
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if isinstance(value, str) and any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: value has a line break or NUL")
    return headers


class HttpRequest(_Strict):
    """protocol http: the request every arm gets, and what counts as a success (REST only)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field("/", pattern=r"^/[!-~]*$", max_length=2000, description="request path and query")
    headers: Headers = {}
    body: str | None = Field(None, description="request body file (relative to the spec's folder)")
    success_status: int = Field(200, ge=100, le=599)
    json_field: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$",
        description="a dotted JSON path (`outputs.0.data`) that must be present in the answer",
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: Headers) -> Headers:
        return _check_headers(value)


class Tls(_Strict):
    """platform endpoints: TLS to an arm (https URLs; TLS gRPC)."""

    ca_file: str | None = Field(None, description="CA bundle (PEM) the arm's certificate must chain to")
    verify: bool = Field(True, description="false: no certificate checks (self-signed test set-ups)")


Hop = Literal["model", "orchestrator", "nginx", "haproxy"]
assert tuple(Hop.__args__) == HOPS  # type: ignore[attr-defined]


class Verify(_Strict):
    """What an arm's answers must show: a response header (REST) or initial-metadata key (gRPC)
    present (optionally with this value) or absent."""

    header: str = Field(pattern=r"^[a-z0-9][-a-z0-9_.]{0,62}$", description="lower-case header name")
    present: bool = True
    value: str | None = Field(None, max_length=200, description="with present: the value it must have")

    @model_validator(mode="after")
    def _value_needs_present(self) -> Verify:
        if self.value is not None and not self.present:
            raise ValueError("verify.value applies with present: true only")
        return self


class Arm(_Strict):
    """One arm of the experiment. Locally, `hop` says what answers: the model server direct
    (`model`), or the reference orchestrator / nginx / HAProxy in front of the baseline's model."""

    name: str = Field(pattern=ARM_NAME_PATTERN, description="used in task names, file paths and k6 tags")
    baseline: bool = False
    hop: Hop | None = Field(
        None, description="local platform: unset is model for the baseline, else orchestrator"
    )
    port: int | None = Field(None, ge=1024, le=65535, description="local: where the arm listens")
    verify: list[Verify] = Field([], description="checked on the arm's answers, besides the hop's own marker")
    threshold_ms: float | None = Field(
        None, ge=0, description="this arm's regression threshold (both transports)"
    )
    aa: bool = Field(
        False,
        description="A/A control: a second deployment identical to the baseline's (locally its own "
        "model server process on its own port, pinned like the baseline's); its overhead is the noise "
        "between two copies of one thing, and the other arms are flagged when they do not stand clear "
        "of it (orchbench.core.aa)",
    )
    # platform endpoints: where the arm answers (nothing is deployed)
    url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=500,
        description="endpoints: REST base URL, http(s)://host:port[/prefix]",
    )
    grpc: str | None = Field(None, pattern=r"^[^\s/:]+:[0-9]{1,5}$", description="endpoints: gRPC host:port")
    headers: Headers = Field({}, description="endpoints: extra request headers ({env: NAME} values)")
    tls: Tls | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: Headers) -> Headers:
        return _check_headers(value)

    @model_validator(mode="after")
    def _aa_is_a_copy(self) -> Arm:
        if self.aa and (self.baseline or self.hop not in (None, "model")):
            raise ValueError(f"arm {self.name}: aa: true is a copy of the baseline's model (hop: model)")
        return self

    @model_serializer(mode="wrap")
    def _omit_no_aa(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`aa: false` is left out, so specs (and compiled workflows) of before read as they did."""
        data = dict(handler(self))
        if not data.get("aa"):
            data.pop("aa", None)
        for key in ("url", "grpc", "tls", "headers"):  # platform endpoints' keys, likewise
            if not data.get(key):
                data.pop(key, None)
        return data

    def local_hop(self) -> str:
        return self.hop or ("model" if self.baseline or self.aa else "orchestrator")


#: The seed's two arms: what a spec without `arms:` means.
DEFAULT_ARMS = (Arm(name=DEFAULT_BASELINE, baseline=True, hop="model"), Arm(name="with", hop="orchestrator"))


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
    transports: list[Transport] = ["rest", "grpc"]
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
    thresholds: Thresholds = Thresholds()
    arms: list[Arm] | None = Field(
        None,
        description="the arms, exactly one with baseline: true; unset: the seed's 'without' (baseline) "
        "and 'with'",
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
        return data

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
    if msg.startswith(f"{where}.") or msg.startswith(f"{where} "):
        return f"{msg}{more}"  # the validator named the field itself
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
