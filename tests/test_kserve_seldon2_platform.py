"""KServePlatform and Seldon2Platform together against kmock's emulator (tests/k8s_emulator.py): the
RBAC manifest grants exactly the calls they make, each in its kind's namespace, and each refuses the
other's records. One kind alone: tests/test_kserve_platform.py, tests/test_seldon2_platform.py.
The tests play the cluster's side through the API (tests/k8s_helpers.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import EmulatedCluster
from kubernetes import client

from orchbench.core.errors import ConfigError, DeployTimeout
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.kserve import KServePlatform
from tests import k8s_helpers
from tests.k8s_helpers import (
    ENVOY_LABELS,
    KSERVE,
    MLOPS,
    NS,
    REPO,
    Actor,
    collect_pods,
    config,
    isvc_manifest,
    kserve,
    make_pod,
    model_manifest,
    play_kserve,
    rbac_documents,
    rbac_grants,
    seldon2,
    server_pod,
    set_ready,
)

#: The emulated cluster's fixtures (tests/k8s_helpers.py), collected by pytest as this module's own.
cluster, api, core, custom = k8s_helpers.cluster, k8s_helpers.api, k8s_helpers.core, k8s_helpers.custom

pytestmark = pytest.mark.timeout(60)


def test_records_of_other_platforms_are_refused(api: client.ApiClient) -> None:
    rec = DeploymentRecord("kubernetes", "x", "rest", "with", "m", {"namespace": NS})
    with pytest.raises(ConfigError, match="is for platform 'kubernetes', not kserve"):
        kserve(api).teardown(rec)
    with pytest.raises(ConfigError, match="not seldon2"):
        seldon2(api).teardown(rec)
    with pytest.raises(ConfigError, match="needs an API client"):
        KServePlatform(config())


# --- RBAC ------------------------------------------------------------------------------------------

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
NEW_KINDS = {(KSERVE, "inferenceservices"), (KSERVE, "inferencegraphs"), (MLOPS, "models")}


def _rules() -> dict[str, list[dict[str, Any]]]:
    """Rules granted to argo/orchbench, keyed by "cluster" or the namespace of the RoleBinding."""
    return rbac_grants(rbac_documents())


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
    "kserve": {
        (KSERVE, "inferenceservices"),
        (KSERVE, "inferencegraphs"),
        ("", "pods"),
        ("", "events"),
        ("metrics.k8s.io", "pods"),
    },
    "seldon2": {(MLOPS, "models"), ("", "pods"), ("", "events"), ("metrics.k8s.io", "pods")},
}


def _sample_metrics(api: client.ApiClient, record: DeploymentRecord, baseline: str) -> None:
    """What the load step asks the metrics API about an arm (k8s_metrics_window: one list per pod
    selector); the emulator serves no metrics API, so each call is answered 404."""
    from orchbench.core.platform.k8s_hops import arm_containers
    from orchbench.core.platform.k8s_metrics import MetricsUnavailable, PodMetricsSource

    source = PodMetricsSource(api)
    for chosen in arm_containers(dataclasses.asdict(record), baseline).sets:
        with pytest.raises(MetricsUnavailable):
            source.list(NS, chosen.selector)


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
        actor = Actor(functools.partial(play_kserve, custom, core, rec, graph_delay_s=0.3), 0.3)
        p.verify_arm(rec, p.wait(rec, timeout_s=5))
        actor.join()
        _sample_metrics(api, rec, "raw")
        gc = Actor(functools.partial(collect_pods, core, rec), 0.3)
        p.teardown(rec)
        gc.join()
        p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")
        p.deploy(isvc_manifest(), arm, tmp_path / f"{arm}.json")  # replace: owner check, delete, create
        with pytest.raises(DeployTimeout):
            p.wait(rec, timeout_s=0.3)  # reads events
    assert kserve(api, owner="uid-1").cleanup_owned("uid-1")
    assert _calls(cluster, "kserve-under-test") == _granted(rules[ROLE_NAMESPACES["kserve"]])
    server_pod(core, ready=False)  # Ready once the first Model is: wait watches the pods
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
        _sample_metrics(api, rec, "direct")
        s.teardown(rec)
        rec = s.deploy(model_manifest(), arm, tmp_path / f"{arm}.json")
        with pytest.raises(DeployTimeout):
            s.wait(rec, timeout_s=0.3)  # reads events
    assert seldon2(api, owner="uid-1").cleanup_owned("uid-1")
    assert _calls(cluster, "seldon2-under-test") == _granted(rules[ROLE_NAMESPACES["seldon2"]])
