"""The Open Inference Protocol ("v2") of the local model server: parsing, payloads, answer checks, and
REST and gRPC against the real server (both gRPC implementations), protocol mismatches refused."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor
from tritonclient.grpc import service_pb2

from orchbench.core import loadtools
from orchbench.core.loadtools.protoset import _walk
from orchbench.core.paths import PAYLOADS
from serving import payloads, v2, v2_server
from serving.client import HttpClient
from serving.model import decode_image
from serving.protos import BadRequestError
from tests.hop_helpers import GrpcAnswer, ModelServer, grpc_call, model_server

V2_JSON = (PAYLOADS / "flowers_v2.json").read_bytes()
V2_BIN = (PAYLOADS / "flowers_v2.bin").read_bytes()
TF_JSON = (PAYLOADS / "flowers.json").read_bytes()
TF_BIN = (PAYLOADS / "flowers.bin").read_bytes()
PREDICT = "/tensorflow.serving.PredictionService/Predict"
METHOD = "/inference.GRPCInferenceService/"


def _tf_image() -> bytes:
    return base64.b64decode(json.loads(TF_JSON)["instances"][0]["image_bytes"]["b64"])


# --------------------------------------------------------------------------------------------------
# Payloads and parsing (no server)


def test_v2_payloads_are_the_same_photo_as_the_tf_ones() -> None:
    doc = json.loads(V2_JSON)
    assert doc["id"] == "1"
    (t,) = doc["inputs"]
    assert (t["name"], t["datatype"], t["shape"]) == ("image_bytes", "BYTES", [1])
    rest = v2.parse_rest_infer(V2_JSON)
    grpc_req = v2.parse_infer_request(V2_BIN)
    assert rest.image == grpc_req.image == _tf_image()
    assert decode_image(rest.image).shape == (1, 224, 224, 3)
    assert (grpc_req.model_name, grpc_req.id, rest.id) == ("flowers", "1", "1")
    msg = service_pb2.ModelInferRequest.FromString(V2_BIN)
    assert msg.inputs[0].datatype == "BYTES" and list(msg.inputs[0].shape) == [1]


def test_regenerating_gives_identical_v2_bytes(tmp_path) -> None:
    if payloads.jpeg_encoder_version() != payloads.GENERATED_WITH["libjpeg_turbo"]:
        pytest.skip("JPEG encoder differs from the one the payloads were made with; bytes may differ")
    payloads.main(["--out", str(tmp_path)])
    for name in ("flowers_v2.json", "flowers_v2.bin", "flowers.json", "flowers.bin"):
        assert (tmp_path / name).read_bytes() == (PAYLOADS / name).read_bytes(), name


def _body(**tensor: object) -> bytes:
    base = {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["/9j/"]}
    return json.dumps({"inputs": [{**base, **tensor}]}).encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (TF_JSON, "TF-Serving predict body"),
        (b"{nope", "JSON parse error"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "list of one tensor"),
        (_body(name="image"), "unexpected input 'image'"),
        (_body(datatype="FP32"), "datatype BYTES"),
        (_body(shape=[2]), "shape [1]"),
        (_body(data=["a", "b"]), "exactly one element"),
        (_body(data=["%%%"]), "base64"),
        (_body(data=[7]), "base64 string"),
        (_body(parameters={"content_type": "str"}), "content_type 'str'"),
        (json.dumps({"id": 5, "inputs": json.loads(V2_JSON)["inputs"]}).encode(), "'id'"),
        (json.dumps({"inputs": json.loads(V2_JSON)["inputs"], "outputs": [{"name": "x"}]}).encode(), "'x'"),
    ],
)
def test_bad_rest_requests_say_what_is_wrong(body: bytes, words: str) -> None:
    with pytest.raises(BadRequestError, match=None) as err:
        v2.parse_rest_infer(body)
    assert words in str(err.value)


def test_grpc_request_parsing_takes_raw_input_contents_and_refuses_a_predict_request() -> None:
    image = _tf_image()
    req = service_pb2.ModelInferRequest(model_name="flowers", id="7")
    req.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    req.raw_input_contents.append(struct.pack("<I", len(image)) + image)  # Triton's BYTES layout
    got = v2.parse_infer_request(req.SerializeToString())
    assert got.image == image and got.id == "7"
    req.raw_input_contents[0] = b"\x05\x00"
    with pytest.raises(BadRequestError, match="truncated"):
        v2.parse_infer_request(req.SerializeToString())
    with pytest.raises(BadRequestError):
        v2.parse_infer_request(TF_BIN)
    with pytest.raises(BadRequestError, match="model_name is empty"):
        v2.parse_infer_request(b"")


def test_paths() -> None:
    R = v2_server.Route
    assert v2_server.parse_path("/v2/models/flowers/infer") == R("infer", "flowers", None)
    assert v2_server.parse_path("/v2/models/flowers/versions/1/infer") == R("infer", "flowers", "1")
    assert v2_server.parse_path("/v2/models/flowers/ready") == R("model_ready", "flowers", None)
    assert v2_server.parse_path("/v2/models/flowers") == R("model_metadata", "flowers", None)
    assert v2_server.parse_path("/v2/health/ready") == R("ready")
    assert v2_server.parse_path("/v2") == R("server_metadata")
    for bad in (
        "/v1/models/flowers:predict",
        "/v2x",
        "/v2/models",
        "/v2/models//infer",
        "/v2/models/f/predict",
    ):
        assert v2_server.parse_path(bad) is None, bad


def test_answer_checks_refuse_what_a_load_tester_must_not_count() -> None:
    with pytest.raises(v2.BadAnswerError, match="HTTP 400"):
        v2.check_rest_answer(400, b'{"error":"x"}')
    with pytest.raises(v2.BadAnswerError, match="not a v2 inference answer"):
        v2.check_rest_answer(200, b'{"predictions":[{"scores":[1]}]}')
    with pytest.raises(v2.BadAnswerError, match="gRPC status INVALID_ARGUMENT"):
        v2.check_grpc_answer(grpc.StatusCode.INVALID_ARGUMENT, b"")
    with pytest.raises(v2.BadAnswerError, match="without scores and prediction"):
        v2.check_grpc_answer(0, service_pb2.ModelInferResponse(model_name="flowers").SerializeToString())


# --------------------------------------------------------------------------------------------------
# Against the real model server


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with model_server() as s:
        yield s


def _http(server: ModelServer, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    assert server.rest_port is not None
    with HttpClient("127.0.0.1", server.rest_port, timeout_s=20) as c:
        r = c.request(method, path, body)
    return r.status, r.body


@pytest.mark.slow
def test_rest_infer_answers_the_top5_like_the_tf_path(server: ModelServer) -> None:
    status, body = _http(server, "POST", "/v2/models/flowers/infer", V2_JSON)
    answer = v2.check_rest_answer(status, body, top_class=v2.FLOWER_TOP_CLASS, request_id="1")
    doc = json.loads(body)
    assert (doc["model_name"], doc["model_version"]) == ("flowers", "1")
    assert [o["name"] for o in doc["outputs"]] == ["scores", "classes", "prediction", "label"]
    assert {o["name"]: o["shape"] for o in doc["outputs"]}["scores"] == [1, 5]
    tf = json.loads(_http(server, "POST", "/v1/models/flowers:predict", TF_JSON)[1])["predictions"][0]
    assert answer.prediction == tf["prediction"] and answer.classes[0] == tf["prediction"]
    assert answer.scores == pytest.approx(tf["scores"], rel=1e-6)
    assert doc["outputs"][3]["data"] == [tf["label"]]
    # a version path, and a request for one output only
    only = json.dumps({**json.loads(V2_JSON), "outputs": [{"name": "prediction"}]}).encode()
    status, body = _http(server, "POST", "/v2/models/flowers/versions/1/infer", only)
    assert status == 200 and [o["name"] for o in json.loads(body)["outputs"]] == ["prediction"]


@pytest.mark.slow
def test_rest_health_metadata_and_errors(server: ModelServer) -> None:
    assert _http(server, "GET", "/v2/health/ready")[0] == 200
    assert _http(server, "GET", "/v2/health/live")[0] == 200
    assert _http(server, "GET", "/v2/models/flowers/ready")[0] == 200
    meta = json.loads(_http(server, "GET", "/v2/models/flowers")[1])
    assert meta["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": [1]}]
    for method, path, body, status, words in [
        ("GET", "/v2/models/other/ready", b"", 404, "not found"),
        ("POST", "/v2/models/other/infer", V2_JSON, 404, "not found"),
        ("POST", "/v2/models/flowers/versions/2/infer", V2_JSON, 404, "no version '2'"),
        ("GET", "/v2/models/flowers/infer", b"", 405, "use POST"),
        ("POST", "/v2/models/flowers/explain", V2_JSON, 404, "no such"),
        (
            "POST",
            "/v2/models/flowers/infer",
            b'{"inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","data":["aGVsbG8="]}]}',
            400,
            "not a decodable image",
        ),
    ]:
        got, answer = _http(server, method, path, body)
        assert got == status, (path, answer)
        assert words in json.loads(answer)["error"], answer


@pytest.mark.slow
def test_rest_protocol_mismatch_is_refused_both_ways(server: ModelServer) -> None:
    status, body = _http(server, "POST", "/v1/models/flowers:predict", V2_JSON)  # v2 body, TF path
    assert status == 400 and "instances" in json.loads(body)["error"]
    status, body = _http(server, "POST", "/v2/models/flowers/infer", TF_JSON)  # TF body, v2 path
    assert status == 400 and "TF-Serving predict body" in json.loads(body)["error"]


def _grpc_answers(target: str) -> dict[str, GrpcAnswer]:
    ok = grpc_call(target, METHOD + "ModelInfer", V2_BIN)
    return {
        "ok": ok,
        "tf": grpc_call(target, PREDICT, TF_BIN),
        "v2_to_tf": grpc_call(target, PREDICT, V2_BIN),
        "tf_to_v2": grpc_call(target, METHOD + "ModelInfer", TF_BIN),
        "unknown": grpc_call(
            target,
            METHOD + "ModelInfer",
            v2.make_infer_request("other", _tf_image()).SerializeToString(),
        ),
        "ready": grpc_call(target, METHOD + "ServerReady", b""),
        "model_ready": grpc_call(
            target, METHOD + "ModelReady", service_pb2.ModelReadyRequest(name="flowers").SerializeToString()
        ),
        "other_ready": grpc_call(
            target, METHOD + "ModelReady", service_pb2.ModelReadyRequest(name="other").SerializeToString()
        ),
    }


def _check_grpc_answers(a: dict[str, GrpcAnswer]) -> None:
    ok, tf = a["ok"], a["tf"]
    answer = v2.check_grpc_answer(ok.code, ok.body, top_class=v2.FLOWER_TOP_CLASS, request_id="1")
    from tensorflow_serving.apis import predict_pb2

    tf_resp = predict_pb2.PredictResponse.FromString(tf.body)
    assert answer.prediction == tf_resp.outputs["prediction"].int64_val[0]
    assert answer.scores == pytest.approx(list(tf_resp.outputs["scores"].float_val), rel=1e-6)
    resp = service_pb2.ModelInferResponse.FromString(ok.body)
    assert (resp.model_name, resp.model_version, resp.id) == ("flowers", "1", "1")
    assert [o.name for o in resp.outputs] == ["scores", "classes", "prediction", "label"]
    for key in ("v2_to_tf", "tf_to_v2"):
        assert a[key].code == grpc.StatusCode.INVALID_ARGUMENT, (key, a[key])
    assert "ModelInferRequest" in a["tf_to_v2"].details
    assert a["unknown"].code == grpc.StatusCode.NOT_FOUND
    assert service_pb2.ServerReadyResponse.FromString(a["ready"].body).ready
    assert service_pb2.ModelReadyResponse.FromString(a["model_ready"].body).ready
    assert not service_pb2.ModelReadyResponse.FromString(a["other_ready"].body).ready


@pytest.mark.slow
def test_grpc_model_infer_and_mismatches_on_the_h2_server(server: ModelServer) -> None:
    _check_grpc_answers(_grpc_answers(server.grpc))


@pytest.mark.slow
def test_grpcio_server_answers_v2_byte_for_byte_alike(server: ModelServer) -> None:
    with model_server("--grpc-server", "grpcio", rest=False) as other:
        answers = _grpc_answers(other.grpc)
    _check_grpc_answers(answers)
    assert answers["ok"].body == grpc_call(server.grpc, METHOD + "ModelInfer", V2_BIN).body


K6_SCRIPT = """
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { v2RestOk, v2GrpcOk, v2GrpcAnyOutput } from '__CHECKS__';

