"""The Open Inference Protocol ("v2", as KServe, MLServer and Triton speak it) for the flowers model:
request parsing, answers and the answer checks of the load-test side (the model server's routes and
handlers are in `serving.v2_server`).

REST  POST /v2/models/{m}[/versions/{v}]/infer
        {"id": "1", "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                "data": ["<base64 of the JPEG>"]}]}
      → {"model_name": "flowers", "model_version": "1", "id": "1", "outputs": [
           {"name": "scores", "datatype": "FP32", "shape": [1, 5], "data": [top-5 probabilities]},
           {"name": "classes", "datatype": "INT64", "shape": [1, 5], "data": [their class indices]},
           {"name": "prediction", "datatype": "INT64", "shape": [1], "data": [top-1 class]},
           {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["its name"]}]}
      GET /v2/health/live, /v2/health/ready, /v2/models/{m}[/versions/{v}]/ready: 200 (ready) or 404
      GET /v2 and /v2/models/{m}[/versions/{v}]: server and model metadata
gRPC  inference.GRPCInferenceService/ModelInfer (ServerLive, ServerReady, ModelReady, ServerMetadata,
      ModelMetadata too), the messages of `tritonclient.grpc.service_pb2` (the protocol's
      grpc_service.proto as NVIDIA's client package generates it).

The BYTES convention. JSON cannot carry binary, so in a REST request each element of a BYTES
tensor is the base64 text of the bytes (RFC 4648 standard alphabet, padded), as KServe's image
examples send them; a tensor may say so with `"parameters": {"content_type": "base64"}` (MLServer's
codec name), and any other content_type is refused. In REST answers the one BYTES output, `label`, is
plain UTF-8 text. gRPC carries bytes as bytes: the request's image in `contents.bytes_contents`, or
in `raw_input_contents` (Triton's serialisation: a 4-byte little-endian length before each element);
answers use `contents`. The request's `id` is echoed, as the TF-Serving path echoes `key`.

Errors: REST 400 `{"error": ...}` for a request that does not fit the signature (a TF-Serving body
here is one, with a pointer to /v1), 404 for an unknown model, version or path, 405 for a wrong
method; gRPC INVALID_ARGUMENT and NOT_FOUND. Parsers raise `serving.protos.BadRequestError` like
the TF-Serving ones, so a payload check can reuse them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import service_pb2

from serving.model import Prediction
from serving.protos import BadRequestError

SERVICE = "inference.GRPCInferenceService"
INFER_METHOD = "ModelInfer"
#: The full gRPC path of ModelInfer (what a client calls, and what the k6 script will name).
INFER_PATH = f"/{SERVICE}/{INFER_METHOD}"
REST_PREFIX = "/v2"
INPUT_NAME = "image_bytes"
OUTPUTS = ("scores", "classes", "prediction", "label")
PLATFORM = "onnxruntime_onnx"
SERVER_NAME = "orchbench-model-server"
#: ImageNet class the model gives the shipped flower photo (payloads/flowers*.json|bin); tests check it.
FLOWER_TOP_CLASS = 996
JSON_HEADERS = {"Content-Type": "application/json"}


class NotFoundError(LookupError):
    """An unknown model or version (404 / NOT_FOUND)."""


class BadAnswerError(ValueError):
    """An answer that fails the load-test side's check (one line saying what is wrong)."""


@dataclass(frozen=True)
class InferRequest:
    image: bytes
    id: str
    model_name: str = ""
    model_version: str = ""
    outputs: tuple[str, ...] = OUTPUTS  # the outputs asked for, in the order answered


# --------------------------------------------------------------------------------------------------
# Building requests (the payload command)


def make_rest_body(image: bytes, request_id: str = "1") -> bytes:
    tensor = {
        "name": INPUT_NAME,
        "shape": [1],
        "datatype": "BYTES",
        "data": [base64.b64encode(image).decode()],
    }
    return json.dumps({"id": request_id, "inputs": [tensor]}, separators=(",", ":")).encode()


