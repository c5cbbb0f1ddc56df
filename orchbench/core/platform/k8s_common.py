"""Configuration and error handling shared by the Kubernetes platform modules.

`KubernetesConfig` says which namespace, which nodes play which role, and which taints isolate them.
Everything that talks to the API server goes through `api_call`, which turns a
`kubernetes.client.ApiException` (or an unreachable server) into one line: what orchbench was doing, on
which object, the HTTP status and reason, and the server's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import urllib3.exceptions
from kubernetes.client import ApiClient, ApiException

from orchbench.core.errors import ConfigError, OrchbenchError, PlatformError

Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
EFFECTS: tuple[Effect, ...] = ("NoSchedule", "PreferNoSchedule", "NoExecute")
Role = Literal["loadtester", "model"]
ROLES: tuple[Role, ...] = ("loadtester", "model")

#: Node annotation holding what orchbench changed on a node (JSON), so that `untaint` can undo exactly
#: that, from any process (each Argo step is its own pod): see k8s_nodes.py.
TAINT_ANNOTATION = "orchbench.io/tainted"
#: Node annotation listing (JSON, sorted) the workflow ids that hold orchbench's taint on a node: two
#: experiments on one cluster may share a node, and its taint goes only when its last owner untaints.
TAINT_OWNERS_ANNOTATION = "orchbench.io/taint-owners"
#: Node label set by `taint` on the nodes of each role; load-test pods select their node with it.
ROLE_LABEL = "orchbench.io/role"
#: Seldon Core v1 puts this label on every pod of a SeldonDeployment, valued with the deployment's name.
SELDON_ID_LABEL = "seldon-deployment-id"
#: Seldon Core v1's orchestrator ("executor") container name.
ENGINE_CONTAINER = "seldon-container-engine"
SELDON_GROUP = "machinelearning.seldon.io"
SELDON_PLURAL = "seldondeployments"
SELDON_VERSIONS = ("v1", "v1alpha2", "v1alpha3")


@dataclass(frozen=True)
class Taint:
    """A node taint, `key=value:effect` as kubectl writes it."""

    key: str
    value: str
    effect: Effect = "NoSchedule"

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigError("a taint needs a key")
        if self.effect not in EFFECTS:
            raise ConfigError(
                f"taint {self.key}: effect must be one of {', '.join(EFFECTS)}, got {self.effect!r}"
            )

    @classmethod
    def parse(cls, value: Taint | str | Sequence[str] | Mapping[str, str]) -> Taint:
        """Accept a Taint, `"key=value:Effect"`, `("key", "value", "Effect")` or a dict with those keys."""
        if isinstance(value, Taint):
            return value
        if isinstance(value, str):
            kv, _, effect = value.partition(":")
            key, _, val = kv.partition("=")
            return cls(key, val, cast(Effect, effect or "NoSchedule"))
        if isinstance(value, Mapping):
            return cls(
                str(value.get("key", "")),
                str(value.get("value", "")),
                cast(Effect, value.get("effect", "NoSchedule")),
            )
        parts = [str(p) for p in value]
        if len(parts) not in (2, 3):
            raise ConfigError(f"a taint is (key, value[, effect]); got {value!r}")
        return cls(parts[0], parts[1], cast(Effect, parts[2] if len(parts) == 3 else "NoSchedule"))

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def matches(self, raw: Mapping[str, Any]) -> bool:
        """True if a node's taint (dict as the API returns it) is this taint."""
        return (raw.get("key"), raw.get("value") or "", raw.get("effect")) == (
            self.key,
            self.value,
            self.effect,
        )

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


