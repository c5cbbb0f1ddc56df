"""`platform: endpoints` and `orchbench measure`: your own stack, nothing deployed. Against the bundled
model server with nginx in front (REST and gRPC, arms verified by the hop header), TLS with a
self-signed certificate and an Authorization header from the environment that no file of the run
directory holds, and the bad input: an unreachable arm, a TLS failure, a protocol mismatch (exit 1,
one line naming the arm), an arm named twice / no baseline (exit 2 before anything starts)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchbench.cli.measure_cmd import build_spec
from orchbench.core.errors import ConfigError
from orchbench.core.platform.proxies import HOP_HEADER, ProxySpec, start_proxy
from orchbench.core.spec import parse_spec
from serving.runtime import free_port
from tests.helpers import orchbench
from tests.hop_helpers import ModelServer, model_server

needs_nginx = pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed")
needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
TOKEN = "Bearer orchbench-test-token-9f2c1e"


def test_measure_spec_is_an_endpoints_spec_and_bad_input_is_exit_2() -> None:
    data = build_spec("http://127.0.0.1:1", ["nginx=http://127.0.0.1:2"], verify=["nginx=x-orchbench-hop"])
    spec = parse_spec(data)
    assert spec.platform == "endpoints" and spec.baseline == "baseline" and spec.interleave() == "request"
    assert spec.arm("nginx").verify[0].header == "x-orchbench-hop"
    with pytest.raises(ConfigError, match="named twice"):
        build_spec("http://h:1", ["a=http://h:2", "a=http://h:3"])
    with pytest.raises(ConfigError, match="--baseline"):
        build_spec(None, ["a=http://h:2"])
    with pytest.raises(ConfigError, match="platform endpoints needs the arm's grpc"):
        parse_spec(
            {
                "name": "x",
                "platform": "endpoints",
                "arms": [
                    {"name": "a", "baseline": True, "url": "http://h:1"},
                    {"name": "b", "url": "http://h:2"},
                ],
            }
        )
    for args in (
        ["--arm", "a=http://127.0.0.1:2", "--arm", "a=http://127.0.0.1:3"],
        ["--arm", "a=http://h:2"],
    ):
        extra = ["--baseline", "http://127.0.0.1:1"] if "a=http://h:2" not in args else []
        proc = orchbench("measure", *extra, *args, "--out", "/nonexistent/never-made")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "orchbench: error:" in proc.stderr
    assert not Path("/nonexistent/never-made").exists()


def test_env_headers_are_names_in_the_spec_dump() -> None:
    data = build_spec("http://h:1", ["a=http://h:2"], headers=["Authorization=env:MY_TOKEN"])
    dumped = json.dumps(parse_spec(data).to_json_dict())
    assert '"env": "MY_TOKEN"' in dumped


def test_certificate_checks_are_on_or_off_for_every_arm_alike() -> None:
    """k6 turns certificate checks off for its whole process: a spec mixing verify true and false
    across its TLS arms is refused before anything runs, one line naming both sides."""
    data = build_spec("https://h:1", ["a=https://h:2", "b=https://h:3"])
    data["arms"][1]["tls"] = {"verify": False}
    data["arms"][2]["tls"] = {"verify": True}
    with pytest.raises(ConfigError, match=r"tls\.verify false on a but true on b") as err:
        parse_spec(data)
    assert "\n" not in str(err.value)
    data["arms"][2]["tls"] = {"verify": False}
    assert parse_spec(data).arm("b").tls is not None


@contextmanager
def _nginx(tmp_path: Path, server: str, name: str = "n") -> Iterator[None]:
    """A hand-written nginx (the `server` block given), stopped afterwards."""
    folder = tmp_path / name
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""daemon off; worker_processes 1; pid {folder}/nginx.pid; error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_buffer_size 4m; proxy_buffering off;
  upstream model {{ server {server.split("|")[0]}; keepalive 4; }}
  {server.split("|")[1]} }}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)], start_new_session=True)
    time.sleep(0.5)
    try:
        assert proc.poll() is None, (folder / "error.log").read_text()
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (openssl)."""
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with model_server() as s:
        yield s


