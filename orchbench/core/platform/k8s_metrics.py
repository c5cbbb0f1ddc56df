"""The hop's CPU and memory on a cluster, from the resource metrics API (`metrics.k8s.io/v1beta1`).

`GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector=...` answers PodMetrics: per pod a
`timestamp`, a `window` and per container `usage.cpu` (a rate in cores, e.g. "12345678n", "5m") and
`usage.memory` (the working set, e.g. "1234Ki"); the usage is averaged over [timestamp - window,
timestamp] (the API's own definition). metrics-server refreshes it every `--metric-resolution` (15 s
by default). Quantities are parsed with the kubernetes client's `parse_quantity`.

**From rates to CPU seconds** (`integrate`). Each distinct reading of a pod is a constant rate over
its interval (clipped so that it does not overlap the pod's previous reading). The measured window
[start, end] is not aligned with the readings, and the readings at its edges average in time outside
it: before the window the pod was idle between tasks or warming up, after it idle again, so they
read low. So a pod's CPU rate is the time-weighted mean of its readings that lie *inside* the window
(within the timestamps' one-second resolution), and its CPU seconds that rate times the part of the
window the pod was there (basis `inside`). A window too short to hold a whole reading (shorter than
about two metrics windows) falls back to the readings that overlap it, each weighted by its overlap
(basis `edges`: a low estimate when the window is short against the metrics window; the record says
so). Memory: the highest sum, over one poll, of the working sets read inside the window (peak MB).
How many readings the figure rests on is recorded (`samples`), and the figure is marked `source:
metrics-api`; where the API is missing (404: no metrics.k8s.io), unavailable (503), forbidden
(401/403: RBAC) or unreachable, the arm's record is `source: absent` with a one-line reason, and the
run goes on.

Clocks: the window is the load pod's wall clock, the readings' timestamps the nodes'; with NTP they
agree to well under the one-second resolution of the timestamps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3.exceptions
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.utils.quantity import parse_quantity

from orchbench.core.platform.k8s_common import api_error
from orchbench.core.platform.k8s_hops import ArmContainers, ContainerSet
from orchbench.core.resources import MB

METRICS_GROUP = "metrics.k8s.io"
METRICS_VERSION = "v1beta1"
METRICS_PLURAL = "pods"
SOURCE = "metrics-api"
ABSENT = "absent"
#: metav1.Time is written with one-second resolution: a reading's interval is known to within that.
TIMESTAMP_RESOLUTION_S = 1.0
#: How long one list call may take before it counts as a failed poll.
REQUEST_TIMEOUT_S = 10.0

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class MetricsUnavailable(Exception):
    """The metrics API cannot be read; the message is the one-line reason recorded with `absent`.
    `permanent`: asking again will not help (not served, or forbidden); otherwise (503, unreachable,
    a time-out) the next poll may succeed."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def parse_duration(text: str) -> float:
    """A Go duration as metav1.Duration writes it ("15s", "1m0.5s", "500ms", "0s") in seconds."""
    text = str(text).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"not a duration: {text!r}")
    return total


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp ("2026-01-02T03:04:05Z") as seconds since the epoch."""
    stamp = datetime.fromisoformat(str(text).strip())
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return stamp.timestamp()


@dataclass(frozen=True)
class Reading:
    """One pod's reading of the chosen containers: a CPU rate over [timestamp - window, timestamp] and
    the working set at `timestamp`; `poll`: which poll saw it first."""

    pod: str
    timestamp: float
    window_s: float
    cpu_cores: float
    memory_bytes: int
    containers: tuple[str, ...]
    poll: int = 0


def readings(items: Iterable[Mapping[str, Any]], chosen: ContainerSet, poll: int = 0) -> list[Reading]:
    """The readings of the containers `chosen` picks in a PodMetricsList's items (pods labelled
    otherwise, when the item carries its pod's labels, are left out: the server filtered already)."""
    out = []
    for item in items:
        meta = item.get("metadata") or {}
        labels = meta.get("labels")
        if isinstance(labels, Mapping) and labels.get(chosen.key) != chosen.value:
            continue
        picked = [c for c in item.get("containers") or [] if chosen.picks(str(c.get("name")))]
        if not picked:
            continue
        try:
            ts = parse_time(item["timestamp"])
            window = parse_duration(item["window"])
            cpu = sum(float(parse_quantity((c.get("usage") or {}).get("cpu", "0"))) for c in picked)
            mem = sum(int(parse_quantity((c.get("usage") or {}).get("memory", "0"))) for c in picked)
        except (KeyError, ValueError, TypeError, ArithmeticError):
            continue  # a malformed item is not a reading
        out.append(
            Reading(
                pod=str(meta.get("name") or ""),
                timestamp=ts,
                window_s=window,
                cpu_cores=cpu,
                memory_bytes=mem,
                containers=tuple(sorted(str(c.get("name")) for c in picked)),
                poll=poll,
            )
        )
    return out


