"""Reading and watching a SeldonDeployment and its pods through the kubernetes client: the object, its
pods (by `seldon-deployment-id` label), bounded watch streams, and recent events for error messages.
Used by KubernetesPlatform (kubernetes.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import urllib3.exceptions
from kubernetes import client, watch

from orchbench.core.errors import OrchbenchError, PlatformError
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_common import SELDON_ID_LABEL, api_call, status_of

MAX_WATCH_SLICE_S = 30.0  # re-check state at least this often, even if a watch stays silent
EVENTS_IN_ERRORS = 5


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name"))


def pod_state(pod: dict[str, Any]) -> str:
    if is_ready(pod):
        return "Ready"
    return str((pod.get("status") or {}).get("phase") or "not ready")


def container_names(pod: dict[str, Any]) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]


def pods_text(pods: Iterable[dict[str, Any]]) -> str:
    """`name state, ...` of the pods (a DeployTimeout's), or `none`."""
    return ", ".join(f"{pod_name(p)} {pod_state(p)}" for p in pods) or "none"


def events_text(lines: Sequence[str]) -> str:
    """The event lines of a DeployTimeout, joined (`none` without any)."""
    return " | ".join(lines) if lines else "none"


def event_lines(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    host: str,
    ns: str,
    names: Sequence[str],
    limit: int = EVENTS_IN_ERRORS,
) -> list[str]:
    """The latest events in `ns` about the named objects and pods, one line each, oldest first; a name
    whose events cannot be listed is passed over (the message they go into is about something else)."""
    events: list[dict[str, Any]] = []
    for involved in dict.fromkeys(names):
        try:
            with api_call("list", f"events {ns} for {involved}", host):
                items = (
                    core.list_namespaced_event(ns, field_selector=f"involvedObject.name={involved}").items
                    or []
                )
        except OrchbenchError:
            continue
        for item in items:
            raw = api_client.sanitize_for_serialization(item)
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


class SeldonObjects:
    """The API calls that read one cluster's SeldonDeployments, pods and events."""

    def __init__(
        self, api_client: client.ApiClient, core: client.CoreV1Api, custom: client.CustomObjectsApi, host: str
    ) -> None:
        self.api_client = api_client
        self.core = core
        self.custom = custom
        self._host = host

    def get(self, record: DeploymentRecord) -> dict[str, Any] | None:
        d = record.details
        try:
            with api_call("read", f"SeldonDeployment {d['namespace']}/{record.name}", self._host):
                obj = self.custom.get_namespaced_custom_object(
                    d["group"], d["version"], d["namespace"], d["plural"], record.name
                )
        except PlatformError as exc:
            if status_of(exc) == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def list_pods(self, record: DeploymentRecord) -> list[dict[str, Any]]:
        ns, selector = record.details["namespace"], f"{SELDON_ID_LABEL}={record.name}"
        with api_call("list", f"pods {ns} ({selector})", self._host):
            items = self.core.list_namespaced_pod(ns, label_selector=selector).items or []
        pods = [self.api_client.sanitize_for_serialization(p) for p in items]
        # Filter again client-side: a correct server already did; the test emulator ignores selectors.
        return [
            p
            for p in pods
            if ((p.get("metadata") or {}).get("labels") or {}).get(SELDON_ID_LABEL) == record.name
        ]

    def watch(
        self,
        func: Callable[..., Any],
        args: Iterable[Any],
        kwargs: dict[str, Any],
        deadline: float,
        check: Callable[[], bool],
        on_event: Callable[[dict[str, Any]], bool],
        what: str,
    ) -> bool:
        """True once `check()` (run before each watch) or `on_event(event)` says so; False at the deadline.

        Each watch lasts at most min(remaining, 30 s): bounded on the server (`timeoutSeconds`) and on
        the client (read timeout, which also ends a stream from a server that ignores timeoutSeconds).
        """
        while (remaining := deadline - time.monotonic()) > 0:
            if check():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            slice_s = min(remaining, MAX_WATCH_SLICE_S)
            w = watch.Watch()
            with api_call("watch", what, self._host):
                try:
                    for event in w.stream(
                        func,
                        *args,
                        timeout_seconds=max(1, int(slice_s)),
                        _request_timeout=(min(10.0, slice_s), slice_s),
                        **kwargs,
                    ):
                        if on_event(event):
                            w.stop()
                            return True
                        if time.monotonic() >= deadline:
                            w.stop()
                            break
                except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                    pass  # the slice ended on a silent or dropped stream: re-check, then watch again
                except client.ApiException as exc:
                    if exc.status != 410:  # 410 Gone: the watch expired; re-check, then watch again
                        raise
        return bool(check())

    def watch_sdep(
        self,
        record: DeploymentRecord,
        deadline: float,
        done: Callable[[dict[str, Any]], bool],
        until_deleted: bool = False,
    ) -> bool:
        d = record.details

        def check() -> bool:
            obj = self.get(record)
            return obj is None if until_deleted else (obj is not None and done(obj))

        def on_event(event: dict[str, Any]) -> bool:
            obj = event.get("raw_object") or event.get("object") or {}
            if (obj.get("metadata") or {}).get("name") != record.name:
                return False  # the field selector is honoured by real servers, not by the test emulator
            if until_deleted:
                return event.get("type") == "DELETED"
            return event.get("type") != "DELETED" and done(obj)

        return self.watch(
            self.custom.list_namespaced_custom_object,
            (d["group"], d["version"], d["namespace"], d["plural"]),
            {"field_selector": f"metadata.name={record.name}"},
            deadline,
            check,
            on_event,
            f"SeldonDeployment {d['namespace']}/{record.name}",
        )

    def watch_pods(
        self, record: DeploymentRecord, deadline: float, done: Callable[[list[dict[str, Any]]], bool]
    ) -> bool:
        ns = record.details["namespace"]

        def check() -> bool:
            return done(self.list_pods(record))

        def on_event(event: dict[str, Any]) -> bool:
            # An event only says "something changed": judge on a fresh, consistent listing.
            return done(self.list_pods(record))

        return self.watch(
            self.core.list_namespaced_pod,
            (ns,),
            {"label_selector": f"{SELDON_ID_LABEL}={record.name}"},
            deadline,
            check,
            on_event,
            f"pods {ns} ({SELDON_ID_LABEL}={record.name})",
        )

    def recent_events(self, record: DeploymentRecord, limit: int = EVENTS_IN_ERRORS) -> list[str]:
        """The latest events about the deployment and its pods, one line each, oldest first."""
        ns = record.details["namespace"]
        names = [record.name]
        with contextlib.suppress(OrchbenchError):  # the events of the deployment itself still help
            names += [pod_name(p) for p in self.list_pods(record)][:3]
        return event_lines(self.api_client, self.core, self._host, ns, names, limit)

    def timeout_message(self, record: DeploymentRecord, timeout_s: float, status: Any) -> str:
        ns = record.details["namespace"]
        try:
            pod_text = pods_text(self.list_pods(record))
        except OrchbenchError as exc:
            pod_text = f"unknown ({exc})"
        return (
            f"SeldonDeployment {ns}/{record.name} not ready after {timeout_s:g}s: "
            f"last status {json.dumps(status, sort_keys=True)}; pods: {pod_text}; "
            f"recent events: {events_text(self.recent_events(record))}"
        )
