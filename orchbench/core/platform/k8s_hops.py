"""Which containers are an arm's hop on a cluster: what the metrics API is asked about (k8s_metrics.py).

Pure: a deployment record (the deploy step's `record` output, a DeploymentRecord as a dict) in, the pod
selectors and container names out. A compared arm is sampled for the hops it adds over the baseline's
path (what its overhead is attributed to); the baseline for its model server, as locally.

The facts, and where they come from:
- Seldon Core v1: the orchestrator runs as the container `seldon-container-engine` in the predictor's
  pods (SeldonIO/seldon-core operator/controllers/seldondeployment_engine.go, EngineContainerName), every
  pod labelled `seldon-deployment-id=<deployment>` (k8s_common.SELDON_ID_LABEL). The `without` arm's pods
  run the model containers only.
- KServe: the model server is the container `kserve-container`, Knative's sidecar `queue-proxy`
  (kserve/kserve pkg/constants/constants.go: InferenceServiceContainerName, QueueProxyContainerName), the
  pods labelled `serving.kserve.io/inferenceservice=<isvc>`; the InferenceGraph router's pods
  `serving.kserve.io/inferencegraph=<graph>`, its one container named after the graph (kserve_render.py):
  all of those pods' containers are the router.
- Knative's `knative-local-gateway` and activator run in the gateway's and knative-serving's namespaces,
  not the arm's: on the path but not sampled (`unsampled`), which the record says.
- Seldon Core v2: the Server's pods (`seldon-server-name=<server>`) run `rclone`, `agent` (the reverse
  proxy on the mesh path) and the inference server (`mlserver` in Seldon's default ServerConfig,
  operator/config/serverconfigs/mlserver.yaml); envoy's pods are `app.kubernetes.io/name=seldon-envoy`
  (seldon2_render.py). Every Model on the Server is served by the same inference server, so the
  baseline's (`direct`) model container serves the mesh arm's requests too: `shared`.
- Istio: the injected sidecar is the container `istio-proxy`; an arm whose path lists the hop
  `istio-proxy` is sampled for it in each of its pods. No renderer puts it on a path yet, and it is
  never counted as the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchbench.core.platform.k8s_common import ENGINE_CONTAINER, SELDON_ID_LABEL
from orchbench.core.platform.kserve_render import IG_POD_LABEL, ISVC_POD_LABEL, QUEUE_PROXY
from orchbench.core.platform.seldon2_render import AGENT_CONTAINER, ENVOY_POD_SELECTOR, SERVER_POD_LABEL

KSERVE_CONTAINER = "kserve-container"
ISTIO_PROXY = "istio-proxy"
RCLONE_CONTAINER = "rclone"
#: Hops that run outside the arm's namespace (the Knative gateway, the activator): not sampled.
OUTSIDE_NAMESPACE = frozenset({"knative-local-gateway", "knative-activator"})
#: Hop names that mean the model server itself.
MODEL_HOPS = frozenset({"model", "server"})

Role = Literal["hop", "model"]


@dataclass(frozen=True)
class ContainerSet:
    """Containers of the pods one label selects: `containers` by name, or (empty) every container of
    those pods but `exclude`."""

    key: str
    value: str
    containers: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hop: str = ""

    @property
    def selector(self) -> str:
        return f"{self.key}={self.value}"

    def picks(self, container: str) -> bool:
        if self.containers:
            return container in self.containers
        return container not in self.exclude

    def to_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "containers": list(self.containers) or None,
            "exclude": list(self.exclude),
            "hop": self.hop,
        }


@dataclass(frozen=True)
class ArmContainers:
    """What the metrics API is asked about for one arm; `reason` set when there is nothing to ask."""

    arm: str
    namespace: str
    role: Role
    sets: tuple[ContainerSet, ...] = ()
    unsampled: tuple[str, ...] = ()
    shared: bool = False
    reason: str = ""


def _hops(record: Mapping[str, Any]) -> frozenset[str]:
    """The hops on an arm's path: the rendered target's (KServe, Seldon v2), or the SeldonDeployment
    arm's (the orchestrator on `with`)."""
    details = record.get("details") or {}
    target = details.get("target") or {}
    if record.get("platform") == "kubernetes":
        return frozenset({"orchestrator", "model"} if record.get("arm") == "with" else {"model"})
    return frozenset(str(h) for h in target.get("hops") or ())


