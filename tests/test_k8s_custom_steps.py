"""The KServe and Seldon Core v2 branches of the workflow's steps (steps/deploy.py, wait.py,
teardown.py's teardown and cleanup), called as the compiled workflow calls them: the spec as the
workflow's JSON parameter, the deploy step's `record` output into wait and teardown, the workflow uid
as `owner`. The platform is built by the steps themselves from a kubeconfig that points at kmock's
emulator (tests/k8s_emulator.py); the tests play KServe's and Seldon's controllers (status conditions),
the kubelet (pods) and the garbage collector (pods gone after their objects).

A failing step exits with its error's code and records the error's one line in the artifact root's
error.json (steps/common.py), which is what these tests read. What the compiled workflow passes these
steps (the owner, both transports' wiring) is tested in tests/test_k8s_custom_compile.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from k8s_emulator import EmulatedCluster, emulated_cluster
from kubernetes import client
from kubernetes.config import kube_config

from orchbench.core.platform.k8s_arms import OWNER_LABEL
from orchbench.core.spec import Spec, load_spec
from pipelines.benchmark import embedded
from steps.common import ERROR_FILE
from steps.deploy import deploy
from steps.teardown import cleanup, teardown
from steps.wait import wait
from tests.k8s_helpers import (
    ENVOY_LABELS,
    EXTRA_RESOURCES,
    KSERVE,
    MLOPS,
    Actor,
    isvc_pod,
    make_pod,
    scheduling_failed,
    write_kubeconfig,
)

REPO = Path(__file__).resolve().parents[1]
NS = "seldon"  # the namespace make_pod and the platform tests use
UID = "3f1c9a52-0d7e-4c1b-9a51-6d0c2b8e7f10"  # a workflow uid as Argo gives it
OTHER_UID = "9b2e41c7-55aa-4f0e-8d3c-1e7f6a2b9c04"

pytestmark = pytest.mark.timeout(90)


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedCluster]:
    """The emulator, a kubeconfig naming it in $KUBECONFIG (the steps' platform outside a pod), and the
    steps' artifact root in tmp_path."""
    with emulated_cluster() as c:
        assert c.emulator is not None
        for res in EXTRA_RESOURCES:
            c.emulator.resources[res] = kmock.ResourceInfo(namespaced=True)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", c.host)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # The client reads $KUBECONFIG once, when kubernetes.config is imported: point it here too.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("ORCHBENCH_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
        yield c


@pytest.fixture()
def api(cluster: EmulatedCluster) -> client.ApiClient:
    return cluster.new_api_client()


def spec_json(name: str, **overrides: Any) -> str:
    """The shipped spec as the compiled workflow carries it (manifest inline), in namespace NS."""
    spec: Spec = load_spec(REPO / "specs" / f"{name}.yaml").with_overrides(
        {"kubernetes.namespace": NS, **overrides}
    )
    return json.dumps(embedded(spec).to_json_dict())


def failed(run: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Run a step that must fail: (its exit code, its error record)."""
    with pytest.raises(SystemExit) as info:
        run(*args, **kwargs)
    record = json.loads((Path(os.environ["ORCHBENCH_ARTIFACT_ROOT"]) / ERROR_FILE).read_text())
    return int(str(info.value.code)), record


def objects(api: client.ApiClient, group: str, version: str, plural: str) -> dict[str, dict[str, Any]]:
    listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(group, version, NS, plural)
    return {o["metadata"]["name"]: o for o in listed.get("items") or []}


def set_status(api: client.ApiClient, group: str, version: str, plural: str, name: str, **cond: Any) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        group, version, NS, plural, name, {"status": {"conditions": [{"type": "Ready", **cond}]}}
    )


def collect_garbage(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for p in core.list_namespaced_pod(NS).items or []:
        name = str(p.metadata and p.metadata.name)
        if not name.startswith(("mlserver", "seldon-envoy")):  # the Seldon installation's stay
            core.delete_namespaced_pod(name, NS)


# --- KServe ----------------------------------------------------------------------------------------


def play_kserve(api: client.ApiClient, record: dict[str, Any], queue_proxy: bool | None = None) -> None:
    """KServe's controllers and the kubelet for one arm: pods (labelled as KServe labels them: the
    InferenceService's labels, the component's, serving.kserve.io/inferenceservice), then Ready."""
    d, arm = record["details"], record["arm"]
    isvc = objects(api, KSERVE, "v1beta1", "inferenceservices")[d["isvc"]]
    labels = {**isvc["metadata"]["labels"], **isvc["spec"]["predictor"]["labels"]}
    labels |= {"serving.kserve.io/inferenceservice": d["isvc"], "component": "predictor"}
    containers: list[tuple[str, list[int]]] = [("kserve-container", [8080])]
    if queue_proxy if queue_proxy is not None else arm == "serverless":
        containers.append(("queue-proxy", [8012]))
    make_pod(client.CoreV1Api(api), f"{d['isvc']}-predictor-0", labels, containers)
    set_status(api, KSERVE, "v1beta1", "inferenceservices", d["isvc"], status="True")
    if d["graph"]:
        graph = objects(api, KSERVE, "v1alpha1", "inferencegraphs")[d["graph"]]
        router = {**graph["metadata"]["labels"], "serving.kserve.io/inferencegraph": d["graph"]}
        make_pod(client.CoreV1Api(api), f"{d['graph']}-0", router, [(d["graph"], [8080])])
        set_status(api, KSERVE, "v1alpha1", "inferencegraphs", d["graph"], status="True")


@pytest.mark.parametrize("arm", ["raw", "serverless", "graph"])
def test_kserve_deploy_wait_verify_teardown_through_the_steps(
    arm: str, tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json("kserve")
    record = json.loads(deploy(spec, str(tmp_path / "state"), "rest", arm, owner=UID))
    assert (tmp_path / "state" / "deploy" / f"rest-{arm}.json").is_file()
    created = {
        **objects(api, KSERVE, "v1beta1", "inferenceservices"),
        **objects(api, KSERVE, "v1alpha1", "inferencegraphs"),
    }
    assert sorted(created) == sorted(
        [record["details"]["isvc"]] + ([record["details"]["graph"]] if arm == "graph" else [])
    )
    for obj in created.values():  # every object carries the run's uid and the arm
        assert obj["metadata"]["labels"][OWNER_LABEL] == UID
        assert obj["metadata"]["labels"]["orchbench.io/arm"] == arm
    actor = Actor(lambda: play_kserve(cluster.new_api_client(), record), 0.3)
    endpoint = json.loads(wait(spec, str(tmp_path / "state"), json.dumps(record)))
    actor.join()
    isvc = record["details"]["isvc"]
    host = (
        f"{record['details']['graph']}.{NS}.svc.cluster.local"
        if arm == "graph"
        else f"{isvc}-predictor.{NS}.svc.cluster.local"
    )
    assert endpoint["host"] == host and endpoint["port"] == 80 and endpoint["arm"] == arm
    assert endpoint["protocol"] == "http" and endpoint["http"]["json_field"] == "outputs.0.data"
    assert endpoint["url"] == (
        f"http://{host}/" if arm == "graph" else f"http://{host}/v2/models/{isvc}/infer"
    )
    assert endpoint["http"]["path"] == ("/" if arm == "graph" else f"/v2/models/{isvc}/infer")
    assert endpoint["headers"] == {}  # the URL's host is the name Knative routes by: no Host override
    assert endpoint["evidence"]["orchestrator_on_path"] == (arm == "graph")
    assert ("queue-proxy" in endpoint["evidence"]["how"]) == (arm == "serverless")
    gc = Actor(lambda: collect_garbage(cluster.new_api_client()), 0.2)
    teardown(spec, str(tmp_path / "state"), json.dumps(record), owner=UID)
    gc.join()
    assert not objects(api, KSERVE, "v1beta1", "inferenceservices")
    assert not objects(api, KSERVE, "v1alpha1", "inferencegraphs")


@pytest.mark.parametrize(
    ("arm", "queue_proxy", "message"),
    [
        ("serverless", False, r"'serverless' arm, but pods \['[^']+'\] run no queue-proxy"),
        ("raw", True, r"'raw' arm, but pods \['[^']+'\] run queue-proxy"),
    ],
)
def test_kserve_wait_step_refuses_a_mislabelled_arm(
    arm: str, queue_proxy: bool, message: str, tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    """A `serverless` arm whose pod has no queue-proxy, a `raw` arm whose pod has one: the wait step
    (which verifies) fails in one line, exit 1."""
    spec = spec_json("kserve")
    record = json.loads(deploy(spec, str(tmp_path / "state"), "rest", arm, owner=UID))
    play_kserve(api, record, queue_proxy=queue_proxy)
    code, error = failed(wait, spec, str(tmp_path / "state"), json.dumps(record))
    assert code == 1 and error["error"] == "ArmVerificationError" and not error["unexpected"]
    assert re.search(message, error["message"]) and "\n" not in error["message"]


def test_kserve_wait_step_times_out_with_conditions_pods_and_events(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json("kserve", **{"kubernetes.ready_timeout_s": 1.0})
    record = json.loads(deploy(spec, str(tmp_path / "state"), "rest", "serverless", owner=UID))
    isvc = record["details"]["isvc"]
    set_status(
        api, KSERVE, "v1beta1", "inferenceservices", isvc, status="False", reason="RevisionMissing",
        message="Configuration is waiting for a Revision to become ready.",
    )  # fmt: skip
    core = client.CoreV1Api(api)
    isvc_pod(core, "p1", isvc, "serverless", [("kserve-container", [8080])], ready=False)
    message = "0/3 nodes are available: 3 node(s) had untolerated taint {model: active}."
    scheduling_failed(core, "p1", message)
    code, error = failed(wait, spec, str(tmp_path / "state"), json.dumps(record))
    assert code == 1 and error["error"] == "DeployTimeout"
    assert error["message"] == (
        f"InferenceService {NS}/{isvc} (serverless arm) not ready after 1s: "
        f"InferenceService {isvc} conditions: Ready=False (RevisionMissing: Configuration is waiting "
        "for a Revision to become ready.); pods: p1 Running; recent events: Warning "
        "FailedScheduling Pod/p1: 0/3 nodes are available: 3 node(s) had untolerated taint "
        "{model: active}."
    )


def test_deploy_step_never_replaces_another_runs_objects(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json("kserve")
    theirs = json.loads(deploy(spec, str(tmp_path / "a"), "rest", "raw", owner=OTHER_UID))
    code, error = failed(deploy, spec, str(tmp_path / "b"), "rest", "raw", owner=UID)
    assert code == 1 and error["message"] == (
        f"InferenceService {NS}/{theirs['details']['isvc']} belongs to another orchbench run "
        f"(workflow {OTHER_UID}): not replaced; wait for that run to end, or change metadata.name"
    )
    # ... nor tears them down: teardown with this run's uid leaves the other run's object.
    teardown(spec, str(tmp_path / "b"), json.dumps(theirs), owner=UID)
    live = objects(api, KSERVE, "v1beta1", "inferenceservices")[theirs["details"]["isvc"]]
    assert live["metadata"]["labels"][OWNER_LABEL] == OTHER_UID


def test_cleanup_step_deletes_what_carries_its_uid_and_nothing_else(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    """The exit handler finds the run's objects by their owner label, also those whose deploy step
    left no record; another run's objects (and objects orchbench did not create) stay."""
    spec = spec_json("kserve")
    state = tmp_path / "state"
    for arm in ("raw", "graph"):
        deploy(spec, str(state), "rest", arm, owner=UID)
    (state / "deploy" / "rest-graph.json").unlink()  # as if the deploy step died after creating
    other = json.loads(
        deploy(spec_json("kserve"), str(tmp_path / "other"), "rest", "serverless", owner=OTHER_UID)
    )
    foreign = {
        "apiVersion": f"{KSERVE}/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "not-ours", "namespace": NS, "labels": {"team": "x"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://x"}}},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        KSERVE, "v1beta1", NS, "inferenceservices", foreign
    )
    gc = Actor(lambda: collect_garbage(cluster.new_api_client()), 0.2)
    cleanup(spec, str(state), "Failed", owner=UID)
    gc.join()
    assert sorted(objects(api, KSERVE, "v1beta1", "inferenceservices")) == sorted(
        [other["details"]["isvc"], "not-ours"]
    )
    assert not objects(api, KSERVE, "v1alpha1", "inferencegraphs")
    # It asked the server for its own label (a real server filters; the emulator does not).
    listed = cluster.requests_matching("GET", "/inferenceservices")
    assert any(r.params.get("labelSelector") == f"{OWNER_LABEL}={UID}" for r in listed)


