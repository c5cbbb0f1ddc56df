"""KubernetesPlatform against kmock's KubernetesEmulator over real HTTP (tests/k8s_emulator.py).

The tests play the cluster's other actors through the same API: the Seldon operator (patching
`status.state`, creating pods with or without the executor container), the kubelet (marking pods Ready)
and the garbage collector (deleting pods after their deployment). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import EmulatedCluster, emulated_cluster
from kubernetes import client

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ArmVerificationError, ConfigError, DeployTimeout, PlatformError
from orchbench.core.manifest import load_manifest
from orchbench.core.platform.base import DeploymentRecord, Platform
from orchbench.core.platform.k8s_common import (
    ROLE_LABEL,
    TAINT_ANNOTATION,
    TAINT_OWNERS_ANNOTATION,
    KubernetesAccessError,
    KubernetesConfig,
    NodeSelection,
    Taint,
    api_call,
)
from orchbench.core.platform.k8s_placement import ensure_model_placement
from orchbench.core.platform.kubernetes import (
    KubernetesPlatform,
    deployment_name,
    loadtester_placement,
    steps_placement,
)
from orchbench.core.spec import load_spec
from pipelines.benchmark import compile_dict
from tests import k8s_helpers
from tests.k8s_helpers import Actor, rbac_documents, rbac_grants, rbac_roles, warning_event

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "manifests" / "tf_flowers.yaml"
NS = "seldon"
GROUP = "machinelearning.seldon.io"
PLURAL = "seldondeployments"

pytestmark = pytest.mark.timeout(30)


# --- fixtures and cluster actors -----------------------------------------------------------------


@pytest.fixture()
def cluster() -> Iterator[EmulatedCluster]:
    with emulated_cluster() as c:
        yield c


#: The client fixtures on that cluster (tests/k8s_helpers.py), collected by pytest as this module's own.
api, core, custom = k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom


def raw(body: dict[str, Any]) -> Any:
    """The client accepts plain dicts as bodies; its type hints only name the models."""
    return body


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


# --- protocol --------------------------------------------------------------------------------------


def test_satisfies_platform_protocol(api: client.ApiClient) -> None:
    p: Platform = make_platform(api)
    assert p.name == "kubernetes"


def test_needs_an_api_client() -> None:
    with pytest.raises(ConfigError, match="needs an API client"):
        KubernetesPlatform(config())


# --- taints ----------------------------------------------------------------------------------------


def test_taint_twice_leaves_one_taint_per_node(api: client.ApiClient, core: client.CoreV1Api) -> None:
    three_nodes(core)
    p = make_platform(api)
    first = p.taint(owner="wf-1")
    assert {n: r["action"] for n, r in first.items()} == {
        "node-a": "added",
        "node-b": "added",
        "node-c": "added",
    }
    assert first["node-a"] == {
        "role": "loadtester",
        "taint": "loadtester=active:NoSchedule",
        "action": "added",
        "previous": [],
        "owners": ["wf-1"],
    }
    second = p.taint(owner="wf-1")
    assert {r["action"] for r in second.values()} == {"unchanged"}
    assert taints_of(core, "node-a") == [("loadtester", "active", "NoSchedule")]
    assert taints_of(core, "node-b") == taints_of(core, "node-c") == [("model", "active", "NoSchedule")]
    meta = node(core, "node-b")["metadata"]
    assert meta["labels"][ROLE_LABEL] == "model"
    assert json.loads(meta["annotations"][TAINT_ANNOTATION])["previous_taints"] == []


def test_taint_updates_same_key_and_untaint_restores(
    cluster: EmulatedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    make_node(core, "node-a")
    other = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    old = {"key": "model", "value": "old", "effect": "NoExecute"}
    make_node(core, "node-b", labels={ROLE_LABEL: "spare"}, taints=[other, old])
    make_node(core, "node-c")
    p = make_platform(api)

    report = p.taint()
    assert report["node-b"]["action"] == "updated"
    assert report["node-b"]["previous"] == ["model=old:NoExecute"]
    assert taints_of(core, "node-b") == [("gpu", "yes", "NoSchedule"), ("model", "active", "NoSchedule")]
    assert p.taint()["node-b"]["action"] == "unchanged"  # and the record still remembers "old"
    # Node patches are JSON merge patches (lists replaced whole): asserted on the wire.
    patches = cluster.requests_matching("PATCH", "/api/v1/nodes/")
    assert patches and all(r.headers.get("Content-Type") == "application/merge-patch+json" for r in patches)

    p.untaint()
    assert taints_of(core, "node-b") == [("gpu", "yes", "NoSchedule"), ("model", "old", "NoExecute")]
    assert taints_of(core, "node-a") == taints_of(core, "node-c") == []
    for name in ("node-a", "node-b", "node-c"):
        meta = node(core, name)["metadata"]
        assert TAINT_ANNOTATION not in (meta.get("annotations") or {})
    assert node(core, "node-b")["metadata"]["labels"][ROLE_LABEL] == "spare"
    assert ROLE_LABEL not in (node(core, "node-a")["metadata"].get("labels") or {})


def test_seed_case_already_tainted_is_not_an_error_and_survives_untaint(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # The seed notebook failed here: "already has loadtester taint(s) ... and --overwrite is false".
    make_node(core, "node-a", taints=[{"key": "loadtester", "value": "active", "effect": "NoSchedule"}])
    make_node(core, "node-b", taints=[{"key": "model", "value": "active", "effect": "NoSchedule"}])
    make_node(core, "node-c", taints=[{"key": "model", "value": "active", "effect": "NoSchedule"}])
    p = make_platform(api)
    assert {r["action"] for r in p.taint().values()} == {"unchanged"}
    p.untaint()
    # orchbench did not add these taints, so it does not remove them.
    assert taints_of(core, "node-a") == [("loadtester", "active", "NoSchedule")]
    assert taints_of(core, "node-c") == [("model", "active", "NoSchedule")]


def test_untaint_of_untainted_cluster_and_twice_is_fine(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    three_nodes(core)
    make_node(core, "node-d", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    p = make_platform(api)
    p.untaint()
    p.taint()
    p.untaint()
    p.untaint()
    assert [taints_of(core, n) for n in ("node-a", "node-b", "node-c")] == [[], [], []]
    assert taints_of(core, "node-d") == [("dedicated", "x", "NoSchedule")]


# --- two runs on one cluster: every taint carries its workflow's id, a run removes only its own -------


def owners_of(core: client.CoreV1Api, name: str) -> list[str] | None:
    raw = ((node(core, name).get("metadata") or {}).get("annotations") or {}).get(TAINT_OWNERS_ANNOTATION)
    return None if raw is None else json.loads(raw)


def test_two_runs_share_a_node_and_its_taint_stays_until_the_last_untaints(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    three_nodes(core)
    make_node(core, "node-d")
    p = make_platform(api)  # run A: node-a loadtester, node-b and node-c model
    q = make_platform(api, model_nodes=NodeSelection(names=("node-c", "node-d"), count=2))  # run B
    assert p.taint(owner="wf-a")["node-a"]["owners"] == ["wf-a"]
    report = q.taint(owner="wf-b")
    assert report["node-a"]["owners"] == ["wf-a", "wf-b"] and report["node-a"]["action"] == "unchanged"
    assert owners_of(core, "node-a") == owners_of(core, "node-c") == ["wf-a", "wf-b"]
    assert owners_of(core, "node-b") == ["wf-a"] and owners_of(core, "node-d") == ["wf-b"]
    assert q.taint(owner="wf-b")["node-c"]["owners"] == ["wf-a", "wf-b"]  # idempotent

    p.untaint(owner="wf-a")  # A leaves: its own node goes back, the shared ones stay tainted for B
    assert taints_of(core, "node-b") == [] and owners_of(core, "node-b") is None
    assert TAINT_ANNOTATION not in (node(core, "node-b")["metadata"].get("annotations") or {})
    assert taints_of(core, "node-a") == [("loadtester", "active", "NoSchedule")]
    assert taints_of(core, "node-c") == taints_of(core, "node-d") == [("model", "active", "NoSchedule")]
    assert owners_of(core, "node-a") == owners_of(core, "node-c") == ["wf-b"]
    assert node(core, "node-a")["metadata"]["labels"][ROLE_LABEL] == "loadtester"
    p.untaint(owner="wf-a")  # twice: nothing of B's goes
    assert owners_of(core, "node-a") == ["wf-b"]

    q.untaint(owner="wf-b")  # the last owner leaves: every node as it was before orchbench
    for n in ("node-a", "node-b", "node-c", "node-d"):
        meta = node(core, n)["metadata"]
        assert taints_of(core, n) == [], n
        assert ROLE_LABEL not in (meta.get("labels") or {}), n
        assert not {TAINT_ANNOTATION, TAINT_OWNERS_ANNOTATION} & set(meta.get("annotations") or {}), n


def test_a_run_never_removes_another_runs_taint(api: client.ApiClient, core: client.CoreV1Api) -> None:
    three_nodes(core)
    previous = {"key": "model", "value": "old", "effect": "NoExecute"}
    make_node(core, "node-d", taints=[previous])
    p = make_platform(api)
    p.taint(owner="wf-a")
    before = {n: (taints_of(core, n), owners_of(core, n)) for n in ("node-a", "node-b", "node-c")}
    # Another run that never tainted (or crashed before its taint step), or untaints twice:
    make_platform(api).untaint(owner="wf-b")
    make_platform(api).untaint()
    assert {n: (taints_of(core, n), owners_of(core, n)) for n in before} == before
    # Another run on other nodes untaints its own, and only its own:
    q = make_platform(
        api,
        loadtester_nodes=NodeSelection(names=("node-c",)),
        model_nodes=NodeSelection(names=("node-d",), count=1),
    )
    with pytest.raises(PlatformError, match=r"node-c is held by another orchbench run \(workflow wf-a\)"):
        q.taint(owner="wf-b")  # node-c is A's model node: B may not make it its load tester's
    assert taints_of(core, "node-d") == [("model", "old", "NoExecute")]  # refused before any patch
    q = make_platform(api, loadtester_nodes=NodeSelection(names=("node-d",)), model_nodes=NodeSelection())
    q.taint(owner="wf-b")
    assert taints_of(core, "node-d") == [
        ("loadtester", "active", "NoSchedule"),
        ("model", "old", "NoExecute"),
    ]
    q.untaint(owner="wf-b")
    assert taints_of(core, "node-d") == [("model", "old", "NoExecute")]
    assert {n: (taints_of(core, n), owners_of(core, n)) for n in before} == before
    p.untaint(owner="wf-a")
    assert [taints_of(core, n) for n in ("node-a", "node-b", "node-c")] == [[], [], []]


def test_record_without_owners_is_restored_by_any_untaint(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    """A record written before owners existed belongs to no live run: the next untaint honours it."""
    three_nodes(core)
    p = make_platform(api)
    p.taint(owner="wf-old")
    for n in ("node-a", "node-b", "node-c"):
        core.patch_node(n, {"metadata": {"annotations": {TAINT_OWNERS_ANNOTATION: None}}})
    assert owners_of(core, "node-a") is None
    make_platform(api).untaint(owner="wf-new")
    assert [taints_of(core, n) for n in ("node-a", "node-b", "node-c")] == [[], [], []]
    core.patch_node("node-a", {"metadata": {"annotations": {TAINT_OWNERS_ANNOTATION: "nope"}}})
    p.taint(owner="wf-a")
    core.patch_node("node-a", {"metadata": {"annotations": {TAINT_OWNERS_ANNOTATION: "{]"}}})
    with pytest.raises(PlatformError, match="taint-owners is not a JSON list of workflow ids"):
        p.untaint(owner="wf-a")


def test_the_workflow_passes_its_uid_to_taint_and_cleanup() -> None:
    from orchbench.core.spec import load_spec
    from pipelines.benchmark import compile_dict

    wf = compile_dict(load_spec(REPO / "specs" / "seed.yaml"))
    tasks = {
        t["name"]: {a["name"]: a.get("value") for a in t["arguments"]["parameters"]}
        for tpl in wf["spec"]["templates"]
        if "dag" in tpl
        for t in tpl["dag"]["tasks"]
    }
    assert tasks["taint"]["owner"] == tasks["cleanup"]["owner"] == "{{workflow.uid}}"


def test_too_few_nodes_is_a_config_error(api: client.ApiClient, core: client.CoreV1Api) -> None:
    make_node(core, "node-a", labels={"pool": "load"})
    make_node(core, "node-b", labels={"pool": "model"})
    p = make_platform(
        api,
        loadtester_nodes=NodeSelection(labels={"pool": "load"}),
        model_nodes=NodeSelection(labels={"pool": "model"}, count=2),
    )
    with pytest.raises(
        ConfigError, match=r"too few nodes for the model role: need 2, found 1 by labels pool=model"
    ):
        p.taint()
    assert taints_of(core, "node-a") == []  # nothing half-done: selection happens before any patch

    p = make_platform(api, model_nodes=NodeSelection(names=("node-b", "node-x")))
    with pytest.raises(ConfigError, match=r"model nodes \['node-x'\] do not exist"):
        p.taint()
    p = make_platform(api, loadtester_nodes=NodeSelection(), model_nodes=NodeSelection(count=2))
    with pytest.raises(ConfigError, match="too few nodes for the model role: need 2, found 1"):
        p.taint()


def test_label_selection_sends_selector_and_overlap_is_refused(
    cluster: EmulatedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    make_node(core, "node-a", labels={"pool": "load"})
    make_node(core, "node-b", labels={"pool": "model"})
    make_node(core, "node-c", labels={"pool": "model"})
    p = make_platform(
        api,
        loadtester_nodes=NodeSelection(labels={"pool": "load"}),
        model_nodes=NodeSelection(labels={"pool": "model"}, count=2),
    )
    report = p.taint()
    assert {n: r["role"] for n, r in report.items()} == {
        "node-a": "loadtester",
        "node-b": "model",
        "node-c": "model",
    }
    lists = cluster.requests_matching("GET", "/api/v1/nodes?")
    assert any(r.params.get("labelSelector") == "pool=model" for r in lists)

    p = make_platform(api, loadtester_nodes=NodeSelection(names=("node-b",)))
    with pytest.raises(ConfigError, match=r"nodes \['node-b'\] are selected for both"):
        p.taint()


def test_automatic_selection_skips_control_plane(api: client.ApiClient, core: client.CoreV1Api) -> None:
    make_node(core, "cp", labels={"node-role.kubernetes.io/control-plane": ""})
    three_nodes(core)
    p = make_platform(api, loadtester_nodes=NodeSelection(), model_nodes=NodeSelection(count=2))
    report = p.taint()
    assert {n: r["role"] for n, r in report.items()} == {
        "node-a": "loadtester",
        "node-b": "model",
        "node-c": "model",
    }
    assert taints_of(core, "cp") == []


def test_config_from_dict_and_taint_forms() -> None:
    cfg = KubernetesConfig.from_dict(
        {
            "namespace": "bench",
            "loadtester_nodes": {"names": ["n1"]},
            "model_nodes": {"labels": {"pool": "m"}, "count": 2},
            "loadtester_taint": "lt=on:NoExecute",
            "model_taint": ["model", "on"],
        }
    )
    assert cfg.loadtester_taint == Taint("lt", "on", "NoExecute")
    assert cfg.model_taint == Taint("model", "on", "NoSchedule")
    assert cfg.model_nodes.label_selector == "pool=m" and cfg.model_nodes.count == 2
    assert KubernetesConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown keys"):
        KubernetesConfig.from_dict({"namepsace": "x"})
    with pytest.raises(ConfigError, match="effect must be one of"):
        Taint.parse("a=b:NoScheduel")
    with pytest.raises(ConfigError, match="different keys"):
        KubernetesConfig(loadtester_taint=Taint.parse(("model", "a")), model_taint=Taint.parse("model=b"))


# --- placement -------------------------------------------------------------------------------------


def test_loadtester_placement_dicts_and_hera() -> None:
    cfg = config()
    p = loadtester_placement(cfg)
    assert p.to_pod_spec() == {
        "tolerations": [
            {"key": "loadtester", "operator": "Equal", "value": "active", "effect": "NoSchedule"}
        ],
        "nodeSelector": {ROLE_LABEL: "loadtester"},
    }
    hera = p.to_hera()
    assert hera["node_selector"] == {ROLE_LABEL: "loadtester"}
    assert hera["tolerations"][0].key == "loadtester" and hera["tolerations"][0].effect == "NoSchedule"
    assert steps_placement(cfg).to_pod_spec() == {"tolerations": p.tolerations}


def test_model_toleration_is_ensured_once() -> None:
    manifest = load_manifest(MANIFEST)
    out = ensure_model_placement(manifest, config())
    spec = out["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert spec["tolerations"] == [
        {"key": "model", "operator": "Exists", "effect": "NoSchedule"}
    ]  # seed's, kept
    assert spec["nodeSelector"] == {ROLE_LABEL: "model"}
    del manifest["spec"]["predictors"][0]["componentSpecs"]
    out = ensure_model_placement(manifest, config(pin_model=False))
    spec = out["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert spec["containers"] == [{"name": "flowers"}]
    assert spec["tolerations"] == [{"key": "model", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in spec


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


# --- a real cluster ------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_real_cluster_round_trip(tmp_path: Path) -> None:
    """On a real cluster with Seldon Core v1: taint, both REST arms deployed, ready, verified, torn down."""
    kubeconfig = os.environ.get("ORCHBENCH_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("set ORCHBENCH_KUBECONFIG to a kubeconfig of a cluster with Seldon Core v1 (>= 3 nodes)")
    cfg = KubernetesConfig(namespace=os.environ.get("ORCHBENCH_NAMESPACE", "seldon"))
    p = KubernetesPlatform.from_kubeconfig(cfg, kubeconfig)
    manifest = load_manifest(MANIFEST)
    p.taint()
    try:
        for arm in ("with", "without"):
            rec = p.deploy(manifest, arm, tmp_path / f"{arm}.json")
            try:
                endpoint = p.wait(rec, timeout_s=900)
                evidence = p.verify_arm(rec, endpoint)
                assert evidence.orchestrator_on_path == (arm == "with")
            finally:
                p.teardown(rec)
    finally:
        p.untaint()


# --- RBAC ------------------------------------------------------------------------------------------

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def _rbac_rules() -> dict[str, list[dict[str, Any]]]:
    """Rules granted to argo/orchbench, keyed by where they apply: "cluster" or a namespace."""
    docs = rbac_documents()
    accounts = [
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceAccount"
    ]
    assert accounts == [("argo", "orchbench")]
    for rules_ in rbac_roles(docs).values():
        for rule in rules_:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    return rbac_grants(docs)


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_rbac_allows_every_call_the_platform_makes(
    tmp_path: Path, cluster: EmulatedCluster, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    """Run the whole platform cycle, then check each request it sent against manifests/rbac.yaml."""
    rules = _rbac_rules()
    for verb in ("create", "patch"):  # Argo's executor, in the workflow's namespace
        assert _allowed(rules["argo"], "argoproj.io", "workflowtaskresults", verb)
    assert not _allowed(rules["argo"], GROUP, PLURAL, "create")  # nothing more there
    three_nodes(core)
    api = cluster.new_api_client()
    api.user_agent = "orchbench-under-test"
    p = make_platform(api)
    p.taint()
    rec = p.deploy(load_manifest(MANIFEST), "with", tmp_path / "r.json")
    set_state(custom, rec, "Available")
    make_pod(core, "p1", rec.name, ["flowers", "seldon-container-engine"], ready=True)
    p.verify_arm(rec, p.wait(rec, timeout_s=5))
    gc = Actor(lambda: core.delete_namespaced_pod("p1", NS), delay_s=0.2)
    p.teardown(rec)
    gc.join()
    p.deploy(load_manifest(MANIFEST), "with", tmp_path / "r.json")
    p.deploy(load_manifest(MANIFEST), "with", tmp_path / "r.json")  # replace: delete + create
    with pytest.raises(DeployTimeout):
        p.wait(rec, timeout_s=0.5)  # reads events
    p.untaint()

    seen = set()
    for r in cluster.emulator or []:
        if r.headers.get("User-Agent") != "orchbench-under-test":
            continue
        parts = r.url.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        namespaced = rest[0] == "namespaces"
        if namespaced:
            rest = rest[2:]
        resource, named = rest[0], len(rest) > 1
        if r.method == "GET":
            verb = "watch" if r.params.get("watch") == "true" else ("get" if named else "list")
        else:
            verb = _VERBS[getattr(r.method, "value", str(r.method)).upper()]
        seen.add((group, resource, verb))
        where = NS if namespaced else "cluster"
        assert _allowed(rules[where], group, resource, verb), f"{where}: no {verb} on {group}/{resource}"
    assert {
        ("", "nodes", "patch"),
        (GROUP, PLURAL, "create"),
        (GROUP, PLURAL, "watch"),
        (GROUP, PLURAL, "delete"),
        ("", "pods", "watch"),
        ("", "events", "list"),
    } <= seen


# --- what the pipeline builder and steps call ----------------------------------------------------


def test_config_and_placement_from_the_seed_spec() -> None:
    from hera.workflows import Container

    from orchbench.core.platform.kubernetes import config_from_spec, platform_from_spec
    from orchbench.core.spec import load_spec

    spec = load_spec(REPO / "specs" / "seed.yaml")
    cfg = config_from_spec(spec)
    assert cfg.namespace == "seldon" and cfg.ready_timeout_s == 900
    assert cfg.loadtester_nodes.labels == {ROLE_LABEL: "loadtester"} and not cfg.loadtester_nodes.names
    assert cfg.model_nodes.labels == {ROLE_LABEL: "model"}
    # `Script(..., **loadtester_placement(spec))`, as pipelines/benchmark.py writes it.
    built = Container(name="load", image="img", **loadtester_placement(spec))._build_template()
    assert built.node_selector == {ROLE_LABEL: "loadtester"}
    assert built.tolerations is not None and built.tolerations[0].key == "loadtester"
    assert dict(steps_placement(spec)).keys() == {"tolerations"}
    with pytest.raises(ConfigError, match="kubeconfig /nonexistent"):
        platform_from_spec(spec, kubeconfig="/nonexistent/kubeconfig")


def test_teardown_with_a_record_rebuilt_from_the_name_alone(
    tmp_path: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    # steps/teardown.py's cleanup rebuilds records as {"namespace": ...} when no record file exists.
    # (The emulator stores each CRD version apart, so this deploys v1, the version a bare record uses;
    # a real API server serves the same object under every version of the CRD.)
    manifest = load_manifest(MANIFEST)
    manifest["apiVersion"] = f"{GROUP}/v1"
    p = make_platform(api)
    rec = p.deploy(manifest, "without", tmp_path / "r.json")
    bare = DeploymentRecord("kubernetes", rec.name, "rest", "without", "", {"namespace": NS})
    assert get_sdep(custom, "v1", rec.name) is not None
    p.teardown(bare)
    assert get_sdep(custom, "v1", rec.name) is None
    assert p.endpoint(bare).port == 9000


def test_platform_from_spec_with_a_kubeconfig(
    tmp_path: Path, cluster: EmulatedCluster, core: client.CoreV1Api
) -> None:
    """The factory path the steps use outside a pod: a kubeconfig file (here: the emulator's)."""
    from orchbench.core.platform.kubernetes import platform_from_spec
    from orchbench.core.spec import load_spec

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emu",
                "clusters": [{"name": "emu", "cluster": {"server": cluster.host}}],
                "users": [{"name": "emu", "user": {"token": "t"}}],
                "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
            }
        )
    )
    make_node(core, "lt", labels={ROLE_LABEL: "loadtester"})
    make_node(core, "m1", labels={ROLE_LABEL: "model"})
    p = platform_from_spec(load_spec(REPO / "specs" / "seed.yaml"), kubeconfig=kubeconfig)
    assert {n: r["taint"] for n, r in p.taint().items()} == {
        "lt": "loadtester=active:NoSchedule",
        "m1": "model=active:NoSchedule",
    }
    p.untaint()
    assert taints_of(core, "lt") == taints_of(core, "m1") == []
    assert node(core, "lt")["metadata"]["labels"][ROLE_LABEL] == "loadtester"  # the user's label stays


