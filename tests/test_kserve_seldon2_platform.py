"""KServePlatform and Seldon2Platform against kmock's emulator over real HTTP (tests/k8s_emulator.py).

The tests play the controllers (KServe, Seldon's operator and scheduler: status conditions), the
kubelet (pods, Ready) and the garbage collector (deleting pods after their objects), through the API.
"""

from __future__ import annotations

import dataclasses
import functools
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

from orchbench.core.errors import ArmVerificationError, ConfigError, DeployTimeout, PlatformError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.k8s_common import KubernetesConfig, NodeSelection
from orchbench.core.platform.k8s_kinds import endpoint_dict
from orchbench.core.platform.kserve import KServePlatform
from orchbench.core.platform.kserve_render import KServeOptions, render_kserve
from orchbench.core.platform.seldon2 import Seldon2Platform
from orchbench.core.platform.seldon2_render import Seldon2Options, render_seldon2

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

pytestmark = pytest.mark.timeout(60)


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


def isvc_manifest() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "manifests" / "kserve_sklearn_iris.yaml").read_text())
    assert isinstance(data, dict)
    return data


def model_manifest() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "manifests" / "seldon2_iris.yaml").read_text())
    assert isinstance(data, dict)
    return data


def config() -> KubernetesConfig:
    return KubernetesConfig(
        namespace=NS, loadtester_nodes=NodeSelection(names=("node-a",)), delete_timeout_s=3.0
    )


def kserve(api: client.ApiClient, **options: Any) -> KServePlatform:
    return KServePlatform(config(), api_client=api, options=KServeOptions(**options))


def seldon2(api: client.ApiClient, **options: Any) -> Seldon2Platform:
    return Seldon2Platform(config(), api_client=api, options=Seldon2Options(**options))


def raw(body: dict[str, Any]) -> Any:
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


# --- KServe: render ------------------------------------------------------------------------------


def test_kserve_render_names_labels_and_targets() -> None:
    arms = render_kserve(isvc_manifest(), KServeOptions(activator=True), "models")
    assert list(arms) == ["raw", "serverless", "graph"]
    raw_, sl, graph = arms["raw"], arms["serverless"], arms["graph"]
    assert [o["metadata"]["name"] for o in raw_.objects] == ["sklearn-iris-rest-raw"]
    assert raw_.objects[0]["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert sl.objects[0]["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Serverless",
        "autoscaling.knative.dev/target-burst-capacity": "-1",
    }
    assert sl.objects[0]["spec"]["predictor"]["minReplicas"] == 1
    for a in arms.values():
        for obj in a.objects:
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "orchbench"
            assert obj["metadata"]["labels"]["orchbench.io/arm"] == a.arm
    host = "sklearn-iris-rest-serverless-predictor.models.svc.cluster.local"
    assert sl.target.url == f"http://{host}/v2/models/sklearn-iris-rest-serverless/infer"
    assert sl.target.host_header == host and sl.target.port == 80
    assert set(sl.target.hops) == {"knative-local-gateway", "queue-proxy", "knative-activator", "model"}
    assert raw_.target.hops == ("model",)
    assert [o["kind"] for o in graph.objects] == ["InferenceService", "InferenceGraph"]
    step = graph.objects[1]["spec"]["nodes"]["root"]
    assert step["routerType"] == "Sequence" and len(step["steps"]) == 1
    assert step["steps"][0]["serviceUrl"] == (
        "http://sklearn-iris-rest-graph-model-predictor.models.svc.cluster.local"
        "/v2/models/sklearn-iris-rest-graph-model/infer"
    )
    assert graph.objects[1]["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "RawDeployment"
    }
    assert graph.target.url == "http://sklearn-iris-rest-graph.models.svc.cluster.local/"
    assert set(graph.target.hops) == {"graph-router", "model"}
    # Without the activator, target-burst-capacity 0 and minReplicas >= 1 keep it off the path.
    sl0 = render_kserve(isvc_manifest(), KServeOptions(arms=("raw", "serverless")), "m")["serverless"]
    assert sl0.objects[0]["metadata"]["annotations"]["autoscaling.knative.dev/target-burst-capacity"] == "0"
    assert "knative-activator" not in sl0.target.hops


