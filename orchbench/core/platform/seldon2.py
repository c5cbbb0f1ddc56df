"""The Seldon Core v2 platform: the arms mesh and direct (seldon2_render.py) on a cluster.

    platform = Seldon2Platform.from_environment(cfg, options=Seldon2Options(server="mlserver"))
    record = platform.deploy(model_manifest, "mesh", run_dir / "deploy-rest-mesh.json")
    target = platform.wait(record, timeout_s=600)
    evidence = platform.verify_arm(record, target)
    platform.teardown(record)

The Server's pods (label `seldon-server-name=<server>`) and envoy's (`app.kubernetes.io/name=
seldon-envoy`, Seldon v2.6 on: see seldon2_render.py for the sources) belong to the Seldon installation,
not to orchbench: `deploy` creates only the Model, `teardown` deletes only it.
Readiness: the Model's `Ready` condition, then the server's pods Ready (and envoy's for `mesh`).
For `direct`, `wait` returns the target with the server pod's IP as host (one server replica only:
with several, which one holds the model is the scheduler's secret).

Verification from the pods: a pod selected by `seldon-server-name` but not labelled as a Seldon
server (`app.kubernetes.io/name` = `seldon-server`, or `app` as Seldon v2.0-2.5 set it) is refused;
`mesh` needs the `agent` container (the reverse proxy on the path) in the server pods and envoy pods
running; `direct` needs the target port to be a port of the inference server's own container, not the
agent's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from orchbench.core.errors import ArmVerificationError, ConfigError
from orchbench.core.platform.base import ArmEvidence, DeploymentRecord
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.k8s_common import KubernetesConfig
from orchbench.core.platform.k8s_custom import CustomObjectsPlatform
from orchbench.core.platform.k8s_custom_refs import ObjectRef, check_owner_label
from orchbench.core.platform.k8s_objects import container_names, pod_name
from orchbench.core.platform.seldon2_render import (
    AGENT_CONTAINER,
    ENVOY_POD_SELECTOR,
    MODEL_KIND,
    MODEL_PLURAL,
    MODEL_VERSION,
    SELDON2_GROUP,
    SERVER_APP_VALUE,
    SERVER_POD_LABEL,
    Seldon2Arm,
    Seldon2Options,
    render_seldon2,
)

__all__ = ["Seldon2Options", "Seldon2Platform"]


def _ports(container: dict[str, Any]) -> set[int]:
    return {int(p["containerPort"]) for p in container.get("ports") or [] if "containerPort" in p}


class Seldon2Platform(CustomObjectsPlatform):
    """Seldon Core v2 Model arms, by typed calls (CustomObjectsApi, CoreV1Api, watch)."""

    name = "seldon2"
    KINDS = ((SELDON2_GROUP, MODEL_VERSION, MODEL_PLURAL, MODEL_KIND),)

    def __init__(
        self,
        config: KubernetesConfig | None = None,
        api_client: client.ApiClient | None = None,
        options: Seldon2Options | None = None,
    ) -> None:
        super().__init__(config, api_client)
        self.options = options or Seldon2Options()

    def render(self, manifest: dict[str, Any]) -> dict[str, Seldon2Arm]:
        return render_seldon2(manifest, self.options, self.config.namespace)

    def deploy(self, manifest: dict[str, Any], arm: str, record_path: Path) -> DeploymentRecord:
        record, bodies = self.plan(manifest, arm)
        self.create_all(self.config.namespace, bodies)
        record.save(Path(record_path))
        return record

    def plan(
        self, manifest: dict[str, Any], arm: str
    ) -> tuple[DeploymentRecord, list[tuple[ObjectRef, dict[str, Any]]]]:
        """The arm's record and Model, created by nothing (see KServePlatform.plan)."""
        arms = self.render(manifest)
        if arm not in arms:
            raise ConfigError(f"arm {arm!r} is not rendered (arms: {', '.join(arms)})")
        a = arms[arm]
        ns = self.config.namespace
        body = a.objects[0]
        ref = ObjectRef.of(body, MODEL_PLURAL)
        selectors = [[SERVER_POD_LABEL, self.options.server]]
        if arm == "mesh":
            selectors.append(list(ENVOY_POD_SELECTOR))
        record = DeploymentRecord(
            platform=self.name,
            name=a.model,
            transport=cast(Any, a.target.transport),
            arm=cast(Any, arm),  # the record's ArmName predates N arms; the value is the Seldon v2 arm
            model_name=a.target.model_name,
            details={
                "namespace": ns,
                "objects": [ref.to_dict()],
                "pod_selectors": selectors,
                "server": self.options.server,
                "target": a.target.to_dict(),
                "api_host": self._host,
                "owner": self.owner,
            },
        )
        return record, [(ref, body)]

    def wait(self, record: DeploymentRecord, timeout_s: float) -> ArmTarget:
        self.wait_ready(record, self._check_record(record), timeout_s)
        return self.endpoint(record)

    def endpoint(self, record: DeploymentRecord) -> ArmTarget:
        """The rendered target; for `direct`, with the server pod's IP as host once the pod has one."""
        d = self._check_record(record)
        target = ArmTarget.from_dict(d["target"])
        if record.arm != "direct":
            return target
        pods = self._server_pods(d)
        if len(pods) != 1:
            raise ArmVerificationError(
                f"{d['namespace']}/{record.name}: the direct arm needs a Server with one replica, "
                f"{d['server']} has pods {[pod_name(p) for p in pods]}"
            )
        ip = str((pods[0].get("status") or {}).get("podIP") or "")
        if not ip:
            return target
        rest = target.transport == "rest"
        return dataclasses.replace(
            target,
            host=ip,
            host_header=ip,
            url=f"http://{ip}:{target.port}/v2/models/{target.model_name}/infer" if rest else "",
            grpc_target="" if rest else f"{ip}:{target.port}",
        )

    def _server_pods(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        return self.pods_of(d["namespace"], [(SERVER_POD_LABEL, d["server"])])[
            (SERVER_POD_LABEL, d["server"])
        ]

    def verify_arm(self, record: DeploymentRecord, target: ArmTarget) -> ArmEvidence:
        d = self._check_record(record)
        ns, arm, where = d["namespace"], record.arm, f"{d['namespace']}/{record.name}"
        rendered = ArmTarget.from_dict(d["target"])
        if target.arm != arm or target.port != rendered.port or target.model_name != rendered.model_name:
            raise ArmVerificationError(
                f"{where}: target {target.host}:{target.port} for model {target.model_name!r} "
                f"(arm {target.arm!r}) is not the {arm!r} arm's port {rendered.port} / "
                f"model {rendered.model_name!r}"
            )
        if dict(target.headers) != dict(rendered.headers):
            raise ArmVerificationError(
                f"{where}: target headers {dict(target.headers)} are not {dict(rendered.headers)}"
            )
        model = self.get(ns, ObjectRef.from_dict(d["objects"][0]))
        if model is None:
            raise ArmVerificationError(f"{where}: the Model does not exist")
        check_owner_label(d, model, where)
        if (model.get("spec") or {}).get("server") != d["server"]:
            raise ArmVerificationError(
                f"{where}: the live Model runs on server {(model.get('spec') or {}).get('server')!r}, "
                f"not {d['server']!r}"
            )
        pods = self._server_pods(d)
        if not pods:
            raise ArmVerificationError(
                f"{where}: no pods labelled {SERVER_POD_LABEL}={d['server']} to verify"
            )
        for p in pods:
            labels = (p.get("metadata") or {}).get("labels") or {}
            if SERVER_APP_VALUE not in (labels.get("app"), labels.get("app.kubernetes.io/name")):
                raise ArmVerificationError(
                    f"{where}: pod {pod_name(p)} is labelled {SERVER_POD_LABEL}={d['server']} but is not "
                    f"a Seldon server pod (app / app.kubernetes.io/name != {SERVER_APP_VALUE!r}): "
                    "refusing a mislabelled pod"
                )
        containers = {pod_name(p): container_names(p) for p in pods}
        how = f"hops {list(rendered.hops)}; server pod containers: {json.dumps(containers, sort_keys=True)}"
        if arm == "mesh":
            without = sorted(n for n, cs in containers.items() if AGENT_CONTAINER not in cs)
            if without:
                raise ArmVerificationError(
                    f"{where}: mesh arm, but pods {without} run no {AGENT_CONTAINER!r}; {how}"
                )
            envoy = self.pods_of(ns, [ENVOY_POD_SELECTOR])[ENVOY_POD_SELECTOR]
            if not envoy:
                raise ArmVerificationError(
                    f"{where}: mesh arm, but no envoy pods ({'='.join(ENVOY_POD_SELECTOR)}) in {ns}; {how}"
                )
            how += f"; envoy pods {[pod_name(p) for p in envoy]}"
        else:
            for p in pods:
                spec_containers = (p.get("spec") or {}).get("containers") or []
                serving = [
                    str(c.get("name"))
                    for c in spec_containers
                    if c.get("name") != AGENT_CONTAINER and rendered.port in _ports(c)
                ]
                agent_ports = set().union(
                    *(_ports(c) for c in spec_containers if c.get("name") == AGENT_CONTAINER)
                )
                if not serving or rendered.port in agent_ports:
                    raise ArmVerificationError(
                        f"{where}: direct arm, but port {rendered.port} is not the inference server's "
                        f"own port in pod {pod_name(p)} (the agent's: {sorted(agent_ports)}); {how}"
                    )
        return ArmEvidence(arm=cast(Any, arm), orchestrator_on_path=arm == "mesh", how=how)

    def teardown(self, record: DeploymentRecord) -> None:
        """Delete the Model; return once it is gone (the Server's pods stay: they are Seldon's)."""
        d = self._check_record(record)
        self.teardown_refs(d["namespace"], self.refs(d), [])
