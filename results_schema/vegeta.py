"""vegeta `report -type=json`. Old reports lack `90th`, `min` and `throughput`; `buckets` is optional."""

from __future__ import annotations

from typing import Any

from results_schema._util import count, counts, ns, num, obj, timestamp_ns
from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

_LATENCY_KEYS = {
    "min": "min",
    "mean": "mean",
    "50th": "p50",
    "90th": "p90",
    "95th": "p95",
    "99th": "p99",
    "max": "max",
}


def looks_like(data: Any) -> bool:
    return isinstance(data, dict) and "latencies" in data and "requests" in data and "success" in data


def parse(data: Any, path: str) -> ToolSummary:
    lat = obj(data, "latencies", path)
    requests = count(data, "requests", path)
    assert requests is not None
    success = num(data, "success", path)
    assert success is not None
    if not 0.0 <= success <= 1.0:
        raise ParseError(path, f"'success' is a ratio in [0, 1], got {success!r}")
    latency_ns: dict[str, int] = {}
    for key, name in _LATENCY_KEYS.items():
        value = ns(num(lat, key, path, "latencies.", required=key in ("mean", "50th", "95th", "99th", "max")))
        if value is not None:
            latency_ns[name] = value
    errors_raw = data.get("errors") or []
    if not isinstance(errors_raw, list) or not all(isinstance(e, str) for e in errors_raw):
        raise ParseError(path, "'errors' must be a list of strings")
    duration = ns(num(data, "duration", path, required=False))
    wait = ns(num(data, "wait", path, required=False))
    throughput = num(data, "throughput", path, required=False)
    started = timestamp_ns(data.get("earliest"), path, "earliest")
    ended = timestamp_ns(data.get("end"), path, "end")
    return ToolSummary(
        tool="vegeta",
        source=path,
        requests=requests,
        successes=round(success * requests),
        status_codes=counts(data.get("status_codes"), path, "status_codes"),
        errors={e: 1 for e in errors_raw},  # vegeta lists distinct error strings, without counts
        latency_ns=latency_ns,
        throughput_rps=throughput,
        bytes_in_total=count(obj(data, "bytes_in", path), "total", path, "bytes_in.", required=False)
        if isinstance(data.get("bytes_in"), dict)
        else None,
        bytes_out_total=count(obj(data, "bytes_out", path), "total", path, "bytes_out.", required=False)
        if isinstance(data.get("bytes_out"), dict)
        else None,
        started_at_ns=started,
        ended_at_ns=ended,
        duration_ns=None if duration is None else duration + (wait or 0),
    )
