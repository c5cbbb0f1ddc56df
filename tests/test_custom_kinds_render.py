"""The KServe and Seldon v2 renderings (kserve_render, seldon2_render) and the endpoints they give
(k8s_kinds.endpoint_dict): names, labels, owners, targets and hops per arm, and what they refuse.
No cluster."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.k8s_kinds import endpoint_dict
from orchbench.core.platform.kserve_render import KServeOptions, render_kserve
from orchbench.core.platform.seldon2_render import Seldon2Options, render_seldon2
from tests.k8s_helpers import NS, isvc_manifest, model_manifest

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
