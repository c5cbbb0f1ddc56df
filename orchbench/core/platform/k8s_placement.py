"""Where pods go: placement for the pipeline's pods, and the model's toleration in a SeldonDeployment
and in the KServe / Seldon v2 objects.

The pipeline builder calls these from its Hera templates:

    from orchbench.core.platform.kubernetes import loadtester_placement, steps_placement
    p = loadtester_placement(spec)           # an orchbench Spec, or a KubernetesConfig
    Script(..., **p)                         # a Placement is a mapping of Hera keyword arguments:
                                             #   tolerations=[Toleration], node_selector={...}
    p.to_pod_spec()                          # or plain dicts: {"tolerations": [...], "nodeSelector": {...}}

- `loadtester_placement`: tolerates the loadtester taint and selects the node(s) `taint` labelled
  `orchbench.io/role=loadtester`. For the load-test pods.
- `steps_placement`: only tolerates the loadtester taint. For every other pod that runs after `taint`
  (deploy, wait, teardown, compare, the untaint exit handler): in the seed's 3-node cluster every node
  is tainted, so a pod without a toleration would stay Pending forever.
- `ensure_model_placement`: what `deploy` applies to a SeldonDeployment (the toleration of the model
  taint, as in the seed; plus, with `pin_model`, a nodeSelector on the model role label).
- `model_placement`: the same as a pod-spec fragment, for the KServe and Seldon v2 renderers' objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchbench.core.platform.k8s_common import ROLE_LABEL, KubernetesConfig, Taint, config_from_spec


@dataclass(frozen=True)
class Placement(Mapping[str, Any]):
    """Tolerations and node selector for a pod, as Kubernetes JSON (camelCase) dicts.

    As a mapping it holds Hera's keyword arguments (`to_hera()`), so `Script(..., **placement)` works.
    """

    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.to_hera()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_hera())

    def __len__(self) -> int:
        return len(self.to_hera())

    def to_pod_spec(self) -> dict[str, Any]:
        """The pod-spec fragment: `{"tolerations": [...], "nodeSelector": {...}}` (empty parts omitted)."""
        out: dict[str, Any] = {}
        if self.tolerations:
            out["tolerations"] = copy.deepcopy(self.tolerations)
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        return out

    def to_hera(self) -> dict[str, Any]:
        """Keyword arguments for a Hera `Script`/`Container` template: `tolerations`, `node_selector`."""
        from hera.workflows.models import Toleration  # imported here: hera is only needed by the builder

        out: dict[str, Any] = {}
        if self.tolerations:
            out["tolerations"] = [
                Toleration(
                    key=t.get("key"), operator=t.get("operator"), value=t.get("value"), effect=t.get("effect")
                )
                for t in self.tolerations
            ]
        if self.node_selector:
            out["node_selector"] = dict(self.node_selector)
        return out


def toleration_for(taint: Taint) -> dict[str, Any]:
    """The exact toleration of one taint (operator Equal: same key, value and effect)."""
    return {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}


def tolerates(toleration: dict[str, Any], taint: Taint) -> bool:
    """Kubernetes' toleration matching rule, for one taint."""
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    effect = toleration.get("effect")
    if effect and effect != taint.effect:
        return False
    if not key:
        return operator == "Exists"  # an empty key with Exists tolerates everything
    if key != taint.key:
        return False
    return operator == "Exists" or (toleration.get("value") or "") == taint.value


def _config(spec_or_config: Any) -> KubernetesConfig:
    if isinstance(spec_or_config, KubernetesConfig):
        return spec_or_config
    return config_from_spec(spec_or_config)


def loadtester_placement(spec_or_config: Any) -> Placement:
    """Load-test pods: tolerate the loadtester taint and run on the loadtester node(s) `taint` labelled.

    Takes an orchbench Spec (its `kubernetes` section) or a KubernetesConfig.
    """
    config = _config(spec_or_config)
    return Placement(
        tolerations=[toleration_for(config.loadtester_taint)],
        node_selector={ROLE_LABEL: "loadtester"},
    )


def steps_placement(spec_or_config: Any) -> Placement:
    """Other pipeline pods after `taint` (and the untaint exit handler): they tolerate the loadtester
    taint, so they can run on the loadtester node (between load tests) or any untainted node, never on
    a model node. Without it, a cluster whose nodes are all tainted leaves them Pending forever."""
    return Placement(tolerations=[toleration_for(_config(spec_or_config).loadtester_taint)])


def ensure_model_placement(manifest: dict[str, Any], config: KubernetesConfig) -> dict[str, Any]:
    """A copy of a SeldonDeployment whose predictor pods tolerate the model taint (and, with
    `config.pin_model`, select the model nodes). Tolerations already present are kept, not duplicated."""
    out = copy.deepcopy(manifest)
    taint = config.model_taint
    for predictor in (out.get("spec") or {}).get("predictors") or []:
        specs = predictor.get("componentSpecs")
        if not specs:
            # Prepackaged servers (TENSORFLOW_SERVER) need no componentSpecs; add one whose container is
            # named after the graph's model, as the seed's manifest does, to carry the placement.
            graph_name = (predictor.get("graph") or {}).get("name") or "model"
            specs = predictor["componentSpecs"] = [{"spec": {"containers": [{"name": graph_name}]}}]
        for component in specs:
            spec = component.setdefault("spec", {})
            tolerations = spec.setdefault("tolerations", [])
            if not any(tolerates(t, taint) for t in tolerations):
                tolerations.append({"key": taint.key, "operator": "Exists", "effect": taint.effect})
            if config.pin_model:
                spec.setdefault("nodeSelector", {}).setdefault(ROLE_LABEL, "model")
    return out


def model_placement(config: KubernetesConfig) -> dict[str, Any]:
    """The pod-spec fragment that puts model (and router) pods on the model nodes: a toleration of the
    model taint and, with `pin_model`, the role node selector `taint` sets."""
    taint = config.model_taint
    out: dict[str, Any] = {"tolerations": [{"key": taint.key, "operator": "Exists", "effect": taint.effect}]}
    if config.pin_model:
        out["nodeSelector"] = {ROLE_LABEL: "model"}
    return out
