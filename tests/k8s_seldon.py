"""The Seldon v1 side of the emulated cluster for KubernetesPlatform's tests (test_k8s_taints.py,
test_k8s_platform.py): its own cluster fixture (kmock's KubernetesEmulator over real HTTP, the
SeldonDeployment kind only), nodes, pods and the operator's status, all through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import EmulatedCluster, emulated_cluster
from kubernetes import client

from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import (
    KubernetesConfig,
    NodeSelection,
)
from orchbench.core.platform.kubernetes import (
    KubernetesPlatform,
)
from tests.k8s_helpers import raw

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "manifests" / "tf_flowers.yaml"
NS = "seldon"
GROUP = "machinelearning.seldon.io"
PLURAL = "seldondeployments"


@pytest.fixture()
def cluster() -> Iterator[EmulatedCluster]:
    with emulated_cluster() as c:
        yield c


def make_node(
    core: client.CoreV1Api,
    name: str,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
    }
    if taints:
        body["spec"] = {"taints": taints}
    core.create_node(raw(body))


def three_nodes(core: client.CoreV1Api) -> None:
    for n in ("node-a", "node-b", "node-c"):
        make_node(core, n)


def node(core: client.CoreV1Api, name: str) -> dict[str, Any]:
    data = core.api_client.sanitize_for_serialization(core.read_node(name))
    assert isinstance(data, dict)
    return data


def taints_of(core: client.CoreV1Api, name: str) -> list[tuple[str, str, str]]:
    return sorted(
        (t["key"], t.get("value", ""), t["effect"])
        for t in (node(core, name).get("spec") or {}).get("taints") or []
    )


def config(**kw: Any) -> KubernetesConfig:
    defaults: dict[str, Any] = {
        "namespace": NS,
        "loadtester_nodes": NodeSelection(names=("node-a",)),
        "model_nodes": NodeSelection(names=("node-b", "node-c"), count=2),
        "delete_timeout_s": 5.0,
    }
    return KubernetesConfig(**{**defaults, **kw})


def make_platform(api: client.ApiClient, **kw: Any) -> KubernetesPlatform:
    return KubernetesPlatform(config(**kw), api_client=api)


def make_pod(core: client.CoreV1Api, name: str, sdep: str, containers: list[str], ready: bool) -> None:
    core.create_namespaced_pod(
        NS,
        raw(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": {"seldon-deployment-id": sdep}},
                "spec": {"containers": [{"name": c, "image": "example/" + c} for c in containers]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        ),
    )


def set_pod_ready(core: client.CoreV1Api, name: str) -> None:
    core.patch_namespaced_pod_status(
        name, NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )


def set_state(custom: client.CustomObjectsApi, record: DeploymentRecord, state: str, **extra: Any) -> None:
    d = record.details
    custom.patch_namespaced_custom_object_status(
        d["group"], d["version"], NS, PLURAL, record.name, {"status": {"state": state, **extra}}
    )


def get_sdep(custom: client.CustomObjectsApi, version: str, name: str) -> dict[str, Any] | None:
    try:
        obj = custom.get_namespaced_custom_object(GROUP, version, NS, PLURAL, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert isinstance(obj, dict)
    return obj
