"""nginx and HAProxy as local hops (orchbench.core.platform.proxies) in front of the real model server:
REST and gRPC, TF-Serving and v2 answers unchanged and marked `x-orchbench-hop`, CPU pinning, errors,
and nothing left running. Skipped, with the package to install, where a proxy is missing."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from orchbench.core.errors import ConfigError, PlatformError
from orchbench.core.paths import PAYLOADS
from orchbench.core.platform import proxies
from orchbench.core.platform.local_procs import is_ours
from orchbench.core.platform.proxies import HOP_HEADER, ProxySpec, ProxyUnavailable, start_proxy
from serving import v2
from serving.client import HttpClient
from serving.runtime import free_port
from tests.hop_helpers import ModelServer, grpc_call, model_server

TF_JSON = (PAYLOADS / "flowers.json").read_bytes()
TF_BIN = (PAYLOADS / "flowers.bin").read_bytes()
V2_JSON = (PAYLOADS / "flowers_v2.json").read_bytes()
V2_BIN = (PAYLOADS / "flowers_v2.bin").read_bytes()
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def needs(kind: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not proxies.available(kind), reason=f"{kind} is not installed: apt-get install {kind}"
    )


KINDS = [pytest.param(k, marks=needs(k), id=k) for k in proxies.KINDS]


# --------------------------------------------------------------------------------------------------
# Without processes


def test_spec_is_checked() -> None:
    with pytest.raises(ConfigError, match="one of nginx, haproxy"):
        ProxySpec("envoy", rest_port=1, upstream_rest="127.0.0.1:2")
    with pytest.raises(ConfigError, match="both a port and an upstream"):
        ProxySpec("nginx", rest_port=1)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        ProxySpec("nginx", grpc_port=1, upstream_grpc="localhost")
    with pytest.raises(ConfigError, match="rest and/or a grpc port"):
        ProxySpec("haproxy")


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(proxies, "SBIN_DIRS", ("/nonexistent",))
    assert not proxies.available("nginx")
    spec = ProxySpec("nginx", rest_port=1, upstream_rest="127.0.0.1:2")
    with pytest.raises(ProxyUnavailable, match=r"nginx is not installed .*: apt-get install nginx$") as err:
        proxies.command(spec, Path("/tmp/x.conf"))
    assert "\n" not in str(err.value) and err.value.exit_code == 2
    with pytest.raises(ProxyUnavailable, match="apt-get install haproxy"):
        proxies.find_binary("haproxy")


@pytest.mark.parametrize("kind", proxies.KINDS)
def test_rendered_config_has_the_ports_upstreams_and_marker(kind: str, tmp_path: Path) -> None:
    spec = ProxySpec(kind, rest_port=18000, upstream_rest="127.0.0.1:19000", cpus=[0])
    text = proxies.render_config(spec, tmp_path)
    assert "127.0.0.1:18000" in text and "127.0.0.1:19000" in text
    assert f"{HOP_HEADER} {kind}" in text and "$" not in text.replace("$http_host", "")
    assert "grpc" not in text.split("global")[-1].lower() or kind == "nginx"
    both = proxies.render_config(
        ProxySpec(kind, rest_port=1, upstream_rest="h:2", grpc_port=3, upstream_grpc="h:4"), tmp_path
    )
    assert ("grpc_pass" if kind == "nginx" else "proto h2") in both


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_accepts_its_rendered_config(kind: str, tmp_path: Path) -> None:
    spec = ProxySpec(
        kind, rest_port=18000, upstream_rest="127.0.0.1:1", grpc_port=18001, upstream_grpc="127.0.0.1:2"
    )
    proxies.check_config(spec, tmp_path / kind)


# --------------------------------------------------------------------------------------------------
# In front of the real model server


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    if not any(proxies.available(k) for k in proxies.KINDS):
        pytest.skip("neither nginx nor haproxy is installed: apt-get install nginx haproxy")
    with model_server() as s:
        yield s


def _post(port: int, path: str, body: bytes, n: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """n requests on one kept-alive connection."""
    out = []
    with HttpClient("127.0.0.1", port, timeout_s=20) as c:
        for _ in range(n):
            r = c.request("POST", path, body)
            out.append((r.status, r.headers, r.body))
    return out


def _cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_rest_and_grpc_through_the_proxy_answer_as_the_model_marked(
    kind: str, model: ModelServer, tmp_path: Path
) -> None:
    cpu = min(os.sched_getaffinity(0))
    spec = ProxySpec(
        kind,
        rest_port=free_port(),
        upstream_rest=model.rest,
        grpc_port=free_port(),
        upstream_grpc=model.grpc,
        cpus=[cpu],
    )
    assert model.rest_port is not None
    direct_tf = _post(model.rest_port, "/v1/models/flowers:predict", TF_JSON)[0]
    direct_v2 = _post(model.rest_port, "/v2/models/flowers/infer", V2_JSON)[0]
    direct_grpc = grpc_call(model.grpc, PREDICT, TF_BIN)
    assert HOP_HEADER not in direct_tf[1] and HOP_HEADER not in direct_grpc.metadata
    with start_proxy(spec, tmp_path / kind) as proxy:
        members = proxy.members()
        assert members and all(_cpus_allowed(p) == str(cpu) for p in members), members
        assert is_ours(proxy.record())  # the local platform's liveness check holds for the proxy
        # REST, both protocols, 20 requests on one kept-alive connection
        for path, body, direct in (
            ("/v1/models/flowers:predict", TF_JSON, direct_tf),
            ("/v2/models/flowers/infer", V2_JSON, direct_v2),
        ):
            for status, headers, answer in _post(spec.rest_port, path, body, n=20):  # type: ignore[arg-type]
                assert status == 200 and headers[HOP_HEADER] == kind, (status, headers)
                assert answer == direct[2]
        v2.check_rest_answer(200, direct_v2[2], top_class=v2.FLOWER_TOP_CLASS)
        # an error answer passes through, marked too
        status, headers, answer = _post(spec.rest_port, "/v2/models/other/infer", V2_JSON)[0]  # type: ignore[arg-type]
        assert status == 404 and headers[HOP_HEADER] == kind and b"not found" in answer
        # gRPC: TF Predict and v2 ModelInfer, the marker in the initial metadata
        via = grpc_call(f"127.0.0.1:{spec.grpc_port}", PREDICT, TF_BIN)
        assert via.code == grpc.StatusCode.OK and via.metadata[HOP_HEADER] == kind
        assert via.body == direct_grpc.body
        infer = grpc_call(f"127.0.0.1:{spec.grpc_port}", v2.INFER_PATH, V2_BIN)
        assert infer.metadata[HOP_HEADER] == kind
        v2.check_grpc_answer(infer.code, infer.body, top_class=v2.FLOWER_TOP_CLASS, request_id="1")
        assert infer.body == grpc_call(model.grpc, v2.INFER_PATH, V2_BIN).body
        # a gRPC error status (a Trailers-Only answer upstream) passes through unchanged
        bad = grpc_call(f"127.0.0.1:{spec.grpc_port}", v2.INFER_PATH, TF_BIN)
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and "ModelInferRequest" in bad.details
        pid = proxy.pid
    assert proxy.members() == [] and not os.path.exists(f"/proc/{pid}")
    assert all(proxies.port_free("127.0.0.1", p) for p in spec.ports)
    assert (tmp_path / kind / proxies._CONF_NAME[kind]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_upstream_is_an_error_answer_still_marked(kind: str, tmp_path: Path) -> None:
    spec = ProxySpec(kind, rest_port=free_port(), upstream_rest=f"127.0.0.1:{free_port()}")
    with start_proxy(spec, tmp_path) as proxy:
        status, headers, _ = _post(spec.rest_port, "/v1/models/flowers:predict", TF_JSON)[0]  # type: ignore[arg-type]
        assert status in (502, 503) and headers[HOP_HEADER] == kind
    assert proxy.members() == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_busy_port_is_one_line_and_nothing_is_left(kind: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ProxySpec(kind, rest_port=port, upstream_rest="127.0.0.1:1")
        with pytest.raises(PlatformError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_proxy(spec, tmp_path)
    # a proxy that dies at start (here: a config it refuses) is reported with its log, and reaped
    spec = ProxySpec(kind, rest_port=free_port(), upstream_rest="127.0.0.1:1")
    real = proxies.render_config
    try:
        proxies.render_config = lambda s, f: real(s, f) + "\nthis is not a directive;\n"  # type: ignore[assignment]
        with pytest.raises(PlatformError, match=f"{kind} exited with code") as err:
            start_proxy(spec, tmp_path / "broken")
    finally:
        proxies.render_config = real
    assert "log:" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not proxies.available("nginx"), reason="nginx is not installed: apt-get install nginx")
def test_a_killed_nginx_master_leaves_workers_that_stop_orphans_finds(tmp_path: Path) -> None:
    """nginx's workers outlive their master; `orphans` names them (only once the master is gone, only
    the proxy's own), and `stop_orphans` stops them, as the local platform's teardown does."""
    spec = ProxySpec("nginx", rest_port=free_port(), upstream_rest=f"127.0.0.1:{free_port()}", workers=2)
    proxy = start_proxy(spec, tmp_path)
    try:
        record = proxy.record()
        workers = [p for p in proxy.members() if p != proxy.pid]
        assert len(workers) == 2
        assert proxies.orphans(record) == []  # the master runs: teardown stops the group through it
        assert proxies.orphans({**record, "role": "model_server"}) == []
        os.kill(proxy.pid, signal.SIGKILL)
        proxy.popen.wait(5)
        assert sorted(proxies.orphans(record)) == sorted(workers)
        assert all(proxies.port_free("127.0.0.1", p) is False for p in spec.ports)  # still serving
        assert sorted(proxies.stop_orphans(record)) == sorted(workers)
        assert proxy.members() == [] and proxies.orphans(record) == []
    finally:
        with contextlib.suppress(PlatformError):
            proxy.stop(grace_s=1.0)