def test_kserve_render_grpc_targets() -> None:
    arms = render_kserve(isvc_manifest(), KServeOptions(arms=("raw", "serverless"), transport="grpc"), "m")
    t = arms["raw"].target
    assert (t.url, t.grpc_target) == ("", "sklearn-iris-grpc-raw-predictor.m.svc.cluster.local:80")
    assert t.grpc_method == "inference.GRPCInferenceService/ModelInfer"
    model = arms["serverless"].objects[0]["spec"]["predictor"]["model"]
    assert model["ports"] == [{"name": "h2c", "containerPort": 9000, "protocol": "TCP"}]  # MLServer's gRPC


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"graph_backend": "serverless"},
            "arms 'graph' and 'serverless' both put knative-local-gateway, queue-proxy on the path",
        ),
        ({"arms": ("raw", "raw")}, "listed twice"),
        ({"arms": ("raw", "graph"), "transport": "grpc"}, "router serves HTTP only"),
        ({"baseline": "graph", "arms": ("raw",)}, "baseline 'graph' is not one of the arms"),
        ({"arms": ("raw", "canary")}, "unknown arms"),
        ({"protocol": "v1"}, "serves the v2 protocol only"),
    ],
)
def test_kserve_render_refusals(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        render_kserve(isvc_manifest(), KServeOptions(**options), "m")
    assert "\n" not in str(info.value)


def test_kserve_render_refuses_bad_manifests() -> None:
    m = isvc_manifest()
    m["spec"]["transformer"] = {"containers": []}
    with pytest.raises(ConfigError, match=r"only spec\.predictor is supported"):
        render_kserve(m, KServeOptions(), "m")
    with pytest.raises(ConfigError, match="expected kind InferenceService"):
        render_kserve({"kind": "SeldonDeployment"}, KServeOptions(), "m")
    m = isvc_manifest()
    m["spec"]["predictor"]["model"]["protocolVersion"] = "v1"
    with pytest.raises(ConfigError, match="serves protocolVersion 'v1', the spec asks for 'v2'"):
        render_kserve(m, KServeOptions(), "m")


# --- KServe: deploy, wait, verify, teardown ------------------------------------------------------


def _play_kserve(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, rec: DeploymentRecord, graph_delay_s: float = 0.0
) -> None:
    """KServe's controllers and the kubelet: objects Ready (the graph `graph_delay_s` after its model),
    pods as each arm has them."""
    d = rec.details
    arm = rec.arm
    labels = {"serving.kserve.io/inferenceservice": d["isvc"], "orchbench.io/arm": arm}
    containers: list[tuple[str, list[int]]] = [("kserve-container", [8080])]
    if arm == "serverless":
        containers.append(("queue-proxy", [8012]))
    make_pod(core, f"{d['isvc']}-pod", labels, containers, ready=False)
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


def _gc(core: client.CoreV1Api, rec: DeploymentRecord) -> None:
    for p in core.list_namespaced_pod(NS).items or []:
        core.delete_namespaced_pod(str(p.metadata and p.metadata.name), NS)


@pytest.mark.parametrize("arm", ["raw", "serverless", "graph"])
def test_kserve_arm_round_trip(
    arm: str, tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = p.deploy(isvc_manifest(), arm, tmp_path / "r.json")
    assert DeploymentRecord.load(tmp_path / "r.json") == rec
    isvc = get_obj(custom, KSERVE, "v1beta1", "inferenceservices", rec.details["isvc"])
    assert isvc["metadata"]["labels"]["orchbench.io/arm"] == arm
    assert isvc["spec"]["predictor"]["tolerations"] == [
        {"key": "model", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert isvc["spec"]["predictor"]["nodeSelector"] == {"orchbench.io/role": "model"}
    actor_api = cluster.new_api_client()
    actor = Actor(
        lambda: _play_kserve(client.CustomObjectsApi(actor_api), client.CoreV1Api(actor_api), rec), 0.3
    )
    target = p.wait(rec, timeout_s=10)
    actor.join()
    assert target == p.endpoint(rec) and target.arm == arm
    evidence = p.verify_arm(rec, target)
    assert evidence.orchestrator_on_path == (arm == "graph")
    assert ("queue-proxy" in evidence.how) == (arm == "serverless")
    # It watched (not polled) the custom resource and the pods.
    assert any(
        r.params.get("watch") == "true" for r in cluster.requests_matching("GET", "/inferenceservices")
    )
    assert any(r.params.get("watch") == "true" for r in cluster.requests_matching("GET", "/pods"))
    gc = Actor(lambda: _gc(client.CoreV1Api(actor_api), rec), 0.2)
    p.teardown(rec)
    gc.join()
    assert get_obj(custom, KSERVE, "v1beta1", "inferenceservices", rec.details["isvc"]) is None
    if arm == "graph":
        assert get_obj(custom, KSERVE, "v1alpha1", "inferencegraphs", rec.details["graph"]) is None
    p.teardown(rec)  # twice is fine


def _deployed_ready(
    p: KServePlatform, tmp_path: Path, custom: client.CustomObjectsApi, arm: str
) -> DeploymentRecord:
    rec = p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")
    set_ready(custom, KSERVE, "v1beta1", "inferenceservices", rec.details["isvc"])
    return rec


def test_kserve_verify_refuses_mislabelled_pods(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = _deployed_ready(p, tmp_path, custom, "serverless")
    # A pod of this InferenceService, but labelled as another arm's: not evidence for this one.
    labels = {"serving.kserve.io/inferenceservice": rec.details["isvc"], "orchbench.io/arm": "raw"}
    make_pod(core, "stray", labels, [("kserve-container", [8080]), ("queue-proxy", [8012])])
    with pytest.raises(
        ArmVerificationError, match=r"pod stray is labelled .* orchbench.io/arm='raw', not 'serverless'"
    ):
        p.verify_arm(rec, p.endpoint(rec))


def test_kserve_verify_refuses_wrong_hops(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = _deployed_ready(p, tmp_path, custom, "raw")
    labels = {"serving.kserve.io/inferenceservice": rec.details["isvc"], "orchbench.io/arm": "raw"}
    make_pod(core, "raw-pod", labels, [("kserve-container", [8080]), ("queue-proxy", [8012])])
    with pytest.raises(ArmVerificationError, match=r"'raw' arm, but pods \['raw-pod'\] run queue-proxy"):
        p.verify_arm(rec, p.endpoint(rec))
    rec2 = _deployed_ready(p, tmp_path, custom, "serverless")
    labels = {"serving.kserve.io/inferenceservice": rec2.details["isvc"], "orchbench.io/arm": "serverless"}
    make_pod(core, "sl-pod", labels, [("kserve-container", [8080])])
    with pytest.raises(ArmVerificationError, match=r"pods \['sl-pod'\] run no queue-proxy"):
        p.verify_arm(rec2, p.endpoint(rec2))
    # The live object's mode is not the arm's.
    custom.patch_namespaced_custom_object(
        KSERVE, "v1beta1", NS, "inferenceservices", rec.details["isvc"],
        {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "Serverless"}}},
    )  # fmt: skip
    with pytest.raises(
        ArmVerificationError, match="'raw' arm needs deployment mode RawDeployment or Standard"
    ):
        p.verify_arm(rec, p.endpoint(rec))
    wrong = ArmTarget.from_dict({**p.endpoint(rec2).to_dict(), "arm": "raw"})
    with pytest.raises(ArmVerificationError, match="is not the 'serverless' arm's"):
        p.verify_arm(rec2, wrong)


def test_kserve_graph_without_router_pod_is_refused(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = _deployed_ready(p, tmp_path, custom, "graph")
    labels = {"serving.kserve.io/inferenceservice": rec.details["isvc"], "orchbench.io/arm": "graph"}
    make_pod(core, "model", labels, [("kserve-container", [8080])])
    with pytest.raises(ArmVerificationError, match=r"no pods labelled serving\.kserve\.io/inferencegraph="):
        p.verify_arm(rec, p.endpoint(rec))


def test_kserve_wait_times_out_with_conditions_pods_and_events(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = p.deploy(isvc_manifest(), "serverless", tmp_path / "r.json")
    name = rec.details["isvc"]
    set_ready(custom, KSERVE, "v1beta1", "inferenceservices", name, ready=False,
              reason="RevisionMissing", message="Configuration is waiting for a Revision")  # fmt: skip
    labels = {"serving.kserve.io/inferenceservice": name, "orchbench.io/arm": "serverless"}
    make_pod(core, "p1", labels, [("kserve-container", [8080]), ("queue-proxy", [8012])], ready=False)
    core.create_namespaced_event(
        NS,
        raw(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "ev1", "namespace": NS},
                "involvedObject": {"kind": "Pod", "name": "p1", "namespace": NS},
                "reason": "FailedScheduling",
                "type": "Warning",
                "lastTimestamp": "2024-01-01T00:00:00Z",
                "message": "0/3 nodes are available: 3 node(s) had untolerated taint {model: active}",
            }
        ),
    )
    t0 = time.monotonic()
    with pytest.raises(DeployTimeout) as info:
        p.wait(rec, timeout_s=1.0)
    assert 0.9 <= time.monotonic() - t0 < 4.5
    msg = str(info.value)
    assert msg.startswith(f"InferenceService {NS}/{name} (serverless arm) not ready after 1s: ")
    assert "conditions: Ready=False (RevisionMissing: Configuration is waiting for a Revision)" in msg
    assert "pods: p1 Running" in msg
    assert "Warning FailedScheduling Pod/p1: 0/3 nodes are available" in msg
    assert "\n" not in msg


def test_kserve_redeploy_replaces_and_missing_crd_is_explained(
    tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = p.deploy(isvc_manifest(), "raw", tmp_path / "r.json")
    set_ready(custom, KSERVE, "v1beta1", "inferenceservices", rec.details["isvc"])
    p.deploy(isvc_manifest(), "raw", tmp_path / "r.json")  # exists: deleted, then created anew
    obj = get_obj(custom, KSERVE, "v1beta1", "inferenceservices", rec.details["isvc"])
    assert not (obj.get("status") or {}).get("conditions")  # the old Ready did not survive
    cluster.refuse("post", f"/apis/{KSERVE}/v1alpha1/")
    with pytest.raises(
        PlatformError, match=r"HTTP 404.*is the CRD inferencegraphs.serving.kserve.io/v1alpha1"
    ):
        p.deploy(isvc_manifest(), "graph", tmp_path / "g.json")


def test_records_of_other_platforms_are_refused(api: client.ApiClient) -> None:
    rec = DeploymentRecord("kubernetes", "x", "rest", "with", "m", {"namespace": NS})
    with pytest.raises(ConfigError, match="is for platform 'kubernetes', not kserve"):
        kserve(api).teardown(rec)
    with pytest.raises(ConfigError, match="not seldon2"):
        seldon2(api).teardown(rec)
    with pytest.raises(ConfigError, match="needs an API client"):
        KServePlatform(config())


# --- Seldon Core v2 ------------------------------------------------------------------------------


def test_seldon2_render_arms() -> None:
    arms = render_seldon2(model_manifest(), Seldon2Options(), "seldon-mesh")
    mesh, direct = arms["mesh"].target, arms["direct"].target
    assert mesh.url == "http://seldon-mesh.seldon-mesh.svc.cluster.local:80/v2/models/iris-rest-mesh/infer"
    assert dict(mesh.headers) == {"seldon-model": "iris-rest-mesh"}
    assert set(mesh.hops) == {"envoy", "agent", "server"} and direct.hops == ("server",)
    assert direct.url == (
        "http://mlserver-0.mlserver.seldon-mesh.svc.cluster.local:9000/v2/models/iris-rest-direct_1/infer"
    )
    body = arms["direct"].objects[0]
    assert body["spec"]["server"] == "mlserver" and body["metadata"]["labels"]["orchbench.io/arm"] == "direct"
    grpc = render_seldon2(model_manifest(), Seldon2Options(transport="grpc"), "s")
    assert grpc["direct"].target.grpc_target.endswith(":9500") and grpc["mesh"].target.grpc_target.endswith(
        ":80"
    )
    with pytest.raises(ConfigError, match="listed twice"):
        render_seldon2(model_manifest(), Seldon2Options(arms=("mesh", "mesh")), "s")
    with pytest.raises(ConfigError, match="baseline 'direct' is not one of the arms"):
        render_seldon2(model_manifest(), Seldon2Options(arms=("mesh",)), "s")
    with pytest.raises(ConfigError, match=r"v2 \(Open Inference\) protocol only"):
        render_seldon2(model_manifest(), Seldon2Options(protocol="v1"), "s")


def _server_pod(
    core: client.CoreV1Api, name: str = "mlserver-0", app: str = "seldon-server", **kw: Any
) -> None:
    labels = {"seldon-server-name": "mlserver", "app.kubernetes.io/name": app}
    containers = kw.pop(
        "containers", [("rclone", [5572]), ("agent", [9501, 9001]), ("mlserver", [9500, 9000])]
    )
    make_pod(core, name, labels, containers, ip=kw.pop("ip", "10.0.0.7"), **kw)


@pytest.mark.parametrize("arm", ["mesh", "direct"])
def test_seldon2_arm_round_trip(
    arm: str, tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster, core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:  # fmt: skip
    _server_pod(core, ready=False)
    make_pod(core, "seldon-envoy-1", ENVOY_LABELS, [("envoy", [9000])])
    p = seldon2(api)
    rec = p.deploy(model_manifest(), arm, tmp_path / "r.json")
    assert (
        get_obj(custom, MLOPS, "v1alpha1", "models", rec.name)["metadata"]["labels"]["orchbench.io/arm"]
        == arm
    )
    actor_api = cluster.new_api_client()

    def scheduler() -> None:
        c2 = client.CustomObjectsApi(actor_api)
        set_ready(c2, MLOPS, "v1alpha1", "models", rec.name)
        time.sleep(0.2)
        client.CoreV1Api(actor_api).patch_namespaced_pod_status(
            "mlserver-0", NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        )

    actor = Actor(scheduler, 0.3)
    target = p.wait(rec, timeout_s=10)
    actor.join()
    if arm == "direct":
        assert target.url == f"http://10.0.0.7:9000/v2/models/{rec.name}_1/infer" and not target.headers
    else:
        assert target.host == "seldon-mesh.seldon.svc.cluster.local" and target.headers == {
            "seldon-model": rec.name
        }
    evidence = p.verify_arm(rec, target)
    assert evidence.orchestrator_on_path == (arm == "mesh")
    p.teardown(rec)
    assert get_obj(custom, MLOPS, "v1alpha1", "models", rec.name) is None
    left = [x.metadata and x.metadata.name for x in core.list_namespaced_pod(NS).items]
    assert left == ["mlserver-0", "seldon-envoy-1"]  # the Seldon installation's pods stay


def test_seldon2_verify_refusals(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = seldon2(api)
    mesh = p.deploy(model_manifest(), "mesh", tmp_path / "m.json")
    direct = p.deploy(model_manifest(), "direct", tmp_path / "d.json")
    _server_pod(core, app="my-app")  # labelled with the server's name, but not a Seldon server pod
    with pytest.raises(
        ArmVerificationError, match="pod mlserver-0 is labelled seldon-server-name=mlserver but"
    ):
        p.verify_arm(mesh, p.endpoint(mesh))
    core.delete_namespaced_pod("mlserver-0", NS)
    _server_pod(core, name="mlserver-0b", containers=[("mlserver", [9500, 9000])])
    with pytest.raises(ArmVerificationError, match=r"mesh arm, but pods \['mlserver-0b'\] run no 'agent'"):
        p.verify_arm(mesh, p.endpoint(mesh))
    core.delete_namespaced_pod("mlserver-0b", NS)
    _server_pod(core, name="mlserver-0c")
    with pytest.raises(ArmVerificationError, match="no envoy pods"):
        p.verify_arm(mesh, p.endpoint(mesh))
    p.verify_arm(direct, p.endpoint(direct))  # fine: the direct arm needs no envoy
    core.delete_namespaced_pod("mlserver-0c", NS)
    _server_pod(core, name="mlserver-0d", containers=[("agent", [9001, 9000]), ("mlserver", [9500])])
    with pytest.raises(ArmVerificationError, match="port 9000 is not the inference server's own port"):
        p.verify_arm(direct, p.endpoint(direct))
    wrong = ArmTarget.from_dict({**p.endpoint(direct).to_dict(), "port": 9001})
    with pytest.raises(ArmVerificationError, match="is not the 'direct' arm's port 9000"):
        p.verify_arm(direct, wrong)
    _server_pod(core, name="mlserver-1")
    with pytest.raises(ArmVerificationError, match="direct arm needs a Server with one replica"):
        p.endpoint(direct)


def test_seldon2_wait_times_out_with_conditions(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = seldon2(api)
    rec = p.deploy(model_manifest(), "mesh", tmp_path / "r.json")
    why = "Failed to schedule model as no matching servers are available"
    set_ready(
        custom, MLOPS, "v1alpha1", "models", rec.name, ready=False, reason="ScheduleFailed", message=why
    )
    with pytest.raises(DeployTimeout) as info:
        p.wait(rec, timeout_s=0.8)
    msg = str(info.value)
    assert msg.startswith(f"Model {NS}/{rec.name} (mesh arm) not ready after 0.8s: ")
    assert f"Ready=False (ScheduleFailed: {why})" in msg
    assert "pods: none" in msg and "\n" not in msg


# --- RBAC ------------------------------------------------------------------------------------------

RBAC = REPO / "manifests" / "rbac.yaml"
_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
NEW_KINDS = {(KSERVE, "inferenceservices"), (KSERVE, "inferencegraphs"), (MLOPS, "models")}


def _rules() -> dict[str, list[dict[str, Any]]]:
    """Rules granted to argo/orchbench, keyed by "cluster" or the namespace of the RoleBinding."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d["rules"]
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    granted: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert d["subjects"] == [{"kind": "ServiceAccount", "name": "orchbench", "namespace": "argo"}]
            ns = d["metadata"].get("namespace") if d["kind"] == "RoleBinding" else None
            ref = d["roleRef"]
            granted.setdefault(ns or "cluster", []).extend(
                roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
            )
    return granted


def _verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        v
        for r in rules
        if (group in r["apiGroups"] or "*" in r["apiGroups"])
        and (resource in r["resources"] or "*" in r["resources"])
        for v in r["verbs"]
    }


#: The namespace of each custom kind's Role: the shipped spec's kubernetes.namespace.
ROLE_NAMESPACES = {"kserve": "kserve-bench", "seldon2": "seldon-mesh"}
KIND_RESOURCES = {
    "kserve": {(KSERVE, "inferenceservices"), (KSERVE, "inferencegraphs"), ("", "pods"), ("", "events")},
    "seldon2": {(MLOPS, "models"), ("", "pods"), ("", "events")},
}


def test_rbac_grants_the_new_kinds_only_in_their_namespaces() -> None:
    from orchbench.core.spec import load_spec

    rules = _rules()
    for kind, ns in ROLE_NAMESPACES.items():
        assert load_spec(REPO / "specs" / f"{kind}.yaml").kubernetes.namespace == ns
        granted = {(g, r) for rule in rules[ns] for g in rule["apiGroups"] for r in rule["resources"]}
        assert granted == KIND_RESOURCES[kind], ns  # nothing else in that namespace
    for group, resource in NEW_KINDS:
        for scope, scope_rules in rules.items():
            if scope not in ROLE_NAMESPACES.values():
                assert _verbs(scope_rules, group, resource) == set(), f"{resource} granted in {scope}"
        for ns in ROLE_NAMESPACES.values():
            for sub in ("status", "finalizers"):  # the controllers write these, orchbench does not
                assert _verbs(rules[ns], group, f"{resource}/{sub}") == set()
    # Nothing cluster-wide but the node taints (a ClusterRole is only for what a Role cannot do).
    assert {(g, r) for rule in rules["cluster"] for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("", "nodes")
    }
    for scope_rules in rules.values():
        for rule in scope_rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def _calls(cluster: EmulatedCluster, agent: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every request the code under test made (its client's user agent
    `agent`), each checked to stay inside the namespace NS."""
    seen = set()
    for r in cluster.emulator or []:
        if r.headers.get("User-Agent") != agent:
            continue
        parts = r.url.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        assert rest[0] == "namespaces" and rest[1] == NS, r.url.path  # nothing outside the namespace
        resource, named = rest[2], len(rest) > 3
        if len(rest) > 4:  # a subresource (status, ...): orchbench writes none
            resource = f"{resource}/{rest[4]}"
        if r.method == "GET":
            verb = "watch" if r.params.get("watch") == "true" else ("get" if named else "list")
        else:
            verb = _VERBS[getattr(r.method, "value", str(r.method)).upper()]
        seen.add((group, resource, verb))
    return seen


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_rbac_grants_exactly_the_calls_the_new_platforms_make(
    tmp_path: Path, cluster: EmulatedCluster, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    """Every path of KServePlatform and Seldon2Platform (deploy, replace, wait, time out, verify,
    teardown, the exit handler's clean-up by owner): each call is granted by its kind's Role, and each
    verb the Role grants is one the code uses."""
    rules = _rules()
    api = cluster.new_api_client()
    api.user_agent = "kserve-under-test"
    for arm in ("graph", "serverless", "raw"):
        p = kserve(api, owner="uid-1")
        rec = p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")
        # The controllers and the garbage collector act late, so that wait and teardown watch.
        actor = Actor(functools.partial(_play_kserve, custom, core, rec, graph_delay_s=0.3), 0.3)
        p.verify_arm(rec, p.wait(rec, timeout_s=5))
        actor.join()
        gc = Actor(functools.partial(_gc, core, rec), 0.3)
        p.teardown(rec)
        gc.join()
        p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")
        p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")  # replace: owner check, delete, create
        with pytest.raises(DeployTimeout):
            p.wait(rec, timeout_s=0.3)  # reads events
    assert kserve(api, owner="uid-1").cleanup_owned("uid-1")
    assert _calls(cluster, "kserve-under-test") == _granted(rules[ROLE_NAMESPACES["kserve"]])
    _server_pod(core, ready=False)  # Ready once the first Model is: wait watches the pods
    make_pod(core, "seldon-envoy-1", ENVOY_LABELS, [("envoy", [9000])])
    api = cluster.new_api_client()
    api.user_agent = "seldon2-under-test"

    def scheduler(name: str) -> None:
        set_ready(custom, MLOPS, "v1alpha1", "models", name)
        time.sleep(0.2)
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        core.patch_namespaced_pod_status("mlserver-0", NS, ready)

    for arm in ("mesh", "direct"):
        s = seldon2(api, owner="uid-1")
        rec = s.deploy(model_manifest(), arm, tmp_path / f"{arm}.json")
        s.deploy(model_manifest(), arm, tmp_path / f"{arm}.json")  # replace: owner check, delete, create
        name = rec.name
        actor = Actor(functools.partial(scheduler, name), 0.3)
        s.verify_arm(rec, s.wait(rec, timeout_s=5))
        actor.join()
        s.teardown(rec)
        rec = s.deploy(model_manifest(), arm, tmp_path / f"{arm}.json")
        with pytest.raises(DeployTimeout):
            s.wait(rec, timeout_s=0.3)  # reads events
    assert seldon2(api, owner="uid-1").cleanup_owned("uid-1")
    assert _calls(cluster, "seldon2-under-test") == _granted(rules[ROLE_NAMESPACES["seldon2"]])


# --- owners and endpoints ---------------------------------------------------------------------------


def test_owner_label_on_every_object_and_pod_template() -> None:
    arms = render_kserve(isvc_manifest(), KServeOptions(owner="uid-1"), NS)
    for arm in arms.values():
        for obj in arm.objects:
            assert obj["metadata"]["labels"]["orchbench.io/owner"] == "uid-1", obj["kind"]
            if obj["kind"] == "InferenceService":  # the component's labels reach the pods
                assert obj["spec"]["predictor"]["labels"]["orchbench.io/owner"] == "uid-1"
    for model in render_seldon2(model_manifest(), Seldon2Options(owner="uid-1"), NS).values():
        assert model.objects[0]["metadata"]["labels"]["orchbench.io/owner"] == "uid-1"
    unowned = render_kserve(isvc_manifest(), KServeOptions(), NS)["raw"].objects[0]
    assert "orchbench.io/owner" not in unowned["metadata"]["labels"]
    with pytest.raises(ConfigError, match="is not a Kubernetes label value"):
        render_kserve(isvc_manifest(), KServeOptions(owner="{{workflow.uid}}"), NS)
    with pytest.raises(ConfigError, match="is not a Kubernetes label value"):
        render_seldon2(model_manifest(), Seldon2Options(owner="x" * 64), NS)


def test_verify_refuses_an_object_another_run_replaced(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api, owner="uid-1")
    rec = _deployed_ready(p, tmp_path, custom, "raw")
    labels = {"serving.kserve.io/inferenceservice": rec.details["isvc"], "orchbench.io/arm": "raw"}
    make_pod(core, "raw-pod", labels, [("kserve-container", [8080])])
    p.verify_arm(rec, p.endpoint(rec))
    custom.patch_namespaced_custom_object(
        KSERVE, "v1beta1", NS, "inferenceservices", rec.details["isvc"],
        {"metadata": {"labels": {"orchbench.io/owner": "uid-2"}}},
    )  # fmt: skip
    with pytest.raises(ArmVerificationError, match=r"orchbench\.io/owner is 'uid-2', not this run's 'uid-1'"):
        p.verify_arm(rec, p.endpoint(rec))


def test_endpoint_dict_sends_host_for_rest_and_refuses_an_authority_grpc_cannot_send() -> None:
    rest = ArmTarget(
        arm="a", transport="rest", protocol="v2", host="10.0.0.1", port=80, model_name="m",
        host_header="m.models.example.com", url="http://10.0.0.1/v2/models/m/infer",
        headers={"seldon-model": "m"},
    )  # fmt: skip
    out = endpoint_dict(rest)
    assert out["headers"] == {"seldon-model": "m", "host": "m.models.example.com"}
    assert out["protocol"] == "http" and out["http"]["path"] == "/v2/models/m/infer"
    grpc = dataclasses.replace(rest, transport="grpc", url="", grpc_target="10.0.0.1:80")
    with pytest.raises(ConfigError, match=r"would need :authority m\.models\.example\.com"):
        endpoint_dict(grpc)
    same = dataclasses.replace(grpc, host_header="10.0.0.1")
    assert endpoint_dict(same)["headers"] == {"seldon-model": "m"}  # gRPC metadata
    assert endpoint_dict(same)["protocol"] == "v2"
