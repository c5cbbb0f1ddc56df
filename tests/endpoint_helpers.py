"""Stand-ins for a user's own endpoints in tests: test-made TLS material, a hand-written nginx front
(REST or gRPC), and a gRPC server that answers TF-Serving's Predict with a fixed message.

`self_signed(folder)` writes a self-signed certificate for `localhost` (and 127.0.0.1) with its key,
made with `cryptography`; `nginx_front(...)` runs nginx with a given `server` block in front of an
upstream, in its own process group, stopped (and checked gone) afterwards; `predict_only_server(...)`
serves only `tensorflow.serving.PredictionService/Predict` (anything else: UNIMPLEMENTED)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchbench.core.platform.proxies import find_binary, group_members


@dataclass(frozen=True)
class Cert:
    crt: Path
    key: Path


def self_signed(folder: Path, name: str = "cert", cn: str = "localhost") -> Cert:
    """A self-signed EC P-256 certificate (a CA of itself) valid for `cn` and 127.0.0.1, for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Cert(crt_path, key_path)


@dataclass
class Front:
    """A running nginx front: its process (the group leader) and folder."""

    proc: subprocess.Popen[bytes]
    folder: Path

    def kill(self) -> None:
        """The front dies at once: SIGKILL to its whole process group (master and worker)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@contextmanager
def nginx_front(folder: Path, upstream: str, server: str) -> Iterator[Front]:
    """nginx with `upstream model { server UPSTREAM; }` and the given `server { ... }` block."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""daemon off; worker_processes 1; pid {folder}/nginx.pid; error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_buffer_size 4m; proxy_buffering off;
  client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy; fastcgi_temp_path {folder}/fcgi;
  uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
  upstream model {{ server {upstream}; keepalive 4; }}
  {server} }}
"""
    )
    proc = subprocess.Popen(
        [find_binary("nginx"), "-c", str(conf), "-p", f"{folder}/"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    front = Front(proc, folder)
    try:
        deadline = time.monotonic() + 10
        while len(group_members(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        log = folder / "error.log"
        assert proc.poll() is None, log.read_text() if log.exists() else "nginx exited"
        yield front
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        deadline = time.monotonic() + 5
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_members(proc.pid), f"nginx front (pgid {proc.pid}) left processes"


PREDICT = "/tensorflow.serving.PredictionService/Predict"


@contextmanager
def predict_only_server(answer: bytes) -> Iterator[str]:
    """A grpcio server on a free loopback port answering Predict with `answer` (raw bytes) and
    nothing else; yields its HOST:PORT."""
    from concurrent import futures

    import grpc

    def predict(request: bytes, context: grpc.ServicerContext) -> bytes:
        return answer

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},  # raw bytes: no (de)serializers
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)
