"""The Kubernetes platform: SeldonDeployments on a real cluster, driven with the kubernetes client.

    cfg = KubernetesConfig(namespace="seldon", loadtester_nodes=NodeSelection(names=("node-a",)))
    platform = KubernetesPlatform.from_environment(cfg)     # in-cluster in a pod, else ~/.kube/config
    platform.taint(owner=workflow_uid)     # the workflow's id: what this run holds, and releases
    record = platform.deploy(manifest, "without", run_dir / "deploy-rest-without.json")
    endpoint = platform.wait(record, timeout_s=600)
    evidence = platform.verify_arm(record, endpoint)
    ...
    platform.teardown(record)
    platform.untaint(owner=workflow_uid)   # removes a node's taint once its last owner has gone

Every call is a typed API call (CoreV1Api, CustomObjectsApi, kubernetes.watch.Watch); API failures
become PlatformError/ConfigError with one line (k8s_common.api_call). Waiting uses watch streams bounded
by both a server-side `timeoutSeconds` and a client-side read timeout, inside an overall deadline that
raises: nothing falls through silently.

Design decisions:
- `deploy` names each arm's deployment `<name>-<transport>-<arm>` (e.g. `tf-flowers-rest-with`; the
  body and its record come from kubernetes_render.py, without API calls). If one of that name exists,
  it is deleted, waited for, and created again, rather than replaced in place: a replaced
  SeldonDeployment keeps its old `status.state: Available` until the operator reconciles, so `wait`
  could return before the new spec's pods exist, and the old pods would share the nodes during the
  next measurement.
- Readiness is `status.state == "Available"` and every (non-terminating) pod labelled
  `seldon-deployment-id=<name>` Ready, with at least `replicas` of them.
- Arm verification reads the live object and its pods: the "with" arm must run Seldon's executor
  container `seldon-container-engine`, the "without" arm must not (and its live predictor must carry
  `seldon.io/no-engine: "true"` spelled right).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes import config as kube_config

from orchbench.core import manifest as manifests
from orchbench.core.arms import PORT_WITH_ORCHESTRATOR, PORT_WITHOUT_ORCHESTRATOR, ArmName, Endpoint
from orchbench.core.errors import (
    ArmVerificationError,
    ConfigError,
    DeployTimeout,
    PlatformError,
)
from orchbench.core.platform.base import ArmEvidence, DeploymentRecord
from orchbench.core.platform.k8s_arms import OWNER_LABEL
from orchbench.core.platform.k8s_common import (
    ENGINE_CONTAINER,
    SELDON_ID_LABEL,
    SELDON_PLURAL,
    KubernetesConfig,
    NodeSelection,
    Taint,
    api_call,
    config_from_spec,
    status_of,
)
from orchbench.core.platform.k8s_nodes import taint_nodes, untaint_nodes
from orchbench.core.platform.k8s_objects import (
    EVENTS_IN_ERRORS,
    SeldonObjects,
    container_names,
    is_ready,
    is_terminating,
    pod_name,
)
from orchbench.core.platform.k8s_placement import (
    Placement,
    loadtester_placement,
    steps_placement,
)
from orchbench.core.platform.kubernetes_render import normalize_record, render_sdep, sdep_record

__all__ = [
    "KubernetesConfig",
    "KubernetesPlatform",
    "NodeSelection",
    "Placement",
    "Taint",
    "config_from_spec",
    "loadtester_placement",
    "platform_from_spec",
    "steps_placement",
]


class KubernetesPlatform:
    """The `Platform` protocol (orchbench/core/platform/base.py) on a cluster with Seldon Core v1."""

    name = "kubernetes"

    def __init__(
        self,
        config: KubernetesConfig | None = None,
        api_client: client.ApiClient | None = None,
        owner: str = "",
    ) -> None:
        self.config = config or KubernetesConfig()
        #: The workflow this platform acts for (its uid): deployments it creates carry it as the label
        #: `orchbench.io/owner`, and it never replaces or deletes a deployment another run owns.
        self.owner = owner
        api = api_client or self.config.api_client
        if api is None:
            raise ConfigError(
                "KubernetesPlatform needs an API client: use KubernetesPlatform.from_environment(config), "
                "from_kubeconfig(config, path) or pass api_client="
            )
        self.api_client: client.ApiClient = api
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self._host = str(getattr(self.api_client.configuration, "host", ""))
        self.objects = SeldonObjects(self.api_client, self.core, self.custom, self._host)

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(
        cls,
        config: KubernetesConfig | None = None,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> KubernetesPlatform:
        """From a kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."""
        try:
            api = kube_config.new_client_from_config(config_file=str(path) if path else None, context=context)
        except (kube_config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = str(path) if path else os.environ.get("KUBECONFIG", "~/.kube/config")
            raise ConfigError(
                f"kubeconfig {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        return cls(config, api)

    @classmethod
    def in_cluster(cls, config: KubernetesConfig | None = None) -> KubernetesPlatform:
        """From the pod's service account (the Argo steps run this way, as ServiceAccount `orchbench`)."""
        cfg = client.Configuration()
        try:
            kube_config.load_incluster_config(client_configuration=cfg)
        except kube_config.ConfigException as exc:
            raise ConfigError(f"in-cluster Kubernetes config: {exc}") from None
        return cls(config, client.ApiClient(cfg))

    @classmethod
    def from_environment(
        cls, config: KubernetesConfig | None = None, kubeconfig: str | os.PathLike[str] | None = None
    ) -> KubernetesPlatform:
        """In-cluster inside a pod (KUBERNETES_SERVICE_HOST set, no kubeconfig given), else the kubeconfig."""
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(config)
        return cls.from_kubeconfig(config, kubeconfig)

    # --- placement -----------------------------------------------------------------------------
    def loadtester_placement(self) -> Placement:
        return loadtester_placement(self.config)

    def steps_placement(self) -> Placement:
        return steps_placement(self.config)

    # --- taint ---------------------------------------------------------------------------------
    def taint(self, owner: str = "") -> dict[str, Any]:
        """Taint and label the loadtester and model nodes for `owner` (the workflow's id). Idempotent.

        Returns `{node: {"role", "taint": "key=value:Effect", "action": added|updated|unchanged,
        "previous": [...], "owners": [...]}}`. What to undo is recorded on each node (annotation
        `orchbench.io/tainted`), and who holds it (`orchbench.io/taint-owners`): see k8s_nodes.py.
        """
        return taint_nodes(self.api_client, self.config, owner)

    def untaint(self, owner: str = "") -> None:
        """Release `owner`'s taints; a node's taint goes once its last owner has released it, and
        other runs' taints stay. Nothing to undo is fine."""
        untaint_nodes(self.api_client, owner)

    # --- deploy --------------------------------------------------------------------------------
    def render(self, manifest: dict[str, Any], arm: ArmName, transport: str | None = None) -> dict[str, Any]:
        """The SeldonDeployment `deploy` would create for this arm (name, namespace, placement, labels):
        kubernetes_render.render_sdep with this platform's config and owner."""
        return render_sdep(manifest, arm, self.config, self.owner, transport)

    def deploy(
        self, manifest: dict[str, Any], arm: ArmName, record_path: Path, transport: str | None = None
    ) -> DeploymentRecord:
        """Create the arm's SeldonDeployment (re-creating one of the same name) and save its record."""
        body = self.render(manifest, arm, transport)
        record = sdep_record(body, arm, self.config.namespace, self._host)
        ns, name = self.config.namespace, record.name
        group, version = record.details["group"], record.details["version"]
        obj = f"SeldonDeployment {ns}/{name}"
        try:
            with api_call("create", obj, self._host):
                self.custom.create_namespaced_custom_object(group, version, ns, SELDON_PLURAL, body)
        except PlatformError as exc:
            if status_of(exc) != 409:
                if status_of(exc) == 404:
                    raise PlatformError(
                        f"{exc} (is Seldon Core installed, with {SELDON_PLURAL}.{group}/{version}, and does "
                        f"namespace {ns} exist?)"
                    ) from None
                raise
            # It exists: unless another run owns it, delete it, wait until it and its pods are gone,
            # create it anew (see module doc).
            other = self._other_owner(record)
            if other:
                raise PlatformError(
                    f"{obj} belongs to another orchbench run (workflow {other}): not replaced; "
                    "wait for that run to end, or change metadata.name"
                ) from None
            self._delete_and_wait(record, self.config.delete_timeout_s)
            with api_call("create", obj, self._host):
                self.custom.create_namespaced_custom_object(group, version, ns, SELDON_PLURAL, body)
        record.save(Path(record_path))
        return record

    # --- wait ----------------------------------------------------------------------------------
    def wait(self, record: DeploymentRecord, timeout_s: float) -> Endpoint:
        """Block until the deployment is Available and all its pods are Ready; DeployTimeout otherwise."""
        record = self._normalize(record)
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {"status": None}

        def available(obj: dict[str, Any]) -> bool:
            last["status"] = obj.get("status")
            return ((obj.get("status") or {}).get("state")) == "Available"

        while True:
            obj = self.objects.get(record)
            if obj is None:
                raise PlatformError(
                    f"SeldonDeployment {record.details['namespace']}/{record.name} does not exist "
                    "(deleted while waiting, or never deployed)"
                )
            if not available(obj) and not self.objects.watch_sdep(record, deadline, available):
                break
            if not self.objects.watch_pods(record, deadline, lambda pods: self._pods_ready(record, pods)):
                break
            obj = self.objects.get(record)  # still Available now that the pods are Ready?
            if obj is not None and available(obj):
                return self.endpoint(record)
            if time.monotonic() >= deadline:
                break
        raise DeployTimeout(self.objects.timeout_message(record, timeout_s, last["status"]))

    def endpoint(self, record: DeploymentRecord) -> Endpoint:
        d = self._normalize(record).details
        return Endpoint(
            transport=record.transport,
            arm=record.arm,
            host=d["service_host"],
            port=int(d["port"]),
            model_name=record.model_name,
        )

    def _pods_ready(self, record: DeploymentRecord, pods: list[dict[str, Any]]) -> bool:
        live = [p for p in pods if not is_terminating(p)]
        return len(live) >= int(record.details.get("replicas", 1)) and all(is_ready(p) for p in live)

    # --- verify --------------------------------------------------------------------------------
    def verify_arm(self, record: DeploymentRecord, endpoint: Endpoint) -> ArmEvidence:
        """The "with" arm's pods run `seldon-container-engine`; the "without" arm's pods do not."""
        record = self._normalize(record)
        ns, name = record.details["namespace"], record.name
        expected_port = PORT_WITH_ORCHESTRATOR if record.arm == "with" else PORT_WITHOUT_ORCHESTRATOR
        if endpoint.arm != record.arm or endpoint.port != expected_port:
            raise ArmVerificationError(
                f"{ns}/{name}: endpoint {endpoint.host}:{endpoint.port} (arm {endpoint.arm!r}) does not fit "
                f"the {record.arm!r} arm, which answers on port {expected_port}"
            )
        obj = self.objects.get(record)
        if obj is None:
            raise ArmVerificationError(f"{ns}/{name}: the SeldonDeployment does not exist")
        try:
            live = manifests.inspect(obj, source=f"live SeldonDeployment {ns}/{name}")
        except ConfigError as exc:
            raise ArmVerificationError(str(exc)) from None
        if live.arm != record.arm:
            raise ArmVerificationError(
                f"{ns}/{name}: deployed as the {live.arm!r} arm (seldon.io/no-engine={live.no_engine}), "
                f"but recorded as {record.arm!r}"
            )
        pods = [p for p in self.objects.list_pods(record) if not is_terminating(p)]
        if not pods:
            raise ArmVerificationError(f"{ns}/{name}: no pods labelled {SELDON_ID_LABEL}={name} to verify")
        containers = {pod_name(p): container_names(p) for p in pods}
        with_engine = sorted(n for n, cs in containers.items() if ENGINE_CONTAINER in cs)
        how = f"pod containers: {json.dumps(containers, sort_keys=True)}"
        if record.arm == "with" and len(with_engine) != len(pods):
            missing = sorted(set(containers) - set(with_engine))
            raise ArmVerificationError(
                f"{ns}/{name}: 'with' arm, but pods {missing} have no orchestrator container "
                f"{ENGINE_CONTAINER!r}; {how}"
            )
        if record.arm == "without" and with_engine:
            raise ArmVerificationError(
                f"{ns}/{name}: 'without' arm, but pods {with_engine} run the orchestrator container "
                f"{ENGINE_CONTAINER!r} (is the annotation spelled seldon.io/no-engine?); {how}"
            )
        return ArmEvidence(arm=record.arm, orchestrator_on_path=record.arm == "with", how=how)

    # --- teardown ------------------------------------------------------------------------------
    def teardown(self, record: DeploymentRecord) -> None:
        """Delete the deployment; return once it and its pods are gone. Already gone is fine; one that
        another run owns (its `orchbench.io/owner` label names another workflow) is left alone."""
        record = self._normalize(record)
        if self._other_owner(record):
            return
        self._delete_and_wait(record, self.config.delete_timeout_s)

    def _other_owner(self, record: DeploymentRecord) -> str | None:
        """The owner of the live object when it is another run (None: ours, unowned, or gone)."""
        if not self.owner:
            return None
        live = self.objects.get(record)
        theirs = (((live or {}).get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL)
        return str(theirs) if theirs and theirs != self.owner else None

    def _delete_and_wait(self, record: DeploymentRecord, timeout_s: float) -> None:
        d = record.details
        ns, name = d["namespace"], record.name
        deadline = time.monotonic() + timeout_s
        try:
            with api_call("delete", f"SeldonDeployment {ns}/{name}", self._host):
                self.custom.delete_namespaced_custom_object(
                    d["group"], d["version"], ns, d["plural"], name, propagation_policy="Foreground"
                )
        except PlatformError as exc:
            if status_of(exc) != 404:
                raise
        gone = self.objects.watch_sdep(record, deadline, lambda obj: False, until_deleted=True)
        if gone:
            gone = self.objects.watch_pods(record, deadline, lambda pods: not pods)
        if not gone:
            left = [pod_name(p) for p in self.objects.list_pods(record)]
            exists = self.objects.get(record) is not None
            raise PlatformError(
                f"SeldonDeployment {ns}/{name} not gone after {timeout_s:.0f}s: "
                f"object {'still exists' if exists else 'deleted'}, pods left {left}"
            )

    # --- API helpers ---------------------------------------------------------------------------
    def _normalize(self, record: DeploymentRecord) -> DeploymentRecord:
        """kubernetes_render.normalize_record in this platform's namespace."""
        return normalize_record(record, self.config.namespace)

    def recent_events(self, record: DeploymentRecord, limit: int = EVENTS_IN_ERRORS) -> list[str]:
        """The latest events about the deployment and its pods, one line each, oldest first."""
        return self.objects.recent_events(record, limit)


def platform_from_spec(
    spec: Any, kubeconfig: str | os.PathLike[str] | None = None, owner: str = ""
) -> KubernetesPlatform:
    """The platform for an orchbench Spec: in-cluster inside an Argo pod, else the kubeconfig
    (`kubeconfig`, $KUBECONFIG or ~/.kube/config). `owner`: the workflow's uid (see `owner`)."""
    platform = KubernetesPlatform.from_environment(config_from_spec(spec), kubeconfig)
    platform.owner = owner
    return platform


if TYPE_CHECKING:  # mypy checks that KubernetesPlatform satisfies the Platform protocol
    from orchbench.core.platform.base import Platform

    def _conforms(p: KubernetesPlatform) -> Platform:
        return p
