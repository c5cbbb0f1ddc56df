"""The KServe platform: the arms raw, serverless and graph (kserve_render.py) on a cluster.

    platform = KServePlatform.from_environment(cfg, options=KServeOptions(arms=("raw", "serverless")))
    record = platform.deploy(isvc_manifest, "serverless", run_dir / "deploy-rest-serverless.json")
    target = platform.wait(record, timeout_s=600)     # ArmTarget: URL, Host header, hops
    evidence = platform.verify_arm(record, target)
    platform.teardown(record)

Readiness: the InferenceService's `Ready` condition (and the InferenceGraph's, for the graph arm), then
the pods labelled `serving.kserve.io/inferenceservice=<isvc>` (and the router's, labelled
`serving.kserve.io/inferencegraph=<graph>`) Ready. Verification reads the live objects and pods:
- every pod of the arm carries `orchbench.io/arm=<arm>` (rendered on the objects and the predictor's
  component labels); a pod selected by the arm's KServe label but labelled otherwise is refused;
- the live deployment mode is the arm's (RawDeployment/Standard or Serverless/Knative);
- `queue-proxy` runs in every model pod of `serverless`, in none of `raw` (nor of a raw-backed graph);
  the activator setting (target-burst-capacity) is the one rendered;
- for `graph`: the router's pods exist, run no queue-proxy, and the root step forwards to this arm's
  InferenceService.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from orchbench.core.errors import ArmVerificationError, ConfigError
from orchbench.core.platform.base import ArmEvidence, DeploymentRecord
from orchbench.core.platform.k8s_arms import ARM_LABEL, ArmTarget
from orchbench.core.platform.k8s_common import KubernetesConfig
from orchbench.core.platform.k8s_custom import CustomObjectsPlatform
from orchbench.core.platform.k8s_custom_refs import ObjectRef, check_owner_label
from orchbench.core.platform.k8s_objects import container_names, pod_name
from orchbench.core.platform.k8s_placement import model_placement
from orchbench.core.platform.kserve_render import (
    DEPLOYMENT_MODE,
    IG_KIND,
    IG_PLURAL,
    IG_POD_LABEL,
    IG_VERSION,
    ISVC_KIND,
    ISVC_PLURAL,
    ISVC_POD_LABEL,
    ISVC_VERSION,
    KSERVE_GROUP,
    QUEUE_PROXY,
    RAW_MODES,
    SERVERLESS_MODES,
    TARGET_BURST_CAPACITY,
    KServeArm,
    KServeOptions,
    render_kserve,
)

__all__ = ["KServeOptions", "KServePlatform"]


class KServePlatform(CustomObjectsPlatform):
    """InferenceService / InferenceGraph arms, by typed calls (CustomObjectsApi, CoreV1Api, watch)."""

    name = "kserve"
    KINDS = (
        (KSERVE_GROUP, ISVC_VERSION, ISVC_PLURAL, ISVC_KIND),
        (KSERVE_GROUP, IG_VERSION, IG_PLURAL, IG_KIND),
    )

    def __init__(
        self,
        config: KubernetesConfig | None = None,
        api_client: client.ApiClient | None = None,
        options: KServeOptions | None = None,
    ) -> None:
        super().__init__(config, api_client)
        self.options = options or KServeOptions()

    # --- render / deploy ---------------------------------------------------------------------------
    def render(self, manifest: dict[str, Any]) -> dict[str, KServeArm]:
        """Every arm's objects, placed on the model nodes (toleration, and node selector with pin_model)."""
        return render_kserve(manifest, self.options, self.config.namespace, model_placement(self.config))

    def deploy(self, manifest: dict[str, Any], arm: str, record_path: Path) -> DeploymentRecord:
        """Create the arm's objects (re-creating any of the same name) and save its record."""
        record, bodies = self.plan(manifest, arm)
        self.create_all(self.config.namespace, bodies)
        record.save(Path(record_path))
        return record

    def plan(
        self, manifest: dict[str, Any], arm: str
    ) -> tuple[DeploymentRecord, list[tuple[ObjectRef, dict[str, Any]]]]:
        """The arm's record and objects, created by nothing: `deploy` creates them; the exit handler
        rebuilds a lost record from this (the names are deterministic)."""
        arms = self.render(manifest)
        if arm not in arms:
            raise ConfigError(f"arm {arm!r} is not rendered (arms: {', '.join(arms)})")
        a = arms[arm]
        ns = self.config.namespace
        plurals = {"InferenceService": ISVC_PLURAL, "InferenceGraph": IG_PLURAL}
        bodies = [(ObjectRef.of(body, plurals[body["kind"]]), body) for body in a.objects]
        selectors = [[ISVC_POD_LABEL, a.isvc_name]] + ([[IG_POD_LABEL, a.graph_name]] if a.graph_name else [])
        record = DeploymentRecord(
            platform=self.name,
            name=a.graph_name or a.isvc_name,
            transport=cast(Any, a.target.transport),
            arm=cast(Any, arm),  # the record's ArmName predates N arms; the value is the KServe arm
            model_name=a.target.model_name,
            details={
                "namespace": ns,
                "objects": [ref.to_dict() for ref, _ in bodies],
                "pod_selectors": selectors,
                "isvc": a.isvc_name,
                "graph": a.graph_name,
                "target": a.target.to_dict(),
                "api_host": self._host,
                "owner": self.owner,
            },
        )
        return record, bodies

    # --- wait ----------------------------------------------------------------------------------------
    def wait(self, record: DeploymentRecord, timeout_s: float) -> ArmTarget:
        """Block until every object is Ready and its pods are; DeployTimeout (one line) otherwise."""
        self.wait_ready(record, self._check_record(record), timeout_s)
        return self.endpoint(record)

    def endpoint(self, record: DeploymentRecord) -> ArmTarget:
        return ArmTarget.from_dict(self._check_record(record)["target"])

    # --- verify --------------------------------------------------------------------------------------
    def verify_arm(self, record: DeploymentRecord, target: ArmTarget) -> ArmEvidence:
        d = self._check_record(record)
        ns, arm = d["namespace"], record.arm
        expected = self.endpoint(record)
        where = f"{ns}/{record.name}"
        if target.arm != arm or (target.host, target.port) != (expected.host, expected.port):
            raise ArmVerificationError(
                f"{where}: target {target.host}:{target.port} (arm {target.arm!r}) is not the {arm!r} arm's "
                f"{expected.host}:{expected.port}"
            )
        hops = set(expected.hops)
        knative = QUEUE_PROXY in hops
        isvc_ref = next(r for r in self.refs(d) if r.kind == "InferenceService")
        isvc = self.get(ns, isvc_ref)
        if isvc is None:
            raise ArmVerificationError(f"{ns}/{isvc_ref.name}: the InferenceService does not exist")
        check_owner_label(d, isvc, f"{ns}/{isvc_ref.name}")
        annotations = (isvc.get("metadata") or {}).get("annotations") or {}
        modes = SERVERLESS_MODES if knative else RAW_MODES
        live_modes = {annotations.get(DEPLOYMENT_MODE), (isvc.get("status") or {}).get("deploymentMode")} - {
            None
        }
        if not live_modes or not live_modes <= set(modes):
            raise ArmVerificationError(
                f"{ns}/{isvc_ref.name}: {arm!r} arm needs deployment mode {' or '.join(modes)}, "
                f"the live object has {sorted(str(m) for m in live_modes) or 'none'}"
            )
        if knative and (annotations.get(TARGET_BURST_CAPACITY) == "-1") != ("knative-activator" in hops):
            raise ArmVerificationError(
                f"{ns}/{isvc_ref.name}: {TARGET_BURST_CAPACITY}="
                f"{annotations.get(TARGET_BURST_CAPACITY)!r} does not match the rendered activator "
                f"setting (hops {sorted(hops)})"
            )
        groups = self.pods_of(ns, self.selectors(d))
        for (key, value), pods in groups.items():
            if not pods:
                raise ArmVerificationError(f"{where}: no pods labelled {key}={value} to verify")
            for p in pods:
                label = ((p.get("metadata") or {}).get("labels") or {}).get(ARM_LABEL)
                if label != arm:
                    raise ArmVerificationError(
                        f"{where}: pod {pod_name(p)} is labelled {key}={value} but "
                        f"{ARM_LABEL}={label!r}, not {arm!r}: refusing to verify the arm from a "
                        "mislabelled pod"
                    )
        model_pods = groups[(ISVC_POD_LABEL, isvc_ref.name)]
        containers = {pod_name(p): container_names(p) for group in groups.values() for p in group}
        how = f"hops {sorted(hops)}; pod containers: {json.dumps(containers, sort_keys=True)}"
        with_qp = sorted(pod_name(p) for p in model_pods if QUEUE_PROXY in container_names(p))
        if knative and len(with_qp) != len(model_pods):
            missing = sorted({pod_name(p) for p in model_pods} - set(with_qp))
            raise ArmVerificationError(
                f"{where}: {arm!r} arm, but pods {missing} run no {QUEUE_PROXY}; {how}"
            )
        if not knative and with_qp:
            raise ArmVerificationError(f"{where}: {arm!r} arm, but pods {with_qp} run {QUEUE_PROXY}; {how}")
        router_on_path = bool(d.get("graph"))
        if router_on_path:
            self._verify_graph(d, isvc_ref.name, groups[(IG_POD_LABEL, d["graph"])], how)
        elif "graph-router" in hops:
            raise ArmVerificationError(f"{where}: the record has no InferenceGraph for a graph path; {how}")
        return ArmEvidence(arm=cast(Any, arm), orchestrator_on_path=router_on_path, how=how)

    def _verify_graph(
        self, d: dict[str, Any], isvc_name: str, router_pods: list[dict[str, Any]], how: str
    ) -> None:
        ns = d["namespace"]
        ref = next(r for r in self.refs(d) if r.kind == "InferenceGraph")
        graph = self.get(ns, ref)
        if graph is None:
            raise ArmVerificationError(f"{ns}/{ref.name}: the InferenceGraph does not exist")
        check_owner_label(d, graph, f"{ns}/{ref.name}")
        mode = ((graph.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_MODE)
        with_qp = sorted(pod_name(p) for p in router_pods if QUEUE_PROXY in container_names(p))
        if mode not in RAW_MODES or with_qp:
            raise ArmVerificationError(
                f"{ns}/{ref.name}: the router must be a RawDeployment without {QUEUE_PROXY} "
                f"(mode {mode!r}, pods with it {with_qp}); {how}"
            )
        steps = (((graph.get("spec") or {}).get("nodes") or {}).get("root") or {}).get("steps") or []
        urls = [str(s.get("serviceUrl") or "") for s in steps]
        if len(steps) != 1 or f"//{isvc_name}-predictor." not in urls[0]:
            raise ArmVerificationError(
                f"{ns}/{ref.name}: the root node must have one step to {isvc_name}, has {urls}; {how}"
            )

    # --- teardown ------------------------------------------------------------------------------------
    def teardown(self, record: DeploymentRecord) -> None:
        """Delete the arm's objects (graph first); return once they and their pods are gone. Already
        gone is fine; objects another run owns are left alone."""
        d = self._check_record(record)
        self.teardown_refs(d["namespace"], self.refs(d), self.selectors(d))

    def owned_selectors(self, refs: Sequence[ObjectRef]) -> list[tuple[str, str]]:
        labels = {ISVC_KIND: ISVC_POD_LABEL, IG_KIND: IG_POD_LABEL}
        return [(labels[r.kind], r.name) for r in refs]