# --- Seldon Core v2 --------------------------------------------------------------------------------


def seldon_installation(api: client.ApiClient, containers: list[tuple[str, list[int]]] | None = None) -> None:
    """The Server's pod and envoy's, labelled as Seldon's operator labels them."""
    core = client.CoreV1Api(api)
    labels = {"seldon-server-name": "mlserver", "app.kubernetes.io/name": "seldon-server"}
    default = [("rclone", [5572]), ("agent", [9501, 9001]), ("mlserver", [9500, 9000])]
    make_pod(core, "mlserver-0", labels, containers or default, ip="10.0.0.7")
    make_pod(core, "seldon-envoy-7d9", ENVOY_LABELS, [("envoy", [9000, 9003])])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("arm", ["mesh", "direct"])
def test_seldon2_deploy_wait_verify_teardown_through_the_steps(
    arm: str, transport: str, tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json(
        "seldon2", transports=["rest", "grpc"], payloads={"rest": "../payloads/iris_v2.json",
                                                          "grpc": "../payloads/iris_v2.bin"}
    )  # fmt: skip
    seldon_installation(api)
    record = json.loads(deploy(spec, str(tmp_path / "state"), transport, arm, owner=UID))
    model = record["name"]
    assert model == f"iris-{transport}-{arm}"
    live = objects(api, MLOPS, "v1alpha1", "models")[model]
    assert live["metadata"]["labels"][OWNER_LABEL] == UID and live["spec"]["server"] == "mlserver"
    actor = Actor(
        lambda: set_status(cluster.new_api_client(), MLOPS, "v1alpha1", "models", model, status="True"), 0.3
    )
    endpoint = json.loads(wait(spec, str(tmp_path / "state"), json.dumps(record)))
    actor.join()
    mesh_host = f"seldon-mesh.{NS}.svc.cluster.local"
    if transport == "rest":
        path = f"/v2/models/{model}{'_1' if arm == 'direct' else ''}/infer"
        assert endpoint["protocol"] == "http" and endpoint["http"]["path"] == path
        assert endpoint["url"] == (
            f"http://{mesh_host}:80{path}" if arm == "mesh" else f"http://10.0.0.7:9000{path}"
        )
    else:
        assert endpoint["protocol"] == "v2"
        assert endpoint["grpc_method"] == "inference.GRPCInferenceService/ModelInfer"
        assert endpoint["grpc_target"] == (f"{mesh_host}:80" if arm == "mesh" else "10.0.0.7:9500")
        assert endpoint["model_name"] == (model if arm == "mesh" else f"{model}_1")
    # The mesh routes by the seldon-model header (gRPC: metadata), the direct arm needs none.
    assert endpoint["headers"] == ({"seldon-model": model} if arm == "mesh" else {})
    assert endpoint["evidence"]["orchestrator_on_path"] == (arm == "mesh")
    teardown(spec, str(tmp_path / "state"), json.dumps(record), owner=UID)
    assert not objects(api, MLOPS, "v1alpha1", "models")
    pods = {p.metadata and p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(NS).items}
    assert pods == {"mlserver-0", "seldon-envoy-7d9"}  # Seldon's own pods stay


def test_seldon2_wait_step_refuses_a_direct_arm_aimed_at_the_agent(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    """A server pod whose port 9000 is the agent's: the direct arm would go through the agent."""
    spec = spec_json("seldon2")
    seldon_installation(api, containers=[("agent", [9001, 9000]), ("mlserver", [9500])])
    record = json.loads(deploy(spec, str(tmp_path / "state"), "rest", "direct", owner=UID))
    set_status(api, MLOPS, "v1alpha1", "models", record["name"], status="True")
    code, error = failed(wait, spec, str(tmp_path / "state"), json.dumps(record))
    assert code == 1 and error["error"] == "ArmVerificationError"
    assert (
        "direct arm, but port 9000 is not the inference server's own port in pod mlserver-0"
        in error["message"]
    )


def test_seldon2_wait_step_times_out_with_the_schedulers_reason(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json("seldon2", **{"kubernetes.ready_timeout_s": 0.8})
    record = json.loads(deploy(spec, str(tmp_path / "state"), "rest", "mesh", owner=UID))
    why = "failed to schedule model iris-rest-mesh. [no matching servers are available]"
    set_status(
        api, MLOPS, "v1alpha1", "models", record["name"], status="False", reason="ScheduleFailed", message=why
    )
    code, error = failed(wait, spec, str(tmp_path / "state"), json.dumps(record))
    assert code == 1 and error["message"] == (
        f"Model {NS}/iris-rest-mesh (mesh arm) not ready after 0.8s: Model iris-rest-mesh conditions: "
        f"Ready=False (ScheduleFailed: {why}); pods: none; recent events: none"
    )


def test_seldon2_cleanup_step_by_owner(
    tmp_path: Path, cluster: EmulatedCluster, api: client.ApiClient
) -> None:
    spec = spec_json("seldon2")
    deploy(spec, str(tmp_path / "state"), "rest", "mesh", owner=UID)
    deploy(spec, str(tmp_path / "state"), "rest", "direct", owner=UID)
    cleanup(spec, str(tmp_path / "state"), "Succeeded", owner=UID)
    assert not objects(api, MLOPS, "v1alpha1", "models")
