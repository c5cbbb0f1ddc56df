"""The gRPC side of one unary call as the model server's gRPC transport (serving.h2_grpc) serves it,
without I/O: gRPC status codes, the request message limit, the handler type and its `GrpcError`,
the state of one call's stream, the check of a call's request headers, and what an answer is made
of (its header blocks, the percent-encoded `grpc-message`; the gRPC HTTP/2 protocol spec).
The HTTP/2 connection that carries the calls is serving.h2_grpc; frame layout, HTTP/2 constants and
HPACK literals are serving.h2wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from serving.h2wire import DEFAULT_WINDOW, literal_header, literal_indexed_name

MAX_MESSAGE = 64 * 1024 * 1024
# gRPC status codes (grpc/status.h)
OK, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED = 0, 3, 5, 8
INTERNAL, UNIMPLEMENTED = 13, 12

# Answer header blocks: HPACK static index 8 is ":status: 200"; index 31 names content-type.
RESPONSE_HEADERS = b"\x88" + literal_indexed_name(31, b"application/grpc")
OK_TRAILERS = literal_header(b"grpc-status", b"0")


def grpc_message(text: str) -> bytes:
    """grpc-message: UTF-8, every byte outside printable ASCII and '%' itself percent-encoded."""
    return b"".join(
        bytes([b]) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in text.encode("utf-8")
    )


def trailers_only(code: int, message: str) -> bytes:
    """The one header block of a Trailers-Only answer (an error): `:status`, content-type,
    `grpc-status`, and the percent-encoded `grpc-message` when there is a message."""
    block = RESPONSE_HEADERS + literal_header(b"grpc-status", str(code).encode())
    if message:
        block += literal_header(b"grpc-message", grpc_message(message))
    return block


class GrpcError(Exception):
    """Raised by a handler: the call ends with this status and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


#: A unary handler: request message bytes → answer message bytes (or GrpcError).
Handler = Callable[[bytes], bytes]


@dataclass
class Stream:
    sid: int
    path: bytes = b""
    ok_headers: bool = False
    header_error: str = ""
    body: bytearray = field(default_factory=bytearray)
    send_window: int = DEFAULT_WINDOW
    pending: bytearray = field(default_factory=bytearray)  # DATA payload waiting for a window
    trailers: bytes = b""  # sent once `pending` is out
    done: bool = False  # the answer is queued (the client's half may still be open)
    remote_closed: bool = False  # the client sent END_STREAM


def check_request_headers(st: Stream, headers: list[tuple[bytes, bytes]]) -> None:
    method = ctype = b""
    for name, value in headers:
        if name == b":path":
            st.path = value
        elif name == b":method":
            method = value
        elif name == b"content-type":
            ctype = value
        elif name == b"grpc-encoding" and value != b"identity":
            st.header_error = f"compression {value.decode('latin-1')} is not supported"
    if method != b"POST":
        st.header_error = st.header_error or f"method {method.decode('latin-1')} is not POST"
    elif not ctype.startswith(b"application/grpc"):
        st.header_error = st.header_error or "content-type is not application/grpc"
    st.ok_headers = not st.header_error
