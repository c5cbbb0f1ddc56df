"""KServe's Python model server as the local platform's model server, for real: it answers like
the bundled server on the flower photo (V1 for tfserving, V2 on REST and gRPC), is pinned, bound to
127.0.0.1, verified as KServe's, torn down with nothing left (also when it dies or cannot bind), and
runs `orchbench run` with the v2 protocol on both transports, k6 checking every answer.

Needs KServe's virtual environment (`make kserve-venv`, which `make test` builds first); without it
these tests try to build it once and skip, saying why, if that fails."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
import yaml

from orchbench.core.errors import PlatformError
from orchbench.core.manifest import load_manifest, render
from orchbench.core.paths import MANIFESTS, PAYLOADS
from orchbench.core.platform import kserve_local
from orchbench.core.platform import local as local_mod
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.local import LocalPlatform, LocalPorts
from serving import lease, v2
from serving.runtime import free_port
from tests.helpers import ROOT, alive, orchbench
from tests.pipeline_specs import tiny_spec

pytestmark = pytest.mark.slow

BASE = load_manifest(MANIFESTS / "tf_flowers.yaml")
#: KServe's answers and the bundled server's come from the same ONNX file, decoding code and
#: onnxruntime build; JSON float printing and FP32 round trips are all that may differ.
SCORE_TOL = 1e-6


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    try:
        return kserve_local.ensure()
    except kserve_local.KServeUnavailable as exc:
        pytest.skip(f"KServe's virtual environment is not available: {exc}")


def _ports() -> LocalPorts:
    return LocalPorts(free_port(), free_port(), free_port())


@contextlib.contextmanager
def _deployed(
    run: Path, transport: str, protocol: str, model_server: str = "kserve"
) -> Iterator[tuple[LocalPlatform, DeploymentRecord]]:
    plat = LocalPlatform(
        run, ports=_ports(), model_server=model_server, endpoint_extras={"protocol": protocol}
    )
    plat.taint()
    path = run / f"{model_server}-{protocol}-{transport}.json"
    record = plat.deploy(render(BASE, transport, "without"), "base", path, hop="model")  # type: ignore[arg-type]
    try:
        yield plat, DeploymentRecord.load(path)
    finally:
        plat.teardown(DeploymentRecord.load(path))
        plat.untaint()
        for proc in record.details["processes"]:
            assert not alive(int(proc["pid"])), f"{proc['role']} pid {proc['pid']} left running"


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _rest_answers(port: int) -> dict[str, tuple[int, list[float], list[int]]]:
    """(top class, scores, classes) of the V1 (tfserving) and V2 REST answers to the flower photo."""
    status, body = _post(port, "/v1/models/flowers:predict", (PAYLOADS / "flowers.json").read_bytes())
    assert status == 200, body[:300]
    pred = json.loads(body)["predictions"][0]
    assert pred["key"] == "1" and pred["label"]
    status, body = _post(port, "/v2/models/flowers/infer", (PAYLOADS / "flowers_v2.json").read_bytes())
    answer = v2.check_rest_answer(status, body, top_class=v2.FLOWER_TOP_CLASS, request_id="1")
    return {
        "v1": (pred["prediction"], pred["scores"], []),
        "v2": (answer.prediction, answer.scores, answer.classes),
    }


def _grpc_answer(port: int) -> tuple[int, list[float], list[int]]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/" + v2.INFER_PATH.lstrip("/"))
        body = call((PAYLOADS / "flowers_v2.bin").read_bytes(), timeout=10)
    answer = v2.check_grpc_answer("OK", body, top_class=v2.FLOWER_TOP_CLASS, request_id="1")
    return answer.prediction, answer.scores, answer.classes


def _same(got: tuple[int, list[float], list[int]], want: tuple[int, list[float], list[int]]) -> None:
    assert got[0] == want[0] == v2.FLOWER_TOP_CLASS
    assert len(got[1]) == len(want[1]) == 5
    assert max(abs(a - b) for a, b in zip(got[1], want[1], strict=True)) <= SCORE_TOL
    assert got[2] == want[2]


def _listening(pid: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == "LISTEN"]


def test_kserve_answers_like_the_bundled_server_on_both_protocols_and_transports(
    kserve_python: Path, tmp_path: Path
) -> None:
    with _deployed(tmp_path / "b", "rest", "v2", model_server="bundled") as (bplat, brec):
        bundled = _rest_answers(bplat.wait(brec, 60).port)
    with _deployed(tmp_path / "k", "rest", "v2") as (plat, record):
        endpoint = plat.wait(record, 90)
        kserve = _rest_answers(endpoint.port)
        proc = record.details["processes"][0]
        assert proc["role"] == "kserve_server" and proc["cmdline"][0] == str(kserve_python)
        assert set(_listening(proc["pid"])) == {"127.0.0.1"}
        if record.details["cpu_pinning"]:
            assert os.sched_getaffinity(proc["pid"]) == set(record.details["serving_cpus"])
        evidence = plat.verify_arm(record, endpoint)
        assert evidence.verified and f"port {endpoint.port}: kserve 0.21.0" in evidence.how
        # what the answer checks must refuse: a TF-Serving body on the V2 route, a V2 body on V1
        status, _ = _post(endpoint.port, "/v2/models/flowers/infer", (PAYLOADS / "flowers.json").read_bytes())
        assert status in (400, 422)
        status, body = _post(
            endpoint.port, "/v1/models/flowers:predict", (PAYLOADS / "flowers_v2.json").read_bytes()
        )
        assert status == 400 and b"Open Inference Protocol body" in body
    with _deployed(tmp_path / "g", "grpc", "v2") as (plat, record):
        endpoint = plat.wait(record, 90)
        grpc_kserve = _grpc_answer(endpoint.port)
        assert "gRPC initial metadata" in plat.verify_arm(record, endpoint).how
        assert set(_listening(record.details["processes"][0]["pid"])) <= {"127.0.0.1", "::ffff:127.0.0.1"}
    _same(kserve["v1"], bundled["v1"])
    _same(kserve["v2"], bundled["v2"])
    _same(grpc_kserve, bundled["v2"])


def test_a_kserve_server_that_dies_is_one_line_and_nothing_is_left(
    kserve_python: Path, tmp_path: Path
) -> None:
    with _deployed(tmp_path, "grpc", "v2") as (plat, record):
        plat.wait(record, 90)
        pid = int(record.details["processes"][0]["pid"])
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            PlatformError, match=rf"kserve_server \(pid {pid}, port \d+\) died \(exit code -9\)"
        ):
            plat.wait(record, 5)


def test_a_port_kserve_cannot_bind_is_named(
    kserve_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_mod, "port_free", lambda host, port: True)  # skip the pre-check
    plat = LocalPlatform(tmp_path, ports=_ports(), model_server="kserve", endpoint_extras={"protocol": "v2"})
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", plat.ports.without_orchestrator))
        holder.listen()
        record = plat.deploy(render(BASE, "rest", "without"), "without", tmp_path / "r.json")
        try:
            with pytest.raises(
                PlatformError, match=rf"could not bind port {plat.ports.without_orchestrator}"
            ):
                plat.wait(record, 60)
        finally:
            plat.teardown(record)
    assert not alive(int(record.details["processes"][0]["pid"]))


def test_a_kserve_server_stops_when_its_run_is_gone(
    kserve_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's lease (serving.lease): a run killed outright takes KServe's server with it."""
    owner = subprocess.Popen(["sleep", "120"])
    monkeypatch.setenv(lease.OWNER_ENV, lease.owner_value(owner.pid))
    try:
        with _deployed(tmp_path, "rest", "v2") as (plat, record):
            plat.wait(record, 90)
            pid = int(record.details["processes"][0]["pid"])
            owner.kill()
            owner.wait()
            deadline = time.monotonic() + 15
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(pid), "KServe's server outlived its run's owner"
    finally:
        owner.kill()
        owner.wait()


