"""Seldon Core v2 arms from one `Model` (mlops.seldon.io/v1alpha1) manifest (pure functions).

- `mesh`: the documented inference endpoint: the `seldon-mesh` Service (envoy, port 80, REST and gRPC)
  with the header `seldon-model: <model>`. Path: load tester → envoy → agent (the reverse proxy in the
  server pod, 9001/9501) → server (MLServer, 9000/9500).
- `direct`: straight to the server pod's inference port (MLServer's 9000 REST / 9500 gRPC), which serves
  the model under its versioned name `<model>_<version>` (the scheduler's first version is 1). Path:
  load tester → server. The host is the StatefulSet pod's DNS name `<server>-0.<server>.<ns>.svc`; the
  platform replaces it with the pod's IP once the pod runs (seldon2.py).

Each arm's Model is named `<name>-<transport>-<arm>` and pinned to one Server (`spec.server`), so the
direct arm knows which pod serves it. Only the v2 protocol exists here.
"""

from __future__ import annotations

import copy
import re
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

SELDON2_GROUP = "mlops.seldon.io"
MODEL_VERSION = "v1alpha1"
MODEL_KIND = "Model"
MODEL_PLURAL = "models"
SELDON2_ARMS = ("mesh", "direct")

#: Server pods carry `seldon-server-name: <server>` and `app.kubernetes.io/name: seldon-server`
#: (SeldonIO/seldon-core operator/pkg/constants/constants.go ServerLabelNameKey / ServerLabelValue, set
#: on the pod template in operator/controllers/reconcilers/server/statefulset_reconciler.go).
SERVER_POD_LABEL = "seldon-server-name"
SERVER_APP_VALUE = "seldon-server"
#: Envoy's pods: `app.kubernetes.io/name: seldon-envoy`, the component's name, which the SeldonRuntime
#: operator (v2.6 on) puts on every component's pod template (operator/controllers/reconcilers/seldon/
#: deployment_reconciler.go; the name is EnvoyName in operator/apis/mlops/v1alpha1/seldonconfig_types.go).
#: The helm-installed components of v2.0-2.5 labelled them `app: seldon-envoy` instead.
ENVOY_POD_SELECTOR = ("app.kubernetes.io/name", "seldon-envoy")
AGENT_CONTAINER = "agent"
#: The mesh Service: `seldon-mesh`, port 80 (target port `http`, envoy's 9000), selecting
#: app.kubernetes.io/name=seldon-envoy (operator/controllers/reconcilers/seldon/service_reconciler.go,
#: getSeldonMeshService); REST and gRPC share the port, the `seldon-model` header picks the model.
MESH_SERVICE = "seldon-mesh"
MESH_PORT = 80
MODEL_HEADER = "seldon-model"
#: MLServer's ports in Seldon's default ServerConfig: the `mlserver` container's server-http 9000 and
#: server-grpc 9500, the `agent` container's reverse proxy 9001 / 9501 (SELDON_REVERSE_PROXY_*_PORT;
#: operator/config/serverconfigs/mlserver.yaml). The agent loads a Model's version N into MLServer as
#: `<model>_<N>` (scheduler/pkg/util/model.go, GetVersionedModelName).
SERVER_HTTP_PORT = 9000
SERVER_GRPC_PORT = 9500
AGENT_HTTP_PORT = 9001
AGENT_GRPC_PORT = 9501

_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Seldon2Options:
    arms: tuple[str, ...] = SELDON2_ARMS
    baseline: str = "direct"
    transport: str = "rest"
    protocol: str = "v2"
    #: The Server the Models are pinned to (Seldon's default MLServer Server is `mlserver`).
    server: str = "mlserver"
    mesh_service: str = MESH_SERVICE
    #: The version the scheduler gives a newly created Model: MLServer serves it as `<model>_<version>`.
    model_version: int = 1
    #: The workflow's uid: the label orchbench.io/owner on every Model.
    owner: str = ""


@dataclass(frozen=True)
class Seldon2Arm:
    arm: str
    model: str
    objects: tuple[dict[str, Any], ...]
    target: ArmTarget

    @property
    def hops(self) -> frozenset[str]:
        return frozenset(self.target.hops)