def make_infer_request(model_name: str, image: bytes, request_id: str = "1") -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name=model_name, id=request_id)
    tensor = req.inputs.add(name=INPUT_NAME, datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(image)
    return req


# --------------------------------------------------------------------------------------------------
# Parsing requests


def _flatten(data: Any) -> list[Any]:
    """OIP JSON tensors may be nested row-major lists; the elements, in order."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


def _requested_outputs(names: list[str]) -> tuple[str, ...]:
    if not names:
        return OUTPUTS
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise BadRequestError(f"unknown output {unknown[0]!r}; the model has {', '.join(OUTPUTS)}")
    return tuple(dict.fromkeys(names))


def _check_tensor(name: Any, datatype: Any, shape: list[int], count: int) -> None:
    if name != INPUT_NAME:
        raise BadRequestError(f"unexpected input {name!r}; the model takes one BYTES input {INPUT_NAME!r}")
    if datatype != "BYTES":
        raise BadRequestError(f"input {INPUT_NAME!r} must have datatype BYTES, got {datatype!r}")
    if shape != [1]:
        raise BadRequestError(f"input {INPUT_NAME!r} must have shape [1], got {shape}")
    if count != 1:
        raise BadRequestError(f"input {INPUT_NAME!r} must hold exactly one element, got {count}")


def parse_rest_infer(body: bytes) -> InferRequest:
    """The JSON body of POST /v2/models/{m}/infer → InferRequest; BadRequestError when it does not fit."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequestError(f"JSON parse error: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(doc, dict):
        raise BadRequestError("the inference request must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if inputs is None:
        if "instances" in doc:
            raise BadRequestError(
                "missing 'inputs': this is a TF-Serving predict body ('instances'), "
                "for POST /v1/models/{name}:predict, not an Open Inference Protocol request"
            )
        raise BadRequestError("missing 'inputs'")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequestError(f"'inputs' must be a list of one tensor ({INPUT_NAME!r})")
    t = inputs[0]
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise BadRequestError(f"input {t.get('name')!r}: 'shape' must be a list of integers")
    data = _flatten(t.get("data", []))
    _check_tensor(t.get("name"), t.get("datatype"), shape, len(data))
    params = t.get("parameters") or {}
    content_type = params.get("content_type", "base64") if isinstance(params, dict) else None
    if content_type != "base64":
        raise BadRequestError(
            f"input {INPUT_NAME!r}: content_type {content_type!r} is not supported; BYTES elements "
            'are base64 text ("content_type": "base64")'
        )
    if not isinstance(data[0], str):
        raise BadRequestError(f"input {INPUT_NAME!r}: the element must be a base64 string")
    try:
        image = base64.b64decode(data[0], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"input {INPUT_NAME!r}: unable to base64 decode the element") from None
    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise BadRequestError("'id' must be a string")
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequestError("'outputs' must be a list of objects with a 'name'")
    return InferRequest(image, request_id, outputs=_requested_outputs([str(o.get("name")) for o in outputs]))


def _raw_bytes_elements(raw: bytes) -> list[bytes]:
    """Triton's BYTES serialisation in raw_input_contents: each element a uint32 LE length, then it."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise BadRequestError(f"input {INPUT_NAME!r}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise BadRequestError(f"input {INPUT_NAME!r}: BYTES element longer than raw_input_contents")
        out.append(raw[pos : pos + n])
        pos += n
    return out


def parse_infer_request(data: bytes) -> InferRequest:
    """A serialised inference.ModelInferRequest → InferRequest; BadRequestError when it does not fit."""
    req = service_pb2.ModelInferRequest()
    try:
        req.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError (a Message.Error subclass)
        raise BadRequestError(f"cannot parse inference.ModelInferRequest ({exc})") from None
    if not req.model_name:
        raise BadRequestError("model_name is empty (is this an inference.ModelInferRequest?)")
    if len(req.inputs) != 1:
        raise BadRequestError(f"expected one input ({INPUT_NAME!r}), got {len(req.inputs)}")
    t = req.inputs[0]
    if req.raw_input_contents:
        if len(req.raw_input_contents) != len(req.inputs):
            raise BadRequestError("raw_input_contents must hold one entry per input")
        elements = _raw_bytes_elements(req.raw_input_contents[0])
    else:
        elements = list(t.contents.bytes_contents)
    _check_tensor(t.name, t.datatype, list(t.shape), len(elements))
    outputs = _requested_outputs([o.name for o in req.outputs])
    return InferRequest(bytes(elements[0]), req.id, req.model_name, req.model_version, outputs)


# --------------------------------------------------------------------------------------------------
# Answers


def output_tensors(pred: Prediction) -> dict[str, tuple[str, list[int], list[Any]]]:
    k = len(pred.scores)
    return {
        "scores": ("FP32", [1, k], pred.scores),
        "classes": ("INT64", [1, k], pred.classes),
        "prediction": ("INT64", [1], [pred.prediction]),
        "label": ("BYTES", [1], [pred.label]),
    }


def rest_answer(pred: Prediction, req: InferRequest, model_name: str, version: str) -> bytes:
    tensors = output_tensors(pred)
    outputs = [
        {"name": n, "datatype": tensors[n][0], "shape": tensors[n][1], "data": tensors[n][2]}
        for n in req.outputs
    ]
    doc: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if req.id:
        doc["id"] = req.id
    doc["outputs"] = outputs
    return json.dumps(doc, separators=(",", ":")).encode()


def grpc_answer(pred: Prediction, req: InferRequest, model_name: str, version: str) -> bytes:
    resp = service_pb2.ModelInferResponse(model_name=model_name, model_version=version, id=req.id)
    tensors = output_tensors(pred)
    for name in req.outputs:
        datatype, shape, values = tensors[name]
        out = resp.outputs.add(name=name, datatype=datatype, shape=shape)
        if datatype == "FP32":
            out.contents.fp32_contents.extend(values)
        elif datatype == "INT64":
            out.contents.int64_contents.extend(values)
        else:
            out.contents.bytes_contents.extend(v.encode() for v in values)
    return resp.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------------------------------
# Answer checks (the load-test side): status, the fields present, optionally the top class


@dataclass(frozen=True)
class Answer:
    prediction: int
    scores: list[float]
    classes: list[int]
    id: str


def _check_answer(answer: Answer, top_class: int | None, request_id: str | None) -> Answer:
    if not answer.scores:
        raise BadAnswerError("the answer's scores are empty")
    if answer.classes and len(answer.classes) != len(answer.scores):
        raise BadAnswerError(f"{len(answer.scores)} scores but {len(answer.classes)} classes")
    if top_class is not None and answer.prediction != top_class:
        raise BadAnswerError(f"top class {answer.prediction}, expected {top_class}")
    if request_id is not None and answer.id != request_id:
        raise BadAnswerError(f"answer id {answer.id!r}, expected {request_id!r}")
    return answer


def check_rest_answer(
    status: int, body: bytes, top_class: int | None = None, request_id: str | None = None
) -> Answer:
    """HTTP 200 and a v2 inference answer with scores and prediction (classes, if there, as many as
    the scores; the given top class and id); BadAnswerError (one line) otherwise."""
    if status != 200:
        raise BadAnswerError(f"HTTP {status}: {body[:200]!r}")
    try:
        doc = json.loads(body)
        outs = {o["name"]: o["data"] for o in doc["outputs"]}
        answer = Answer(
            prediction=int(outs["prediction"][0]),
            scores=[float(x) for x in _flatten(outs["scores"])],
            classes=[int(x) for x in _flatten(outs.get("classes", []))],
            id=str(doc.get("id", "")),
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadAnswerError(f"not a v2 inference answer with scores and prediction ({exc!r})") from None
    return _check_answer(answer, top_class, request_id)


def check_grpc_answer(
    code: Any, body: bytes, top_class: int | None = None, request_id: str | None = None
) -> Answer:
    """Status OK (a grpc.StatusCode, its name or 0) and a ModelInferResponse with scores and
    prediction (classes, if there, as many as the scores; the given top class and id); BadAnswerError
    (one line) otherwise."""
    name = getattr(code, "name", code)
    if name not in ("OK", 0):
        raise BadAnswerError(f"gRPC status {name}")
    resp = service_pb2.ModelInferResponse()
    try:
        resp.ParseFromString(body)
    except Exception as exc:
        raise BadAnswerError(f"not an inference.ModelInferResponse ({exc})") from None
    outs = {o.name: o.contents for o in resp.outputs}
    try:
        answer = Answer(
            prediction=int(outs["prediction"].int64_contents[0]),
            scores=list(outs["scores"].fp32_contents),
            classes=list(outs["classes"].int64_contents) if "classes" in outs else [],
            id=resp.id,
        )
    except (KeyError, IndexError):
        raise BadAnswerError(f"ModelInferResponse without scores and prediction: {sorted(outs)}") from None
    return _check_answer(answer, top_class, request_id)
