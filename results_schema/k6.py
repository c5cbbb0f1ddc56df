"""k6 end-of-test summaries, in ms, converted to ns here.

Two layouts: `--summary-export` (flat: `metrics.http_req_duration.med`) and the `handleSummary` data
object (nested: `metrics.http_req_duration.values.med`). orchbench's k6 scripts run a `warmup` and a
`measure` scenario and add thresholds on `{scenario:measure}` submetrics so that they appear in the
summary; when present, those submetrics are used, so warm-up requests never enter the result.
"""

from __future__ import annotations

from typing import Any

from results_schema._util import count, ns, num
from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

MEASURE_SCENARIO = "measure"
_TREND_KEYS = {
    "min": "min",
    "avg": "mean",
    "med": "p50",
    "p(90)": "p90",
    "p(95)": "p95",
    "p(99)": "p99",
    "max": "max",
}
_DURATIONS = ("http_req_duration", "grpc_req_duration")


def looks_like(data: Any) -> bool:
    metrics = data.get("metrics") if isinstance(data, dict) else None
    return isinstance(metrics, dict) and any(
        key.split("{", 1)[0] in _DURATIONS or key in ("iterations", "http_reqs") for key in metrics
    )


def _values(metric: Any, path: str, name: str) -> dict[str, Any]:
    if not isinstance(metric, dict):
        raise ParseError(path, f"metrics[{name!r}] must be an object")
    values = metric.get("values", metric)
    if not isinstance(values, dict):
        raise ParseError(path, f"metrics[{name!r}].values must be an object")
    return values


def _metric(metrics: dict[str, Any], base: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for key in (f"{base}{{scenario:{MEASURE_SCENARIO}}}", base):
        if key in metrics:
            return key, _values(metrics[key], path, key)
    return None


def _arm_tags(metrics: dict[str, Any]) -> list[str]:
    """The `arm` tags of submetrics (`http_req_duration{scenario:measure,arm:with}`): a paired run's
    combined summary carries both arms, which only its per-arm split may be read as one arm."""
    arms: set[str] = set()
    for key in metrics:
        if "{" in key:
            for tag in key.split("{", 1)[1].rstrip("}").split(","):
                name, _, value = tag.partition(":")
                if name.strip() == "arm" and value.strip():
                    arms.add(value.strip())
    return sorted(arms)


def parse(data: Any, path: str) -> ToolSummary:
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise ParseError(path, "a k6 summary must have a 'metrics' object")
    found = None
    for base in _DURATIONS:
        found = _metric(metrics, base, path)
        if found:
            break
    if found is None:
        raise ParseError(path, "k6 summary has neither http_req_duration nor grpc_req_duration")
    key, trend = found
    is_http = key.startswith("http_")
    latency_ns: dict[str, int] = {}
    for k6_key, name in _TREND_KEYS.items():
        value = ns(None if trend.get(k6_key) is None else num(trend, k6_key, path, f"{key}.") * 1e6)  # type: ignore[operator]
        if value is not None:
            latency_ns[name] = value
    if "p50" not in latency_ns and "mean" not in latency_ns:
        raise ParseError(path, f"{key} has no latency values")

    requests: int | None = None
    rate: float | None = None
    reqs = _metric(metrics, "http_reqs", path) if is_http else None
    if reqs:
        requests = count(reqs[1], "count", path, f"{reqs[0]}.")
        rate = num(reqs[1], "rate", path, f"{reqs[0]}.", required=False)
    if requests is None and "count" in trend:
        requests = count(trend, "count", path, f"{key}.")
    if requests is None:
        iters = _metric(metrics, "iterations", path)
        if iters:
            requests = count(iters[1], "count", path, f"{iters[0]}.")
            rate = num(iters[1], "rate", path, f"{iters[0]}.", required=False)
    if requests is None:
        raise ParseError(
            path, f"cannot tell how many requests were made (no http_reqs, {key} count or iterations)"
        )

    successes: int | None = None
    failed = _metric(metrics, "http_req_failed", path) if is_http else None
    if failed:
        # a Rate metric: 'passes' counts the true values, i.e. the FAILED requests
        n_failed = count(failed[1], "passes", path, f"{failed[0]}.", required=False)
        if n_failed is not None:
            successes = requests - n_failed
    checks = _metric(metrics, "checks", path)
    if checks and successes is None:
        fails = count(checks[1], "fails", path, f"{checks[0]}.", required=False)
        if fails == 0:
            successes = requests
    sent = _metric(metrics, "data_sent", path)
    received = _metric(metrics, "data_received", path)
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    run_ms = num(state, "testRunDurationMs", path, "state.", required=False) if state else None
    return ToolSummary(
        tool="k6",
        source=path,
        requests=requests,
        successes=successes,
        latency_ns=latency_ns,
        throughput_rps=rate,
        bytes_in_total=count(received[1], "count", path, "data_received.", required=False)
        if received
        else None,
        bytes_out_total=count(sent[1], "count", path, "data_sent.", required=False) if sent else None,
        duration_ns=ns(None if run_ms is None else run_ms * 1e6),
        options={"metric": key, **({"arms": arms} if (arms := _arm_tags(metrics)) else {})},
    )
