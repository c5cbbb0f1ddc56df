"""The k6 adapter against running servers: orchbench's no-op servers (REST + gRPC, in this process)
and the real local serving stack; artifacts, warm-up exclusion, error accounting, clean-up."""

from __future__ import annotations

import collections
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError, LoadTestError
from orchbench.core.floor import GrpcNoopServer, RestNoopServer, synthetic_payloads
from orchbench.core.loadtools._process import run_bounded
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.loadtools.k6_options import build_options
from orchbench.core.loadtools.rotation import balanced_rotation
from results_schema import k6 as k6_summary
from results_schema.samples import load_samples

PROFILE = LoadProfile(mode="closed", workers=1, duration_s=1.0, warmup_s=1.0, timeout_s=2.0)
CPUS = {sorted(os.sched_getaffinity(0))[0]}


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


@pytest.fixture
def out_dir(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "k6"
    yield out
    assert processes_mentioning(str(out)) == [], "a k6 process outlived its run"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return synthetic_payloads(tmp_path_factory.mktemp("payloads"))


def summary_of(run: LoadRun) -> dict[str, object]:
    data = json.loads(run.raw_path.read_text())
    assert {"metrics", "state", "options"} <= set(data)  # handleSummary's data object
    return data


def measure_key(transport: str) -> str:
    return ("http_req_duration" if transport == "rest" else "grpc_req_duration") + "{scenario:measure}"


def test_options_shape() -> None:
    opts = build_options(LoadProfile(workers=2, duration_s=30, warmup_s=5, timeout_s=20), "rest")
    assert opts["scenarios"]["warmup"] == {
        "executor": "constant-vus",
        "vus": 2,
        "duration": "5s",
        "gracefulStop": "0s",
        "exec": "warmup",
    }
    assert opts["scenarios"]["measure"] == {
        "executor": "constant-vus",
        "vus": 2,
        "duration": "30s",
        "exec": "measure",
        "gracefulStop": "21s",
        "startTime": "5s",
    }
    assert "http_req_duration{scenario:measure}" in opts["thresholds"]
    open_opts = build_options(
        LoadProfile(mode="open", workers=3, rate=12.5, duration_s=10, warmup_s=0), "grpc"
    )
    assert open_opts["scenarios"] == {
        "measure": {
            "executor": "constant-arrival-rate",
            "rate": 12500,
            "timeUnit": "1000s",
            "duration": "10s",
            "preAllocatedVUs": 3,
            "maxVUs": 3,
            "exec": "measure",
            "gracefulStop": "21s",
        }
    }
    assert "grpc_req_duration{scenario:measure}" in open_opts["thresholds"]
    for bad in (
        LoadProfile(duration_s=0.5),
        LoadProfile(warmup_s=0.5),
        LoadProfile(mode="open", rate=None),
        LoadProfile(workers=0),
    ):
        with pytest.raises(ConfigError):
            build_options(bad, "rest")


def test_run_bounded_kills_the_process_group_on_timeout(tmp_path: Path) -> None:
    marker = str(tmp_path / "sleeper")
    start = time.monotonic()
    done = run_bounded(["sh", "-c", f"sleep 30 & sleep 30; echo {marker}"], 0.5)
    assert done.timed_out and done.exit_code < 0
    assert time.monotonic() - start < 10
    time.sleep(0.2)
    assert processes_mentioning(marker) == []


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_k6_against_a_server(transport: str, payloads: tuple[Path, Path], out_dir: Path) -> None:
    from tensorflow_serving.apis import predict_pb2

    payload = payloads[0] if transport == "rest" else payloads[1]
    server = RestNoopServer(record=True) if transport == "rest" else GrpcNoopServer(record=True)
    with server:
        run = K6Tool().run(server.endpoint(), payload, PROFILE, out_dir, cpus=CPUS)
    # artifacts: the summary holds the measure submetric; the CSV parses; counts agree
    summary = summary_of(run)
    trend = summary["metrics"][measure_key(transport)]["values"]  # type: ignore[index]
    assert run.samples_path is not None
    df = load_samples(run.samples_path, "k6")
    measured, warm = df[df["phase"] == "measure"], df[df["phase"] == "warmup"]
    assert df.attrs["checks"] == "joined"
    assert len(measured) == trend["count"] > 0
    assert measured["ok"].all() and run.extra["counts"]["failed"] == 0
    parsed = k6_summary.parse(summary, str(run.raw_path))  # the lead's summary parser reads it
    assert parsed.options["metric"] == measure_key(transport) and parsed.requests == len(measured)
    assert parsed.latency_ns["p50"] == pytest.approx(measured["latency_ns"].median(), rel=0.02)
    # warm-up ran, is excluded, and ended before the first measured request started (one VU, no overlap)
    assert len(warm) > 0
    assert (warm["ts_ns"] + warm["latency_ns"]).max() <= measured["ts_ns"].min()
    ends = (df["ts_ns"] + df["latency_ns"]).to_numpy()
    assert (ends[:-1] <= df["ts_ns"].to_numpy()[1:]).all()  # closed loop, 1 worker: never 2 in flight
    # the server saw exactly the requests k6 reports, carrying the payload
    assert len(server.received) == len(df)
    if transport == "rest":
        assert set(server.received) == {payload.read_bytes()}  # byte for byte
    else:
        original = payload.read_bytes()
        want = predict_pb2.PredictRequest.FromString(original)
        # k6 re-encodes the message from its JSON form (Go's field/map order varies): same message, same size
        assert {len(r) for r in server.received} == {len(original)}
        assert all(predict_pb2.PredictRequest.FromString(r) == want for r in server.received)
    # how it ran
    assert run.command[:3] == ["/usr/bin/taskset", "-c", str(next(iter(CPUS)))] or run.command[0].endswith(
        "taskset"
    )
    assert run.tool_version.startswith("k6 v") and run.exit_code == 0
    assert run.extra["env"]["K6_CSV_TIME_FORMAT"] == "unix_nano"


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_k6_target_answering_errors(transport: str, payloads: tuple[Path, Path], out_dir: Path) -> None:
    payload = payloads[0] if transport == "rest" else payloads[1]
    server = RestNoopServer(status=503) if transport == "rest" else GrpcNoopServer(status="UNAVAILABLE")
    with server, pytest.raises(LoadTestError) as info:
        K6Tool().run(server.endpoint(), payload, PROFILE, out_dir)
    run: LoadRun = info.value.run  # type: ignore[attr-defined]
    counts = run.extra["counts"]
    status = "503" if transport == "rest" else "Unavailable"
    assert (
        str(info.value)
        == f"k6: {counts['requests']} of {counts['requests']} requests failed (status {status})"
    )
    assert counts["failed"] == counts["requests"] > 0 and counts["status"] == {status: counts["requests"]}
    assert run.raw_path.exists() and run.samples_path is not None and run.samples_path.exists()
    trend = summary_of(run)["metrics"][measure_key(transport)]["values"]  # type: ignore[index]
    assert trend["count"] == counts["requests"]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_k6_target_down(transport: str, payloads: tuple[Path, Path], out_dir: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = Endpoint(transport, "with", "127.0.0.1", port, "flowers")  # type: ignore[arg-type]
    payload = payloads[0] if transport == "rest" else payloads[1]
    with pytest.raises(
        LoadTestError, match=r"^k6: \d+ of \d+ requests failed \(status 0: .*connection refused"
    ):
        try:
            K6Tool().run(endpoint, payload, PROFILE, out_dir)
        except LoadTestError as exc:
            run = exc.run  # type: ignore[attr-defined]
            assert run.raw_path.exists() and run.samples_path is not None
            assert run.extra["counts"]["ok"] == 0
            raise


@pytest.mark.slow
def test_k6_max_error_rate_tolerates_what_it_is_told(payloads: tuple[Path, Path], out_dir: Path) -> None:
    with RestNoopServer(status=503) as server:
        run = K6Tool(max_error_rate=1.0).run(server.endpoint(), payloads[0], PROFILE, out_dir)
    assert run.extra["counts"]["failed"] == run.extra["counts"]["requests"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_k6_against_the_local_stack(transport: str, tmp_path: Path, out_dir: Path) -> None:
    """The real model server behind the reference orchestrator ('with' arm), started by LocalPlatform."""
    from orchbench.core.manifest import load_manifest, render
    from orchbench.core.paths import MANIFESTS, PAYLOADS
    from orchbench.core.platform.local import LocalPlatform, LocalPorts, read_cpu_plan
    from serving.runtime import free_port

    payload = PAYLOADS / ("flowers.json" if transport == "rest" else "flowers.bin")
    if not payload.exists():
        pytest.skip("payloads/ not generated yet")
    platform = LocalPlatform(
        tmp_path / "run", ports=LocalPorts(free_port(), free_port(), free_port()), shared_model=False
    )
    platform.taint()
    record = None
    try:
        manifest = render(load_manifest(MANIFESTS / "tf_flowers.yaml"), transport, "with")  # type: ignore[arg-type]
        record = platform.deploy(manifest, "with", tmp_path / "record.json")
        endpoint = platform.wait(record, 120)
        plan = read_cpu_plan(tmp_path / "run") or {}
        cpus = set(plan.get("loadtester_cpus") or []) or None
        run = K6Tool().run(endpoint, payload, PROFILE, out_dir, cpus=cpus)
    finally:
        if record is not None:
            platform.teardown(record)
        platform.untaint()
    trend = summary_of(run)["metrics"][measure_key(transport)]["values"]  # type: ignore[index]
    assert run.extra["counts"]["requests"] == trend["count"] > 0
    assert run.extra["counts"]["failed"] == 0 and run.extra["counts"]["checks"] == "joined"


def test_no_k6_left_behind() -> None:
    out = subprocess.run(["ps", "-eo", "pid,ppid,comm"], capture_output=True, text=True, check=True).stdout
    mine = [
        line
        for line in out.splitlines()[1:]
        if line.split()[2] == "k6" and int(line.split()[1]) == os.getpid()
    ]
    assert mine == []


# ---------------------------------------------------------------------------------------------------
# request-level interleaving: both arms in one k6 process


def _pair_servers(transport: str, status_without: object = None) -> tuple[object, object]:
    if transport == "rest":
        return RestNoopServer(record=True), RestNoopServer(record=True, status=status_without or 200)
    return GrpcNoopServer(record=True), GrpcNoopServer(record=True, status=status_without or "OK")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("first", ["with", "without"])
def test_k6_pair_alternates_and_splits_per_arm(
    transport: str, first: str, payloads: tuple[Path, Path], out_dir: Path
) -> None:
    import dataclasses

    payload = payloads[0] if transport == "rest" else payloads[1]
    srv_with, srv_without = _pair_servers(transport)
    with srv_with, srv_without:  # type: ignore[attr-defined]
        eps = {
            "with": dataclasses.replace(srv_with.endpoint(), arm="with"),  # type: ignore[attr-defined]
            "without": dataclasses.replace(srv_without.endpoint(), arm="without"),  # type: ignore[attr-defined]
        }
        order = [first, "without" if first == "with" else "with"]
        runs = K6Tool().run_pair([eps[a] for a in order], payload, PROFILE, out_dir, cpus=CPUS)
    servers = {"with": srv_with, "without": srv_without}
    frames = {}
    for arm in ("with", "without"):
        run = runs[arm]
        assert run.raw_path == out_dir.resolve() / arm / "k6-summary.json"
        parsed = k6_summary.parse(json.loads(run.raw_path.read_text()), str(run.raw_path))
        assert run.samples_path is not None
        df = load_samples(run.samples_path, "k6")
        measured = df[df["phase"] == "measure"]
        assert df.attrs["checks"] == "joined" and measured["ok"].all()
        # k6's own per-arm count, the split CSV and the arm's server agree
        assert parsed.requests == len(measured) == run.extra["counts"]["requests"] > 0
        # every recorded request reached the arm's server; one more may have: the iteration k6
        # interrupts at the end of a scenario has sent its request but records no sample
        assert len(df) <= len(servers[arm].received) <= len(df) + 1  # type: ignore[attr-defined]
        assert parsed.latency_ns["p50"] == pytest.approx(measured["latency_ns"].median(), rel=0.02)
        frames[arm] = df.assign(arm=arm)
    import pandas as pd

    both = pd.concat(frames.values()).sort_values("ts_ns")
    arms = both["arm"].tolist()
    assert arms[0] == first  # the block's first arm opens, then strict alternation (one VU)
    phases = both["phase"].tolist()
    breaks = [(i, phases[i], phases[i + 1]) for i, (a, b) in enumerate(itertools.pairwise(arms)) if a == b]
    assert not breaks, (breaks, len(arms))
    assert abs(len(frames["with"]) - len(frames["without"])) <= 1
    # the combined files stay beside the split ones
    assert (out_dir / "k6-summary.json").exists() and (out_dir / "k6-samples.csv").exists()


@pytest.mark.slow
def test_k6_pair_fails_on_the_failing_arm_and_keeps_both(payloads: tuple[Path, Path], out_dir: Path) -> None:
    import dataclasses

    srv_with, srv_without = _pair_servers("rest", status_without=503)
    with srv_with, srv_without:  # type: ignore[attr-defined]
        pair = [
            dataclasses.replace(srv_with.endpoint(), arm="with"),
            dataclasses.replace(srv_without.endpoint(), arm="without"),
        ]  # type: ignore[attr-defined]
        with pytest.raises(
            LoadTestError, match=r"^k6 \(without arm\): \d+ of \d+ requests failed \(status 503\)"
        ):
            try:
                K6Tool().run_pair(pair, payloads[0], PROFILE, out_dir, cpus=CPUS)
            except LoadTestError as exc:
                runs = exc.runs  # type: ignore[attr-defined]
                assert set(runs) == {"with", "without"}
                assert runs["with"].extra["counts"]["failed"] == 0
                raise


@pytest.mark.slow
def test_k6_walks_the_balanced_rotation_every_arm_after_every_pair(
    payloads: tuple[Path, Path], out_dir: Path
) -> None:
    """With `rotation` (loadtools.rotation.balanced_rotation: injected delays), the one VU walks
    the cycle over and over: every arm follows every ordered pair of arms, itself included, equally
    often, and every arm gets a third of the requests."""
    import dataclasses

    import pandas as pd

    names = ("a", "base", "b")
    servers = [RestNoopServer(record=True) for _ in range(3)]
    with servers[0], servers[1], servers[2]:
        pair = [dataclasses.replace(srv.endpoint(), arm=arm) for srv, arm in zip(servers, names, strict=True)]
        rotation = balanced_rotation(3)
        runs = K6Tool().run_arms(pair, payloads[0], PROFILE, out_dir, cpus=CPUS, rotation=rotation)
    assert json.loads((out_dir / "k6-config.json").read_text())["rotation"] == rotation
    frames = []
    for arm in names:
        df = load_samples(runs[arm].samples_path, "k6")  # type: ignore[arg-type]
        frames.append(df.assign(arm=arm))
    arms = pd.concat(frames).sort_values("ts_ns")["arm"].tolist()
    cycle = [names[i] for i in rotation]
    assert len(arms) >= 3 * len(cycle), len(arms)
    assert arms == [cycle[i % len(cycle)] for i in range(len(arms))], arms[:18]
    whole = len(arms) - len(arms) % len(cycle)  # the cycles walked to the end
    walked = arms[: whole + 2]
    follows = collections.Counter(zip(walked, walked[1:], walked[2:], strict=False))
    assert set(follows) == set(itertools.product(names, repeat=3))
    assert max(follows.values()) - min(follows.values()) <= 1, follows
    assert max(arms.count(a) for a in names) - min(arms.count(a) for a in names) <= len(cycle) // 3
