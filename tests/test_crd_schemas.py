"""Every object orchbench renders, validated against the real CRD's `openAPIV3Schema`.

The CRDs live outside the project, in `../shared/crds/` (see its README); the tests skip when that
folder is absent. Two checks, both only about what the CRD declares:

1. `schema_errors`: JSON-Schema validation (jsonschema) of the object against the served version's
   `openAPIV3Schema`, with the Kubernetes extensions mapped to what the API server does:
   `nullable` admits null, `x-kubernetes-int-or-string` admits an integer or a string,
   `x-kubernetes-list-type: set` requires unique items, `x-kubernetes-list-type: map` requires unique
   `x-kubernetes-list-map-keys` (missing keys take the schema's default). Other `x-kubernetes-*` keys
   are annotations for the server's merge logic and are ignored, as is `format` (jsonschema does not
   check it without a format checker, and the API server does not range-check int32/int64 either).
2. `pruned_fields`: fields the API server would silently drop (structural-schema pruning): keys of an
   object whose schema neither declares them in `properties` nor has `additionalProperties` nor
   `x-kubernetes-preserve-unknown-fields: true`. `metadata` is ObjectMeta, checked by the server itself.
   A misspelled field would otherwise vanish on create and the arm would not be what it claims.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client

from orchbench.core import manifest as manifests
from orchbench.core.platform.k8s_common import KubernetesConfig
from orchbench.core.platform.k8s_kinds import render_arms
from orchbench.core.platform.kserve_render import KServeOptions, render_kserve
from orchbench.core.platform.kubernetes import KubernetesPlatform
from orchbench.core.platform.seldon2_render import Seldon2Options, render_seldon2
from orchbench.core.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO.parent / "shared" / "crds"
CRD_FILES = {
    ("machinelearning.seldon.io", "SeldonDeployment"): "seldon-v1.19-seldondeployments.yaml",
    ("serving.kserve.io", "InferenceService"): "kserve-inferenceservices.yaml",
    ("serving.kserve.io", "InferenceGraph"): "kserve-inferencegraphs.yaml",
    ("mlops.seldon.io", "Model"): "seldon-v2-models.yaml",
}
KSERVE_MANIFEST = REPO / "manifests" / "kserve_sklearn_iris.yaml"
SELDON2_MANIFEST = REPO / "manifests" / "seldon2_iris.yaml"
PLACEMENT = {
    "tolerations": [{"key": "model", "operator": "Exists", "effect": "NoSchedule"}],
    "nodeSelector": {"orchbench.io/role": "model"},
}

pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason=f"CRDs not available at {CRDS}")


# --- the validator ---------------------------------------------------------------------------------


@functools.cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    """The `openAPIV3Schema` of a served version of the CRD for group/kind, as JSON Schema."""
    path = CRDS / CRD_FILES[(group, kind)]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KServe and Seldon v1 CRDs are ~2 MB
    docs = [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            assert v.get("served", True), f"{group}/{version} {kind} is not served"
            return _to_json_schema(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{path.name}: no version {version!r} of {kind}")


def _to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural schema) → JSON Schema, keeping the `x-kubernetes-*` keys for
    `pruned_fields` and `list_key_errors`."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("description", "nullable")}
    if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _walk(obj: Any, schema: dict[str, Any], path: str) -> Iterator[tuple[Any, dict[str, Any], str]]:
    """(value, schema, path) for every value under obj that the schema describes."""
    yield obj, schema, path
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from _walk(value, sub, f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(obj):
            yield from _walk(value, schema["items"], f"{path}[{i}]")


def list_key_errors(obj: Any, schema: dict[str, Any]) -> list[str]:
    errors = []
    for value, sub, path in _walk(obj, schema, "$"):
        keys = sub.get("x-kubernetes-list-map-keys")
        if sub.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(value, list):
            continue
        item_props = (sub.get("items") or {}).get("properties") or {}
        seen = set()
        for item in value:
            key = tuple(
                item.get(k, (item_props.get(k) or {}).get("default")) if isinstance(item, dict) else None
                for k in keys
            )
            if key in seen:
                errors.append(f"{path}: duplicate list-map key {dict(zip(keys, key, strict=True))}")
            seen.add(key)
    return errors


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Why the API server would reject `obj` by its CRD's schema: one line per problem, [] if none."""
    group, _, version = str(obj["apiVersion"]).partition("/")
    schema = crd_schema(group, obj["kind"], version)
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    return errors + list_key_errors(obj, schema)


