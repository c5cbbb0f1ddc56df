"""Deployment records as the deploy step writes them (its `record` output), for the metrics tests:
KServe's and Seldon v2's from the platforms' own `plan` (no API call), the SeldonDeployment's by hand
(its platform creates the object before it writes one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from orchbench.core.platform.k8s_common import KubernetesConfig
from orchbench.core.platform.kserve import KServePlatform
from orchbench.core.platform.kserve_render import KServeOptions
from orchbench.core.platform.seldon2 import Seldon2Platform
from orchbench.core.platform.seldon2_render import Seldon2Options

REPO = Path(__file__).resolve().parents[1]
NS = "models"


def seldon_v1(arm: str) -> dict[str, Any]:
    return {"platform": "kubernetes", "name": f"flowers-rest-{arm}", "arm": arm, "details": {"namespace": NS}}


def kserve(arm: str, **options: Any) -> dict[str, Any]:
    manifest = yaml.safe_load((REPO / "manifests" / "kserve_sklearn_iris.yaml").read_text())
    arms = options.pop("arms", ("raw", "serverless", "graph"))
    p = KServePlatform(
        KubernetesConfig(namespace=NS), client.ApiClient(), KServeOptions(arms=arms, **options)
    )
    return dataclasses.asdict(p.plan(manifest, arm)[0])


def seldon2(arm: str) -> dict[str, Any]:
    manifest = yaml.safe_load((REPO / "manifests" / "seldon2_iris.yaml").read_text())
    p = Seldon2Platform(KubernetesConfig(namespace=NS), client.ApiClient(), Seldon2Options())
    return dataclasses.asdict(p.plan(manifest, arm)[0])
