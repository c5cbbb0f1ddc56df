"""The sections of an experiment spec (load, local, kubernetes, argo, thresholds; the arms' are
`orchbench.core.spec_arms`'): pydantic models, strict, unknown keys refused. `orchbench.core.spec`
puts them together."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from orchbench.core.arms import Transport
from orchbench.core.paths import MANIFESTS, PAYLOADS, SPECS
from orchbench.core.spec_stages import Stages

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
        le=100,  # the most `blocks` a spec (and so the extension's workflow) may have
        description="with precision_ms: at most this many blocks in all (unset: 40)",
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        description="with precision_ms: at most this many seconds of load testing in all",
    )

    cpu_wake_latency_us: int | None = Field(
        0,
        ge=0,
        le=1_000_000,
        description="while a load test runs, every CPU wakes within this many µs (a PM QoS request on "
        "/dev/cpu_dma_latency, root only; 0: idle CPUs poll instead of halting); null: the machine's "
        "own idle states (orchbench.core.loadtools.cpu_wake)",
    )

    stages: Stages | None = Field(
        None,
        description="a load plan instead of one load: open-loop `rates` or closed-loop `workers` per "
        "stage (orchbench.core.stages); replaces mode, rate and workers",
    )
    generators: int = Field(
        1,
        ge=1,
        le=64,
        description="open-loop stages: load generators per stage, run in parallel, each at rate / N of "
        "every arm with its own arm order; compare merges them and checks the summed rate",
    )

    @model_serializer(mode="wrap")
    def _omit_no_stages(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No stages, one generator and the default wake-up latency are left out: specs (and
        compiled workflows) of before read exactly as they did."""
        data = dict(handler(self))
        if data.get("stages") is None:
            data.pop("stages", None)
        if data.get("generators") == 1:
            data.pop("generators", None)
        if data.get("cpu_wake_latency_us") == 0:
            data.pop("cpu_wake_latency_us", None)
        return data

    @model_validator(mode="after")
    def _stages_replace_one_load(self) -> Load:
        if self.stages is None:
            if self.generators != 1:
                raise ValueError("load.generators applies to open-loop stages (load.stages.rates) only")
            return self
        # compared with the defaults, not `model_fields_set`: the workflow's spec parameter dumps them
        given = [
            k
            for k, changed in (
                ("mode", self.mode != "closed"),
                ("rate", self.rate is not None),
                ("workers", self.workers != 1),
            )
            if changed
        ]
        if given:
            raise ValueError(
                f"load.stages replaces load.{', load.'.join(given)}: give the load plan in load.stages only"
            )
        if self.precision_ms is not None:
            raise ValueError("load.precision_ms applies to one load, not to load.stages")
        if self.tool == "ghz" and any(not float(r).is_integer() for r in self.stages.rates or []):
            raise ValueError("load.stages.rates: ghz needs whole open-loop rates (requests/s)")
        if self.generators > 1:
            if self.stages.rates is None:
                raise ValueError("load.generators applies to open-loop stages (load.stages.rates) only")
            if self.tool in ("vegeta", "ghz") or self.interleave == "block":
                raise ValueError(
                    "load.generators needs k6 with interleave request (each generator rotates every arm)"
                )
        return self

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
    orchestrator_rest_impl: Literal["httptools", "aiohttp"] | None = Field(
        None, description="the orchestrator's REST forwarder (serving.orchestrator --rest-impl)"
    )
    orchestrator_grpc_impl: Literal["hand", "h2", "grpcio"] | None = Field(
        None, description="the orchestrator's gRPC forwarder (serving.orchestrator --grpc-impl)"
    )
    model_grpc_impl: Literal["h2", "grpcio"] | None = Field(
        None, description="the model server's gRPC server (serving.model_server --grpc-server)"
    )
    model_server: Literal["bundled", "kserve"] = Field(
        "bundled",
        description="what serves the model: the bundled server (serving.model_server), or KServe's "
        "Python model server from its own virtual environment (orchbench.core.platform.kserve_local: "
        "protocol v2 on REST and gRPC, tfserving on REST)",
    )

    @model_validator(mode="after")
    def _impl_fits_server(self) -> Local:
        if self.model_server == "kserve" and self.model_grpc_impl is not None:
            raise ValueError("local.model_grpc_impl applies to the bundled model server only")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_impls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Unset implementation keys (and the bundled model server) are left out, so specs (and
        compiled workflows) that do not name one read exactly as before."""
        data = dict(handler(self))
        for key in ("orchestrator_rest_impl", "orchestrator_grpc_impl", "model_grpc_impl"):
            if data.get(key) is None:
                data.pop(key, None)
        if data.get("model_server") == "bundled":
            data.pop("model_server", None)
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
