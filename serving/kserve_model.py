"""The flowers model as a KServe model (`kserve.Model`), for KServe's own Python model server.

It runs inside KServe's virtual environment (`orchbench.core.platform.kserve_local` builds it:
KServe's pins clash with orchbench's), never in orchbench's, and is served by
`serving.kserve_server`. It loads the same cached ONNX file as the bundled server (the path is given
to it: `serving.model.build_model` runs in orchbench's environment) and uses the same code for
everything that decides the answer: `serving.model.decode_image` (decoding, crop, resize) and
`serving.model.Classifier` (onnxruntime, top-5), so both servers give the same classes and scores.

What KServe does with it:
- V1 (KServe's TF-Serving-style REST, the `tfserving` protocol): POST /v1/models/{m}:predict with
  {"instances": [{"image_bytes": {"b64": ...}, "key": "1"}]} -> {"predictions": [{"scores": [top-5],
  "prediction": class, "key": "1", "label": name}]}, the bundled server's answer.
- V2 (the Open Inference Protocol, REST and gRPC): one BYTES input `image_bytes` of shape [1] (REST:
  base64 text, gRPC: the bytes) -> outputs scores (FP32 [1, 5]), classes (INT64 [1, 5]), prediction
  (INT64 [1]) and label (BYTES [1]), as `serving.v2` answers; the request's id is echoed.
A request that does not fit raises KServe's InvalidInput (HTTP 400 / gRPC INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving.model import BadImageError, Classifier, Prediction, decode_image

INPUT_NAME = "image_bytes"


def _image(raw: Any) -> Any:
    try:
        return decode_image(raw)
    except BadImageError as exc:
        raise InvalidInput(f"input {INPUT_NAME!r}: {exc}") from None


def v1_images(payload: Any) -> list[tuple[Any, Any]]:
    """A V1 predict body -> [(model input, key)]; InvalidInput when it is not the flowers signature."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        hint = (
            " (this is an Open Inference Protocol body: POST /v2/models/{m}/infer)" if _is_v2(payload) else ""
        )
        raise InvalidInput(f"expected 'instances': a list of {{'image_bytes': {{'b64': ...}}}}{hint}")
    out = []
    for i, inst in enumerate(instances):
        image = inst.get("image_bytes") if isinstance(inst, dict) else None
        b64 = image.get("b64") if isinstance(image, dict) else None
        if not isinstance(b64, str):
            raise InvalidInput(f"instance {i}: expected {{'image_bytes': {{'b64': <base64 text>}}}}")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"instance {i}: image_bytes.b64 is not base64") from None
        out.append((_image(raw), inst.get("key")))
    return out


def _is_v2(payload: Any) -> bool:
    return isinstance(payload, dict) and "inputs" in payload


def v2_image(request: InferRequest) -> Any:
    """The one BYTES element of an inference request -> model input; InvalidInput otherwise."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"expected one input ({INPUT_NAME!r}), got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != INPUT_NAME or tensor.datatype != "BYTES" or list(tensor.shape) != [1]:
        raise InvalidInput(
            f"expected input {INPUT_NAME!r} BYTES [1], got {tensor.name!r} {tensor.datatype} {tensor.shape}"
        )
    elements = list(tensor.as_numpy().reshape(-1))  # REST: base64 text; gRPC: bytes (contents or raw)
    if len(elements) != 1:
        raise InvalidInput(f"input {INPUT_NAME!r} must hold exactly one element, got {len(elements)}")
    element = elements[0]
    if isinstance(element, str):
        content_type = (tensor.parameters or {}).get("content_type", "base64")
        if content_type != "base64":
            raise InvalidInput(f"input {INPUT_NAME!r}: content_type {content_type!r} is not supported")
        try:
            element = base64.b64decode(element, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"input {INPUT_NAME!r}: unable to base64 decode the element") from None
    return _image(bytes(element))


def v2_outputs(pred: Prediction) -> list[InferOutput]:
    k = len(pred.scores)
    return [
        InferOutput("scores", [1, k], "FP32", data=list(pred.scores)),
        InferOutput("classes", [1, k], "INT64", data=list(pred.classes)),
        InferOutput("prediction", [1], "INT64", data=[pred.prediction]),
        InferOutput("label", [1], "BYTES", data=[pred.label]),
    ]


class FlowersModel(kserve.Model):
    """EfficientNet-Lite0 on onnxruntime, answering KServe's V1 and V2 requests."""

    def __init__(self, name: str, model_path: Path, threads: int = 1) -> None:
        super().__init__(name)
        self.model_path = Path(model_path)
        self.threads = threads
        self.classifier: Classifier | None = None

    def load(self) -> bool:
        self.classifier = Classifier(model_path=self.model_path, threads=self.threads)
        self.ready = True
        return True

    def _classify(self, image: Any) -> Prediction:
        assert self.classifier is not None, "load() first"
        return self.classifier.predict_image(image)

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """Synchronous on purpose: KServe then runs it on its event loop thread, as the bundled
        server runs inference (no thread hand-off at concurrency 1)."""
        if isinstance(payload, InferRequest):
            pred = self._classify(v2_image(payload))
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=v2_outputs(pred),
                requested_outputs=payload.request_outputs,
            )
        preds = [self._classify(image).to_dict(key) for image, key in v1_images(payload)]
        return {"predictions": preds}
