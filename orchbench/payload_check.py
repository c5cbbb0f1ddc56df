"""Check a request payload before anything starts: the REST body and the gRPC PredictRequest the
model server would accept (the flowers signature: one base64/bytes image plus an optional key).

Called by `orchbench.spec.load_spec` for every transport in the spec, so a broken payload is one
ConfigError (exit 2) at load time instead of a block full of HTTP 400s after the deployments started.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path
from typing import Any

from orchbench.errors import ConfigError

#: Payloads are single requests; anything bigger than this is not what the benchmark sends.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


def _image_ok(data: bytes) -> str | None:
    """None when `data` is an image PIL can identify and read the header of, else why not."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "the image is empty"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"the image is not decodable ({type(exc).__name__})"
    return None


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_PAYLOAD_BYTES:
            raise ConfigError(f"{path}: payload larger than {MAX_PAYLOAD_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: payload not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: payload not readable ({exc.strerror or exc})") from None
    if not data.strip():
        raise ConfigError(f"{path}: payload is empty")
    return data


def check_rest(path: Path) -> None:
    """A TF-Serving REST predict body: {"instances": [{"image_bytes": {"b64": "<image>"}, ...}, ...]}."""
    data = _read(path)
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: REST payload is not JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(doc, dict) or "instances" not in doc:
        raise ConfigError(f"{path}: REST payload must be a JSON object with 'instances'")
    instances = doc["instances"]
    if not isinstance(instances, list) or not instances:
        raise ConfigError(f"{path}: 'instances' must be a non-empty list")
    for i, inst in enumerate(instances):
        img = inst.get("image_bytes") if isinstance(inst, dict) else None
        if not isinstance(img, dict) or not isinstance(img.get("b64"), str):
            raise ConfigError(f'{path}: instances[{i}].image_bytes must be {{"b64": "..."}}')
        try:
            raw = base64.b64decode(img["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{path}: instances[{i}].image_bytes.b64 is not valid base64") from None
        why = _image_ok(raw)
        if why:
            raise ConfigError(f"{path}: instances[{i}]: {why}")


def check_grpc(path: Path) -> None:
    """A serialized tensorflow.serving.PredictRequest with one DT_STRING `image_bytes` (an image)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    data = _read(path)
    req = predict_pb2.PredictRequest()
    try:
        req.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise ConfigError(f"{path}: gRPC payload is not a serialized PredictRequest") from None
    if not req.model_spec.name:
        raise ConfigError(f"{path}: gRPC payload is not a PredictRequest (no model_spec.name)")
    if "image_bytes" not in req.inputs:
        raise ConfigError(f"{path}: PredictRequest has no input 'image_bytes' (has {sorted(req.inputs)})")
    tensor = req.inputs["image_bytes"]
    if tensor.dtype != types_pb2.DT_STRING or len(tensor.string_val) != 1:
        raise ConfigError(f"{path}: PredictRequest input 'image_bytes' must be one DT_STRING value")
    why = _image_ok(bytes(tensor.string_val[0]))
    if why:
        raise ConfigError(f"{path}: PredictRequest image_bytes: {why}")


def check_payload(path: Path, transport: str) -> None:
    """Raise ConfigError (one line, naming the file) unless `path` is a usable payload for `transport`."""
    if transport == "rest":
        check_rest(path)
    elif transport == "grpc":
        check_grpc(path)
    else:
        raise ConfigError(f"{path}: no payload check for transport {transport!r}")
