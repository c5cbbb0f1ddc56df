"""The KServe and Seldon Core v2 workflows as compiled (no cluster): the workflow uid each deploy,
teardown and cleanup task is given as `owner` (which tests/test_k8s_custom_steps.py passes the steps
by hand), and both transports' wiring with the gRPC payload.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from orchbench.core.spec import load_spec
from pipelines.benchmark import compile_dict

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(90)


def test_the_workflow_passes_its_uid_to_deploy_teardown_and_cleanup() -> None:
    for name in ("kserve", "seldon2"):
        wf = compile_dict(load_spec(REPO / "specs" / f"{name}.yaml"))
        templates = {t["name"]: t for t in wf["spec"]["templates"]}
        tasks = templates["benchmark"]["dag"]["tasks"] + templates["exit-handler"]["dag"]["tasks"]
        owned = [t for t in tasks if t["name"].startswith(("deploy-", "teardown-", "cleanup"))]
        spec = load_spec(REPO / "specs" / f"{name}.yaml")
        assert len(owned) == 2 * len(spec.arm_names()) * len(spec.transports) + 1
        for task in owned:
            params = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
            assert params["owner"] == "{{workflow.uid}}", (name, task["name"])


# --- gRPC in the compiled workflow -----------------------------------------------------------------

ARGO_SCHEMA = REPO.parent / "shared" / "argo" / "workflow-schema-v4.1.json"


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("seldon2", {}),
        # The InferenceGraph router serves HTTP only: a gRPC KServe spec compares raw and serverless.
        ("kserve", {"arms": [{"name": "raw", "baseline": True}, {"name": "serverless"}]}),
    ],
)
def test_both_transports_compile_with_the_grpc_payload_and_wiring(
    name: str, overrides: dict[str, Any]
) -> None:
    from tritonclient.grpc import service_pb2

    spec = load_spec(REPO / "specs" / f"{name}.yaml").with_overrides(
        {"transports": ["rest", "grpc"], "payloads.grpc": "../payloads/iris_v2.bin", **overrides}
    )
    wf = compile_dict(spec)
    if ARGO_SCHEMA.exists():
        jsonschema = pytest.importorskip("jsonschema")
        schema = json.loads(ARGO_SCHEMA.read_text())
        sub = {
            "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
            "definitions": schema["definitions"],
        }
        jsonschema.Draft202012Validator(sub).validate(wf)
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates["benchmark"]["dag"]["tasks"]}
    arms = spec.arm_names()
    for arm in arms:
        params = {p["name"]: p["value"] for p in tasks[f"deploy-grpc-{arm}"]["arguments"]["parameters"]}
        assert params["transport"] == "grpc" and params["owner"] == "{{workflow.uid}}"
    loads = [t for n, t in tasks.items() if n.startswith("load-grpc-")]
    assert len(loads) == spec.blocks
    for task in loads:  # each block's k6 gets every arm's endpoint from its gRPC wait task
        params = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        for arm in arms:
            assert f"{{{{tasks.wait-grpc-{arm}.outputs.parameters.endpoint}}}}" in params["endpoints"]
    raw = {a["name"]: a for a in templates[loads[0]["template"]]["inputs"]["artifacts"]}
    request = service_pb2.ModelInferRequest.FromString(base64.b64decode(raw["payload-grpc"]["raw"]["data"]))
    assert [i.name for i in request.inputs] == ["predict"]


def test_the_grpc_iris_payload_is_the_rest_payloads_tensor() -> None:
    from tritonclient.grpc import service_pb2

    body = json.loads((REPO / "payloads" / "iris_v2.json").read_text())["inputs"][0]
    request = service_pb2.ModelInferRequest.FromString((REPO / "payloads" / "iris_v2.bin").read_bytes())
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == (
        body["name"],
        body["datatype"],
        body["shape"],
    )
    flat = [v for row in body["data"] for v in row]
    assert list(tensor.contents.fp32_contents) == pytest.approx(flat)
