"""The one line a DeployTimeout of a KServe / Seldon v2 arm carries: each object's conditions, the
selected pods with their state, and the latest events about them (as KubernetesPlatform's does for a
SeldonDeployment, k8s_objects.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchbench.core.errors import OrchbenchError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_objects import (
    EVENTS_IN_ERRORS,
    event_lines,
    events_text,
    pod_name,
    pods_text,
)

if TYPE_CHECKING:
    from orchbench.core.platform.k8s_custom import CustomObjectsPlatform


def conditions_text(obj: dict[str, Any] | None) -> str:
    """`Ready=False (RevisionMissing: ...), PredictorReady=True` or `none`."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    parts = []
    for c in conditions:
        text = f"{c.get('type')}={c.get('status')}"
        why = ": ".join(str(x) for x in (c.get("reason"), c.get("message")) if x)
        parts.append(f"{text} ({' '.join(why.split())[:200]})" if why else text)
    return ", ".join(parts) or "none"


def timeout_message(
    p: CustomObjectsPlatform, record: DeploymentRecord, details: dict[str, Any], timeout_s: float
) -> str:
    """DeployTimeout's one line: each object's conditions, the pods and their latest events."""
    ns = details["namespace"]
    refs = p.refs(details)
    states = []
    for ref in refs:
        try:
            obj = p.get(ns, ref)
            states.append(
                f"{ref.kind} {ref.name} conditions: {conditions_text(obj) if obj else 'object gone'}"
            )
        except OrchbenchError as exc:
            states.append(f"{ref.kind} {ref.name} conditions: unknown ({exc})")
    pod_names: list[str] = []
    try:
        groups = p.pods_of(ns, p.selectors(details))
        pods = [pod for group in groups.values() for pod in group]
        pod_names = [pod_name(pod) for pod in pods]
        pod_text = pods_text(pods)
    except OrchbenchError as exc:
        pod_text = f"unknown ({exc})"
    events = recent_events(p, ns, [r.name for r in refs] + pod_names[:3])
    head = refs[0]
    return (
        f"{head.kind} {ns}/{head.name} ({record.arm} arm) not ready after {timeout_s:g}s: "
        f"{'; '.join(states)}; pods: {pod_text}; "
        f"recent events: {events_text(events)}"
    )


def recent_events(
    p: CustomObjectsPlatform, ns: str, names: Sequence[str], limit: int = EVENTS_IN_ERRORS
) -> list[str]:
    """The latest events about the named objects and pods, one line each, oldest first."""
    return event_lines(p.api_client, p.core, p._host, ns, names, limit)