def pruned_fields(obj: dict[str, Any]) -> list[str]:
    """Paths of fields the API server would drop from `obj` (not declared by the CRD's schema)."""
    group, _, version = str(obj["apiVersion"]).partition("/")
    schema = crd_schema(group, obj["kind"], version)
    pruned = []
    for value, sub, path in _walk(obj, schema, "$"):
        if not isinstance(value, dict) or path == "$.metadata":
            continue
        if sub.get("x-kubernetes-preserve-unknown-fields") or sub.get("additionalProperties") not in (
            None,
            False,
        ):
            continue
        if sub.get("type") not in (None, "object"):
            continue  # a type mismatch, reported by schema_errors
        props = sub.get("properties") or {}
        pruned += [f"{path}.{k}" for k in value if k not in props]
    return pruned


# --- what orchbench renders ------------------------------------------------------------------------


def _seldon_v1_renderings() -> Iterator[tuple[str, dict[str, Any]]]:
    platform = KubernetesPlatform(KubernetesConfig(namespace="seldon"), api_client=client.ApiClient())
    sources = {"manifests/tf_flowers.yaml": manifests.load_manifest(REPO / "manifests" / "tf_flowers.yaml")}
    for spec_path in sorted((REPO / "specs").glob("*.yaml")):
        spec = load_spec(spec_path)
        if spec.custom_kind() is None:
            sources[f"specs/{spec_path.name}"] = spec.manifest_document()
    for source, manifest in sources.items():
        for transport in ("rest", "grpc"):
            for arm in ("with", "without"):
                yield f"{source} render {transport}/{arm}", manifests.render(manifest, transport, arm)
                yield f"{source} platform {transport}/{arm}", platform.render(manifest, arm, transport)


def _kserve_renderings() -> Iterator[tuple[str, dict[str, Any]]]:
    manifest = yaml.safe_load(KSERVE_MANIFEST.read_text())
    for transport in ("rest", "grpc"):
        arms = ("raw", "serverless", "graph") if transport == "rest" else ("raw", "serverless")
        for activator in (False, True):
            for placement in (None, PLACEMENT):
                options = KServeOptions(arms=arms, transport=transport, activator=activator)
                for arm in render_kserve(manifest, options, "models", placement).values():
                    for obj in arm.objects:
                        yield f"kserve {transport}/{arm.arm} activator={activator} {obj['kind']}", obj


def _seldon2_renderings() -> Iterator[tuple[str, dict[str, Any]]]:
    manifest = yaml.safe_load(SELDON2_MANIFEST.read_text())
    for transport in ("rest", "grpc"):
        for arm in render_seldon2(manifest, Seldon2Options(transport=transport), "seldon-mesh").values():
            for obj in arm.objects:
                yield f"seldon2 {transport}/{arm.arm} {obj['kind']}", obj


