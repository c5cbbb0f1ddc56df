"""Seldon2Platform against kmock's emulator over real HTTP (tests/k8s_emulator.py): each arm (mesh,
direct) deployed, waited for, verified and torn down, and what verify and wait refuse.
The tests play the cluster's side through the API (tests/k8s_helpers.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.errors import ArmVerificationError, DeployTimeout
from orchbench.core.platform.k8s_arms import ArmTarget
from tests import k8s_helpers
from tests.k8s_helpers import (
    ENVOY_LABELS,
    MLOPS,
    NS,
    Actor,
    get_obj,
    make_pod,
    model_manifest,
    seldon2,
    server_pod,
    set_ready,
)

#: The emulated cluster's fixtures (tests/k8s_helpers.py), collected by pytest as this module's own.
cluster, api, core, custom = k8s_helpers.cluster, k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom

pytestmark = pytest.mark.timeout(60)


# --- Seldon Core v2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("arm", ["mesh", "direct"])
def test_seldon2_arm_round_trip(
    arm: str, tmp_path: Path, api: client.ApiClient, cluster: EmulatedCluster, core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:  # fmt: skip
    server_pod(core, ready=False)
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
    server_pod(core, app="my-app")  # labelled with the server's name, but not a Seldon server pod
    with pytest.raises(
        ArmVerificationError, match="pod mlserver-0 is labelled seldon-server-name=mlserver but"
    ):
        p.verify_arm(mesh, p.endpoint(mesh))
    core.delete_namespaced_pod("mlserver-0", NS)
    server_pod(core, name="mlserver-0b", containers=[("mlserver", [9500, 9000])])
    with pytest.raises(ArmVerificationError, match=r"mesh arm, but pods \['mlserver-0b'\] run no 'agent'"):
        p.verify_arm(mesh, p.endpoint(mesh))
    core.delete_namespaced_pod("mlserver-0b", NS)
    server_pod(core, name="mlserver-0c")
    with pytest.raises(ArmVerificationError, match="no envoy pods"):
        p.verify_arm(mesh, p.endpoint(mesh))
    p.verify_arm(direct, p.endpoint(direct))  # fine: the direct arm needs no envoy
    core.delete_namespaced_pod("mlserver-0c", NS)
    server_pod(core, name="mlserver-0d", containers=[("agent", [9001, 9000]), ("mlserver", [9500])])
    with pytest.raises(ArmVerificationError, match="port 9000 is not the inference server's own port"):
        p.verify_arm(direct, p.endpoint(direct))
    wrong = ArmTarget.from_dict({**p.endpoint(direct).to_dict(), "port": 9001})
    with pytest.raises(ArmVerificationError, match="is not the 'direct' arm's port 9000"):
        p.verify_arm(direct, wrong)
    server_pod(core, name="mlserver-1")
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
