"""KubernetesPlatform's calls on a real cluster, RBAC and what the pipeline
builder and steps call, against kmock's KubernetesEmulator over real
HTTP (tests/k8s_emulator.py).

The tests play the cluster's other actors through the same API: the Seldon operator (patching
`status.state`, creating pods with or without the executor container), the kubelet (marking pods Ready)
and the garbage collector (deleting pods after their deployment). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.errors import ConfigError, DeployTimeout, PlatformError
from orchbench.core.manifest import load_manifest
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import (
    ROLE_LABEL,
    KubernetesConfig,
)
from orchbench.core.platform.kubernetes import (
    KubernetesPlatform,
    loadtester_placement,
    steps_placement,
)
from orchbench.core.spec import load_spec
from pipelines.benchmark import compile_dict
from tests import k8s_helpers, k8s_seldon
from tests.k8s_helpers import Actor, rbac_documents, rbac_grants, rbac_roles
from tests.k8s_seldon import (
    GROUP,
    MANIFEST,
    NS,
    PLURAL,
    REPO,
    get_sdep,
    make_node,
    make_platform,
    make_pod,
    node,
    set_state,
    taints_of,
    three_nodes,
)

pytestmark = pytest.mark.timeout(30)

#: The cluster and its client fixtures (tests/k8s_seldon.py, tests/k8s_helpers.py), collected by pytest
#: as this module's own.
cluster = k8s_seldon.cluster
api, core, custom = k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom


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
    # `Script(..., **loadtester_placement(spec))`, as pipelines/templates.py writes it.
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

    kubeconfig = k8s_helpers.write_kubeconfig(tmp_path / "kubeconfig", cluster.host)
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