def _model_sets(record: Mapping[str, Any]) -> tuple[tuple[ContainerSet, ...], bool]:
    """The model server's containers of a record, and whether other arms' requests reach them too."""
    platform, details = record.get("platform"), record.get("details") or {}
    if platform == "kubernetes":
        sel = (SELDON_ID_LABEL, str(record.get("name") or details.get("name")))
        return (ContainerSet(*sel, exclude=(ENGINE_CONTAINER, ISTIO_PROXY), hop="model"),), False
    if platform == "kserve":
        return (ContainerSet(ISVC_POD_LABEL, str(details["isvc"]), (KSERVE_CONTAINER,), hop="model"),), False
    if platform == "seldon2":
        excl = (AGENT_CONTAINER, RCLONE_CONTAINER, ISTIO_PROXY)
        return (ContainerSet(SERVER_POD_LABEL, str(details["server"]), exclude=excl, hop="model"),), True
    return (), False


def _hop_sets(record: Mapping[str, Any], hop: str) -> tuple[ContainerSet, ...] | None:
    """The containers that are `hop` on this record's path (None: not in the arm's namespace, or a
    hop orchbench cannot place)."""
    platform, details = record.get("platform"), record.get("details") or {}
    if platform == "kubernetes" and hop == "orchestrator":
        return (ContainerSet(SELDON_ID_LABEL, str(record.get("name")), (ENGINE_CONTAINER,), hop=hop),)
    if platform == "kserve" and hop == QUEUE_PROXY:
        return (ContainerSet(ISVC_POD_LABEL, str(details["isvc"]), (QUEUE_PROXY,), hop=hop),)
    if platform == "kserve" and hop == "graph-router" and details.get("graph"):
        return (ContainerSet(IG_POD_LABEL, str(details["graph"]), exclude=(ISTIO_PROXY,), hop=hop),)
    if platform == "seldon2" and hop == "envoy":
        return (ContainerSet(*ENVOY_POD_SELECTOR, exclude=(ISTIO_PROXY,), hop=hop),)
    if platform == "seldon2" and hop == "agent":
        return (ContainerSet(SERVER_POD_LABEL, str(details["server"]), (AGENT_CONTAINER,), hop=hop),)
    if hop == ISTIO_PROXY:
        selectors = [tuple(s) for s in details.get("pod_selectors") or []]
        if platform == "kubernetes":
            selectors = [(SELDON_ID_LABEL, str(record.get("name")))]
        return tuple(ContainerSet(str(k), str(v), (ISTIO_PROXY,), hop=hop) for k, v in selectors)
    return None


def arm_containers(
    record: Mapping[str, Any], baseline: str, baseline_record: Mapping[str, Any] | None = None
) -> ArmContainers:
    """The containers to sample for the arm of `record`: the baseline's model server, or the hops a
    compared arm adds over the baseline's path (`baseline_record`; without it, every hop but the model)."""
    arm = str(record.get("arm") or "")
    details = record.get("details") or {}
    ns = str(details.get("namespace") or "")
    platform = record.get("platform")
    if platform not in ("kubernetes", "kserve", "seldon2"):
        return ArmContainers(arm, ns, "hop", reason=f"platform {platform!r} has no pods to sample")
    if arm == baseline:
        model, shared = _model_sets(record)
        return ArmContainers(arm, ns, "model", model, shared=shared)
    base = _hops(baseline_record) if baseline_record else MODEL_HOPS
    added = sorted(_hops(record) - base - MODEL_HOPS)
    sets: list[ContainerSet] = []
    unsampled: list[str] = []
    for hop in added:
        found = None if hop in OUTSIDE_NAMESPACE else _hop_sets(record, hop)
        if found:
            sets.extend(found)
        else:
            unsampled.append(hop)
    reason = ""
    if not sets:
        reason = (
            f"arm {arm}: its hops over the baseline ({', '.join(added) or 'none'}) have no container in "
            f"namespace {ns} to sample"
        )
    return ArmContainers(arm, ns, "hop", tuple(sets), tuple(unsampled), reason=reason)
