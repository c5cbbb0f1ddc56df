"""The PredictionService schema as a protoset (a serialised FileDescriptorSet), and the flowers request
in the forms the load tools take.

`tensorflow-protobuf` ships the generated Python modules but not the `.proto` sources, so k6
(`client.loadProtoset`) and ghz (`--protoset`) are given a FileDescriptorSet built from the Python
descriptors: every file `prediction_service.proto` imports, transitively, dependencies first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor

from orchbench.core.errors import ConfigError
from orchbench.fsio import write_bytes

PROTOSET_NAME = "prediction_service.protoset"


def _walk(fd: FileDescriptor, seen: dict[str, FileDescriptor]) -> None:
    """Post-order: a file's dependencies are appended before the file itself."""
    if fd.name in seen:
        return
    for dep in fd.dependencies:
        _walk(dep, seen)
    seen[fd.name] = fd


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """FileDescriptorSet of tensorflow_serving/apis/prediction_service.proto and all it imports."""
    from tensorflow_serving.apis import prediction_service_pb2

    files: dict[str, FileDescriptor] = {}
    _walk(prediction_service_pb2.DESCRIPTOR, files)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in files.values():
        proto = fds.file.add()
        fd.CopyToProto(proto)
    return fds


def write_protoset(path: Path) -> Path:
    """Write the protoset to `path` (atomically) and return it."""
    return write_bytes(path, descriptor_set().SerializeToString(deterministic=True))


def read_predict_request(path: Path) -> Any:
    """Parse a binary PredictRequest (payloads/flowers.bin); ConfigError if it is not one."""
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import predict_pb2

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read gRPC payload: {exc.strerror}") from None
    msg = predict_pb2.PredictRequest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise ConfigError(f"{path}: not a serialised tensorflow.serving.PredictRequest ({exc})") from None
    if not msg.inputs:
        raise ConfigError(f"{path}: PredictRequest has no inputs")
    return msg


def request_json(path: Path) -> str:
    """The PredictRequest in protobuf's canonical JSON mapping (bytes as base64), as k6's grpc
    `invoke` takes it. k6 unmarshals this with Go's protojson into the same message."""
    msg = read_predict_request(path)
    return json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True), sort_keys=True)
