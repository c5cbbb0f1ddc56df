"""Is a parsed summary something that can be compared? Nonsense is refused before an overhead is.

A parser checks that a file is well formed; these check that it is plausible as one arm of a
comparison: requests were made, every latency is a positive number of nanoseconds, the mean lies in
[min, max], and it is one arm (not k6's combined summary of a paired run, which holds both). Two
arms must come from the same tool over the same transport: REST against gRPC, or k6 against ghz,
is a comparison of tools, not of an orchestrator. Each refusal is one ParseError naming the file and
the field.
"""

from __future__ import annotations

from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

__all__ = ["check_arm", "check_pair", "transport_of"]

_TRANSPORT = {"vegeta": "rest", "ghz": "grpc"}
#: Rounding ms -> ns in the parsers may move the mean past min or max by a few ns when all requests
#: took the same time; more than this is not rounding.
_TOLERANCE_NS = 1000


def transport_of(summary: ToolSummary) -> str:
    """rest or grpc: vegeta drives REST, ghz gRPC, k6 either (by the duration metric it reports)."""
    if summary.tool == "k6":
        return "grpc" if str(summary.options.get("metric", "")).startswith("grpc") else "rest"
    return _TRANSPORT.get(summary.tool, summary.tool)


def _field(summary: ToolSummary, name: str) -> str:
    """How the user's file names a latency field, for the message."""
    names = {
        "vegeta": {"min": "latencies.min", "mean": "latencies.mean", "max": "latencies.max"},
        "ghz": {"min": "fastest", "mean": "average", "max": "slowest"},
        "k6": {"min": "min", "mean": "avg", "max": "max", "p50": "med"},
    }
    metric = summary.options.get("metric")
    own = names.get(summary.tool, {}).get(name)
    if own is None:
        own = {"p50": "50th", "p90": "90th", "p95": "95th", "p99": "99th"}.get(name, name)
        if summary.tool == "k6":
            own = f"p({name[1:]})"
        elif summary.tool == "ghz":
            own = f"latencyDistribution {name[1:]}%"
        elif summary.tool == "vegeta":
            own = f"latencies.{own}"
    return f"{metric}.{own}" if summary.tool == "k6" and metric else own


def check_arm(summary: ToolSummary) -> None:
    """Refuse a summary that cannot be one arm of a comparison (one ParseError naming file and field)."""
    src = summary.source
    arms = summary.options.get("arms")
    if arms:
        raise ParseError(
            src,
            f"a k6 summary of a paired run holding the arms {', '.join(map(str, arms))} "
            f"(submetrics tagged arm:...), not one arm; compare the per-arm files its run wrote "
            "(raw/<task>/<arm>/), or the run directory",
        )
    if summary.requests <= 0:
        field = {"vegeta": "requests", "ghz": "count"}.get(summary.tool, "http_reqs.count / iterations.count")
        raise ParseError(src, f"{field} is {summary.requests}: no requests were made, nothing to compare")
    for name, value in summary.latency_ns.items():
        if value <= 0:
            raise ParseError(
                src,
                f"{_field(summary, name)} is {value / 1e6:g} ms: a latency must be greater than 0",
            )
    lat = summary.latency_ns
    lo, hi, mean = lat.get("min"), lat.get("max"), lat.get("mean")
    if lo is not None and hi is not None and lo > hi + _TOLERANCE_NS:
        raise ParseError(
            src,
            f"{_field(summary, 'min')} ({lo / 1e6:g} ms) is above {_field(summary, 'max')} ({hi / 1e6:g} ms)",
        )
    if mean is not None:
        if lo is not None and mean < lo - _TOLERANCE_NS:
            raise ParseError(
                src,
                f"{_field(summary, 'mean')} ({mean / 1e6:g} ms) is below {_field(summary, 'min')} "
                f"({lo / 1e6:g} ms): a mean lies within [min, max]",
            )
        if hi is not None and mean > hi + _TOLERANCE_NS:
            raise ParseError(
                src,
                f"{_field(summary, 'mean')} ({mean / 1e6:g} ms) is above {_field(summary, 'max')} "
                f"({hi / 1e6:g} ms): a mean lies within [min, max]",
            )


def check_pair(with_: ToolSummary, without: ToolSummary) -> None:
    """Both arms usable, and comparable with each other: the same tool over the same transport."""
    check_arm(with_)
    check_arm(without)
    if with_.tool != without.tool:
        raise ParseError(
            without.source,
            f"tool is {without.tool}, but the 'with' arm ({with_.source}) is {with_.tool}: "
            "compare two results of one load tester",
        )
    t_with, t_without = transport_of(with_), transport_of(without)
    if t_with != t_without:
        what = f" ({without.options['metric']})" if without.tool == "k6" else ""
        raise ParseError(
            without.source,
            f"transport is {t_without}{what}, but the 'with' arm ({with_.source}) is {t_with}: "
            "compare two results of one transport",
        )
