"""KubernetesPlatform's deploy, wait, verify and teardown, against kmock's KubernetesEmulator over real
HTTP (tests/k8s_emulator.py).

The tests play the cluster's other actors through the same API: the Seldon operator (patching
`status.state`, creating pods with or without the executor container), the kubelet (marking pods Ready)
and the garbage collector (deleting pods after their deployment). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ArmVerificationError, ConfigError, DeployTimeout, PlatformError
from orchbench.core.manifest import load_manifest
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import (
    KubernetesAccessError,
    api_call,
)
from orchbench.core.platform.kubernetes import (
    KubernetesPlatform,
)
from orchbench.core.platform.kubernetes_render import deployment_name
from tests import k8s_helpers, k8s_seldon
from tests.k8s_helpers import Actor, raw, warning_event
from tests.k8s_seldon import (
    GROUP,
    MANIFEST,
    NS,
    PLURAL,
    config,
    get_sdep,
    make_platform,
    make_pod,
    set_pod_ready,
    set_state,
)

pytestmark = pytest.mark.timeout(30)

#: The cluster and its client fixtures (tests/k8s_seldon.py, tests/k8s_helpers.py), collected by pytest
#: as this module's own.
cluster = k8s_seldon.cluster
api, core, custom = k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom


# --- deploy ----------------------------------------------------------------------------------------


def test_deploy_creates_each_arm_with_its_record(
    tmp_path: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    manifest = load_manifest(MANIFEST)
    rec_with = p.deploy(manifest, "with", tmp_path / "with.json")
    rec_without = p.deploy(manifest, "without", tmp_path / "without.json", transport="grpc")

    assert rec_with.name == "tf-flowers-rest-with" and rec_without.name == "tf-flowers-grpc-without"
    assert DeploymentRecord.load(tmp_path / "with.json") == rec_with
    assert rec_with.details["service_host"] == "tf-flowers-rest-with-default.seldon.svc.cluster.local"
    assert rec_with.details["port"] == 8000 and rec_without.details["port"] == 9000
    assert (rec_with.details["group"], rec_with.details["version"]) == (GROUP, "v1alpha2")

    live_with = get_sdep(custom, "v1alpha2", "tf-flowers-rest-with")
    live_without = get_sdep(custom, "v1alpha2", "tf-flowers-grpc-without")
    assert live_with is not None and live_without is not None
    assert "annotations" not in live_with["spec"]["predictors"][0]
    assert live_without["spec"]["predictors"][0]["annotations"] == {"seldon.io/no-engine": "true"}
    assert live_without["spec"]["transport"] == "grpc"
    assert live_with["metadata"]["namespace"] == NS
    tolerations = live_with["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["tolerations"]
    assert {"key": "model", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_deploy_v1_and_adds_missing_toleration(
    tmp_path: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    manifest = load_manifest(MANIFEST)
    manifest["apiVersion"] = f"{GROUP}/v1"
    del manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["tolerations"]
    rec = make_platform(api).deploy(manifest, "without", tmp_path / "r.json")
    assert rec.details["version"] == "v1"
    live = get_sdep(custom, "v1", "tf-flowers-rest-without")
    assert live is not None
    spec = live["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert spec["tolerations"] == [{"key": "model", "operator": "Exists", "effect": "NoSchedule"}]


def test_deploy_replaces_an_existing_deployment(
    cluster: EmulatedCluster, tmp_path: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    manifest = load_manifest(MANIFEST)
    rec = p.deploy(manifest, "with", tmp_path / "r.json")
    set_state(custom, rec, "Available")  # stale status from the previous run
    manifest["spec"]["predictors"][0]["replicas"] = 2
    rec2 = p.deploy(manifest, "with", tmp_path / "r.json")
    live = get_sdep(custom, "v1alpha2", rec2.name)
    assert live is not None
    assert live["spec"]["predictors"][0]["replicas"] == 2
    assert "status" not in live  # re-created, not patched: no stale "Available"
    assert rec2.details["replicas"] == 2
    assert cluster.requests_matching("DELETE", f"/{PLURAL}/{rec.name}")


def test_misspelled_no_engine_is_refused_at_deploy(tmp_path: Path, api: client.ApiClient) -> None:
    # Seldon's own 2021 chart: `seldonio/no-engine` kept the orchestrator in the "without" arm.
    manifest = load_manifest(MANIFEST)
    manifest["spec"]["predictors"][0]["annotations"] = {"seldonio/no-engine": "true"}
    with pytest.raises(ConfigError, match="seldonio/no-engine"):
        make_platform(api).deploy(manifest, "without", tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_deploy_without_crd_is_a_platform_error(
    cluster: EmulatedCluster, tmp_path: Path, api: client.ApiClient
) -> None:
    manifest = load_manifest(MANIFEST)
    manifest["apiVersion"] = f"{GROUP}/v1alpha3"  # valid for orchbench, not served by this "cluster"
    cluster.refuse("post", f"/apis/{GROUP}/v1alpha3/")
    with pytest.raises(PlatformError, match=r"create SeldonDeployment seldon/tf-flowers-rest-with: HTTP 404"):
        make_platform(api).deploy(manifest, "with", tmp_path / "r.json")


# --- wait ------------------------------------------------------------------------------------------


def test_wait_returns_once_available_and_pods_ready(
    tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster
) -> None:
    p = make_platform(api)
    rec = p.deploy(load_manifest(MANIFEST), "with", tmp_path / "r.json")
    actor_api = cluster.new_api_client()
    core2, custom2 = client.CoreV1Api(actor_api), client.CustomObjectsApi(actor_api)
    ready_at: list[float] = []

    def operator() -> None:
        make_pod(core2, "p1", rec.name, ["flowers", "seldon-container-engine"], ready=False)
        make_pod(core2, "other", "someone-else", ["x"], ready=False)  # not ours: must not block
        set_state(custom2, rec, "Available")
        time.sleep(0.5)  # Available but the pod is not Ready yet: wait must keep waiting
        ready_at.append(time.monotonic())
        set_pod_ready(core2, "p1")

    actor = Actor(operator, delay_s=0.3)
    t0 = time.monotonic()
    endpoint = p.wait(rec, timeout_s=10)
    done = time.monotonic()
    actor.join()
    assert ready_at and done >= ready_at[0]
    assert done - t0 < 5
    assert endpoint == Endpoint(
        "rest", "with", "tf-flowers-rest-with-default.seldon.svc.cluster.local", 8000, "flowers"
    )
    # It watched (not polled): watch requests on the custom resource and the pods were made.
    assert any(r.params.get("watch") == "true" for r in cluster.requests_matching("GET", f"/{PLURAL}"))
    assert any(r.params.get("watch") == "true" for r in cluster.requests_matching("GET", "/pods"))


def test_wait_times_out_with_status_and_events(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    rec = p.deploy(load_manifest(MANIFEST), "without", tmp_path / "r.json")
    set_state(custom, rec, "Creating", description="Deployment is not ready")
    taint = "0/3 nodes are available: 3 node(s) had untolerated taint {model: active}"
    warning_event(core, "SeldonDeployment", rec.name, "InternalError", taint)
    core.create_namespaced_event(
        NS,
        raw(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "ev2", "namespace": NS},
                "involvedObject": {"kind": "Pod", "name": "unrelated"},
                "reason": "Noise",
                "message": "not ours",
            }
        ),
    )
    t0 = time.monotonic()
    with pytest.raises(DeployTimeout) as info:
        p.wait(rec, timeout_s=1.5)
    elapsed = time.monotonic() - t0
    assert 1.4 <= elapsed < 4.5
    msg = str(info.value)
    assert "not ready after 1.5s" in msg
    assert '"state": "Creating"' in msg and "Deployment is not ready" in msg
    assert "Warning InternalError SeldonDeployment/tf-flowers-rest-without: 0/3 nodes are available" in msg
    assert "not ours" not in msg
    assert "\n" not in msg


def test_wait_times_out_when_available_but_pods_never_ready(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    rec = p.deploy(load_manifest(MANIFEST), "with", tmp_path / "r.json")
    set_state(custom, rec, "Available")
    make_pod(core, "p1", rec.name, ["flowers", "seldon-container-engine"], ready=False)
    with pytest.raises(DeployTimeout, match=r'"state": "Available".*pods: p1 Running'):
        p.wait(rec, timeout_s=1.0)


# --- verify ----------------------------------------------------------------------------------------


def _deployed(
    p: KubernetesPlatform, tmp_path: Path, arm: Any, core: client.CoreV1Api, containers: list[str]
) -> DeploymentRecord:
    rec = p.deploy(load_manifest(MANIFEST), arm, tmp_path / f"{arm}.json")
    make_pod(core, f"{rec.name}-pod", rec.name, containers, ready=True)
    return rec


def test_verify_arm_accepts_correct_arms(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    p = make_platform(api)
    rec = _deployed(p, tmp_path, "with", core, ["flowers", "seldon-container-engine"])
    ev = p.verify_arm(rec, p.endpoint(rec))
    assert ev.orchestrator_on_path and "seldon-container-engine" in ev.how
    rec = _deployed(p, tmp_path, "without", core, ["flowers"])
    ev = p.verify_arm(rec, p.endpoint(rec))
    assert not ev.orchestrator_on_path and '"flowers"' in ev.how


def test_verify_refuses_engine_in_the_without_arm(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # What the misspelled annotation did in 2021: the "without" pods still ran the executor.
    p = make_platform(api)
    rec = _deployed(p, tmp_path, "without", core, ["flowers", "seldon-container-engine"])
    with pytest.raises(
        ArmVerificationError, match=r"'without' arm, but pods .* run the orchestrator container"
    ):
        p.verify_arm(rec, p.endpoint(rec))


def test_verify_refuses_missing_engine_in_the_with_arm(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    p = make_platform(api)
    rec = _deployed(p, tmp_path, "with", core, ["flowers"])
    with pytest.raises(ArmVerificationError, match=r"'with' arm, but pods .* have no orchestrator container"):
        p.verify_arm(rec, p.endpoint(rec))


def test_verify_refuses_live_object_with_misspelled_annotation(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    rec = _deployed(p, tmp_path, "without", core, ["flowers"])
    # Someone edits the live object (e.g. a chart upgrade) to Seldon's 2021 misspelling.
    live = get_sdep(custom, "v1alpha2", rec.name)
    assert live is not None
    predictors = live["spec"]["predictors"]
    predictors[0]["annotations"] = {"seldonio/no-engine": "true"}
    custom.patch_namespaced_custom_object(
        GROUP, "v1alpha2", NS, PLURAL, rec.name, {"spec": {"predictors": predictors}}
    )
    with pytest.raises(ArmVerificationError, match="seldonio/no-engine"):
        p.verify_arm(rec, p.endpoint(rec))


def test_verify_refuses_wrong_endpoint_and_no_pods(tmp_path: Path, api: client.ApiClient) -> None:
    p = make_platform(api)
    rec = p.deploy(load_manifest(MANIFEST), "without", tmp_path / "r.json")
    wrong = Endpoint("rest", "without", rec.details["service_host"], 8000, "flowers")
    with pytest.raises(ArmVerificationError, match="does not fit the 'without' arm"):
        p.verify_arm(rec, wrong)
    with pytest.raises(
        ArmVerificationError, match="no pods labelled seldon-deployment-id=tf-flowers-rest-without"
    ):
        p.verify_arm(rec, p.endpoint(rec))


# --- teardown --------------------------------------------------------------------------------------


def test_teardown_waits_until_object_and_pods_are_gone(
    tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster, custom: client.CustomObjectsApi
) -> None:
    p = make_platform(api)
    core2 = client.CoreV1Api(cluster.new_api_client())
    rec = _deployed(p, tmp_path, "with", core2, ["flowers", "seldon-container-engine"])
    gc_at: list[float] = []

    def garbage_collector() -> None:
        gc_at.append(time.monotonic())
        core2.delete_namespaced_pod(f"{rec.name}-pod", NS)

    actor = Actor(garbage_collector, delay_s=0.5)
    p.teardown(rec)
    done = time.monotonic()
    actor.join()
    assert gc_at and done >= gc_at[0]
    assert get_sdep(custom, "v1alpha2", rec.name) is None
    p.teardown(rec)  # already gone: fine


def test_teardown_deadline_raises(tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api) -> None:
    p = make_platform(api, delete_timeout_s=1.0)
    rec = _deployed(p, tmp_path, "with", core, ["flowers", "seldon-container-engine"])
    t0 = time.monotonic()
    with pytest.raises(
        PlatformError, match=r"not gone after 1s: object deleted, pods left \['tf-flowers-rest-with-pod'\]"
    ):
        p.teardown(rec)
    assert time.monotonic() - t0 < 4


# --- errors ----------------------------------------------------------------------------------------


def test_api_errors_become_one_line() -> None:
    exc = client.ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {
            "message": 'nodes "n1" is forbidden: User "system:serviceaccount:seldon:default" '
            'cannot patch resource "nodes"\nsecond line'
        }
    )
    with pytest.raises(KubernetesAccessError) as info, api_call("patch", "node n1"):
        raise exc
    assert isinstance(info.value, ConfigError) and info.value.status == 403
    assert str(info.value).startswith('patch node n1: HTTP 403 Forbidden: nodes "n1" is forbidden')
    assert "rbac.yaml" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_api_is_a_platform_error(tmp_path: Path) -> None:
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    cfg.retries = 0
    p = KubernetesPlatform(config(), api_client=client.ApiClient(cfg))
    with pytest.raises(PlatformError, match=r"list nodes: cannot reach the Kubernetes API"):
        p.taint()


def test_record_from_another_platform_is_refused(api: client.ApiClient) -> None:
    rec = DeploymentRecord(platform="local", name="x", transport="rest", arm="with", model_name="m")
    with pytest.raises(ConfigError, match="is for platform 'local'"):
        make_platform(api).teardown(rec)


def test_deployment_name() -> None:
    assert deployment_name("tf-flowers", "rest", "with") == "tf-flowers-rest-with"
    assert deployment_name("tf-flowers-grpc-without", "grpc", "without") == "tf-flowers-grpc-without"
