"""Check a request payload before anything starts: the REST body and the gRPC PredictRequest the
model server would accept (the flowers signature: one base64/bytes image plus an optional key).

Called by `orchbench.core.spec.load_spec` for every transport in the spec, so a broken payload is one
ConfigError (exit 2) at load time instead of a block full of HTTP 400s after the deployments started.
"""

from __future__ import annotations

import io
from pathlib import Path

from orchbench.core.errors import ConfigError
from orchbench.core.safeio import MAX_PAYLOAD_BYTES, read_bytes
from results_schema.safeio import UnsafeInput, loads_json


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
    data = read_bytes(path, "payload", MAX_PAYLOAD_BYTES)
    if not data.strip():
        raise ConfigError(f"{path}: payload is empty")
    return data


def check_rest(path: Path) -> None:
    """A TF-Serving REST predict body the model server takes: {"instances": [{"image_bytes": {"b64":
    "<image>"}, ...}, ...]}, parsed by the server's own parser."""
    from serving.protos import BadRequestError, parse_rest_body

    data = _read(path)
    try:
        loads_json(data)  # bounded nesting first: the server's parser would overflow on a deep body
    except UnsafeInput as exc:
        raise ConfigError(f"{path}: not a usable REST payload: JSON {exc}") from None
    except ValueError:
        pass  # not JSON: the server's parser words it
    try:
        instances = parse_rest_body(data)
    except BadRequestError as exc:
        raise ConfigError(f"{path}: not a usable REST payload: {exc}") from None
    for i, (image, _key) in enumerate(instances):
        why = _image_ok(image)
        if why:
            raise ConfigError(f"{path}: not a usable REST payload: instance {i}: {why}")


def check_grpc(path: Path) -> None:
    """A serialized tensorflow.serving.PredictRequest the model server takes (one DT_STRING
    `image_bytes` holding an image, a model name), parsed by the server's own parser."""
    from serving.protos import BadRequestError, parse_predict_request

    try:
        req = parse_predict_request(_read(path))
    except BadRequestError as exc:
        raise ConfigError(f"{path}: not a usable gRPC payload: {exc}") from None
    if not req.model_name:
        raise ConfigError(f"{path}: not a usable gRPC payload: no model_spec.name (is it a PredictRequest?)")
    why = _image_ok(req.image)
    if why:
        raise ConfigError(f"{path}: not a usable gRPC payload: image_bytes: {why}")


def check_v2_rest(path: Path) -> None:
    """An Open Inference Protocol REST infer body the model server takes (serving.v2's own parser)."""
    from serving.protos import BadRequestError
    from serving.v2 import parse_rest_infer

    data = _read(path)
    try:
        loads_json(data)
    except UnsafeInput as exc:
        raise ConfigError(f"{path}: not a usable v2 REST payload: JSON {exc}") from None
    except ValueError:
        pass
    try:
        req = parse_rest_infer(data)
    except BadRequestError as exc:
        raise ConfigError(f"{path}: not a usable v2 REST payload: {exc}") from None
    why = _image_ok(req.image)
    if why:
        raise ConfigError(f"{path}: not a usable v2 REST payload: image_bytes: {why}")


def check_v2_grpc(path: Path) -> None:
    """A serialized inference.ModelInferRequest the model server takes (a model name, one BYTES
    `image_bytes` holding an image), parsed by serving.v2's own parser."""
    from serving.protos import BadRequestError
    from serving.v2 import parse_infer_request

    try:
        req = parse_infer_request(_read(path))
    except BadRequestError as exc:
        raise ConfigError(f"{path}: not a usable v2 gRPC payload: {exc}") from None
    if not req.model_name:
        raise ConfigError(f"{path}: not a usable v2 gRPC payload: no model_name (is it a ModelInferRequest?)")
    why = _image_ok(req.image)
    if why:
        raise ConfigError(f"{path}: not a usable v2 gRPC payload: image_bytes: {why}")


def check_http(path: Path) -> None:
    """protocol http: any body, within the size limit (what counts as an answer is the spec's)."""
    read_bytes(path, "payload", MAX_PAYLOAD_BYTES)


def check_payload(path: Path, transport: str, protocol: str = "tfserving") -> None:
    """Raise ConfigError (one line, naming the file) unless `path` is a usable payload for `transport`
    in `protocol`."""
    checks = {
        ("tfserving", "rest"): check_rest,
        ("tfserving", "grpc"): check_grpc,
        ("v2", "rest"): check_v2_rest,
        ("v2", "grpc"): check_v2_grpc,
        ("http", "rest"): check_http,
    }
    check = checks.get((protocol, transport))
    if check is None:
        raise ConfigError(f"{path}: no payload check for transport {transport!r} in protocol {protocol!r}")
    check(path)
