"""KubernetesPlatform's taints, node selection and placement, against kmock's KubernetesEmulator over real
HTTP (tests/k8s_emulator.py).

The tests play the cluster's other actors through the same API: the Seldon operator (patching
`status.state`, creating pods with or without the executor container), the kubelet (marking pods Ready)
and the garbage collector (deleting pods after their deployment). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.errors import ConfigError, PlatformError
from orchbench.core.manifest import load_manifest
from orchbench.core.platform.base import Platform
from orchbench.core.platform.k8s_common import (
    ROLE_LABEL,
    TAINT_ANNOTATION,
    TAINT_OWNERS_ANNOTATION,
    KubernetesConfig,
    NodeSelection,
    Taint,
)
from orchbench.core.platform.k8s_placement import ensure_model_placement
from orchbench.core.platform.kubernetes import (
    KubernetesPlatform,
    loadtester_placement,
    steps_placement,
)
from orchbench.core.spec import load_spec
from pipelines.benchmark import compile_dict
from tests import k8s_helpers, k8s_seldon
from tests.k8s_seldon import (
    MANIFEST,
    REPO,
    config,
    make_node,
    make_platform,
    node,
    taints_of,
    three_nodes,
)

pytestmark = pytest.mark.timeout(30)

#: The cluster and its client fixtures (tests/k8s_seldon.py, tests/k8s_helpers.py), collected by pytest
#: as this module's own.
cluster = k8s_seldon.cluster
api, core, custom = k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom


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
