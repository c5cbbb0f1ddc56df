"""KServe arms from one InferenceService manifest (pure functions: no API calls).

    arms = render_kserve(load_yaml(...), KServeOptions(arms=("raw", "serverless", "graph")), "models")
    arms["serverless"].objects   # the InferenceService to create, labelled for orchbench
    arms["serverless"].target    # where the load tester sends requests, with which Host header

The arms (each object named `<isvc>-<transport>-<arm>`; the graph's backend `<isvc>-<transport>-graph-model`):

- `raw`: annotation `serving.kserve.io/deploymentMode: RawDeployment`: a Deployment behind a plain
  Service `<name>-predictor` (port 80 → the first container port). Path: load tester → model.
- `serverless`: `serving.kserve.io/deploymentMode: Serverless` (Knative). Path: load tester →
  knative-local-gateway (routes by Host) → queue-proxy (a container in the model pod) → model, and with
  `activator=True` Knative's activator too: `autoscaling.knative.dev/target-burst-capacity: "-1"` keeps
  it on the path always; otherwise "0" puts it there only at zero replicas, which `minReplicas >= 1`
  rules out.
- `graph`: an InferenceGraph (itself RawDeployment: its router a plain Deployment, no queue-proxy) with
  one Sequence step in front of its own RawDeployment InferenceService. Path: load tester → router
  → model. The router speaks HTTP only: a gRPC graph is refused.

Model name in the v2 path: KServe's runtimes serve the model under the InferenceService's name, so each
arm's `target.model_name` is that arm's InferenceService name. Knative routes by Host, so every target
carries the cluster-local host as `host_header` (for gRPC: the `:authority`).

A rendering whose arms would add the same hop over the baseline is refused (k8s_arms.refuse_shared_hops).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchbench.core.errors import ConfigError
from orchbench.core.platform.k8s_arms import (
    GRPC_V2_METHOD,
    ArmTarget,
    check_arms,
    check_owner,
    check_transport,
    labels_for,
    refuse_shared_hops,
)

KSERVE_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_KIND = "InferenceService"
ISVC_PLURAL = "inferenceservices"
IG_VERSION = "v1alpha1"
IG_KIND = "InferenceGraph"
IG_PLURAL = "inferencegraphs"

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
#: Values of DEPLOYMENT_MODE orchbench writes; KServe >= 0.15 also reads them (as Standard/Knative).
RAW_MODE = "RawDeployment"
SERVERLESS_MODE = "Serverless"
RAW_MODES = ("RawDeployment", "Standard")
SERVERLESS_MODES = ("Serverless", "Knative")
TARGET_BURST_CAPACITY = "autoscaling.knative.dev/target-burst-capacity"

#: Pod labels KServe sets: the InferenceService's pods and the InferenceGraph router's pods.
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
IG_POD_LABEL = "serving.kserve.io/inferencegraph"
QUEUE_PROXY = "queue-proxy"

KSERVE_ARMS = ("raw", "serverless", "graph")
GRAPH_BACKENDS = ("raw", "serverless")
SERVICE_PORT = 80  # KServe's predictor Service and the graph's Service listen on 80
#: The gRPC container port of KServe's runtimes: MLServer and Triton use 9000, KServe's own 8081.
GRPC_PORTS = {"kserve-mlserver": 9000, "kserve-tritonserver": 9000}
DEFAULT_GRPC_PORT = 8081

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

#: Hops on each kind of path (the model server itself is "model").
_RAW_HOPS = frozenset({"model"})
_KNATIVE_HOPS = frozenset({"knative-local-gateway", QUEUE_PROXY, "model"})
_ROUTER = "graph-router"
_ACTIVATOR = "knative-activator"


@dataclass(frozen=True)
class IsvcInfo:
    name: str
    protocol_version: str
    runtime: str
    model_format: str


@dataclass(frozen=True)
class KServeOptions:
    """What a spec asks of KServe: the arms to render, the baseline, transport and protocol."""

    arms: tuple[str, ...] = KSERVE_ARMS
    baseline: str = "raw"
    transport: str = "rest"
    protocol: str = "v2"
    #: serverless: keep Knative's activator on the path (target-burst-capacity -1).
    activator: bool = False
    #: The deployment mode of the InferenceService the graph fronts ("raw": only the router is added).
    graph_backend: str = "raw"
    #: The model container's gRPC port; default from the runtime (GRPC_PORTS).
    grpc_port: int | None = None
    #: The workflow's uid: the label orchbench.io/owner on every object (and so on its pods).
    owner: str = ""


@dataclass(frozen=True)
class KServeArm:
    """One arm: the objects to create (in order: InferenceService, then InferenceGraph) and its target."""

    arm: str
    isvc_name: str
    graph_name: str
    objects: tuple[dict[str, Any], ...]
    target: ArmTarget

    @property
    def hops(self) -> frozenset[str]:
        return frozenset(self.target.hops)


def inspect_isvc(manifest: Any, source: str = "InferenceService manifest") -> IsvcInfo:
    """Check an InferenceService manifest has what orchbench renders from (one predictor `model`)."""
    if not isinstance(manifest, dict):
        raise ConfigError(f"{source}: an InferenceService must be a YAML mapping")
    api = str(manifest.get("apiVersion", ""))
    if manifest.get("kind") != ISVC_KIND or api != f"{KSERVE_GROUP}/{ISVC_VERSION}":
        raise ConfigError(
            f"{source}: expected kind {ISVC_KIND}, apiVersion {KSERVE_GROUP}/{ISVC_VERSION}; "
            f"got kind={manifest.get('kind')!r} apiVersion={api!r}"
        )
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _DNS_1035.match(name):
        raise ConfigError(f"{source}: metadata.name must be a DNS-1035 label, got {name!r}")
    spec = manifest.get("spec") or {}
    extra = sorted(set(spec) - {"predictor"})
    if extra:
        raise ConfigError(
            f"{source}: only spec.predictor is supported (a {extra[0]} adds a hop), found {extra}"
        )
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict) or not isinstance(predictor.get("model"), dict):
        raise ConfigError(f"{source}: spec.predictor.model is required (the model-format form of KServe)")
    model = predictor["model"]
    fmt = (model.get("modelFormat") or {}).get("name")
    if not isinstance(fmt, str) or not fmt:
        raise ConfigError(f"{source}: spec.predictor.model.modelFormat.name is required")
    if not model.get("storageUri") and not model.get("storage"):
        raise ConfigError(f"{source}: spec.predictor.model needs a storageUri")
    for bad in ("batcher", "logger"):
        if bad in predictor:
            raise ConfigError(f"{source}: spec.predictor.{bad} puts KServe's agent on every arm's path")
    return IsvcInfo(
        name=name,
        protocol_version=str(model.get("protocolVersion") or ""),
        runtime=str(model.get("runtime") or ""),
        model_format=fmt,
    )


def object_name(base: str, transport: str, arm: str) -> str:
    """`sklearn-iris` → `sklearn-iris-rest-raw`; a name already ending that way is kept."""
    suffix = f"-{transport}-{arm}"
    return base if base.endswith(suffix) else base + suffix


def _check_name(name: str, what: str) -> None:
    # Knative names the predictor's service `<name>-predictor`; a Service name is a DNS label (<= 63).
    if not _DNS_1035.match(name) or len(f"{name}-predictor") > 63:
        raise ConfigError(
            f"{what}: {name!r} makes a Service name {name}-predictor that is not a DNS label of at most 63 "
            "characters; shorten metadata.name"
        )


def _placed(pod_spec: dict[str, Any], placement: Mapping[str, Any] | None) -> None:
    """Merge a pod-spec fragment ({"tolerations": [...], "nodeSelector": {...}}) into a spec in place."""
    if not placement:
        return
    tolerations = pod_spec.setdefault("tolerations", [])
    for t in placement.get("tolerations") or []:
        if t not in tolerations:
            tolerations.append(copy.deepcopy(t))
    if not tolerations:
        pod_spec.pop("tolerations")
    for k, v in (placement.get("nodeSelector") or {}).items():
        pod_spec.setdefault("nodeSelector", {}).setdefault(k, v)


def _isvc(
    manifest: dict[str, Any],
    name: str,
    namespace: str,
    mode: str,
    arm: str,
    options: KServeOptions,
    info: IsvcInfo,
    placement: Mapping[str, Any] | None,
) -> dict[str, Any]:
    meta_in = manifest.get("metadata") or {}
    labels = {**(meta_in.get("labels") or {}), **labels_for(arm, options.transport, options.owner)}
    annotations = {
        k: v
        for k, v in (meta_in.get("annotations") or {}).items()
        if k not in (DEPLOYMENT_MODE, TARGET_BURST_CAPACITY)
    }
    annotations[DEPLOYMENT_MODE] = mode
    predictor = copy.deepcopy(manifest["spec"]["predictor"])
    # KServe gives the predictor's pods the union of the ServingRuntime's, the InferenceService's and
    # these component labels, plus serving.kserve.io/inferenceservice=<isvc> and component=predictor
    # (kserve/kserve pkg/controller/v1beta1/inferenceservice/components/predictor.go, buildObjectMeta);
    # set on the component too, so the pods carry them whichever of the two a KServe version copies.
    predictor["labels"] = {
        **(predictor.get("labels") or {}),
        **labels_for(arm, options.transport, options.owner),
    }
    model = predictor["model"]
    if info.protocol_version and info.protocol_version not in (options.protocol, f"grpc-{options.protocol}"):
        raise ConfigError(
            f"InferenceService {info.name}: the predictor serves protocolVersion {info.protocol_version!r}, "
            f"the spec asks for {options.protocol!r}"
        )
    model.setdefault("protocolVersion", options.protocol)
    if options.transport == "grpc" and not model.get("ports"):
        port = options.grpc_port or GRPC_PORTS.get(info.runtime, DEFAULT_GRPC_PORT)
        # One h2c port: Knative serves a single port, and KServe maps the first port to Service port 80.
        model["ports"] = [{"name": "h2c", "containerPort": port, "protocol": "TCP"}]
    if mode == SERVERLESS_MODE:
        annotations[TARGET_BURST_CAPACITY] = "-1" if options.activator else "0"
        predictor["minReplicas"] = max(int(predictor.get("minReplicas") or 1), 1)  # never scaled to zero
    _placed(predictor, placement)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{ISVC_VERSION}",
        "kind": ISVC_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def _graph(
    name: str,
    namespace: str,
    backend: str,
    backend_url: str,
    options: KServeOptions,
    placement: Mapping[str, Any] | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                # serviceUrl (not serviceName) pins the v2 path and the backend's cluster-local host.
                "steps": [{"name": backend, "serviceUrl": backend_url}],
            }
        }
    }
    _placed(spec, placement)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{IG_VERSION}",
        "kind": IG_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            # KServe gives the router's pods the graph's own labels plus
            # serving.kserve.io/inferencegraph=<graph> (kserve/kserve
            # pkg/controller/v1alpha1/inferencegraph/raw_ig.go, constructForRawDeployment); the
            # router container is named after the graph and serves HTTP on 8080 behind Service port 80.
            "labels": labels_for("graph", options.transport, options.owner),
            # The graph's own mode: a RawDeployment router has no queue-proxy in front of it.
            "annotations": {DEPLOYMENT_MODE: RAW_MODE},
        },
        "spec": spec,
    }


def _path(protocol: str, model: str) -> str:
    return f"/v2/models/{model}/infer" if protocol == "v2" else f"/v1/models/{model}:predict"


def _target(
    arm: str, host: str, model: str, options: KServeOptions, hops: frozenset[str], path: str | None = None
) -> ArmTarget:
    rest = options.transport == "rest"
    return ArmTarget(
        arm=arm,
        transport=options.transport,
        protocol=options.protocol,
        host=host,
        port=SERVICE_PORT,
        model_name=model,
        host_header=host,
        url=f"http://{host}{path if path is not None else _path(options.protocol, model)}" if rest else "",
        grpc_target="" if rest else f"{host}:{SERVICE_PORT}",
        grpc_method="" if rest else GRPC_V2_METHOD,
        hops=tuple(sorted(hops)),
    )


def render_kserve(
    manifest: dict[str, Any],
    options: KServeOptions,
    namespace: str,
    placement: Mapping[str, Any] | None = None,
) -> dict[str, KServeArm]:
    """Every arm's objects and target, in the order of `options.arms`; ConfigError (one line) if the
    manifest or options do not make distinct, measurable arms."""
    info = inspect_isvc(manifest)
    what = f"InferenceService {info.name}"
    arms = tuple(options.arms)
    check_arms(arms, KSERVE_ARMS, options.baseline, what)
    check_transport(options.transport, options.protocol, what)
    if options.graph_backend not in GRAPH_BACKENDS:
        raise ConfigError(f"{what}: graph_backend must be raw or serverless, got {options.graph_backend!r}")
    if "graph" in arms and options.transport == "grpc":
        raise ConfigError(
            f"{what}: the InferenceGraph router serves HTTP only; render the graph arm for rest"
        )
    if options.protocol == "v1" and info.runtime == "kserve-mlserver":
        raise ConfigError(f"{what}: runtime kserve-mlserver serves the v2 protocol only")
    if not namespace:
        raise ConfigError(f"{what}: a namespace is required")
    check_owner(options.owner, what)
    serverless_hops = _KNATIVE_HOPS | ({_ACTIVATOR} if options.activator else set())
    out: dict[str, KServeArm] = {}
    t = options.transport
    for arm in arms:
        if arm == "graph":
            graph_name = object_name(info.name, t, "graph")
            backend = f"{graph_name}-model"
            _check_name(backend, what)
            mode = RAW_MODE if options.graph_backend == "raw" else SERVERLESS_MODE
            backend_host = f"{backend}-predictor.{namespace}.svc.cluster.local"
            isvc = _isvc(manifest, backend, namespace, mode, arm, options, info, placement)
            graph = _graph(
                graph_name,
                namespace,
                backend,
                f"http://{backend_host}{_path(options.protocol, backend)}",
                options,
                placement,
            )
            hops = (_RAW_HOPS if mode == RAW_MODE else serverless_hops) | {_ROUTER}
            host = f"{graph_name}.{namespace}.svc.cluster.local"
            # The router answers on its root path and forwards the body to the step's serviceUrl.
            target = _target(arm, host, backend, options, hops, path="/")
            out[arm] = KServeArm(arm, backend, graph_name, (isvc, graph), target)
            continue
        name = object_name(info.name, t, arm)
        _check_name(name, what)
        mode = RAW_MODE if arm == "raw" else SERVERLESS_MODE
        isvc = _isvc(manifest, name, namespace, mode, arm, options, info, placement)
        host = f"{name}-predictor.{namespace}.svc.cluster.local"
        hops = _RAW_HOPS if arm == "raw" else serverless_hops
        out[arm] = KServeArm(arm, name, "", (isvc,), _target(arm, host, name, options, hops))
    refuse_shared_hops({a: out[a].hops for a in arms}, options.baseline, what)
    return out
