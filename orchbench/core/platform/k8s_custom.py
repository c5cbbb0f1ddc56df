"""What the KServe and Seldon Core v2 platforms share: custom objects and their pods, by typed API calls.

Like KubernetesPlatform (kubernetes.py), every call goes through the kubernetes client (CustomObjectsApi,
CoreV1Api, kubernetes.watch.Watch) inside `api_call`, so failures are orchbench errors with one line;
waiting is by bounded watch streams inside an overall deadline (SeldonObjects.watch). A deployment is
one or more custom objects (`ObjectRef`s, k8s_custom_refs.py; created in order, deleted in reverse), a
set of pod label selectors, and the arm's target, all kept in the JSON DeploymentRecord the pipeline
passes between steps.

Readiness is the object's `Ready` condition (`status.conditions[type=Ready].status == "True"`, as both
KServe and Seldon v2 report it) for every object, then every non-terminating pod of every selector
Ready, at least one per selector. A timeout raises DeployTimeout whose one line carries each object's
conditions, the pods and their latest events.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client

from orchbench.core.errors import (
    ConfigError,
    DeployTimeout,
    PlatformError,
)
from orchbench.core.platform.base import DeploymentRecord
from orchbench.core.platform.k8s_arms import OWNER_LABEL
from orchbench.core.platform.k8s_common import (
    KubernetesConfig,
    api_call,
    status_of,
)
from orchbench.core.platform.k8s_custom_refs import ObjectRef, condition_true, owner_of
from orchbench.core.platform.k8s_custom_report import timeout_message
from orchbench.core.platform.k8s_nodes import taint_nodes, untaint_nodes
from orchbench.core.platform.k8s_objects import (
    SeldonObjects,
    is_ready,
    is_terminating,
    pod_name,
)


class CustomObjectsPlatform:
    """Base of KServePlatform and Seldon2Platform: construction, taints, and the custom-object calls.

    Ownership: with an owner (the workflow's uid, in the subclass's `options.owner`), every object
    rendered carries `orchbench.io/owner: <uid>`; `create_all` never replaces, and `teardown` never
    deletes, an object another run owns; `cleanup_owned` deletes whatever carries the run's uid."""

    name = "custom"
    #: The kinds this platform creates, in creation order.
    KINDS: tuple[tuple[str, str, str, str], ...] = ()  # (group, version, plural, kind)

    def __init__(
        self, config: KubernetesConfig | None = None, api_client: client.ApiClient | None = None
    ) -> None:
        self.config = config or KubernetesConfig()
        api = api_client or self.config.api_client
        if api is None:
            raise ConfigError(
                f"{type(self).__name__} needs an API client: use from_environment(config), "
                "from_kubeconfig(config, path) or pass api_client="
            )
        self.api_client: client.ApiClient = api
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self._host = str(getattr(self.api_client.configuration, "host", ""))
        # Only its generic, bounded watch loop is used (SeldonObjects.watch).
        self._watcher = SeldonObjects(self.api_client, self.core, self.custom, self._host)

    # --- construction (the same sources of credentials as KubernetesPlatform) -------------------
    @classmethod
    def from_kubeconfig(
        cls,
        config: KubernetesConfig | None = None,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> Any:
        from orchbench.core.platform.kubernetes import KubernetesPlatform

        return cls(config, KubernetesPlatform.from_kubeconfig(config, path, context).api_client)

    @classmethod
    def in_cluster(cls, config: KubernetesConfig | None = None) -> Any:
        from orchbench.core.platform.kubernetes import KubernetesPlatform

        return cls(config, KubernetesPlatform.in_cluster(config).api_client)

    @classmethod
    def from_environment(
        cls, config: KubernetesConfig | None = None, kubeconfig: str | os.PathLike[str] | None = None
    ) -> Any:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(config)
        return cls.from_kubeconfig(config, kubeconfig)

    # --- taints (the same nodes and taints as the SeldonDeployment platform) -------------------
    def taint(self, owner: str = "") -> dict[str, Any]:
        """Taint the nodes for `owner` (the workflow's id), as KubernetesPlatform.taint."""
        return taint_nodes(self.api_client, self.config, owner)

    def untaint(self, owner: str = "") -> None:
        """Release `owner`'s taints only (other runs' stay), as KubernetesPlatform.untaint."""
        untaint_nodes(self.api_client, owner)

    @property
    def owner(self) -> str:
        return str(getattr(getattr(self, "options", None), "owner", "") or "")

    def other_owner(self, ns: str, refs: Sequence[ObjectRef]) -> tuple[ObjectRef, str] | None:
        """The first live object of `refs` that another run owns, and that run's uid (None: none)."""
        if not self.owner:
            return None
        for ref in refs:
            theirs = owner_of(self.get(ns, ref))
            if theirs and theirs != self.owner:
                return ref, theirs
        return None

    # --- records ---------------------------------------------------------------------------------
    def _check_record(self, record: DeploymentRecord) -> dict[str, Any]:
        if record.platform != self.name:
            raise ConfigError(
                f"deployment record {record.name!r} is for platform {record.platform!r}, not {self.name}"
            )
        d = dict(record.details)
        d.setdefault("namespace", self.config.namespace)
        if not d.get("objects"):
            raise ConfigError(f"deployment record {record.name!r} names no objects")
        return d

    @staticmethod
    def refs(details: dict[str, Any]) -> list[ObjectRef]:
        return [ObjectRef.from_dict(o) for o in details["objects"]]

    @staticmethod
    def selectors(details: dict[str, Any]) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in details.get("pod_selectors") or []]

    # --- objects ---------------------------------------------------------------------------------
    def get(self, ns: str, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            with api_call("read", f"{ref.kind} {ns}/{ref.name}", self._host):
                obj = self.custom.get_namespaced_custom_object(
                    ref.group, ref.version, ns, ref.plural, ref.name
                )
        except PlatformError as exc:
            if status_of(exc) == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def create_all(self, ns: str, bodies: Sequence[tuple[ObjectRef, dict[str, Any]]]) -> None:
        """Create the objects in order; if one exists already, delete them all (and wait), then create
        anew, for the reason KubernetesPlatform.deploy gives (a replaced object keeps its old Ready)."""
        for attempt in (1, 2):
            try:
                for ref, body in bodies:
                    self._create(ns, ref, body)
                return
            except PlatformError as exc:
                if status_of(exc) != 409 or attempt == 2:
                    raise
                refs = [r for r, _ in bodies]
                other = self.other_owner(ns, refs)
                if other:
                    ref, theirs = other
                    raise PlatformError(
                        f"{ref.kind} {ns}/{ref.name} belongs to another orchbench run (workflow {theirs}): "
                        "not replaced; wait for that run to end, or change metadata.name"
                    ) from None
                self.delete_all(ns, refs, [], self.config.delete_timeout_s)

    def _create(self, ns: str, ref: ObjectRef, body: dict[str, Any]) -> None:
        try:
            with api_call("create", f"{ref.kind} {ns}/{ref.name}", self._host):
                self.custom.create_namespaced_custom_object(ref.group, ref.version, ns, ref.plural, body)
        except PlatformError as exc:
            if status_of(exc) == 404:
                raise PlatformError(
                    f"{exc} (is the CRD {ref.plural}.{ref.group}/{ref.version} installed, and does namespace "
                    f"{ns} exist?)"
                ) from None
            raise

    def watch_object(
        self,
        ns: str,
        ref: ObjectRef,
        deadline: float,
        done: Callable[[dict[str, Any]], bool],
        until_deleted: bool = False,
    ) -> bool:
        def check() -> bool:
            obj = self.get(ns, ref)
            return obj is None if until_deleted else (obj is not None and done(obj))

        def on_event(event: dict[str, Any]) -> bool:
            obj = event.get("raw_object") or event.get("object") or {}
            if (obj.get("metadata") or {}).get("name") != ref.name:
                return False  # the field selector is honoured by real servers, not by the test emulator
            if until_deleted:
                return event.get("type") == "DELETED"
            return event.get("type") != "DELETED" and done(obj)

        return self._watcher.watch(
            self.custom.list_namespaced_custom_object,
            (ref.group, ref.version, ns, ref.plural),
            {"field_selector": f"metadata.name={ref.name}"},
            deadline,
            check,
            on_event,
            f"{ref.kind} {ns}/{ref.name}",
        )

    # --- pods --------------------------------------------------------------------------------------
    def list_pods(self, ns: str, key: str, value: str) -> list[dict[str, Any]]:
        selector = f"{key}={value}"
        with api_call("list", f"pods {ns} ({selector})", self._host):
            items = self.core.list_namespaced_pod(ns, label_selector=selector).items or []
        pods = [self.api_client.sanitize_for_serialization(p) for p in items]
        # Filter again client-side: a correct server already did; the test emulator ignores selectors.
        return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(key) == value]

    def pods_of(
        self, ns: str, selectors: Sequence[tuple[str, str]], terminating: bool = False
    ) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The pods of each selector; terminating pods only with `terminating=True`."""
        return {
            sel: [p for p in self.list_pods(ns, *sel) if terminating or not is_terminating(p)]
            for sel in selectors
        }

    def watch_pods(
        self, ns: str, selectors: Sequence[tuple[str, str]], deadline: float, done: Callable[[], bool]
    ) -> bool:
        """Watch the namespace's pods (the first selector server-side) until `done()`."""
        key, value = selectors[0]
        return self._watcher.watch(
            self.core.list_namespaced_pod,
            (ns,),
            {"label_selector": f"{key}={value}"} if len(selectors) == 1 else {},
            deadline,
            done,
            lambda event: done(),  # an event only says "something changed": judge on a fresh listing
            f"pods {ns} ({', '.join(f'{k}={v}' for k, v in selectors)})",
        )

    def pods_ready(self, ns: str, selectors: Sequence[tuple[str, str]]) -> bool:
        groups = self.pods_of(ns, selectors)
        return all(pods and all(is_ready(p) for p in pods) for pods in groups.values())

    # --- wait --------------------------------------------------------------------------------------
    def wait_ready(self, record: DeploymentRecord, details: dict[str, Any], timeout_s: float) -> None:
        """Every object Ready, then every selected pod Ready; DeployTimeout (one line) otherwise."""
        ns, refs, selectors = details["namespace"], self.refs(details), self.selectors(details)
        deadline = time.monotonic() + timeout_s
        while True:
            pending = False
            for ref in refs:
                obj = self.get(ns, ref)
                if obj is None:
                    raise PlatformError(
                        f"{ref.kind} {ns}/{ref.name} does not exist "
                        "(deleted while waiting, or never deployed)"
                    )
                if not condition_true(obj) and not self.watch_object(ns, ref, deadline, condition_true):
                    pending = True
                    break
            if (
                not pending
                and selectors
                and not self.watch_pods(ns, selectors, deadline, lambda: self.pods_ready(ns, selectors))
            ):
                pending = True
            if not pending and all(condition_true(self.get(ns, ref)) for ref in refs):
                return  # still Ready now that the pods are
            if time.monotonic() >= deadline:
                break
        raise DeployTimeout(timeout_message(self, record, details, timeout_s))

    # --- clean-up by owner ------------------------------------------------------------------------
    def owned_refs(self, ns: str, owner: str) -> list[ObjectRef]:
        """Every object of this platform's kinds in `ns` labelled orchbench.io/owner=<owner>, in
        creation order (KINDS)."""
        if not owner:
            raise ConfigError("owned_refs needs an owner (the workflow's uid)")
        selector = f"{OWNER_LABEL}={owner}"
        refs = []
        for group, version, plural, kind in self.KINDS:
            with api_call("list", f"{plural}.{group} {ns} ({selector})", self._host):
                listed = self.custom.list_namespaced_custom_object(
                    group, version, ns, plural, label_selector=selector
                )
            items = listed.get("items") if isinstance(listed, dict) else None
            for obj in items or []:
                # Filter again client-side: a correct server already did; the test emulator does not.
                if owner_of(obj) == owner:
                    name = str((obj.get("metadata") or {}).get("name"))
                    refs.append(ObjectRef(group, version, plural, kind, name))
        return refs

    def owned_selectors(self, refs: Sequence[ObjectRef]) -> list[tuple[str, str]]:
        """The pod selectors of the objects `refs` (whose pods teardown waits for); none by default."""
        return []

    def cleanup_owned(self, owner: str) -> list[str]:
        """Delete every object `owner` created in the namespace (last created first), and wait until
        they and their pods are gone; return their names (`Kind/name`)."""
        ns = self.config.namespace
        refs = self.owned_refs(ns, owner)
        if refs:
            self.delete_all(ns, refs, self.owned_selectors(refs), self.config.delete_timeout_s)
        return [f"{r.kind}/{r.name}" for r in refs]

    def teardown_refs(self, ns: str, refs: Sequence[ObjectRef], selectors: Sequence[tuple[str, str]]) -> None:
        """`delete_all`, unless another run owns one of the objects (then nothing is deleted)."""
        if self.other_owner(ns, refs):
            return
        self.delete_all(ns, refs, selectors, self.config.delete_timeout_s)

    # --- teardown ----------------------------------------------------------------------------------
    def delete_all(
        self, ns: str, refs: Sequence[ObjectRef], selectors: Sequence[tuple[str, str]], timeout_s: float
    ) -> None:
        """Delete the objects (last created first); return once they and the selected pods are gone."""
        deadline = time.monotonic() + timeout_s
        for ref in reversed(refs):
            try:
                with api_call("delete", f"{ref.kind} {ns}/{ref.name}", self._host):
                    self.custom.delete_namespaced_custom_object(
                        ref.group, ref.version, ns, ref.plural, ref.name, propagation_policy="Foreground"
                    )
            except PlatformError as exc:
                if status_of(exc) != 404:
                    raise
        gone = all(
            self.watch_object(ns, ref, deadline, lambda obj: False, until_deleted=True) for ref in refs
        )
        if gone and selectors:
            gone = self.watch_pods(
                ns,
                selectors,
                deadline,
                lambda: not any(self.pods_of(ns, selectors, terminating=True).values()),
            )
        if not gone:
            left = [
                pod_name(p) for group in self.pods_of(ns, selectors, terminating=True).values() for p in group
            ]
            exists = [f"{r.kind} {r.name}" for r in refs if self.get(ns, r) is not None]
            raise PlatformError(
                f"{refs[0].kind} {ns}/{refs[0].name} not gone after {timeout_s:.0f}s: "
                f"objects left {exists}, pods left {left}"
            )
