"""`platform: endpoints` faults beyond REST: gRPC over TLS through k6 (the CA file in the spec, a wrong
CA, certificate checks turned off), an `Authorization` token from the environment in no file of the
run, a gRPC arm that is unreachable, speaks the other protocol, or answers what fails the check, and
an arm whose server stops mid-run (REST and gRPC): one line naming the arm, exit 1, nothing left
running, the blocks measured before kept and still comparable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchbench.core.arms import Endpoint
from orchbench.core.errors import LoadTestError
from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.paths import PAYLOADS
from orchbench.core.platform import proxies
from results_schema import load_summary
from results_schema.samples import load_samples
from serving.runtime import free_port
from tests.endpoint_helpers import Cert, Front, nginx_front, predict_only_server, self_signed
from tests.helpers import ROOT, orchbench
from tests.hop_helpers import ModelServer, model_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not proxies.available("nginx"), reason="nginx is not installed: apt-get install nginx"
    ),
]
TOKEN = "Bearer orchbench-grpc-token-5d81aa"
TOKEN_ENV = "ORCHBENCH_TEST_GRPC_TOKEN"
TINY = ["--duration", "1", "--blocks", "1"]


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with model_server() as s:
        yield s


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("orchbench: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _tls_grpc_block(cert: Cert, port: int) -> str:
    """nginx terminating TLS for gRPC (HTTP/2) and passing it on in cleartext, refusing any call
    without the token, marking every answer `x-tls-hop: yes`."""
    return f"""server {{ listen 127.0.0.1:{port} ssl http2; ssl_certificate {cert.crt};
      ssl_certificate_key {cert.key};
      location / {{ if ($http_authorization != "{TOKEN}") {{ return 401; }}
        grpc_pass grpc://model; add_header x-tls-hop yes always; }} }}"""


@pytest.fixture(scope="module")
def tls_front(server: ModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cert, int]]:
    folder = tmp_path_factory.mktemp("tls-front")
    cert = self_signed(folder / "pki")
    port = free_port()
    with nginx_front(folder / "nginx", server.grpc, _tls_grpc_block(cert, port)):
        yield cert, port


def _env() -> dict[str, str]:
    return {**os.environ, TOKEN_ENV: TOKEN}


def _measure_tls(server: ModelServer, port: int, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return orchbench(
        "measure", "--no-floor", "--transport", "grpc", "--baseline", server.grpc,
        "--arm", f"tls=grpcs://localhost:{port}", "--header", f"Authorization=env:{TOKEN_ENV}",
        *TINY, "--out", str(out), *extra, timeout=300, env=_env(),
    )  # fmt: skip


def _secret_free(out: Path, proc: subprocess.CompletedProcess[str]) -> None:
    secret = TOKEN.split()[1]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20, files
    holding = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not holding, holding
    assert secret not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------
# gRPC over TLS


def test_grpc_tls_through_k6_with_the_ca_file_and_an_env_token(
    server: ModelServer, tls_front: tuple[Cert, int], tmp_path: Path
) -> None:
    cert, port = tls_front
    out = tmp_path / "out"
    proc = _measure_tls(server, port, out, "--ca-file", str(cert.crt), "--verify", "tls=x-tls-hop:yes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "summary.json").read_text())["grpc"]["by_arm"]["tls"]
    assert "x-tls-hop=yes" in res["arms"]["tls"]["verified"]
    assert res["overhead_ms"]["p50"]["estimate"] is not None
    # k6 itself called the arm over TLS with the token: every request it measured there succeeded
    arm = out / "raw" / "load-grpc-b0" / "tls"
    meta = json.loads((arm / "meta.json").read_text())
    assert meta["status"] == "ok" and meta["endpoint"]["tls"]["verify"] is True
    summary = load_summary(arm / meta["raw"])
    assert summary.requests > 0 and summary.tool == "k6"
    assert len(load_samples(arm / meta["samples"], measure_only=True)) == summary.requests
    _secret_free(out, proc)


def test_grpc_tls_with_a_wrong_ca_fails_in_one_line(
    server: ModelServer, tls_front: tuple[Cert, int], tmp_path: Path
) -> None:
    _cert, port = tls_front
    other = self_signed(tmp_path / "other-pki")  # same name, another key: not the front's issuer
    out = tmp_path / "out"
    proc = _measure_tls(server, port, out, "--ca-file", str(other.crt))
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = _last_line(proc)
    assert "arm 'tls'" in last and "TLS" in last, last
    assert not list((out / "raw").glob("*")) if (out / "raw").exists() else True  # nothing was measured
    _secret_free(out, proc)


def test_grpc_tls_with_checks_turned_off_passes(
    server: ModelServer, tls_front: tuple[Cert, int], tmp_path: Path
) -> None:
    _cert, port = tls_front
    out = tmp_path / "out"
    proc = _measure_tls(server, port, out, "--insecure")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "raw" / "load-grpc-b0" / "tls" / "meta.json").read_text())
    assert meta["status"] == "ok" and meta["endpoint"]["tls"]["verify"] is False


def _k6_grpc(target: str, tls: dict[str, object], out: Path) -> None:
    host, _, port = target.rpartition(":")
    ep = Endpoint(
        "grpc", "tls", host, int(port), "flowers", tls=tls, headers={"Authorization": {"env": TOKEN_ENV}}
    )
    profile = LoadProfile(mode="closed", workers=1, rate=None, duration_s=1, warmup_s=0, timeout_s=5)
    K6Tool().run(ep, PAYLOADS / "flowers.bin", profile, out)


def test_k6_itself_checks_the_grpc_certificate(
    tls_front: tuple[Cert, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the probe in front: k6 refuses a certificate its CA file does not vouch for, and
    accepts it with the right CA or with checks off (the probe is not what makes the checks)."""
    cert, port = tls_front
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    other = self_signed(tmp_path / "other-pki")
    target = f"localhost:{port}"
    with pytest.raises(LoadTestError) as err:
        _k6_grpc(target, {"ca_file": str(other.crt), "verify": True}, tmp_path / "wrong")
    stderr = (tmp_path / "wrong" / "k6.stderr.log").read_text()
    assert "certificate" in (str(err.value) + stderr).lower(), (str(err.value), stderr[-2000:])
    _k6_grpc(target, {"ca_file": str(cert.crt), "verify": True}, tmp_path / "right")
    _k6_grpc(target, {"ca_file": None, "verify": False}, tmp_path / "off")


@pytest.fixture(scope="module")
def rest_tls_front(
    server: ModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cert, int]]:
    folder = tmp_path_factory.mktemp("rest-tls-front")
    cert = self_signed(folder / "pki")
    port = free_port()
    block = f"""server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert.crt};
      ssl_certificate_key {cert.key}; location / {{ proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass http://model; }} }}"""
    with nginx_front(folder / "nginx", server.rest, block):
        yield cert, port


@pytest.mark.full  # REST over TLS through a run: tests/test_endpoints.py
def test_k6_itself_checks_the_rest_certificate(rest_tls_front: tuple[Cert, int], tmp_path: Path) -> None:
    cert, port = rest_tls_front
    other = self_signed(tmp_path / "other-pki")
    profile = LoadProfile(mode="closed", workers=1, rate=None, duration_s=1, warmup_s=0, timeout_s=5)

    def run(tls: dict[str, object], name: str) -> None:
        ep = Endpoint("rest", "tls", "localhost", port, "flowers", scheme="https", tls=tls)
        K6Tool().run(ep, PAYLOADS / "flowers.json", profile, tmp_path / name)

    with pytest.raises(LoadTestError, match="x509: unknown authority"):
        run({"ca_file": str(other.crt), "verify": True}, "wrong")
    run({"ca_file": str(cert.crt), "verify": True}, "right")
    run({"ca_file": None, "verify": False}, "off")


# --------------------------------------------------------------------------------------------------
# a gRPC arm that cannot be measured


def test_grpc_arm_unreachable(server: ModelServer, tmp_path: Path) -> None:
    dead = free_port()
    proc = orchbench(
        "measure", "--no-floor",
        "--transport", "grpc", "--baseline", server.grpc, "--arm", f"dead=127.0.0.1:{dead}",
        *TINY, "--out", str(tmp_path / "dead"), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = _last_line(proc)
    assert "arm 'dead'" in last and "not reachable" in last, last
    assert not (tmp_path / "dead" / "raw").exists() or not any((tmp_path / "dead" / "raw").iterdir())


def test_grpc_protocol_mismatch_a_v2_request_to_tf_serving(server: ModelServer, tmp_path: Path) -> None:
    with predict_only_server(b"") as tf_only:
        proc = orchbench(
            "measure", "--no-floor", "--transport", "grpc", "--protocol", "v2", "--baseline", server.grpc,
            "--arm", f"tfonly={tf_only}", *TINY, "--out", str(tmp_path / "mismatch"), timeout=300,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = _last_line(proc)
    assert "arm 'tfonly'" in last and "UNIMPLEMENTED" in last and "ModelInfer" in last, last


@pytest.mark.parametrize("transport", ["rest", pytest.param("grpc", marks=pytest.mark.full)])
def test_an_answer_that_fails_the_check_stops_the_run_before_the_load(
    server: ModelServer, tmp_path: Path, transport: str
) -> None:
    """The right protocol and status, but no scores in the answer (REST: `{"predictions": []}`;
    gRPC: an empty PredictResponse): refused by the arm's verification, before any block."""
    out = tmp_path / "out"
    if transport == "grpc":
        with predict_only_server(b"") as empty:
            proc = orchbench(
                "measure", "--no-floor",
                "--transport", "grpc", "--baseline", server.grpc, "--arm", f"empty={empty}",
                *TINY, "--out", str(out), timeout=300,
            )  # fmt: skip
        need = "outputs['scores']"
    else:
        port = free_port()
        block = f"""server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json;
          return 200 '{{"predictions": []}}'; }} }}"""
        with nginx_front(tmp_path / "front", server.rest, block):
            proc = orchbench(
                "measure", "--no-floor",
                "--baseline", f"http://{server.rest}", "--arm", f"empty=http://127.0.0.1:{port}",
                *TINY, "--out", str(out), timeout=300,
            )  # fmt: skip
        need = "predictions[0].scores"
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = _last_line(proc)
    assert "arm 'empty'" in last and need in last, last
    assert "start load-" not in proc.stderr, proc.stderr[-2000:]  # refused before any block


# --------------------------------------------------------------------------------------------------
# an arm whose server stops mid-run


def _started(stderr: Path, task: str) -> bool:
    return f"[orchbench] start {task}" in stderr.read_text(errors="replace")


def _ours(out: Path) -> list[str]:
    """Processes of the run (k6, its steps) still alive: any naming the run directory."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(out) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE and p.pid != os.getpid():
            found.append(f"{p.pid}: {cmd[:160]}")
    return found


@pytest.mark.parametrize("transport", [pytest.param("rest", marks=pytest.mark.full), "grpc"])
def test_an_arm_whose_server_stops_mid_run(server: ModelServer, tmp_path: Path, transport: str) -> None:
    port = free_port()
    if transport == "rest":
        upstream, arm = server.rest, f"front=http://127.0.0.1:{port}"
        block = f"""server {{ listen 127.0.0.1:{port}; location / {{ proxy_http_version 1.1;
          proxy_set_header Connection ""; proxy_pass http://model; }} }}"""
        base = f"http://{server.rest}"
    else:
        upstream, arm = server.grpc, f"front=127.0.0.1:{port}"
        block = f"server {{ listen 127.0.0.1:{port} http2; location / {{ grpc_pass grpc://model; }} }}"
        base = server.grpc
    out, err_path = tmp_path / "out", tmp_path / "stderr"
    b1 = f"load-{transport}-b1"
    with nginx_front(tmp_path / "front", upstream, block) as front, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchbench.cli", "measure", "--no-floor", "--transport", transport,
             "--baseline", base, "--arm", arm, "--duration", "2", "--blocks", "3",
             "--out", str(out)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        try:
            _kill_when_mid_block(front, proc, err_path, out / "tasks" / b1 / "fs" / "out" / "raw", b1)
            rc = proc.wait(120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait(10)
    stderr = err_path.read_text(errors="replace")
    assert rc == 1, stderr[-3000:]
    last = _last_line(subprocess.CompletedProcess([], rc, "", stderr))
    assert f"step {b1} failed" in last and "k6 (front arm)" in last and "requests failed" in last, last
    assert "[orchbench] done  cleanup" in stderr
    assert not _ours(out), _ours(out)
    # block 0 measured both arms and is kept, readable, and comparable on its own
    b0 = out / "raw" / f"load-{transport}-b0"
    for name in ("baseline", "front"):
        meta = json.loads((b0 / name / "meta.json").read_text())
        assert meta["status"] == "ok", meta
        assert load_summary(b0 / name / meta["raw"]).requests > 0
    metas = [json.loads((out / "raw" / b1 / a / "meta.json").read_text()) for a in ("baseline", "front")]
    assert all(m["status"] == "failed" for m in metas), metas
    cmp = orchbench(
        "compare", "--with", str(b0 / "front" / "k6-summary.json"),
        "--without", str(b0 / "baseline" / "k6-summary.json"),
        "--with-samples", str(b0 / "front" / "k6-samples.csv"),
        "--without-samples", str(b0 / "baseline" / "k6-samples.csv"), "--json",
    )  # fmt: skip
    assert cmp.returncode == 0, cmp.stderr
    res = json.loads(cmp.stdout)
    assert res["source"] == "samples" and len(res["ci95_ms"]["p50"]) == 2, res
    assert min(res["samples_n"].values()) > 0, res


def _kill_when_mid_block(
    front: Front, proc: subprocess.Popen[bytes], err_path: Path, raw: Path, task: str
) -> None:
    """Wait until `task` (block 2 of 3) has k6 rows on disk, then kill the arm's server."""
    deadline = time.monotonic() + 90
    csv = raw / "k6-samples.csv"
    while time.monotonic() < deadline:
        if _started(err_path, task) and csv.exists() and csv.stat().st_size > 4096:
            front.kill()
            return
        assert proc.poll() is None, err_path.read_text(errors="replace")[-3000:]
        time.sleep(0.05)
    pytest.fail(f"{task} never got under way")
