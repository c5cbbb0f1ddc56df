"""The SeldonDeployment KubernetesPlatform (kubernetes.py) creates for an arm, and its deployment record
(pure functions: no API calls).

- `deployment_name`: each arm's deployment is `<name>-<transport>-<arm>` (e.g. `tf-flowers-rest-with`).
- `render_sdep`: the manifest rendered for the arm (manifest.render), with the model's placement
  (k8s_placement.ensure_model_placement), the namespace, and orchbench's labels (the owner's among them).
- `sdep_record`: the DeploymentRecord `deploy` saves for a rendered body; `normalize_record` fills what
  a record rebuilt from a name alone lacks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from orchbench.core import manifest as manifests
from orchbench.core.arms import PORT_WITH_ORCHESTRATOR, PORT_WITHOUT_ORCHESTRATOR, ArmName
from orchbench.core.errors import ConfigError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_arms import OWNER_LABEL
from orchbench.core.platform.k8s_common import (
    SELDON_GROUP,
    SELDON_PLURAL,
    SELDON_VERSIONS,
    KubernetesConfig,
)
from orchbench.core.platform.k8s_placement import ensure_model_placement


def deployment_name(base: str, transport: str, arm: ArmName) -> str:
    """`tf-flowers` → `tf-flowers-rest-with`; a name that already ends that way is kept."""
    suffix = f"-{transport}-{arm}"
    return base if base.endswith(suffix) else base + suffix


def predictor_name(body: dict[str, Any]) -> str:
    return str(((body.get("spec") or {}).get("predictors") or [{}])[0].get("name") or "default")


def render_sdep(
    manifest: dict[str, Any],
    arm: ArmName,
    config: KubernetesConfig,
    owner: str = "",
    transport: str | None = None,
) -> dict[str, Any]:
    """The SeldonDeployment `deploy` would create for this arm (name, namespace, placement, labels)."""
    info = manifests.inspect(manifest)
    transport_ = transport or info.transport
    if transport_ not in ("rest", "grpc"):
        raise ConfigError(f"transport must be rest or grpc, got {transport_!r}")
    name = deployment_name(info.name, transport_, arm)
    body = manifests.render(manifest, "rest" if transport_ == "rest" else "grpc", arm, name)
    body = ensure_model_placement(body, config)
    meta = body.setdefault("metadata", {})
    meta["namespace"] = config.namespace
    meta.setdefault("labels", {}).update(
        {
            "app.kubernetes.io/managed-by": "orchbench",
            "orchbench.io/arm": arm,
            "orchbench.io/transport": transport_,
            **({OWNER_LABEL: owner} if owner else {}),
        }
    )
    for drop in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(drop, None)
    body.pop("status", None)
    manifests.inspect(body)  # the rendered body must still be a valid manifest for this arm
    if len(f"{name}-{predictor_name(body)}") > 63:
        raise ConfigError(
            f"deployment {name!r} with predictor {predictor_name(body)!r} makes a service name longer "
            "than 63 characters; shorten metadata.name"
        )
    return body


def sdep_record(body: dict[str, Any], arm: ArmName, namespace: str, api_host: str) -> DeploymentRecord:
    """The record of a rendered SeldonDeployment (`render_sdep`) in `namespace`: what `wait`,
    `verify_arm` and `teardown` find it, its pods and its service by."""
    info = manifests.inspect(body)
    group, _, version = info.api_version.partition("/")
    if group != SELDON_GROUP or version not in SELDON_VERSIONS:
        raise ConfigError(
            f"apiVersion {info.api_version!r} is not a SeldonDeployment version orchbench supports"
        )
    ns, name = namespace, info.name
    predictor = predictor_name(body)
    port = PORT_WITH_ORCHESTRATOR if arm == "with" else PORT_WITHOUT_ORCHESTRATOR
    return DeploymentRecord(
        platform="kubernetes",
        name=name,
        transport=info.transport,
        arm=arm,
        model_name=info.model_name,
        details={
            "namespace": ns,
            "name": name,
            "group": group,
            "version": version,
            "plural": SELDON_PLURAL,
            "predictor": predictor,
            "replicas": int(((body["spec"]["predictors"][0]).get("replicas")) or 1),
            "service_host": f"{name}-{predictor}.{ns}.svc.cluster.local",
            "port": port,
            "api_host": api_host,
        },
    )


def normalize_record(record: DeploymentRecord, namespace: str) -> DeploymentRecord:
    """Check a record is ours and fill what a minimal one lacks (`namespace`: the configured one).

    The pipeline's cleanup handler rebuilds records from names alone (`{"namespace": ...}` as
    details) when a deploy step never wrote one; teardown must still find the object. Any served
    version of the CRD reaches the same object, so "v1" is the default version.
    """
    if record.platform != "kubernetes":
        raise ConfigError(
            f"deployment record {record.name!r} is for platform {record.platform!r}, not kubernetes"
        )
    d = dict(record.details)
    ns = d.setdefault("namespace", namespace)
    d.setdefault("name", record.name)
    d.setdefault("group", SELDON_GROUP)
    d.setdefault("version", "v1")
    d.setdefault("plural", SELDON_PLURAL)
    predictor = d.setdefault("predictor", "default")
    d.setdefault("replicas", 1)
    d.setdefault("service_host", f"{record.name}-{predictor}.{ns}.svc.cluster.local")
    d.setdefault("port", PORT_WITH_ORCHESTRATOR if record.arm == "with" else PORT_WITHOUT_ORCHESTRATOR)
    return dataclasses.replace(record, details=d)