@pytest.mark.slow
@needs_nginx
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_measure_model_server_with_nginx_in_front(
    server: ModelServer, tmp_path: Path, transport: str
) -> None:
    spec = ProxySpec(
        "nginx",
        **(
            {"rest_port": free_port(), "upstream_rest": server.rest}
            if transport == "rest"
            else {"grpc_port": free_port(), "upstream_grpc": server.grpc}
        ),
    )
    with start_proxy(spec, tmp_path / "nginx"):
        if transport == "rest":
            base, arm = f"http://{server.rest}", f"nginx=http://127.0.0.1:{spec.rest_port}"
        else:
            base, arm = server.grpc, f"nginx=127.0.0.1:{spec.grpc_port}"
        out = tmp_path / "out"
        proc = orchbench(
            "measure", "--baseline", base, "--arm", arm, "--transport", transport,
            "--verify", f"nginx={HOP_HEADER}:nginx", "--verify", f"baseline=!{HOP_HEADER}",
            "--duration", "1", "--blocks", "2", "--out", str(out), timeout=400,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["floor_measured"] is True  # measure's floor step, on by default
    res = summary[transport]["by_arm"]["nginx"]
    assert res["baseline"] == "baseline" and res["overhead_ms"]["p50"]["estimate"] is not None
    assert f"{HOP_HEADER}=nginx" in res["arms"]["nginx"]["verified"]
    assert f"no {HOP_HEADER}" in res["arms"]["baseline"]["verified"]
    assert (out / "report.html").exists() and (out / "results.parquet").exists()
    assert "nginx" in proc.stdout and "baseline" in proc.stdout


@pytest.mark.slow
@needs_nginx
def test_endpoints_tls_and_an_env_token_that_no_file_holds(
    server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nginx terminates TLS (a certificate made here) in front of the model server and refuses any
    request without the token; the token comes from the environment and is in no file of the run."""
    crt, key = _cert(tmp_path)
    port = free_port()
    block = f"""{server.rest}|server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {crt};
      ssl_certificate_key {key};
      location / {{ if ($http_authorization != "{TOKEN}") {{ return 401; }}
        proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://model;
        add_header x-tls-hop yes always; }} }}"""
    env = {"ORCHBENCH_TEST_TOKEN": TOKEN}
    monkeypatch.setenv("ORCHBENCH_TEST_TOKEN", TOKEN)
    with _nginx(tmp_path, block):
        out = tmp_path / "out"
        proc = orchbench(
            "measure", "--no-floor",
            "--baseline", f"http://{server.rest}", "--arm", f"tls=https://localhost:{port}",
            "--header", "Authorization=env:ORCHBENCH_TEST_TOKEN", "--ca-file", str(crt),
            "--verify", "tls=x-tls-hop:yes", "--duration", "1", "--blocks", "1", "--out", str(out),
            timeout=400, env={**__import__("os").environ, **env},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        res = summary["rest"]["by_arm"]["tls"]
        assert summary["floor_measured"] is False and "switched off" in summary["floor_note"]  # --no-floor
        assert "x-tls-hop=yes" in res["arms"]["tls"]["verified"]
        assert "unverified" in res["arms"]["baseline"]["verified"]  # no check named for it
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) > 20
        secret = TOKEN.split()[1].encode()
        holding = [str(p) for p in files if secret in p.read_bytes()]
        assert not holding, holding
        assert secret.decode() not in proc.stdout + proc.stderr
        # certificate checks on: without the CA the arm fails in one line naming it, exit 1
        proc = orchbench(
            "measure", "--no-floor",
            "--baseline", f"http://{server.rest}", "--arm", f"tls=https://localhost:{port}",
            "--header", "Authorization=env:ORCHBENCH_TEST_TOKEN", "--duration", "1", "--blocks", "1",
            "--out", str(tmp_path / "out2"), timeout=400, env={**__import__("os").environ, **env},
        )  # fmt: skip
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert "arm 'tls'" in last and "TLS" in last, proc.stderr[-2000:]
        assert secret.decode() not in proc.stderr


@pytest.mark.slow
@needs_nginx
def test_unreachable_arm_and_protocol_mismatch_fail_in_one_line(server: ModelServer, tmp_path: Path) -> None:
    port = free_port()
    tf_only = f"""{server.rest}|server {{ listen 127.0.0.1:{port};
      location /v1/ {{ proxy_pass http://model; }} location / {{ return 404; }} }}"""
    with _nginx(tmp_path, tf_only):
        proc = orchbench(
            "measure", "--no-floor", "--protocol", "v2", "--baseline", f"http://{server.rest}",
            "--arm", f"tfonly=http://127.0.0.1:{port}", "--duration", "1", "--blocks", "1",
            "--out", str(tmp_path / "mismatch"), timeout=400,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "arm 'tfonly'" in last and "404" in last, last
    dead = free_port()
    proc = orchbench(
        "measure", "--no-floor",
        "--baseline", f"http://{server.rest}", "--arm", f"dead=http://127.0.0.1:{dead}",
        "--duration", "1", "--blocks", "1", "--out", str(tmp_path / "dead"), timeout=400,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "arm 'dead'" in last and "not reachable" in last, last
    assert (tmp_path / "dead" / "workflow.yaml").exists()  # the run directory is kept
