"""What k6 is told: the `options` object (scenarios, per-arm thresholds on the measure submetrics, trend
stats, system tags), each arm's target in the config the k6 scripts read, the TLS environment, and the
scripts themselves (k6_scripts/). The adapter that writes and runs them is orchbench.core.loadtools.k6."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools._process import seconds
from orchbench.core.loadtools.base import LoadProfile
from orchbench.fsio import write_bytes

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


def build_options(
    profile: LoadProfile, transport: str, iterations: int | None = None, arms: list[str] | None = None
) -> dict[str, Any]:
    """The k6 `options` object: scenarios, thresholds naming the measure submetrics, trend stats.
    With `arms` (request-level interleaving) the submetrics are per arm: `{scenario:measure,arm:a}`."""
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
    thresholds: dict[str, list[str]] = {}
    for sel in [f"scenario:measure,arm:{a}" for a in arms] if arms else ["scenario:measure"]:
        thresholds.update(submetric_thresholds(transport, sel, per_arm=bool(arms)))
    return {
        "scenarios": scenarios,
        "thresholds": thresholds,
        "summaryTrendStats": TREND_STATS,
        "systemTags": SYSTEM_TAGS,
        "discardResponseBodies": False,  # the check reads predictions[0].scores
        "setupTimeout": "10s",
        "teardownTimeout": "10s",
    }


def submetric_thresholds(transport: str, selector: str, per_arm: bool) -> dict[str, list[str]]:
    trend = "http_req_duration" if transport == "rest" else "grpc_req_duration"
    out = {
        f"{trend}{{{selector}}}": ["max>=0"],
        f"checks{{{selector}}}": ["rate>=0"],
        f"iterations{{{selector}}}": ["count>=0"],
    }
    if transport == "rest":
        out[f"http_reqs{{{selector}}}"] = ["count>=0"]
        out[f"http_req_failed{{{selector}}}"] = ["rate>=0"]
    if per_arm:  # a single-arm run reads these from the untagged metrics
        out[f"data_sent{{{selector}}}"] = ["count>=0"]
        out[f"data_received{{{selector}}}"] = ["count>=0"]
    return out


def arm_target(e: Endpoint) -> dict[str, Any]:
    """One arm's target in the k6 config: where, and its extra headers (gRPC: metadata). A header
    whose value comes from the environment is given by the variable's NAME (`env_headers`): the k6
    script reads it from its own environment, so no file of the run holds the value."""
    literal = {k: v for k, v in e.headers.items() if isinstance(v, str)}
    from_env = {k: v["env"] for k, v in e.headers.items() if isinstance(v, dict)}
    out: dict[str, Any] = {"arm": e.arm, "headers": literal, "env_headers": from_env}
    if e.transport == "rest":
        out["url"] = e.url
    else:
        out["target"] = e.grpc_target
        out["tls"] = e.tls is not None
        out["model_name"] = e.model_name  # v2: each arm's own model (ModelInferRequest.model_name)
        out["answer_check"] = e.answer_check
    return out


def check_rotation(rotation: list[int], arms: int, open_stage: bool) -> list[int]:
    """A closed-loop rotation names every arm's index (0 .. arms - 1), none other."""
    if open_stage or sorted(set(rotation)) != list(range(arms)):
        raise ConfigError("rotation: every arm's index, closed loop only")
    return rotation


def tls_env(endpoints: list[Endpoint], out_dir: Path) -> tuple[dict[str, str], bool]:
    """TLS for k6: the arms' CA files as one bundle named by SSL_CERT_FILE (Go's certificate pool
    reads it), and whether any arm turned certificate checks off (k6's insecureSkipTLSVerify)."""
    insecure = any(e.tls is not None and not e.tls.get("verify", True) for e in endpoints)
    cas = sorted({str(e.tls["ca_file"]) for e in endpoints if e.tls and e.tls.get("ca_file")})
    if not cas:
        return {}, insecure
    bundle = b"".join(Path(c).read_bytes().rstrip(b"\n") + b"\n" for c in cas)
    path = out_dir / "tls-ca-bundle.pem"
    write_bytes(path, bundle)
    return {"SSL_CERT_FILE": str(path)}, insecure


def script_path(transport: str) -> Path:
    ref = resources.files("orchbench.core.loadtools") / "k6_scripts" / f"{transport}.js"
    path = Path(str(ref))
    if not path.is_file():
        raise ConfigError(f"k6 script missing: {path}")
    return path