class PodMetricsSource:
    """Lists PodMetrics through the kubernetes client (CustomObjectsApi: the metrics API is an
    aggregated API group, read like any other)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)

    def list(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The PodMetrics items of the pods `selector` picks; MetricsUnavailable with the reason."""
        what = f"pods.{METRICS_GROUP} in {namespace} ({selector})"
        try:
            answer = self.custom.list_namespaced_custom_object(
                METRICS_GROUP,
                METRICS_VERSION,
                namespace,
                METRICS_PLURAL,
                label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            permanent = exc.status in (401, 403, 404)
            raise MetricsUnavailable(unavailable_reason(exc, what), permanent) from None
        except urllib3.exceptions.HTTPError as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise MetricsUnavailable(f"metrics API: cannot reach the Kubernetes API ({first})") from None
        items = answer.get("items") if isinstance(answer, dict) else None
        return [i for i in items or [] if isinstance(i, dict)]


def unavailable_reason(exc: ApiException, what: str) -> str:
    """One line: why the metrics API gave nothing (404: not served, 503: not ready, 401/403: RBAC)."""
    line = str(api_error(exc, "list", what))
    if exc.status == 404:
        return f"no metrics API on this cluster ({METRICS_GROUP}/{METRICS_VERSION} not served: {line})"
    if exc.status == 503:
        return f"the metrics API is not available (metrics-server not ready? {line})"
    if exc.status in (401, 403):
        return f"not allowed to read the metrics API: {line}"
    return f"the metrics API failed: {line}"


# --- from readings to a figure -----------------------------------------------------------------------


def _by_pod(rs: Iterable[Reading]) -> dict[tuple[str, tuple[str, ...]], list[Reading]]:
    """Each pod's (and container set's) distinct readings, one per timestamp, in time order."""
    pods: dict[tuple[str, tuple[str, ...]], dict[float, Reading]] = {}
    for r in rs:
        pods.setdefault((r.pod, r.containers), {}).setdefault(r.timestamp, r)
    return {key: [seen[t] for t in sorted(seen)] for key, seen in pods.items()}


def _intervals(series: Sequence[Reading]) -> list[tuple[float, float, Reading]]:
    """(lo, hi, reading): each reading's interval, clipped not to overlap the previous reading's."""
    out = []
    prev = -math.inf
    for r in series:
        lo = max(r.timestamp - r.window_s, prev)
        if r.timestamp > lo:
            out.append((lo, r.timestamp, r))
        prev = r.timestamp
    return out


def _pod_cpu(series: Sequence[Reading], start: float, end: float) -> tuple[float, int, str] | None:
    """(CPU seconds in [start, end], readings used, basis) of one pod, or None without a reading."""
    tol = TIMESTAMP_RESOLUTION_S
    spans = _intervals(series)
    inside = [(lo, hi, r) for lo, hi, r in spans if lo >= start - tol and hi <= end + tol]
    if inside:
        length = sum(hi - lo for lo, hi, _ in inside)
        rate = sum(r.cpu_cores * (hi - lo) for lo, hi, r in inside) / length
        # The part of the window the pod was there: a gap longer than a metrics window at either end
        # means it started (or went) inside the window.
        first_lo, last_hi = inside[0][0], inside[-1][1]
        w = max(r.window_s for _, _, r in inside)
        lo = start if first_lo - start <= w + tol else first_lo
        hi = end if end - last_hi <= w + tol else last_hi
        return rate * max(0.0, hi - lo), len(inside), "inside"
    overlaps = [(max(lo, start), min(hi, end), r) for lo, hi, r in spans if hi > start and lo < end]
    covered = sum(hi - lo for lo, hi, _ in overlaps)
    if not overlaps or covered <= 0:
        return None
    rate = sum(r.cpu_cores * (hi - lo) for lo, hi, r in overlaps) / covered
    return rate * (end - start), len(overlaps), "edges"


def _peak_memory(rs: Sequence[Reading], start: float, end: float) -> int | None:
    """The highest sum over one poll of the working sets read inside [start, end]."""
    tol = TIMESTAMP_RESOLUTION_S
    per_poll: dict[int, dict[tuple[str, tuple[str, ...]], int]] = {}
    for r in rs:
        if start - tol <= r.timestamp <= end + tol:
            per_poll.setdefault(r.poll, {})[(r.pod, r.containers)] = r.memory_bytes
    sums = [sum(pods.values()) for pods in per_poll.values()]
    return max(sums) if sums else None


def integrate(rs: Sequence[Reading], start: float, end: float) -> dict[str, Any] | None:
    """CPU seconds and peak working set of a set of readings over [start, end] (see the module doc);
    None when no reading falls in or across the window."""
    if not end > start:
        return None
    cpu, used, bases, pods = 0.0, 0, set(), set()
    for (pod, _containers), series in _by_pod(rs).items():
        got = _pod_cpu(series, start, end)
        if got is None:
            continue
        cpu += got[0]
        used += got[1]
        bases.add(got[2])
        pods.add(pod)
    if not pods:
        return None
    wall = end - start
    peak = _peak_memory(rs, start, end)
    windows = sorted({r.window_s for r in rs})
    return {
        "source": SOURCE,
        "cpu_s": round(cpu, 6),
        "peak_rss_mb": None if peak is None else round(peak / MB, 3),
        "memory": "working set",
        "wall_s": round(wall, 6),
        "cpu_utilisation": round(cpu / wall, 6),
        "samples": used,
        "basis": "edges" if "edges" in bases else "inside",
        "pods": sorted(pods),
        "containers": sorted({c for r in rs for c in r.containers}),
        "metrics_window_s": windows[len(windows) // 2] if windows else None,
    }


def absent(reason: str) -> dict[str, Any]:
    """The record of an arm whose resources could not be measured."""
    return {"source": ABSENT, "reason": reason}


def arm_record(
    target: ArmContainers, rs: Sequence[Reading], start: float, end: float, polls: int, failure: str = ""
) -> dict[str, Any]:
    """An arm's `resources` record for meta.json: the figure (`source: metrics-api`) or `absent`."""
    if target.reason:
        return absent(target.reason)
    figure = integrate(rs, start, end)
    if figure is None:
        why = failure or (
            f"no reading of {', '.join(s.selector for s in target.sets)} in {target.namespace} "
            f"overlapped the measured window ({polls} polls)"
        )
        return {**absent(why), "sampled": [s.to_dict() for s in target.sets]}
    return {
        **figure,
        "role": target.role,
        "shared": target.shared,
        "polls": polls,
        "sampled": [s.to_dict() for s in target.sets],
        "unsampled_hops": list(target.unsampled),
        **({"poll_errors": failure} if failure else {}),
    }
