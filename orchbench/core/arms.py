"""The vocabulary of an experiment: transports, arms and the endpoint a load tester aims at."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Transport = Literal["rest", "grpc"]
#: An arm's name: the spec's `arms[].name`; the seed's two arms are "with" and "without" (the baseline).
ArmName = str
TRANSPORTS: tuple[Transport, ...] = ("rest", "grpc")
#: The seed's two arms, the default when a spec names none (in the order `block_order` shuffles).
ARMS: tuple[ArmName, ...] = ("with", "without")
DEFAULT_BASELINE: ArmName = "without"
#: Arm names appear in task names (`deploy-rest-<arm>`), file paths and k6 tags.
ARM_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
#: Local hops: the model server direct, the reference orchestrator, or a third-party proxy in front
#: of the baseline's model server.
HOPS = ("model", "orchestrator", "nginx", "haproxy")

#: Seldon Core's service ports: clients reach the orchestrator ("executor") on 8000; with the
#: `seldon.io/no-engine` annotation they reach the model container directly on 9000.
PORT_WITH_ORCHESTRATOR = 8000
PORT_WITHOUT_ORCHESTRATOR = 9000

GRPC_METHOD = "tensorflow.serving.PredictionService/Predict"
#: The Open Inference Protocol's gRPC inference method (serving.v2.INFER_PATH without the slash).
V2_GRPC_METHOD = "inference.GRPCInferenceService/ModelInfer"
#: What a request speaks: TF-Serving's predict API, the Open Inference Protocol, or plain HTTP.
Protocol = Literal["tfserving", "v2", "http"]
PROTOCOLS: tuple[Protocol, ...] = ("tfserving", "v2", "http")

#: An extra request header: its value, or {"env": NAME}: the value of that environment variable, read
#: where the request is made (never written anywhere: records, configs and results carry NAME only).
HeaderValue = str | dict[str, str]


def header_values(headers: dict[str, HeaderValue] | None) -> dict[str, str]:
    """The headers with env-sourced values read from this process's environment (a missing variable
    is an error naming the variable, never a request without the header)."""
    from orchbench.core.errors import ConfigError

    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if isinstance(value, dict):
            var = value["env"]
            got = os.environ.get(var)
            if got is None:
                raise ConfigError(f"header {name}: environment variable {var} is not set")
            out[name] = got
        else:
            out[name] = value
    return out


def secret_values(headers: dict[str, HeaderValue] | None) -> list[str]:
    """The env-sourced header values present in this environment (to scrub from messages)."""
    vals = []
    for value in (headers or {}).values():
        if isinstance(value, dict) and os.environ.get(value["env"]):
            vals.append(os.environ[value["env"]])
    return vals


@dataclass(frozen=True)
class Endpoint:
    """Where one arm answers. `url` is the REST request URL (per protocol); `grpc_target` is
    host:port for gRPC. `http`: the plain-HTTP protocol's request (method, path, success_status,
    json_field); `headers`: extra request headers (env-sourced ones by variable name only); `tls`:
    {"ca_file": path or None, "insecure": bool} for https / TLS gRPC; `base_path`: a REST URL prefix."""

    transport: Transport
    arm: ArmName
    host: str
    port: int
    model_name: str
    protocol: Protocol = "tfserving"
    scheme: str = "http"
    base_path: str = ""
    http: dict[str, Any] | None = None
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    tls: dict[str, Any] | None = None
    #: protocol v2: "flowers" (orchbench's model: scores and prediction) or "outputs" (any answer with
    #: at least one non-empty output: a third-party runtime names its outputs itself, MLServer's
    #: sklearn `predict`)
    answer_check: str = "flowers"

    @property
    def path(self) -> str:
        """The REST request path (with base_path)."""
        if self.protocol == "v2":
            rest = f"/v2/models/{self.model_name}/infer"
        elif self.protocol == "http":
            rest = str((self.http or {}).get("path") or "/")
            if rest == "/" and self.base_path.strip("/"):
                return self.base_path  # the arm's URL names the full path

        else:
            rest = f"/v1/models/{self.model_name}:predict"
        return self.base_path.rstrip("/") + rest

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def grpc_method(self) -> str:
        return V2_GRPC_METHOD if self.protocol == "v2" else GRPC_METHOD

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        return cls(
            transport=data["transport"],
            arm=data["arm"],
            host=data["host"],
            port=int(data["port"]),
            model_name=data["model_name"],
            protocol=data.get("protocol", "tfserving"),
            scheme=data.get("scheme", "http"),
            base_path=data.get("base_path", ""),
            http=data.get("http"),
            headers=dict(data.get("headers") or {}),
            tls=data.get("tls"),
            answer_check=data.get("answer_check", "flowers"),
        )
