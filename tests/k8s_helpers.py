"""Helpers for the tests against kmock's emulated cluster (tests/k8s_emulator.py): a thread that plays
the cluster's side (controllers, kubelet, garbage collector), pods, events and custom-object status
made through the API, and the KServe / Seldon v2 kinds' manifests, platforms and fixtures.

A test module takes the fixtures by naming them at module level (`cluster = k8s_helpers.cluster`, ...),
which pytest collects like its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from k8s_emulator import EmulatedCluster, emulated_cluster
from kubernetes import client

from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import KubernetesConfig, NodeSelection
from orchbench.core.platform.kserve import KServePlatform
from orchbench.core.platform.kserve_render import KServeOptions
from orchbench.core.platform.seldon2 import Seldon2Platform
from orchbench.core.platform.seldon2_render import Seldon2Options

REPO = Path(__file__).resolve().parents[1]
NS = "seldon"
KSERVE = "serving.kserve.io"
MLOPS = "mlops.seldon.io"
EXTRA_RESOURCES = (
    f"{KSERVE}/v1beta1/inferenceservices",
    f"{KSERVE}/v1alpha1/inferencegraphs",
    f"{MLOPS}/v1alpha1/models",
)
#: Envoy's pod labels as Seldon's operator sets them (seldon2_render.ENVOY_POD_SELECTOR).
ENVOY_LABELS = {"app.kubernetes.io/name": "seldon-envoy"}


# --- fixtures: the emulated cluster, serving the KServe and Seldon v2 kinds too -------------------


@pytest.fixture()
def cluster() -> Iterator[EmulatedCluster]:
    with emulated_cluster() as c:
        assert c.emulator is not None
        for res in EXTRA_RESOURCES:  # plain dict entries, read by the emulator on each request
            c.emulator.resources[res] = kmock.ResourceInfo(namespaced=True)
        yield c


@pytest.fixture()
def api(cluster: EmulatedCluster) -> client.ApiClient:
    return cluster.new_api_client()


@pytest.fixture()
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture()
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig naming the emulator at `server` (one cluster, a token user, its context current)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emu",
                "clusters": [{"name": "emu", "cluster": {"server": server}}],
                "users": [{"name": "emu", "user": {"token": "t"}}],
                "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
            }
        )
    )
    return path


# --- the kinds' manifests and platforms -----------------------------------------------------------


def _manifest(name: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "manifests" / name).read_text())
    assert isinstance(data, dict)
    return data


def isvc_manifest() -> dict[str, Any]:
    return _manifest("kserve_sklearn_iris.yaml")


def model_manifest() -> dict[str, Any]:
    return _manifest("seldon2_iris.yaml")


def config() -> KubernetesConfig:
    return KubernetesConfig(
        namespace=NS, loadtester_nodes=NodeSelection(names=("node-a",)), delete_timeout_s=3.0
    )


def kserve(api: client.ApiClient, **options: Any) -> KServePlatform:
    return KServePlatform(config(), api_client=api, options=KServeOptions(**options))


def seldon2(api: client.ApiClient, **options: Any) -> Seldon2Platform:
    return Seldon2Platform(config(), api_client=api, options=Seldon2Options(**options))


# --- the cluster's side, through the API ----------------------------------------------------------


def raw(body: dict[str, Any]) -> Any:
    """A plain dict as a request body (the client's typed models are not needed)."""
    return body


def make_pod(
    core: client.CoreV1Api,
    name: str,
    labels: dict[str, str],
    containers: list[tuple[str, list[int]]],
    ready: bool = True,
    ip: str = "",
) -> None:
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    core.create_namespaced_pod(
        NS,
        raw(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {
                    "containers": [
                        {"name": c, "image": f"example/{c}", "ports": [{"containerPort": p} for p in ports]}
                        for c, ports in containers
                    ]
                },
                "status": status,
            }
        ),
    )


def isvc_pod(
    core: client.CoreV1Api,
    name: str,
    isvc: str,
    arm: str,
    containers: list[tuple[str, list[int]]],
    ready: bool = True,
) -> None:
    """A pod of InferenceService `isvc`, labelled as arm `arm`'s."""
    labels = {"serving.kserve.io/inferenceservice": isvc, "orchbench.io/arm": arm}
    make_pod(core, name, labels, containers, ready=ready)


