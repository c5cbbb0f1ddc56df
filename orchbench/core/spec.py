"""The experiment spec: YAML validated with pydantic. Unknown keys and bad values fail before any run.

Its sections are orchbench.core.spec_sections' (and spec_arms', spec_stages'), the rules across them
orchbench.core.spec_rules', the files around it (which spec, the manifest and payloads it names)
orchbench.core.spec_files'."""

from __future__ import annotations

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

from orchbench.core.arms import ARMS, ArmName, Protocol, Transport
from orchbench.core.errors import ConfigError
from orchbench.core.manifest import inspect, load_manifest
from orchbench.core.platform.k8s_kinds import KIND_ARMS, check_manifest, load_kind_manifest
from orchbench.core.safeio import MAX_SPEC_BYTES, load_yaml, read_text
from orchbench.core.spec_arms import DEFAULT_ARMS, Arm, EnvRef, HttpRequest
from orchbench.core.spec_files import check_inputs, find_spec
from orchbench.core.spec_rules import check_spec, protocol_defaults
from orchbench.core.spec_sections import (
    SHIPPED_MANIFEST,
    SHIPPED_PAYLOADS,
    Argo,
    Kubernetes,
    Load,
    Local,
    Thresholds,
    _Strict,
)
from orchbench.core.spec_stages import Slo
from orchbench.core.stages import Stage


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
        le=100,  # as many as blocks: a precision-targeted extension may add up to max_blocks
        description="deployment replicates: every arm deployed afresh this many times, one after the "
        "other, each holding blocks / replicates of the blocks; the interval is then over replicates, "
        "blocks nested inside (orchbench.core.replicates)",
    )
    thresholds: Thresholds = Thresholds()
    floor: bool = Field(
        True,
        description="run the measurement-floor step (the load tester against a no-op server, and the "
        "model alone) before the arms are deployed; false: the run has no floor step, and its summary "
        "and report say the floor was switched off",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: Any) -> Any:
        """Default payloads per protocol (orchbench.core.spec_rules.protocol_defaults)."""
        return protocol_defaults(data)

    @model_validator(mode="after")
    def _rules_across_sections(self) -> Spec:
        """The checks across sections (orchbench.core.spec_rules), in their order."""
        check_spec(self)
        return self

    @model_serializer(mode="wrap")
    def _omit_default_arms(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No `arms:` stays no `arms:` (nor `floor:` left true, ...): specs (and compiled workflows) of
        before read as they did."""
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
        if data.get("floor") is True:
            data.pop("floor", None)
        return data

    def replicate_of(self, block: int) -> int:
        """The deployment replicate block `block` belongs to (0 without replicates)."""
        return block // (self.blocks // self.replicates)

    def stage_plan(self) -> list[Stage]:
        """The load stages (orchbench.core.stages), [] for one load."""
        return self.load.stages.plan() if self.load.stages is not None else []

    def model_name(self) -> str:
        """The model name requests carry: `model`, else the manifest's."""
        return self.model or inspect(self.manifest_document()).model_name

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

    def deploy_order(self, replicate: int = 0) -> list[ArmName]:
        """The order replicate `replicate` deploys the arms in: the baseline first (every hop fronts its
        model), except that odd replicates start the A/A copy (`aa: true`, a model process of its own
        that fronts nothing) before the baseline. Of two model server processes started one after
        the other, the second answered ~0.1 ms faster (p50), whichever was asked first, in 15 of 16
        fresh pairs (2026-12-06, benchmarks/README.md); the A/A copy, always started second, came out
        0.03-0.20 ms faster in 12 of 12 calibration estimates. Alternating which copy starts first
        puts that start-order effect into the replicates' spread, where the interval over replicates
        holds it, instead of into every replicate alike."""
        names = self.arm_names()
        aa = self.aa_arm()
        if aa is None or replicate % 2 == 0:
            return names
        return [aa, *(n for n in names if n != aa)]

    def injected_delays_ms(self) -> dict[ArmName, float]:
        """Local: the delay each arm's reference orchestrator injects (its own `inject_delay_ms`, or
        local.inject_delay_ms), 0 for every other arm; {} on other platforms and for an A/A run."""
        if self.platform != "local" or self.local.aa_mode:
            return {}
        out: dict[ArmName, float] = {}
        for a in self.arm_list():
            own = a.inject_delay_ms if a.inject_delay_ms is not None else self.local.inject_delay_ms
            out[a.name] = float(own) if a.local_hop() == "orchestrator" else 0.0
        return out

    def delays_injected(self) -> bool:
        """Whether an arm injects a delay (a calibration): then k6 walks the arms in a cycle in which
        every arm follows every ordered pair of arms equally often (orchbench.core.loadtools.rotation)."""
        return any(d > 0 for d in self.injected_delays_ms().values())

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


def load_spec(path: str | Path | None = None) -> Spec:
    path = find_spec(path)
    data = load_yaml(read_text(path, "spec", MAX_SPEC_BYTES), str(path))
    spec = parse_spec(data, str(path))
    spec._base_dir = path.resolve().parent
    check_inputs(spec, str(path))
    return spec


def spec_from_json(text: str) -> Spec:
    """Steps receive the spec as the workflow parameter `spec` (JSON)."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"workflow parameter spec: not valid JSON ({exc.msg})") from None
    return parse_spec(data, "workflow parameter spec")
