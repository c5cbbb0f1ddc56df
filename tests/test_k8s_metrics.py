"""The hop's CPU and memory on a cluster, the pure parts: which containers each arm's hop is (k8s_hops),
the metrics API's quantities and durations, the integration of rates over the measured window
(k8s_metrics), the load step's `records` wiring in the compiled workflow, and the figures in the
stages table. Against kmock's emulator: tests/test_k8s_metrics_cluster.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_records import REPO, kserve, seldon2, seldon_v1

from orchbench.core.platform.k8s_hops import arm_containers
from orchbench.core.platform.k8s_metrics import Reading, integrate, parse_duration, parse_time, readings

MI = 1024 * 1024


def _r(pod: str, ts: float, window: float, cpu: float, mem_mb: float = 0.0, poll: int = 0) -> Reading:
    return Reading(pod, ts, window, cpu, int(mem_mb * MI), ("c",), poll)


# --- quantities, durations, timestamps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("1m0.5s", 60.5), ("500ms", 0.5), ("0s", 0.0), ("1h2m3s", 3723.0), ("14.5s", 14.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "s", "15x", "1m 5s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_rfc3339_timestamps() -> None:
    assert parse_time("1970-01-01T00:01:40Z") == 100.0
    with pytest.raises(ValueError):
        parse_time("1970-01-01T00:01:40")  # no zone: ambiguous


def test_pod_metrics_items_parse_with_the_clients_quantities() -> None:
    """usage.cpu "12345678n" + "5m" cores, usage.memory "1234Ki" + "1Mi"; the chosen containers only;
    an item labelled for another selector or malformed is no reading."""
    hop = arm_containers(seldon_v1("with"), "without").sets[0]
    item = {
        "metadata": {"name": "p1", "labels": {"seldon-deployment-id": "flowers-rest-with"}},
        "timestamp": "1970-01-01T00:01:40Z",
        "window": "15s",
        "containers": [
            {"name": "seldon-container-engine", "usage": {"cpu": "12345678n", "memory": "1234Ki"}},
            {"name": "flowers", "usage": {"cpu": "900m", "memory": "1Gi"}},
        ],
    }
    other = {**item, "metadata": {"name": "p2", "labels": {"seldon-deployment-id": "elsewhere"}}}
    broken = {**item, "metadata": {"name": "p3"}, "window": "soon"}
    (got,) = readings([item, other, broken], hop, poll=3)
    assert got.pod == "p1" and got.containers == ("seldon-container-engine",)
    assert got.timestamp == 100.0 and got.window_s == 15.0 and got.poll == 3
    assert got.cpu_cores == pytest.approx(0.012345678)
    assert got.memory_bytes == 1234 * 1024


# --- the integration ----------------------------------------------------------------------------------


def test_100m_for_10_s_is_one_cpu_second() -> None:
    got = integrate([_r("p", 105, 5, 0.1, 64), _r("p", 110, 5, 0.1, 80, poll=1)], 100.0, 110.0)
    assert got is not None
    assert got["cpu_s"] == pytest.approx(1.0)
    assert got["cpu_utilisation"] == pytest.approx(0.1)
    assert got["samples"] == 2 and got["basis"] == "inside" and got["source"] == "metrics-api"
    assert got["peak_rss_mb"] == pytest.approx(80.0)


def test_edge_readings_are_left_out_when_whole_readings_lie_inside() -> None:
    """Window [100, 140], 15 s readings: (85, 100] is before it, (100, 115] and (115, 130] inside at
    200m, (130, 145] straddles the end and reads 50m (idle after k6 stopped): 0.2 x 40 s = 8 CPU s."""
    rs = [_r("p", 100, 15, 0.9), _r("p", 115, 15, 0.2), _r("p", 130, 15, 0.2), _r("p", 145, 15, 0.05)]
    got = integrate(rs, 100.0, 140.0)
    assert got is not None
    assert got["cpu_s"] == pytest.approx(8.0) and got["samples"] == 2 and got["basis"] == "inside"


def test_a_window_shorter_than_a_reading_falls_back_to_the_overlap() -> None:
    """Window [100, 110] and one reading (100, 115] of 300m: 0.3 x 10 s, said to rest on edges."""
    got = integrate([_r("p", 115, 15, 0.3)], 100.0, 110.0)
    assert got is not None
    assert got["cpu_s"] == pytest.approx(3.0) and got["basis"] == "edges" and got["samples"] == 1


def test_a_reading_seen_by_several_polls_counts_once_and_overlaps_are_clipped() -> None:
    """The same reading in three polls is one reading; a 15 s window reported every 10 s overlaps the
    previous one by 5 s, which is not counted twice (it does not change a constant rate)."""
    rs = [_r("p", 110, 10, 0.4, poll=k) for k in range(3)] + [_r("p", 120, 15, 0.4, poll=3)]
    got = integrate(rs, 100.0, 120.0)
    assert got is not None
    assert got["samples"] == 2 and got["cpu_s"] == pytest.approx(8.0)


def test_pods_add_up_and_a_pod_that_came_mid_window_counts_from_then() -> None:
    """Window [0, 60]: pod a at 100m throughout (6 CPU s), pod b (a new replica) read from 30 s on at
    100m (3 CPU s); memory peaks at the poll where both are largest together."""
    a = [_r("a", t, 15, 0.1, 100, poll=k) for k, t in enumerate((15, 30, 45, 60))]
    b = [_r("b", 45, 15, 0.1, 50, poll=2), _r("b", 60, 15, 0.1, 70, poll=3)]
    got = integrate(a + b, 0.0, 60.0)
    assert got is not None
    assert got["cpu_s"] == pytest.approx(9.0) and got["pods"] == ["a", "b"]
    assert got["peak_rss_mb"] == pytest.approx(170.0)


def test_nothing_in_or_across_the_window_is_no_figure() -> None:
    assert integrate([_r("p", 50, 15, 0.1)], 100.0, 110.0) is None
    assert integrate([], 100.0, 110.0) is None
    assert integrate([_r("p", 105, 5, 0.1)], 110.0, 110.0) is None


# --- which containers are each arm's hop -------------------------------------------------------------


def _sets(record: dict[str, Any], baseline: str, base: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    got = arm_containers(record, baseline, base)
    return [(s.selector, list(s.containers) or None, list(s.exclude)) for s in got.sets]


def test_seldon_v1_the_executor_container_and_the_baselines_model() -> None:
    base = seldon_v1("without")
    assert _sets(seldon_v1("with"), "without", base) == [
        ("seldon-deployment-id=flowers-rest-with", ["seldon-container-engine"], [])
    ]
    model = arm_containers(base, "without", base)
    assert model.role == "model" and not model.shared
    assert _sets(base, "without", base) == [
        ("seldon-deployment-id=flowers-rest-without", None, ["seldon-container-engine", "istio-proxy"])
    ]


def test_kserve_queue_proxy_the_graph_router_and_what_lies_outside_the_namespace() -> None:
    base = kserve("raw")
    assert _sets(base, "raw", base) == [
        ("serving.kserve.io/inferenceservice=sklearn-iris-rest-raw", ["kserve-container"], [])
    ]
    serverless = arm_containers(kserve("serverless"), "raw", base)
    assert _sets(kserve("serverless"), "raw", base) == [
        ("serving.kserve.io/inferenceservice=sklearn-iris-rest-serverless", ["queue-proxy"], [])
    ]
    assert serverless.unsampled == ("knative-local-gateway",) and serverless.role == "hop"
    assert _sets(kserve("graph"), "raw", base) == [
        ("serving.kserve.io/inferencegraph=sklearn-iris-rest-graph", None, ["istio-proxy"])
    ]
    activator = arm_containers(kserve("serverless", activator=True), "raw", base)
    assert activator.unsampled == ("knative-activator", "knative-local-gateway")
    # a graph over a Knative backend, against the raw baseline: the router and the backend's queue-proxy
    graph = kserve("graph", arms=("raw", "graph"), graph_backend="serverless")
    assert _sets(graph, "raw", base) == [
        ("serving.kserve.io/inferencegraph=sklearn-iris-rest-graph", None, ["istio-proxy"]),
        ("serving.kserve.io/inferenceservice=sklearn-iris-rest-graph-model", ["queue-proxy"], []),
    ]


def test_seldon2_envoy_and_the_agent_for_mesh_and_the_shared_server_for_direct() -> None:
    base = seldon2("direct")
    assert _sets(seldon2("mesh"), "direct", base) == [
        ("seldon-server-name=mlserver", ["agent"], []),
        ("app.kubernetes.io/name=seldon-envoy", None, ["istio-proxy"]),
    ]
    model = arm_containers(base, "direct", base)
    assert model.role == "model" and model.shared  # every Model on the Server: the mesh arm's too
    assert _sets(base, "direct", base) == [
        ("seldon-server-name=mlserver", None, ["agent", "rclone", "istio-proxy"])
    ]


def test_an_istio_sidecar_hop_is_sampled_in_each_of_the_arms_pods() -> None:
    rec = kserve("graph")
    rec["details"]["target"]["hops"] = [*rec["details"]["target"]["hops"], "istio-proxy"]
    sets = _sets(rec, "raw", kserve("raw"))
    assert ("serving.kserve.io/inferencegraph=sklearn-iris-rest-graph", ["istio-proxy"], []) in sets
    assert ("serving.kserve.io/inferenceservice=sklearn-iris-rest-graph-model", ["istio-proxy"], []) in sets


def test_an_arm_with_no_container_of_its_own_says_why() -> None:
    rec = kserve("serverless")
    rec["details"]["target"]["hops"] = ["knative-local-gateway", "model"]
    got = arm_containers(rec, "raw", kserve("raw"))
    assert not got.sets and "no container in namespace models" in got.reason


def test_cluster_stage_tasks_get_the_deploy_records_in_their_arm_order(tmp_path: Path) -> None:
    from orchbench.core.spec import load_spec
    from pipelines.benchmark import compile_dict

    seed = yaml.safe_load((REPO / "specs" / "seed.yaml").read_text())
    seed["manifest"] = str(REPO / "manifests" / "tf_flowers.yaml")
    seed["payloads"] = {
        t: str(REPO / "payloads" / f) for t, f in (("rest", "flowers.json"), ("grpc", "flowers.bin"))
    }
    seed["load"] = {
        "tool": "k6",
        "interleave": "request",
        "stages": {"rates": [5, 10]},
        "duration_s": 10,
        "warmup_s": 2,
        "timeout_s": 10,
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(seed))
    wf = compile_dict(load_spec(tmp_path / "spec.yaml"))
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    loads = [t for t in dag if t["name"].startswith("load-")]
    assert len(loads) == 2 * 2 * seed["blocks"]  # transports x stages x blocks
    for task in loads:
        args = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        order = [e.split("wait-", 1)[1].split(".", 1)[0] for e in args["endpoints"].split("tasks.")[1:]]
        recs = [r.split("deploy-", 1)[1].split(".", 1)[0] for r in args["records"].split("tasks.")[1:]]
        assert recs == order and len(order) == 2
        assert all(".outputs.parameters.record}}" in r for r in args["records"].split("tasks.")[1:])
    template = next(t for t in wf["spec"]["templates"] if t["name"] == "loadtest-stage")
    assert {"name": "records", "default": ""} in template["inputs"]["parameters"]
    schema_path = REPO.parent / "shared" / "argo" / "workflow-schema-v4.1.json"
    if schema_path.exists():  # what Argo itself accepts (as tests/test_pipelines_golden.py checks)
        import jsonschema

        definitions = json.loads(schema_path.read_text())["definitions"]
        ref = {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow", "definitions": definitions}
        jsonschema.Draft202012Validator(ref).validate(wf)


# --- the figures reach the stages table ---------------------------------------------------------------


def _k8s_block(arm: str, block: int, resources: dict[str, Any]) -> Any:
    import numpy as np
    import pandas as pd

    from orchbench.core.analysis import Block
    from results_schema.summary import ToolSummary

    n = 41  # 20 req/s over a 2 s window, both ends
    frame = pd.DataFrame(
        {
            "seq": np.arange(n, dtype="int64"),
            "ts_ns": 1_700_000_000 * 10**9 + block * 10**10 + np.arange(n, dtype="int64") * 50_000_000,
            "latency_ns": np.full(n, 10_000_000 if arm == "without" else 11_000_000, dtype="int64"),
            "status": ["200"] * n,
            "ok": [True] * n,
            "phase": ["measure"] * n,
            "error": [""] * n,
        }
    )
    meta = {
        "experiment": "x",
        "transport": "rest",
        "arm": arm,
        "block": block,
        "stage_id": "rate-20",
        "stage_kind": "rate",
        "stage_value": 20.0,
        "generator": 0,
        "generators": 1,
        "measured_s": 2.0,
        "dropped_iterations": 0,
        "generator_cpu": {"utilisation": 0.2, "cores": 1},
        "resources": resources,
        "profile": {"mode": "open", "rate": 20.0, "duration_s": 2.0, "warmup_s": 1},
    }
    return Block(meta, ToolSummary("k6", "x", requests=n, successes=n), frame, f"rate-20-b{block}/{arm}")


def test_metrics_api_figures_reach_the_stages_table_and_absent_ones_say_why() -> None:
    from orchbench.core import stage_analysis as sa
    from orchbench.core.spec import parse_spec

    spec = parse_spec(
        {
            "name": "x",
            "platform": "kubernetes",
            "manifest": str(REPO / "manifests" / "tf_flowers.yaml"),
            "payloads": {"rest": str(REPO / "payloads" / "flowers.json")},
            "transports": ["rest"],
            "blocks": 2,
            "load": {"tool": "k6", "interleave": "request", "stages": {"rates": [20]}, "duration_s": 2},
        }
    )
    hop = {"source": "metrics-api", "cpu_s": 0.3, "peak_rss_mb": 42.0, "samples": 3, "role": "hop"}
    gone = {"source": "absent", "reason": "no metrics API on this cluster (...)"}
    blocks = [_k8s_block(a, b, hop if a == "with" else gone) for b in range(2) for a in ("without", "with")]
    res = sa.stage_result(spec, spec.stage_plan()[0], blocks, "rest")
    assert res["arms"]["with"]["cpu_ms_per_1000"] == pytest.approx(2 * 0.3 * 1e6 / (2 * 41))
    assert res["arms"]["with"]["peak_rss_mb"] == 42.0
    assert res["arms"]["without"]["cpu_ms_per_1000"] is None and res["arms"]["without"]["peak_rss_mb"] is None
    assert res["resources_note"].startswith("from the metrics API")
    assert res["resources_note"].endswith("absent: without: no metrics API on this cluster (...)")