def test_a_run_never_replaces_or_deletes_another_runs_deployment(
    cluster: EmulatedCluster, tmp_path: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    """Two experiments on one cluster: run A's deployment carries A's workflow uid; run B may not
    replace it (one line, nothing deleted) and B's clean-up leaves it alone; A's own teardown works."""
    a, b = make_platform(api), make_platform(api)
    a.owner, b.owner = "uid-a", "uid-b"
    manifest = load_manifest(MANIFEST)
    manifest["apiVersion"] = (
        f"{GROUP}/v1"  # the version a rebuilt record uses (the emulator keeps each apart)
    )
    rec = a.deploy(manifest, "with", tmp_path / "a.json")
    live = get_sdep(custom, "v1", rec.name)
    assert live is not None and live["metadata"]["labels"]["orchbench.io/owner"] == "uid-a"
    with pytest.raises(PlatformError) as info:
        b.deploy(manifest, "with", tmp_path / "b.json")
    msg = str(info.value)
    assert "\n" not in msg and "another orchbench run (workflow uid-a)" in msg and "not replaced" in msg
    assert not cluster.requests_matching("DELETE", f"/{PLURAL}/{rec.name}")
    # B's exit handler rebuilds a record from the name alone and tears down: A's object stays
    rebuilt = DeploymentRecord("kubernetes", rec.name, "rest", "with", "", {"namespace": NS})
    b.teardown(rebuilt)
    assert get_sdep(custom, "v1", rec.name) is not None
    assert not cluster.requests_matching("DELETE", f"/{PLURAL}/{rec.name}")
    a.teardown(rebuilt)  # the owner's own clean-up, from the name alone too
    assert get_sdep(custom, "v1", rec.name) is None


def test_the_workflow_passes_its_uid_to_deploy_and_teardown_on_a_cluster() -> None:
    wf = compile_dict(load_spec(REPO / "specs" / "seed.yaml"))
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    for task in dag:
        if task["name"].startswith(("deploy-", "teardown-")):
            params = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
            assert params["owner"] == "{{workflow.uid}}", task["name"]