def warning_event(
    core: client.CoreV1Api,
    kind: str,
    name: str,
    reason: str,
    message: str,
    event: str = "ev1",
    when: str = "2024-01-01T00:00:00Z",
) -> None:
    """A Warning event `reason` about object `kind`/`name`, as a controller records one."""
    core.create_namespaced_event(
        NS,
        raw(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event, "namespace": NS},
                "involvedObject": {"kind": kind, "name": name, "namespace": NS},
                "reason": reason,
                "type": "Warning",
                "lastTimestamp": when,
                "message": message,
            }
        ),
    )


def scheduling_failed(core: client.CoreV1Api, pod: str, message: str) -> None:
    """The scheduler's Warning FailedScheduling about `pod`."""
    warning_event(core, "Pod", pod, "FailedScheduling", message)


def set_ready(
    custom: client.CustomObjectsApi,
    group: str,
    version: str,
    plural: str,
    name: str,
    ready: bool = True,
    **extra: Any,
) -> None:
    cond: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False", **extra}
    custom.patch_namespaced_custom_object_status(
        group, version, NS, plural, name, {"status": {"conditions": [cond]}}
    )


def get_obj(custom: client.CustomObjectsApi, group: str, version: str, plural: str, name: str) -> Any:
    try:
        return custom.get_namespaced_custom_object(group, version, NS, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


class Actor:
    """Runs the cluster's side of a test in a thread after a delay; re-raises its failure in the test."""

    def __init__(self, fn: Callable[[], object], delay_s: float) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            time.sleep(delay_s)
            try:
                fn()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "actor thread hung"
        if self.error is not None:
            raise self.error


def play_kserve(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, rec: DeploymentRecord, graph_delay_s: float = 0.0
) -> None:
    """KServe's controllers and the kubelet: objects Ready (the graph `graph_delay_s` after its model),
    pods as each arm has them."""
    d = rec.details
    arm = rec.arm
    containers: list[tuple[str, list[int]]] = [("kserve-container", [8080])]
    if arm == "serverless":
        containers.append(("queue-proxy", [8012]))
    isvc_pod(core, f"{d['isvc']}-pod", d["isvc"], arm, containers, ready=False)
    set_ready(custom, KSERVE, "v1beta1", "inferenceservices", d["isvc"])
    if d["graph"]:
        router = {"serving.kserve.io/inferencegraph": d["graph"], "orchbench.io/arm": arm}
        make_pod(core, f"{d['graph']}-router", router, [(d["graph"], [8080])])  # KServe names it so
        time.sleep(graph_delay_s)
        set_ready(custom, KSERVE, "v1alpha1", "inferencegraphs", d["graph"])
    time.sleep(0.2)
    core.patch_namespaced_pod_status(
        f"{d['isvc']}-pod", NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )


def collect_pods(core: client.CoreV1Api, rec: DeploymentRecord) -> None:
    """The garbage collector: every pod of the namespace deleted (after their objects)."""
    for p in core.list_namespaced_pod(NS).items or []:
        core.delete_namespaced_pod(str(p.metadata and p.metadata.name), NS)


def server_pod(
    core: client.CoreV1Api, name: str = "mlserver-0", app: str = "seldon-server", **kw: Any
) -> None:
    """A Seldon v2 Server's pod (MLServer with its agent), at 10.0.0.7 unless `ip` says otherwise."""
    labels = {"seldon-server-name": "mlserver", "app.kubernetes.io/name": app}
    containers = kw.pop(
        "containers", [("rclone", [5572]), ("agent", [9501, 9001]), ("mlserver", [9500, 9000])]
    )
    make_pod(core, name, labels, containers, ip=kw.pop("ip", "10.0.0.7"), **kw)


# --- the RBAC manifest --------------------------------------------------------------------------

RBAC = REPO / "manifests" / "rbac.yaml"


def rbac_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def rbac_roles(docs: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], list[dict[str, Any]]]:
    """Each Role's and ClusterRole's rules, keyed by (kind, namespace or None, name)."""
    return {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d["rules"]
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }


def rbac_grants(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rules granted to argo/orchbench (each binding's only subject), keyed by where they apply:
    "cluster" or the namespace of the RoleBinding."""
    roles = rbac_roles(docs)
    granted: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert d["subjects"] == [{"kind": "ServiceAccount", "name": "orchbench", "namespace": "argo"}]
            ns = d["metadata"].get("namespace") if d["kind"] == "RoleBinding" else None
            ref = d["roleRef"]
            rules = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
            granted.setdefault(ns or "cluster", []).extend(rules)
    return granted
