"""TF Serving request and answer formats for the flowers signature: the REST predict body and the
gRPC PredictRequest/PredictResponse. Parsers raise BadRequestError; the model server and the
payload check (`orchbench.core.payload_check`) use the same ones, so a payload passes the check exactly
when the server would take it.

Request inputs: `image_bytes` (DT_STRING, shape [1]) and `key` (DT_STRING, shape [1]).
Response outputs: `scores` (DT_FLOAT [1, 5]), `prediction` (DT_INT64 [1]), `key` (DT_STRING [1]).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.model import Prediction

SIGNATURE = "serving_default"


class BadRequestError(ValueError):
    """A request that does not fit the flowers signature (maps to 400 / INVALID_ARGUMENT)."""


def _shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def string_tensor(value: bytes) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=_shape(1), string_val=[value])


def make_predict_request(model_name: str, image: bytes, key: str = "1") -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.inputs["image_bytes"].CopyFrom(string_tensor(image))
    req.inputs["key"].CopyFrom(string_tensor(key.encode()))
    return req


@dataclass(frozen=True)
class ParsedRequest:
    model_name: str
    image: bytes
    key: str | None


def parse_rest_body(body: bytes) -> list[tuple[bytes, Any]]:
    """{"instances": [{"image_bytes": {"b64": ...}, "key": ...}, ...]} → [(image bytes, key), ...]."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"JSON Parse error: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(doc, dict):
        raise BadRequestError("JSON Value: request body must be an object with 'instances'")
    instances = doc.get("instances")
    if instances is None:
        raise BadRequestError("Missing 'instances' key")
    if not isinstance(instances, list) or not instances:
        raise BadRequestError("'instances' must be a non-empty list")
    out = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise BadRequestError(f"instance {i}: expected an object with image_bytes and key")
        img = inst.get("image_bytes")
        if not isinstance(img, dict) or not isinstance(img.get("b64"), str):
            raise BadRequestError(f'instance {i}: \'image_bytes\' must be {{"b64": "..."}}')
        try:
            out.append((base64.b64decode(img["b64"], validate=True), inst.get("key")))
        except (binascii.Error, ValueError):
            raise BadRequestError(f"instance {i}: Unable to base64 decode image_bytes") from None
    return out


def _single_string(req: predict_pb2.PredictRequest, name: str, required: bool) -> bytes | None:
    if name not in req.inputs:
        if required:
            raise BadRequestError(
                f"input '{name}' is missing; the flowers signature needs image_bytes and key"
            )
        return None
    t = req.inputs[name]
    if t.dtype != types_pb2.DT_STRING:
        raise BadRequestError(f"input '{name}' must be DT_STRING, got {types_pb2.DataType.Name(t.dtype)}")
    if len(t.string_val) != 1:
        raise BadRequestError(f"input '{name}' must hold exactly one string, got {len(t.string_val)}")
    return bytes(t.string_val[0])


def parse_predict_request(data: bytes) -> ParsedRequest:
    req = predict_pb2.PredictRequest()
    try:
        req.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError (a Message.Error subclass)
        raise BadRequestError(f"cannot parse PredictRequest ({exc})") from None
    image = _single_string(req, "image_bytes", required=True)
    key = _single_string(req, "key", required=False)
    assert image is not None
    return ParsedRequest(req.model_spec.name, image, None if key is None else key.decode("utf-8", "replace"))


def make_predict_response(pred: Prediction, key: str | None, model_name: str, version: int) -> bytes:
    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = model_name
    resp.model_spec.version.value = version
    resp.model_spec.signature_name = SIGNATURE
    scores = resp.outputs["scores"]
    scores.dtype = types_pb2.DT_FLOAT
    scores.tensor_shape.CopyFrom(_shape(1, len(pred.scores)))
    scores.float_val.extend(pred.scores)
    p = resp.outputs["prediction"]
    p.dtype = types_pb2.DT_INT64
    p.tensor_shape.CopyFrom(_shape(1))
    p.int64_val.append(pred.prediction)
    resp.outputs["key"].CopyFrom(string_tensor((key or "").encode()))
    return resp.SerializeToString(deterministic=True)  # map entries sorted: the same bytes every time
