"""ghz `-O json`, with or without `histogram` / `details`. Percentiles are read by their `percentage`."""

from __future__ import annotations

from typing import Any

from results_schema._util import count, counts, ns, num, timestamp_ns
from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

_PERCENTILES = {50: "p50", 90: "p90", 95: "p95", 99: "p99"}


def looks_like(data: Any) -> bool:
    return isinstance(data, dict) and "count" in data and ("average" in data or "latencyDistribution" in data)


def _distribution(data: dict[str, Any], path: str) -> dict[str, int]:
    raw = data.get("latencyDistribution")
    if raw is None:  # ghz writes null when no request succeeded
        return {}
    if not isinstance(raw, list):
        raise ParseError(path, "'latencyDistribution' must be a list")
    out: dict[str, int] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ParseError(path, f"latencyDistribution[{i}] must be an object")
        pct = num(entry, "percentage", path, f"latencyDistribution[{i}].")
        lat = ns(num(entry, "latency", path, f"latencyDistribution[{i}]."))
        assert pct is not None and lat is not None
        name = _PERCENTILES.get(int(pct)) if pct == int(pct) else None
        if name:
            out[name] = lat
    return out


def parse(data: Any, path: str) -> ToolSummary:
    if not isinstance(data, dict):
        raise ParseError(path, "a ghz report must be a JSON object")
    requests = count(data, "count", path)
    assert requests is not None
    status_codes = counts(data.get("statusCodeDistribution"), path, "statusCodeDistribution")
    errors = counts(data.get("errorDistribution"), path, "errorDistribution")
    successes = status_codes.get("OK", 0) if status_codes else requests - sum(errors.values())
    if not 0 <= successes <= requests:
        raise ParseError(path, f"{successes} successes out of {requests} requests is impossible")
    latency_ns = _distribution(data, path)
    for key, name in (("average", "mean"), ("fastest", "min"), ("slowest", "max")):
        value = ns(num(data, key, path, required=False))
        if value is not None:
            latency_ns[name] = value
    total = ns(num(data, "total", path, required=False))
    started = timestamp_ns(data.get("date"), path, "date")
    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    return ToolSummary(
        tool="ghz",
        source=path,
        requests=requests,
        successes=successes,
        status_codes=status_codes,
        errors=errors,
        latency_ns=latency_ns,
        throughput_rps=num(data, "rps", path, required=False),
        started_at_ns=started,
        ended_at_ns=None if started is None or total is None else started + total,
        duration_ns=total,
        options=dict(options or {}),
    )