export const options = { iterations: 1, vus: 1 };
const cfg = JSON.parse(open(__ENV.CFG));
const body = open(cfg.payload, 'b');
const client = new grpc.Client();
client.loadProtoset(cfg.protoset);
const message = JSON.parse(open(cfg.request_json));
const params = { headers: { 'Content-Type': 'application/json' } };

export default function () {
  const r = http.post(cfg.rest + '/v2/models/flowers/infer', body, params);
  check(r, { 'rest ok': (x) => v2RestOk(x), 'rest top': (x) => v2RestOk(x, cfg.top) });
  check(r, { 'rest wrong top refused': (x) => !v2RestOk(x, cfg.top + 1) });
  const tf = http.post(cfg.rest + '/v1/models/flowers:predict', body, params);
  check(tf, { 'v2 body on the TF path refused': (x) => x.status === 400 && !v2RestOk(x) });
  client.connect(cfg.grpc, { plaintext: true });
  const g = client.invoke('inference.GRPCInferenceService/ModelInfer', message);
  check(g, { 'grpc ok': (x) => v2GrpcOk(x), 'grpc top': (x) => v2GrpcOk(x, cfg.top) });
  check(g, { 'grpc wrong top refused': (x) => !v2GrpcOk(x, cfg.top + 1) });
  check(g, { 'grpc any output': (x) => v2GrpcAnyOutput(x) });
  const other = Object.assign({}, message, { modelName: 'nope' });
  const none = client.invoke('inference.GRPCInferenceService/ModelInfer', other);
  check(none, {
    'grpc unknown model refused by any-output': (x) => x.status !== grpc.StatusOK && !v2GrpcAnyOutput(x),
  });
  client.close();
}
"""


@pytest.mark.slow
def test_k6_checks_pass_v2_answers_on_both_transports(server: ModelServer, tmp_path: Path) -> None:
    """orchbench/core/loadtools/k6_scripts/v2_checks.js, run by k6 against the model server."""
    k6 = shutil.which("k6") or os.path.join(os.path.dirname(sys.executable), "k6")
    if not os.path.exists(k6):
        pytest.skip("k6 is not installed")
    files: dict[str, FileDescriptor] = {}
    _walk(service_pb2.DESCRIPTOR, files)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in files.values():
        fd.CopyToProto(fds.file.add())
    (tmp_path / "v2.protoset").write_bytes(fds.SerializeToString())
    msg = service_pb2.ModelInferRequest.FromString(V2_BIN)
    (tmp_path / "req.json").write_text(json.dumps(json_format.MessageToDict(msg)))
    checks = Path(loadtools.__file__).parent / "k6_scripts" / "v2_checks.js"
    (tmp_path / "t.js").write_text(K6_SCRIPT.replace("__CHECKS__", checks.resolve().as_uri()))
    cfg = {
        "rest": f"http://{server.rest}",
        "grpc": server.grpc,
        "payload": str(PAYLOADS / "flowers_v2.json"),
        "protoset": str(tmp_path / "v2.protoset"),
        "request_json": str(tmp_path / "req.json"),
        "top": v2.FLOWER_TOP_CLASS,
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    summary = tmp_path / "summary.json"
    res = subprocess.run(
        [k6, "run", "--quiet", "--summary-export", str(summary), str(tmp_path / "t.js")],
        env={**os.environ, "CFG": str(tmp_path / "cfg.json"), "K6_NO_USAGE_REPORT": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(summary.read_text())["root_group"]["checks"]
    assert set(got) == {
        "rest ok",
        "rest top",
        "rest wrong top refused",
        "v2 body on the TF path refused",
        "grpc ok",
        "grpc top",
        "grpc wrong top refused",
        "grpc any output",
        "grpc unknown model refused by any-output",
    }
    assert {name: (c["passes"], c["fails"]) for name, c in got.items()} == {name: (1, 0) for name in got}
