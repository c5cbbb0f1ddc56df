"""The one line a DeployTimeout of a KServe / Seldon v2 arm carries: each object's conditions, the
selected pods with their state, and the latest events about them (as KubernetesPlatform's does for a
SeldonDeployment, k8s_objects.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchbench.core.errors import OrchbenchError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import api_call
from orchbench.core.platform.k8s_objects import EVENTS_IN_ERRORS, pod_name, pod_state

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
        pod_text = ", ".join(f"{pod_name(pod)} {pod_state(pod)}" for pod in pods) or "none"
    except OrchbenchError as exc:
        pod_text = f"unknown ({exc})"
    events = recent_events(p, ns, [r.name for r in refs] + pod_names[:3])
    head = refs[0]
    return (
        f"{head.kind} {ns}/{head.name} ({record.arm} arm) not ready after {timeout_s:g}s: "
        f"{'; '.join(states)}; pods: {pod_text}; "
        f"recent events: {' | '.join(events) if events else 'none'}"
    )


def recent_events(
    p: CustomObjectsPlatform, ns: str, names: Sequence[str], limit: int = EVENTS_IN_ERRORS
) -> list[str]:
    """The latest events about the named objects and pods, one line each, oldest first."""
    events: list[dict[str, Any]] = []
    for involved in dict.fromkeys(names):
        with contextlib.suppress(OrchbenchError):
            with api_call("list", f"events {ns} for {involved}", p._host):
                items = (
                    p.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={involved}").items
                    or []
                )
            for item in items:
                raw = p.api_client.sanitize_for_serialization(item)
                if (raw.get("involvedObject") or {}).get("name") == involved:  # emulator ignores selectors
                    events.append(raw)

    def when(ev: dict[str, Any]) -> str:
        return str(
            ev.get("lastTimestamp")
            or ev.get("eventTime")
            or (ev.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    lines = []
    for ev in sorted(events, key=when)[-limit:]:
        obj = ev.get("involvedObject") or {}
        message = " ".join(str(ev.get("message") or "").split())[:200]
        lines.append(
            f"{ev.get('type') or 'Normal'} {ev.get('reason') or '?'} "
            f"{obj.get('kind') or ''}/{obj.get('name') or ''}: {message}"
        )
    return lines
