"""The platform seam. Steps call this protocol, never a platform's internals.

Each step of a workflow runs in its own process (an Argo pod, or a child process of the local
runner), so what one step hands the next is a JSON-serialisable `DeploymentRecord` written to the
run directory, never an in-memory object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchbench.core.arms import ArmName, Endpoint, Transport
from orchbench.fsio import write_text


@dataclass
class DeploymentRecord:
    """What `deploy` leaves behind so that `wait`, `verify_arm` and `teardown` can find it again."""

    platform: str  # "local" | "kubernetes"
    name: str
    transport: Transport
    arm: ArmName
    model_name: str
    details: dict[str, Any] = field(default_factory=dict)  # platform-specific (pids, namespace, ...)

    def save(self, path: Path) -> Path:
        return write_text(path, json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> DeploymentRecord:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class ArmEvidence:
    """Why we believe an arm is what it claims: shown in results and reports."""

    arm: ArmName
    orchestrator_on_path: bool
    how: str  # e.g. "response header x-orchbench-orchestrator", "pod containers: [...]"
    #: the arm's checks passed (None: the seed's reading, orchestrator_on_path == (arm == "with"))
    verified: bool | None = None
    hop: str | None = None  # local: model | orchestrator | nginx | haproxy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Platform(Protocol):
    name: str

    def taint(self, owner: str = "") -> dict[str, Any]:
        """Isolate the load tester from the model (node taints, or CPU pinning) for the run `owner`
        (the workflow's id). Idempotent."""

    def untaint(self, owner: str = "") -> None:
        """Undo `owner`'s `taint`, never another run's. Safe to call when nothing was tainted."""

    def deploy(self, manifest: dict[str, Any], arm: ArmName, record_path: Path) -> DeploymentRecord:
        """Start the system under test for one arm and save its record to `record_path`."""

    def wait(self, record: DeploymentRecord, timeout_s: float) -> Endpoint:
        """Block until the deployment answers; raise DeployTimeout with its last status otherwise."""

    def verify_arm(self, record: DeploymentRecord, endpoint: Endpoint) -> ArmEvidence:
        """Check the orchestrator is on the request path in 'with' only; raise ArmVerificationError."""

    def teardown(self, record: DeploymentRecord) -> None:
        """Stop everything `deploy` started and wait until it is gone. Safe to call twice."""
