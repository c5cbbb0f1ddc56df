"""SeldonDeployment manifests: read one, check it, and render the with/without-orchestrator variants.

The "without" arm is the same manifest with the annotation `seldon.io/no-engine: "true"` on the
predictor, exactly as the seed notebook wrote it. A misspelled key (Seldon's own 2021 chart used
`seldonio/no-engine`) is refused: it would silently leave the orchestrator in both arms.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchbench.core.arms import ArmName, Transport
from orchbench.core.errors import ConfigError
from orchbench.core.safeio import MAX_MANIFEST_BYTES, load_yaml_file

NO_ENGINE = "seldon.io/no-engine"
_MISSPELLINGS = ("seldonio/no-engine", "seldon.io/no_engine", "seldon.io/noengine", "seldon/no-engine")
API_GROUP = "machinelearning.seldon.io"
API_VERSIONS = ("v1", "v1alpha2", "v1alpha3")


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    api_version: str
    protocol: str
    transport: Transport
    model_name: str
    no_engine: bool

    @property
    def arm(self) -> ArmName:
        return "without" if self.no_engine else "with"


def load_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = load_yaml_file(path, "manifest", MAX_MANIFEST_BYTES)
    inspect(data, source=str(path))
    return data


def _predictor(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    predictors = (manifest.get("spec") or {}).get("predictors")
    if not isinstance(predictors, list) or not predictors or not isinstance(predictors[0], dict):
        raise ConfigError(f"{source}: spec.predictors must be a non-empty list")
    if len(predictors) > 1:
        raise ConfigError(f"{source}: exactly one predictor is supported, found {len(predictors)}")
    return predictors[0]


def inspect(manifest: Any, source: str = "manifest") -> DeploymentInfo:
    """Validate a SeldonDeployment dict and return what orchbench needs to know about it."""
    if not isinstance(manifest, dict):
        raise ConfigError(f"{source}: a SeldonDeployment must be a YAML mapping")
    api = str(manifest.get("apiVersion", ""))
    group, _, version = api.partition("/")
    if manifest.get("kind") != "SeldonDeployment" or group != API_GROUP or version not in API_VERSIONS:
        raise ConfigError(
            f"{source}: expected kind SeldonDeployment, apiVersion {API_GROUP}/{{{','.join(API_VERSIONS)}}};"
            f" got kind={manifest.get('kind')!r} apiVersion={api!r}"
        )
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: metadata.name is missing")
    spec = manifest.get("spec") or {}
    protocol = spec.get("protocol", "seldon")
    if protocol != "tensorflow":
        raise ConfigError(
            f"{source}: spec.protocol must be 'tensorflow' (the seed's protocol), got {protocol!r}"
        )
    transport = spec.get("transport", "rest")
    if transport not in ("rest", "grpc"):
        raise ConfigError(f"{source}: spec.transport must be rest or grpc, got {transport!r}")
    predictor = _predictor(manifest, source)
    annotations = {
        **((manifest.get("metadata") or {}).get("annotations") or {}),
        **(predictor.get("annotations") or {}),
    }
    for bad in _MISSPELLINGS:
        if bad in annotations:
            raise ConfigError(
                f"{source}: annotation {bad!r} is not Seldon's; write {NO_ENGINE!r} (a misspelled key keeps "
                "the orchestrator in the 'without' arm)"
            )
    raw = annotations.get(NO_ENGINE, "false")
    if str(raw).lower() not in ("true", "false"):
        raise ConfigError(f'{source}: {NO_ENGINE} must be "true" or "false", got {raw!r}')
    graph = predictor.get("graph") or {}
    model_name = graph.get("name")
    for param in graph.get("parameters") or []:
        if isinstance(param, dict) and param.get("name") == "model_name":
            model_name = param.get("value")
    if not isinstance(model_name, str) or not model_name:
        raise ConfigError(f"{source}: the predictor graph has no model name")
    return DeploymentInfo(
        name=name,
        api_version=api,
        protocol=protocol,
        transport=transport,
        model_name=model_name,
        no_engine=str(raw).lower() == "true",
    )


def render(
    manifest: dict[str, Any], transport: Transport, arm: ArmName, name: str | None = None
) -> dict[str, Any]:
    """A copy of `manifest` for one transport and arm (the seed edited tf_flowers.yaml by hand for this)."""
    out = copy.deepcopy(manifest)
    if name:
        out.setdefault("metadata", {})["name"] = name
    out.setdefault("spec", {})["transport"] = transport
    predictor = _predictor(out, "manifest")
    annotations = dict(predictor.get("annotations") or {})
    meta_ann = (out.get("metadata") or {}).get("annotations") or {}
    meta_ann.pop(NO_ENGINE, None)
    annotations.pop(NO_ENGINE, None)
    if arm == "without":
        annotations[NO_ENGINE] = "true"
    if annotations:
        predictor["annotations"] = annotations
    else:
        predictor.pop("annotations", None)
    inspect(out)
    return out
