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
#: protocol v2: inference.GRPCInferenceService (grpc_service.proto as tritonclient generates it).
V2_PROTOSET_NAME = "grpc_inference_service.protoset"


def protoset_name(protocol: str = "tfserving") -> str:
    return V2_PROTOSET_NAME if protocol == "v2" else PROTOSET_NAME


def _walk(fd: FileDescriptor, seen: dict[str, FileDescriptor]) -> None:
    """Post-order: a file's dependencies are appended before the file itself."""
    if fd.name in seen:
        return
    for dep in fd.dependencies:
        _walk(dep, seen)
    seen[fd.name] = fd


def descriptor_set(protocol: str = "tfserving") -> descriptor_pb2.FileDescriptorSet:
    """FileDescriptorSet of tensorflow_serving/apis/prediction_service.proto (protocol v2: the
    Open Inference Protocol's grpc_service.proto) and all it imports."""
    files: dict[str, FileDescriptor] = {}
    if protocol == "v2":
        from tritonclient.grpc import service_pb2

        _walk(service_pb2.DESCRIPTOR, files)
    else:
        from tensorflow_serving.apis import prediction_service_pb2

        _walk(prediction_service_pb2.DESCRIPTOR, files)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in files.values():
        proto = fds.file.add()
        fd.CopyToProto(proto)
    return fds


def write_protoset(path: Path, protocol: str = "tfserving") -> Path:
    """Write the protoset to `path` (atomically) and return it."""
    return write_bytes(path, descriptor_set(protocol).SerializeToString(deterministic=True))


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


def read_infer_request(path: Path) -> Any:
    """Parse a binary inference.ModelInferRequest (payloads/flowers_v2.bin); ConfigError if not one."""
    from google.protobuf.message import DecodeError
    from tritonclient.grpc import service_pb2

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read gRPC payload: {exc.strerror}") from None
    msg = service_pb2.ModelInferRequest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise ConfigError(f"{path}: not a serialised inference.ModelInferRequest ({exc})") from None
    if not msg.inputs:
        raise ConfigError(f"{path}: ModelInferRequest has no inputs")
    return msg


def request_json(path: Path, protocol: str = "tfserving") -> str:
    """The PredictRequest (protocol v2: ModelInferRequest) in protobuf's canonical JSON mapping
    (bytes as base64), as k6's grpc `invoke` takes it. k6 unmarshals this with Go's protojson into
    the same message."""
    msg = read_infer_request(path) if protocol == "v2" else read_predict_request(path)
    return json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True), sort_keys=True)