@dataclass(frozen=True)
class NodeSelection:
    """Which nodes play a role: by `names`, by `labels` (all matching nodes), or neither (automatic).

    `count` is how many nodes the role needs at least. Automatic selection takes exactly `count` nodes,
    by name order, skipping control-plane nodes and nodes of the other role, and preferring nodes that
    already carry this role's `orchbench.io/role` label (so re-running picks the same nodes).
    """

    names: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "labels", dict(self.labels))
        if self.names and self.labels:
            raise ConfigError("choose nodes either by names or by labels, not both")
        if self.count < 1:
            raise ConfigError(f"a node role needs at least 1 node, count={self.count}")

    @property
    def label_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def describe(self) -> str:
        if self.names:
            return f"names {list(self.names)}"
        if self.labels:
            return f"labels {self.label_selector}"
        return "automatic selection"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, default_count: int) -> NodeSelection:
        data = dict(data or {})
        unknown = set(data) - {"names", "labels", "count"}
        if unknown:
            raise ConfigError(f"node selection: unknown keys {sorted(unknown)} (use names, labels, count)")
        names = tuple(data.get("names") or ())
        count = int(data.get("count", len(names) or default_count))
        return cls(names=names, labels=dict(data.get("labels") or {}), count=count)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "labels": dict(self.labels), "count": self.count}


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and how orchbench runs on a cluster.

    Defaults: namespace seldon, the seed's taints `loadtester=active:NoSchedule` and
    `model=active:NoSchedule`, and automatic selection of one load-tester node and one model node (the
    seed tainted two model nodes of a three-node cluster; name or label them to do the same).
    """

    namespace: str = "seldon"
    loadtester_nodes: NodeSelection = field(default_factory=NodeSelection)
    model_nodes: NodeSelection = field(default_factory=NodeSelection)
    loadtester_taint: Taint = field(default_factory=lambda: Taint("loadtester", "active", "NoSchedule"))
    model_taint: Taint = field(default_factory=lambda: Taint("model", "active", "NoSchedule"))
    #: Also pin the model pods to the model nodes (nodeSelector on the role label `taint` sets). The
    #: toleration of the model taint is always ensured.
    pin_model: bool = True
    #: How long `deploy` waits for a previous deployment of the same name to go before re-creating it,
    #: and `teardown` for the deployment and its pods to go.
    delete_timeout_s: float = 300.0
    #: How long the pipeline's wait step gives a deployment to become ready (used by steps/wait.py).
    ready_timeout_s: float = 600.0
    #: Injection point for tests and callers that built their own client.
    api_client: ApiClient | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Accept the tuple/str forms of a taint, as a spec file would give them.
        object.__setattr__(self, "loadtester_taint", Taint.parse(self.loadtester_taint))
        object.__setattr__(self, "model_taint", Taint.parse(self.model_taint))
        if self.loadtester_taint.key == self.model_taint.key:
            raise ConfigError(
                f"the loadtester and model taints need different keys, both are {self.model_taint.key!r}"
            )
        if not self.namespace:
            raise ConfigError("a Kubernetes namespace is required")

    def taint_for(self, role: Role) -> Taint:
        return self.loadtester_taint if role == "loadtester" else self.model_taint

    def nodes_for(self, role: Role) -> NodeSelection:
        return self.loadtester_nodes if role == "loadtester" else self.model_nodes

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, api_client: ApiClient | None = None
    ) -> KubernetesConfig:
        """Build from a spec's `kubernetes:` section (plain YAML types)."""
        data = dict(data or {})
        known = {
            "ready_timeout_s",
            "namespace",
            "loadtester_nodes",
            "model_nodes",
            "loadtester_taint",
            "model_taint",
            "pin_model",
            "delete_timeout_s",
        }
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"kubernetes config: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        kwargs: dict[str, Any] = {
            k: data[k] for k in ("namespace", "pin_model", "delete_timeout_s", "ready_timeout_s") if k in data
        }
        if "loadtester_nodes" in data:
            kwargs["loadtester_nodes"] = NodeSelection.from_dict(data["loadtester_nodes"], 1)
        if "model_nodes" in data:
            kwargs["model_nodes"] = NodeSelection.from_dict(data["model_nodes"], 1)
        for key in ("loadtester_taint", "model_taint"):
            if key in data:
                kwargs[key] = Taint.parse(data[key])
        return cls(api_client=api_client, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "loadtester_nodes": self.loadtester_nodes.to_dict(),
            "model_nodes": self.model_nodes.to_dict(),
            "loadtester_taint": str(self.loadtester_taint),
            "model_taint": str(self.model_taint),
            "pin_model": self.pin_model,
            "delete_timeout_s": self.delete_timeout_s,
            "ready_timeout_s": self.ready_timeout_s,
        }


def config_from_spec(spec: Any, api_client: ApiClient | None = None) -> KubernetesConfig:
    """The config for an orchbench Spec (orchbench/core/spec.py): its `kubernetes` section (dict or model)."""
    section = getattr(spec, "kubernetes", spec)
    if hasattr(section, "model_dump"):
        section = section.model_dump()
    if not isinstance(section, Mapping):
        raise ConfigError(f"expected a spec with a kubernetes section, got {type(spec).__name__}")
    data = dict(section)
    for key in ("kind", "kserve", "seldon2"):  # what the arms are (k8s_kinds.py), not where they run
        data.pop(key, None)
    for key in ("loadtester_nodes", "model_nodes"):
        sel = data.get(key)
        if isinstance(sel, Mapping):  # drop empty names/labels: the spec model fills both with defaults
            data[key] = {k: v for k, v in sel.items() if v not in (None, [], {}, ())}
    return KubernetesConfig.from_dict(data, api_client=api_client)


def _server_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = str(body)
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return first[:300]


class KubernetesApiError(PlatformError):
    """An API call failed; `status` is the HTTP status (404, 409, 410, ...)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class KubernetesAccessError(ConfigError):
    """401/403: credentials or RBAC, which the user fixes (kubeconfig, manifests/rbac.yaml)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class KubernetesUnreachable(PlatformError):
    """The API server did not answer (connection refused, DNS, TLS, timeouts)."""


def api_error(exc: ApiException, action: str, obj: str) -> OrchbenchError:
    """One line for a failed API call: what, on which object, HTTP status and reason, server message."""
    message = _server_message(exc)
    text = f"{action} {obj}: HTTP {exc.status} {exc.reason or ''}".rstrip()
    if message:
        text += f": {message}"
    if exc.status in (401, 403):
        return KubernetesAccessError(
            text + " (check the kubeconfig/service account; apply manifests/rbac.yaml)", exc.status
        )
    return KubernetesApiError(text, exc.status)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a wrapped API failure, else None."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


@contextmanager
def api_call(action: str, obj: str, host: str = "") -> Iterator[None]:
    """Run Kubernetes API calls, turning their failures into orchbench's errors with one clear line."""
    try:
        yield
    except ApiException as exc:
        raise api_error(exc, action, obj) from None
    except urllib3.exceptions.HTTPError as exc:
        where = f" at {host}" if host else ""
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise KubernetesUnreachable(
            f"{action} {obj}: cannot reach the Kubernetes API{where} ({reason})"
        ) from None
