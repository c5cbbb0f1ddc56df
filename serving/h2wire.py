"""HTTP/2 and HPACK wire pieces shared by the orchestrator's frame forwarder (`h2_forward`), the
model server's gRPC transport (`h2_grpc`, `grpc_call`) and the benchmark's thin gRPC client
(`client`): frame layout and constants (RFC 9113 §4.1, §6), the protocol errors (`FrameError`,
`ConnectionError_`), HPACK integers and literals that leave the peer's dynamic table untouched
(RFC 7541 §5.1, §6.2.2). Pure functions, no I/O."""

from __future__ import annotations

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
MIN_MAX_FRAME_SIZE = 16_384  # RFC 9113 §4.2: every peer accepts frames this large
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
# flags
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# SETTINGS identifiers
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6
# error codes
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, COMPRESSION_ERROR = 0x7, 0x9


class FrameError(ValueError):
    """A frame that breaks the protocol; `code` is the HTTP/2 error code a GOAWAY would carry."""

    code = PROTOCOL_ERROR


class ConnectionError_(FrameError):
    """A connection-level protocol error: GOAWAY with this code, then close."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream_id.to_bytes(4, "big") + payload


def unpad(flags: int, payload: bytes) -> bytes:
    """A DATA or HEADERS payload without its padding (PADDED flag: first byte is the pad length)."""
    if flags & PADDED:
        if not payload or payload[0] >= len(payload):
            raise FrameError("bad padding")
        return payload[1 : len(payload) - payload[0]]
    return payload


def header_fragment(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block fragment: padding and the PRIORITY fields removed."""
    payload = unpad(flags, payload)
    return payload[5:] if flags & PRIORITY_FLAG else payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK integer representation (RFC 7541 §5.1), `first` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal_header(name: bytes | str, value: bytes | str) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    n = name.encode("ascii") if isinstance(name, str) else name
    v = value.encode("ascii") if isinstance(value, str) else value
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def literal_indexed_name(index: int, value: bytes) -> bytes:
    """A literal without indexing whose name is entry `index` of the static table (RFC 7541 §6.2.2)."""
    return hpack_int(index, 4) + hpack_int(len(value), 7) + value
