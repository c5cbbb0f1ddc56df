"""The vocabulary of an experiment: transports, arms and the endpoint a load tester aims at."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Endpoint:
    """Where one arm answers. `url` is the REST predict URL; `grpc_target` is host:port for gRPC."""

    transport: Transport
    arm: ArmName
    host: str
    port: int
    model_name: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/models/{self.model_name}:predict"

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
        )
