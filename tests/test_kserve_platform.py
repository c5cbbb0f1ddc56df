"""KServePlatform against kmock's emulator over real HTTP (tests/k8s_emulator.py): deploy, wait,
verify and teardown of each arm (raw, serverless, graph), and what each refuses.
The tests play the cluster's side through the API (tests/k8s_helpers.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.errors import ArmVerificationError, DeployTimeout, PlatformError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.kserve import KServePlatform
from tests import k8s_helpers
from tests.k8s_helpers import (
    KSERVE,
    NS,
    Actor,
    collect_pods,
    get_obj,
    isvc_manifest,
    isvc_pod,
    kserve,
    play_kserve,
    scheduling_failed,
    set_ready,
)

#: The emulated cluster's fixtures (tests/k8s_helpers.py), collected by pytest as this module's own.
cluster, api, core, custom = k8s_helpers.cluster, k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom

pytestmark = pytest.mark.timeout(60)


# --- KServe: deploy, wait, verify, teardown ------------------------------------------------------


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
        lambda: play_kserve(client.CustomObjectsApi(actor_api), client.CoreV1Api(actor_api), rec), 0.3
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
    gc = Actor(lambda: collect_pods(client.CoreV1Api(actor_api), rec), 0.2)
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
    isvc_pod(
        core, "stray", rec.details["isvc"], "raw", [("kserve-container", [8080]), ("queue-proxy", [8012])]
    )
    with pytest.raises(
        ArmVerificationError, match=r"pod stray is labelled .* orchbench.io/arm='raw', not 'serverless'"
    ):
        p.verify_arm(rec, p.endpoint(rec))


def test_kserve_verify_refuses_wrong_hops(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api)
    rec = _deployed_ready(p, tmp_path, custom, "raw")
    isvc_pod(
        core, "raw-pod", rec.details["isvc"], "raw", [("kserve-container", [8080]), ("queue-proxy", [8012])]
    )
    with pytest.raises(ArmVerificationError, match=r"'raw' arm, but pods \['raw-pod'\] run queue-proxy"):
        p.verify_arm(rec, p.endpoint(rec))
    rec2 = _deployed_ready(p, tmp_path, custom, "serverless")
    isvc_pod(core, "sl-pod", rec2.details["isvc"], "serverless", [("kserve-container", [8080])])
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
    isvc_pod(core, "model", rec.details["isvc"], "graph", [("kserve-container", [8080])])
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
    isvc_pod(
        core, "p1", name, "serverless", [("kserve-container", [8080]), ("queue-proxy", [8012])], ready=False
    )
    scheduling_failed(core, "p1", "0/3 nodes are available: 3 node(s) had untolerated taint {model: active}")
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


def test_verify_refuses_an_object_another_run_replaced(
    tmp_path: Path, api: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    p = kserve(api, owner="uid-1")
    rec = _deployed_ready(p, tmp_path, custom, "raw")
    isvc_pod(core, "raw-pod", rec.details["isvc"], "raw", [("kserve-container", [8080])])
    p.verify_arm(rec, p.endpoint(rec))
    custom.patch_namespaced_custom_object(
        KSERVE, "v1beta1", NS, "inferenceservices", rec.details["isvc"],
        {"metadata": {"labels": {"orchbench.io/owner": "uid-2"}}},
    )  # fmt: skip
    with pytest.raises(ArmVerificationError, match=r"orchbench\.io/owner is 'uid-2', not this run's 'uid-1'"):
        p.verify_arm(rec, p.endpoint(rec))
