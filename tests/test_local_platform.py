"""LocalPlatform: CPU plan, deploy/wait/verify/teardown of both arms on ephemeral ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ArmVerificationError, ConfigError, DeployTimeout, PlatformError
from orchbench.core.manifest import load_manifest, render
from orchbench.core.paths import MANIFESTS
from orchbench.core.platform import local as local_mod
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.local import LocalPlatform, LocalPorts, read_cpu_plan
from serving.runtime import free_port

BASE = load_manifest(MANIFESTS / "tf_flowers.yaml")


def _ports() -> LocalPorts:
    return LocalPorts(free_port(), free_port(), free_port())


def _gone(record: DeploymentRecord) -> None:
    for proc in record.details["processes"]:
        state = None
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{proc['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in (None, "Z"), f"{proc['role']} pid {proc['pid']} still running"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    plat = LocalPlatform(tmp_path / "run", ports=_ports())
    plat.taint()
    yield plat
    plat.untaint()


def test_cpu_plan_written_read_and_removed(tmp_path: Path) -> None:
    plat = LocalPlatform(tmp_path)
    assert read_cpu_plan(tmp_path) is None
    plan = plat.taint()
    assert read_cpu_plan(tmp_path) == plan
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        assert plan["pinned"] is True
        assert plan["loadtester_cpus"] == cpus[:1] and plan["serving_cpus"] == cpus[1:]
    else:
        assert plan["pinned"] is False and "no pinning" in plan["reason"]
    plat.untaint()
    plat.untaint()  # idempotent
    assert read_cpu_plan(tmp_path) is None
    assert LocalPlatform(tmp_path, cpu_pinning=False).taint()["pinned"] is False


def test_bad_constructor_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalPorts(8000, 8000, 9100)
    with pytest.raises(ConfigError):
        LocalPlatform(tmp_path, inject_delay_ms=-1)


ROLES = {
    ("with", True): ["orchestrator"],  # in front of the "without" arm's model process
    ("with", False): ["model_server", "orchestrator"],
    ("without", True): ["model_server"],
}


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize(("arm", "shared"), list(ROLES))
def test_deploy_wait_verify_teardown(tmp_path: Path, transport: str, arm: str, shared: bool) -> None:
    platform = LocalPlatform(tmp_path / "run", ports=_ports(), shared_model=shared)
    platform.taint()
    base = None
    if arm == "with" and shared:
        base = platform.deploy(render(BASE, transport, "without"), "without", tmp_path / "base.json")  # type: ignore[arg-type]
        platform.wait(base, timeout_s=60)
    manifest = render(BASE, transport, arm)  # type: ignore[arg-type]
    record_path = tmp_path / f"record-{arm}-{transport}.json"
    record = platform.deploy(manifest, arm, record_path)  # type: ignore[arg-type]
    try:
        loaded = DeploymentRecord.load(record_path)  # what a later step sees
        assert loaded == record
        assert [p["role"] for p in loaded.details["processes"]] == ROLES[(arm, shared)]
        endpoint = platform.wait(loaded, timeout_s=60)
        expected_port = (
            platform.ports.with_orchestrator if arm == "with" else platform.ports.without_orchestrator
        )
        assert (endpoint.port, endpoint.transport, endpoint.arm) == (expected_port, transport, arm)
        evidence = platform.verify_arm(loaded, endpoint)
        assert evidence.orchestrator_on_path == (arm == "with")
        assert ("executor" in evidence.how) == (arm == "with")
        if loaded.details["cpu_pinning"]:
            for proc in loaded.details["processes"]:
                assert os.sched_getaffinity(proc["pid"]) == set(loaded.details["serving_cpus"])
        # an arm claiming to be the other one is caught
        other = Endpoint(
            endpoint.transport,
            "without" if arm == "with" else "with",
            endpoint.host,
            endpoint.port,
            endpoint.model_name,
        )
        with pytest.raises(ArmVerificationError):
            platform.verify_arm(loaded, other)
    finally:
        platform.teardown(DeploymentRecord.load(record_path))
        if base is not None:
            platform.teardown(base)
        platform.untaint()
    _gone(record)
    platform.teardown(DeploymentRecord.load(record_path))  # idempotent
    if base is not None:
        _gone(base)


@pytest.mark.slow
def test_with_arm_needs_the_shared_model_running(platform: LocalPlatform, tmp_path: Path) -> None:
    with pytest.raises(
        PlatformError, match=r"arm 'with' fronts .* nothing listens there: deploy the baseline"
    ):
        platform.deploy(render(BASE, "rest", "with"), "with", tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_port_in_use_is_refused_before_starting(platform: LocalPlatform, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", platform.ports.without_orchestrator))
        holder.listen()
        with pytest.raises(PlatformError, match=f"port {platform.ports.without_orchestrator} "):
            platform.deploy(BASE, "without", tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_bind_failure_of_the_server_is_detected(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_mod, "port_free", lambda host, port: True)  # skip the pre-check
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", platform.ports.without_orchestrator))
        holder.listen()
        record = platform.deploy(BASE, "without", tmp_path / "r.json")
        try:
            with pytest.raises(
                PlatformError, match=f"could not bind port {platform.ports.without_orchestrator}"
            ):
                platform.wait(record, timeout_s=60)
        finally:
            platform.teardown(record)
    _gone(record)


@pytest.mark.slow
def test_wait_times_out_with_last_error_and_reports_dead_servers(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    record = platform.deploy(BASE, "without", tmp_path / "r.json")
    try:
        with pytest.raises(DeployTimeout, match=r"last error: .*model_server log"):
            platform.wait(record, timeout_s=0.0)
    finally:
        platform.teardown(record)
    _gone(record)
    broken = LocalPlatform(tmp_path / "run2", ports=_ports(), python="/bin/false")
    record = broken.deploy(BASE, "without", tmp_path / "r2.json")
    with pytest.raises(PlatformError, match=r"died \(exit code 1\)"):
        broken.wait(record, timeout_s=10)
    broken.teardown(record)


def test_teardown_never_signals_an_unrelated_process(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = DeploymentRecord(
            platform="local",
            name="x",
            transport="rest",
            arm="without",
            model_name="flowers",
            details={
                "processes": [
                    {
                        "role": "model_server",
                        "pid": sleeper.pid,
                        "pgid": sleeper.pid,
                        "cmdline": ["python", "-m", "serving.model_server"],
                        "starttime": None,
                        "log": str(tmp_path / "x.log"),
                        "port": 1,
                    }
                ]
            },
        )
        LocalPlatform(tmp_path).teardown(record)
        assert sleeper.poll() is None  # still running: the pid is not the recorded command
    finally:
        sleeper.kill()
        sleeper.wait()
