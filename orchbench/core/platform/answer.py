"""One real request to an arm, in the spec's protocol, and the check of its answer: what local arm
verification and the endpoints platform's probe and verification send (REST over http.client, TLS
included; gRPC over grpcio, raw bytes, initial metadata kept).

Extra headers whose value comes from the environment (`{"env": NAME}`) are read here and never put in
a message: an error names the arm, the URL and the status, not the request's headers.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from orchbench.core.arms import Endpoint, header_values
from orchbench.core.paths import PAYLOADS

#: The shipped request bodies per (protocol, transport) a verification sends.
VERIFY_PAYLOADS = {
    ("tfserving", "rest"): PAYLOADS / "flowers.json",
    ("tfserving", "grpc"): PAYLOADS / "flowers.bin",
    ("v2", "rest"): PAYLOADS / "flowers_v2.json",
    ("v2", "grpc"): PAYLOADS / "flowers_v2.bin",
}


@dataclass
class Answer:
    ok: bool
    status: str  # "HTTP 200", "gRPC OK"
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    why: str = ""  # when not ok: what is wrong with the answer
    where: str = ""  # "REST response header" | "gRPC initial metadata"


def ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    tls = endpoint.tls or {}
    ctx = ssl.create_default_context(cafile=tls.get("ca_file") or None)
    if not tls.get("verify", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _rest_body(endpoint: Endpoint) -> bytes | None:
    if endpoint.protocol == "http":
        return b"" if (endpoint.http or {}).get("send_body", True) else None
    return VERIFY_PAYLOADS[(endpoint.protocol, "rest")].read_bytes()


def grpc_body(endpoint: Endpoint) -> bytes:
    """The shipped gRPC request of the endpoint's protocol, for the endpoint's model."""
    data = VERIFY_PAYLOADS[(endpoint.protocol, "grpc")].read_bytes()
    if endpoint.protocol == "v2":
        from tritonclient.grpc import service_pb2

        v2 = service_pb2.ModelInferRequest.FromString(data)
        v2.model_name = endpoint.model_name
        return v2.SerializeToString()
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest.FromString(data)
    req.model_spec.name = endpoint.model_name
    return req.SerializeToString()


def rest_answer(endpoint: Endpoint, timeout_s: float = 10.0) -> Answer:
    """POST (protocol http: the spec's method) to the endpoint's URL; the answer checked by protocol.
    Raises OSError (ssl.SSLError included) when the arm cannot be reached."""
    if endpoint.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=timeout_s, context=ssl_context(endpoint)
        )
    else:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout_s)
    method = str((endpoint.http or {}).get("method", "POST")) if endpoint.protocol == "http" else "POST"
    body = _rest_body(endpoint)
    headers = {"Content-Type": "application/json", **header_values(endpoint.headers)}
    try:
        conn.request(method, endpoint.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
        status = resp.status
    finally:
        conn.close()
    why = _rest_why(endpoint, status, data)
    return Answer(not why, f"HTTP {status}", got, why, "REST response header")


def _rest_why(endpoint: Endpoint, status: int, data: bytes) -> str:
    if endpoint.protocol == "http":
        want = int((endpoint.http or {}).get("success_status", 200))
        if status != want:
            return f"answered HTTP {status}, expected {want}"
        json_field = (endpoint.http or {}).get("json_field")
        if json_field and not _has_field(data, str(json_field)):
            return f"the answer has no JSON field {json_field}"
        return ""
    if endpoint.protocol == "v2":
        from serving.v2 import BadAnswerError, check_rest_answer

        try:
            check_rest_answer(status, data)
        except BadAnswerError as exc:
            hint = " (not an Open Inference Protocol endpoint?)" if status in (400, 404, 405) else ""
            return f"{exc}{hint}"
        return ""
    if status != 200:
        hint = " (not a TF-Serving predict endpoint?)" if status in (400, 404, 405) else ""
        return f"answered HTTP {status}: {data[:200]!r}{hint}"
    if not _has_field(data, "predictions.0.scores"):  # what the load test checks, too
        return f"answered HTTP 200 without predictions[0].scores: {data[:200]!r}"
    return ""


def _has_field(data: bytes, dotted: str) -> bool:
    import json

    try:
        node: Any = json.loads(data)
    except ValueError:
        return False
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return node is not None


def grpc_answer(endpoint: Endpoint, timeout_s: float = 10.0) -> Answer:
    """One unary call of the protocol's method (raw bytes), TLS when the endpoint has it; the
    answer checked by protocol, the initial metadata kept."""
    import grpc

    target = endpoint.grpc_target
    if endpoint.tls is not None:
        tls = endpoint.tls
        roots = Path(tls["ca_file"]).read_bytes() if tls.get("ca_file") else None
        name = endpoint.host
        if not tls.get("verify", True):
            roots = _server_certificate(endpoint) or roots
            name = _cert_name(endpoint)
        channel = grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(root_certificates=roots),
            options=[("grpc.ssl_target_name_override", name)],
        )
    else:
        channel = grpc.insecure_channel(target)
    metadata = [(k.lower(), v) for k, v in header_values(endpoint.headers).items()]
    with channel:
        fn = channel.unary_unary("/" + endpoint.grpc_method)
        try:
            resp, call = fn.with_call(grpc_body(endpoint), timeout=timeout_s, metadata=metadata or None)
            code, details, md, body = grpc.StatusCode.OK, "", dict(call.initial_metadata() or ()), resp
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            md, body = dict(exc.initial_metadata() or ()), b""
    md = {str(k).lower(): str(v) for k, v in md.items()}
    if code != grpc.StatusCode.OK:
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ConnectionError(f"gRPC UNAVAILABLE: {details}")
        hint = {
            grpc.StatusCode.UNIMPLEMENTED: f" (does it serve {endpoint.grpc_method}?)",
        }.get(code, "")
        why = f"gRPC {code.name}: {details}{hint}"
        return Answer(False, f"gRPC {code.name}", md, why, "gRPC initial metadata")
    why = ""
    if endpoint.protocol == "v2":
        from serving.v2 import BadAnswerError, check_grpc_answer

        try:
            check_grpc_answer("OK", body)
        except BadAnswerError as exc:
            why = str(exc)
    else:  # tfserving: outputs['scores'], what the load test checks, too
        from google.protobuf.message import DecodeError
        from tensorflow_serving.apis import predict_pb2

        try:
            if "scores" not in predict_pb2.PredictResponse.FromString(body).outputs:
                why = f"answered gRPC OK without outputs['scores'] ({len(body)} bytes)"
        except DecodeError:
            why = f"answered gRPC OK with {len(body)} bytes that are no PredictResponse"
    return Answer(not why, "gRPC OK", md, why, "gRPC initial metadata")


def _server_certificate(endpoint: Endpoint) -> bytes | None:
    """verify: false over gRPC: trust whatever certificate the server shows (grpcio has no switch)."""
    try:
        return ssl.get_server_certificate((endpoint.host, endpoint.port), timeout=5).encode()
    except (OSError, TypeError):
        return None


def _cert_name(endpoint: Endpoint) -> str:
    """The name in the server's certificate (so an unchecked certificate's name matches too)."""
    pem = _server_certificate(endpoint)
    if not pem:
        return endpoint.host
    try:
        cert = x509.load_pem_x509_certificate(pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = san.get_values_for_type(x509.DNSName)
            if names:
                return str(names[0])
        except x509.ExtensionNotFound:
            pass
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cn[0].value) if cn else endpoint.host
    except ValueError:  # not a PEM certificate we can read
        return endpoint.host


def answer(endpoint: Endpoint, timeout_s: float = 10.0) -> Answer:
    if endpoint.transport == "rest":
        return rest_answer(endpoint, timeout_s)
    return grpc_answer(endpoint, timeout_s)
