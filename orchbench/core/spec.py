"""The experiment spec: YAML validated with pydantic. Unknown keys and bad values fail before any run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from orchbench.core.arms import ARMS, ArmName, Transport
from orchbench.core.errors import ConfigError
from orchbench.core.manifest import inspect, load_manifest
from orchbench.core.paths import MANIFESTS, PAYLOADS, SPECS, shipped_spec, shipped_spec_names
from orchbench.core.payload_check import check_payload

DEFAULT_SPEC = SPECS / "default.yaml"
SHIPPED_MANIFEST = MANIFESTS / "tf_flowers.yaml"
SHIPPED_PAYLOADS = {"rest": PAYLOADS / "flowers.json", "grpc": PAYLOADS / "flowers.bin"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @model_validator(mode="after")
    def _interleave_needs_k6(self) -> Load:
        if self.interleave == "request" and self.tool in ("vegeta", "ghz"):
            raise ValueError(
                f"load.interleave 'request' needs k6; {self.tool} drives one target per run (use 'block')"
            )
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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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


class NodeSelection(_Strict):
    names: list[str] = []
    labels: dict[str, str] = {}


class Kubernetes(_Strict):
    namespace: str = "seldon"
    loadtester_nodes: NodeSelection = NodeSelection()
    model_nodes: NodeSelection = NodeSelection()
    ready_timeout_s: float = Field(600.0, gt=0, le=7200)


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


class Spec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    platform: Literal["local", "kubernetes"] = "local"
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
    local: Local = Local()
    kubernetes: Kubernetes = Kubernetes()
    argo: Argo = Argo()
    #: The folder relative paths resolve against: the spec file's folder (None: the working directory).
    _base_dir: Path | None = PrivateAttr(None)

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

    def manifest_document(self) -> dict[str, Any]:
        """The manifest: inline in the spec (as compiled workflows carry it) or read from its path."""
        if isinstance(self.manifest, dict):
            inspect(self.manifest, source="spec manifest")
            return self.manifest
        return load_manifest(self.resolve(self.manifest))

    def threshold_ms(self, transport: Transport) -> float | None:
        return self.thresholds.rest_ms if transport == "rest" else self.thresholds.grpc_ms

    def interleave(self) -> Literal["request", "block"]:
        """How the arms are interleaved: `load.interleave` with `auto` resolved."""
        mode = self.load.interleave
        if mode == "auto":
            k6 = self.load.tool == "k6" or (self.load.tool == "auto" and self.platform == "local")
            return "request" if k6 else "block"
        return mode

    def block_order(self) -> list[list[ArmName]]:
        """Arm order per block: each block runs both arms once, in an order drawn from `order_seed`."""
        rng = random.Random(self.order_seed)
        out: list[list[ArmName]] = []
        for _ in range(self.blocks):
            arms = list(ARMS)
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
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
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
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: spec not found") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not a readable YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    spec = parse_spec(data, str(path))
    spec._base_dir = path.resolve().parent
    check_inputs(spec, str(path))
    return spec


def check_inputs(spec: Spec, source: str = "spec") -> None:
    """The files a spec names, read and checked before anything starts: the SeldonDeployment
    manifest (`orchbench.core.manifest.load_manifest`) and the payload of every transport it runs."""
    try:
        spec.manifest_document()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        where = spec.resolve(spec.manifest) if isinstance(spec.manifest, str) else "inline"
        raise ConfigError(f"{source}: manifest {where}: not readable ({reason})") from None
    for transport in spec.transports:
        payload = spec.resolve(spec.payloads.get(transport, ""))
        if transport not in spec.payloads or not payload.is_file():
            raise ConfigError(f"{source}: payloads.{transport}: file {payload} not found")
        check_payload(payload, transport)


def spec_from_json(text: str) -> Spec:
    """Steps receive the spec as the workflow parameter `spec` (JSON)."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"workflow parameter spec: not valid JSON ({exc.msg})") from None
    return parse_spec(data, "workflow parameter spec")