def inspect_model(manifest: Any, source: str = "Model manifest") -> str:
    """Check a Seldon v2 Model manifest; return its name.

    The Model spec's fields used here (operator/apis/mlops/v1alpha1/model_types.go, ModelSpec):
    `storageUri` (required, from InferenceArtifactSpec), `requirements` (a list of capabilities the
    Server must offer, e.g. sklearn), `memory` (a quantity), `server` (pin to a named Server),
    `explainer` and `llm` (not single-model arms)."""
    if not isinstance(manifest, dict):
        raise ConfigError(f"{source}: a Model must be a YAML mapping")
    api = str(manifest.get("apiVersion", ""))
    if manifest.get("kind") != MODEL_KIND or api != f"{SELDON2_GROUP}/{MODEL_VERSION}":
        raise ConfigError(
            f"{source}: expected kind {MODEL_KIND}, apiVersion {SELDON2_GROUP}/{MODEL_VERSION}; "
            f"got kind={manifest.get('kind')!r} apiVersion={api!r}"
        )
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _DNS_1123.match(name):
        raise ConfigError(f"{source}: metadata.name must be a DNS-1123 label, got {name!r}")
    spec = manifest.get("spec") or {}
    if not spec.get("storageUri"):
        raise ConfigError(f"{source}: spec.storageUri is required")
    for bad in ("explainer", "llm"):
        if spec.get(bad):
            raise ConfigError(f"{source}: spec.{bad} models are not a single-model arm")
    return name


def render_seldon2(
    manifest: dict[str, Any], options: Seldon2Options, namespace: str
) -> dict[str, Seldon2Arm]:
    """Every arm's Model and target; ConfigError (one line) if they are not distinct, measurable arms."""
    base = inspect_model(manifest)
    what = f"Model {base}"
    arms = tuple(options.arms)
    check_arms(arms, SELDON2_ARMS, options.baseline, what)
    check_transport(options.transport, options.protocol, what)
    if options.protocol != "v2":
        raise ConfigError(f"{what}: Seldon Core v2 serves the v2 (Open Inference) protocol only")
    if not namespace or not _DNS_1123.match(options.server):
        raise ConfigError(f"{what}: a namespace and a Server name are required (server={options.server!r})")
    pinned = (manifest.get("spec") or {}).get("server")
    if pinned and pinned != options.server:
        raise ConfigError(f"{what}: spec.server is {pinned!r}, the spec asks for server {options.server!r}")
    if options.model_version < 1:
        raise ConfigError(f"{what}: model_version must be at least 1")
    check_owner(options.owner, what)
    rest = options.transport == "rest"
    out: dict[str, Seldon2Arm] = {}
    for arm in arms:
        suffix = f"-{options.transport}-{arm}"
        name = base if base.endswith(suffix) else base + suffix
        if len(name) > 63:
            raise ConfigError(f"{what}: Model name {name!r} is longer than 63 characters; shorten it")
        body = copy.deepcopy(manifest)
        meta_in = body.get("metadata") or {}
        body["metadata"] = {
            "name": name,
            "namespace": namespace,
            "labels": {**(meta_in.get("labels") or {}), **labels_for(arm, options.transport, options.owner)},
        }
        if meta_in.get("annotations"):
            body["metadata"]["annotations"] = dict(meta_in["annotations"])
        body.pop("status", None)
        body.setdefault("spec", {})["server"] = options.server
        if arm == "mesh":
            host = f"{options.mesh_service}.{namespace}.svc.cluster.local"
            port, model_name = MESH_PORT, name
            headers = {MODEL_HEADER: name}
            hops: tuple[str, ...] = ("agent", "envoy", "server")
        else:
            host = f"{options.server}-0.{options.server}.{namespace}.svc.cluster.local"
            port = SERVER_HTTP_PORT if rest else SERVER_GRPC_PORT
            model_name = f"{name}_{options.model_version}"
            headers = {}
            hops = ("server",)
        target = ArmTarget(
            arm=arm,
            transport=options.transport,
            protocol="v2",
            host=host,
            port=port,
            model_name=model_name,
            host_header=host,
            url=f"http://{host}:{port}/v2/models/{model_name}/infer" if rest else "",
            grpc_target="" if rest else f"{host}:{port}",
            grpc_method="" if rest else GRPC_V2_METHOD,
            headers=headers,
            hops=hops,
        )
        out[arm] = Seldon2Arm(arm, name, (body,), target)
    refuse_shared_hops({a: out[a].hops for a in arms}, options.baseline, what)
    return out
