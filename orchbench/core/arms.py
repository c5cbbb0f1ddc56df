"""The vocabulary of an experiment: transports, arms and the endpoint a load tester aims at."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Transport = Literal["rest", "grpc"]
ArmName = Literal["with", "without"]
TRANSPORTS: tuple[Transport, ...] = ("rest", "grpc")
ARMS: tuple[ArmName, ...] = ("with", "without")

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