def _shipped_custom_renderings() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every arm of every shipped KServe / Seldon v2 spec, as the deploy step renders it (the spec's
    options, each transport it runs and, to cover both, gRPC too where the arms allow it)."""
    for spec_path in sorted((REPO / "specs").glob("*.yaml")):
        spec = load_spec(spec_path)
        if spec.custom_kind() is None:
            continue
        manifest = spec.manifest_document()
        transports = set(spec.transports) | ({"grpc"} if "graph" not in spec.arm_names() else set())
        for transport in sorted(transports):
            for placement in (None, PLACEMENT):
                for arm in render_arms(spec, manifest, transport, placement).values():
                    for obj in arm.objects:
                        yield f"specs/{spec_path.name} {transport}/{arm.arm} {obj['kind']}", obj


def all_renderings() -> list[tuple[str, dict[str, Any]]]:
    return [
        *_seldon_v1_renderings(),
        *_kserve_renderings(),
        *_seldon2_renderings(),
        *_shipped_custom_renderings(),
    ]


RENDERINGS = all_renderings()


@pytest.mark.parametrize(("label", "obj"), RENDERINGS, ids=[label for label, _ in RENDERINGS])
def test_rendering_matches_its_crd(label: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    assert pruned_fields(obj) == []


def test_every_shipped_spec_and_arm_is_covered() -> None:
    shipped = {label.split(" ")[0] for label, _ in RENDERINGS if label.startswith("specs/")}
    custom = {f"specs/{p.name}" for p in (REPO / "specs").glob("*.yaml") if load_spec(p).custom_kind()}
    assert {"specs/kserve.yaml", "specs/seldon2.yaml"} <= custom
    assert shipped == {f"specs/{p.name}" for p in (REPO / "specs").glob("*.yaml")}
    for path in sorted(custom):
        spec = load_spec(REPO / path)
        arms = {
            obj["metadata"]["labels"]["orchbench.io/arm"]
            for label, obj in RENDERINGS
            if label.startswith(path)
        }
        assert arms == set(spec.arm_names()), path


def test_every_kind_and_arm_is_covered() -> None:
    kinds = {obj["kind"] for _, obj in RENDERINGS}
    assert kinds == {"SeldonDeployment", "InferenceService", "InferenceGraph", "Model"}
    arms = {obj["metadata"].get("labels", {}).get("orchbench.io/arm") for _, obj in RENDERINGS}
    assert {"with", "without", "raw", "serverless", "graph", "mesh", "direct"} <= arms
    versions = {obj["apiVersion"] for _, obj in RENDERINGS if obj["kind"] == "SeldonDeployment"}
    assert versions == {"machinelearning.seldon.io/v1alpha2"}  # tf_flowers.yaml's version, served


# --- the validator catches broken renderings -------------------------------------------------------


def _first(kind: str, arm: str) -> dict[str, Any]:
    for _, obj in RENDERINGS:
        labelled = (obj["metadata"].get("labels") or {}).get("orchbench.io/arm", arm)
        if obj["kind"] == kind and labelled == arm and (kind != "SeldonDeployment" or _is_arm(obj, arm)):
            return copy.deepcopy(obj)
    raise AssertionError(f"no {kind} rendered for arm {arm}")


def _is_arm(sdep: dict[str, Any], arm: str) -> bool:
    return manifests.inspect(sdep).arm == arm


def test_validator_catches_a_wrong_type() -> None:
    isvc = _first("InferenceService", "serverless")
    isvc["spec"]["predictor"]["minReplicas"] = "1"  # a string where the CRD declares an int32
    assert schema_errors(isvc) == ["$.spec.predictor.minReplicas: '1' is not of type 'integer'"]

    sdep = _first("SeldonDeployment", "without")
    sdep["spec"]["predictors"][0]["replicas"] = "one"
    assert any("replicas: 'one' is not of type 'integer'" in e for e in schema_errors(sdep))

    graph = _first("InferenceGraph", "graph")
    graph["spec"]["nodes"]["root"]["routerType"] = "Chain"  # not one of the four router types
    assert any("routerType: 'Chain' is not one of" in e for e in schema_errors(graph))

    model = _first("Model", "mesh")
    del model["spec"]["storageUri"]
    assert schema_errors(model) == ["$.spec: 'storageUri' is a required property"]


def test_validator_catches_a_field_the_server_would_drop() -> None:
    isvc = _first("InferenceService", "raw")
    isvc["spec"]["predictor"]["model"]["protocolversion"] = "v2"  # misspelled: would vanish on create
    assert schema_errors(isvc) == []  # valid JSON Schema-wise ...
    assert pruned_fields(isvc) == ["$.spec.predictor.model.protocolversion"]  # ... but pruned


def test_validator_catches_duplicate_list_map_keys() -> None:
    isvc = _first("InferenceService", "raw")
    isvc["spec"]["predictor"]["model"]["ports"] = [
        {"name": "h2c", "containerPort": 9000},
        {"name": "other", "containerPort": 9000, "protocol": "TCP"},  # TCP is the default: same key
    ]
    assert schema_errors(isvc) == [
        "$.spec.predictor.model.ports: duplicate list-map key {'containerPort': 9000, 'protocol': 'TCP'}"
    ]


def test_extensions_are_mapped() -> None:
    schema = _to_json_schema(
        {
            "type": "object",
            "properties": {
                "q": {"x-kubernetes-int-or-string": True},
                "n": {"type": "string", "nullable": True},
                "s": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            },
        }
    )
    v = jsonschema.Draft7Validator(schema)
    assert not list(v.iter_errors({"q": 1, "n": None, "s": ["a"]})) and not list(v.iter_errors({"q": "1Gi"}))
    assert len(list(v.iter_errors({"q": 1.5, "s": ["a", "a"]}))) == 2