def _kserve_pids() -> set[int]:
    out = set()
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if kserve_local.MODULE in (proc.info["cmdline"] or []):
                out.add(proc.pid)
    return out


def test_v2_end_to_end_on_both_transports_against_kserve(kserve_python: Path, tmp_path: Path) -> None:
    """`orchbench run`, protocol v2, local.model_server kserve: KServe's server direct as the baseline
    and nginx in front of it (without nginx: a second KServe process, the A/A arm); k6 rotating the
    arms request by request on REST and gRPC, every answer checked."""
    before = _kserve_pids()
    arms: list[dict[str, object]] = [{"name": "kserve", "baseline": True}]
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        arms.append({"name": "nginx", "hop": "nginx"})
    else:
        arms.append({"name": "aa", "aa": True})
    data = yaml.safe_load(tiny_spec(tmp_path, blocks=1, duration_s=1, model_server="kserve").read_text())
    data.update(protocol="v2", arms=arms, manifest=str(ROOT / "manifests" / "tf_flowers.yaml"))
    data["local"]["ready_timeout_s"] = 120.0
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(spec_path), "--out", str(out), timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    names = [str(a["name"]) for a in arms]
    for transport in ("rest", "grpc"):
        for arm in names[1:]:
            res = summary[transport]["by_arm"][arm]
            assert res["arms"][arm]["verified"] and res["arms"]["kserve"]["verified"]
            assert res["overhead_ms"]["p50"]["estimate"] is not None
    metas = [json.loads(p.read_text()) for p in out.glob("raw/*/*/meta.json")]
    assert sorted({(m["endpoint"]["transport"], m["endpoint"]["arm"]) for m in metas}) == sorted(
        (t, a) for t in ("rest", "grpc") for a in names
    )
    assert all(m["status"] == "ok" and m["endpoint"]["protocol"] == "v2" for m in metas)
    logs = sorted(out.rglob("*-model-*.log"))
    assert logs and all("orchbench-serving ready kserve 0.21.0" in p.read_text() for p in logs)
    assert _kserve_pids() <= before, "a KServe server outlived its run"
    assert not [p for p in out.rglob("*") if p.is_symlink()], "links into the source in the run directory"
