"""k6 against v2 arms that serve different model names (as a cluster kind's arms do): each arm's
gRPC requests name its own model, and the third-party answer check ("outputs") is what counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchbench.core.arms import Endpoint
from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.loadtools.k6_options import arm_target
from orchbench.core.paths import PAYLOADS
from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.k8s_kinds import endpoint_dict
from results_schema.samples import load_samples
from tests.hop_helpers import model_server

PROFILE = LoadProfile(mode="closed", workers=1, duration_s=1.0, warmup_s=1.0, timeout_s=5.0)
CPUS = {sorted(os.sched_getaffinity(0))[0]}


def _endpoint(arm: str, port: int, model: str, check: str) -> Endpoint:
    return Endpoint("grpc", arm, "127.0.0.1", port, model, protocol="v2", answer_check=check)


def test_the_k6_target_carries_the_arm_s_model_and_check() -> None:
    t = arm_target(_endpoint("mesh", 9500, "iris_1", "outputs"))
    assert (t["model_name"], t["answer_check"], t["target"]) == ("iris_1", "outputs", "127.0.0.1:9500")
    assert Endpoint.from_dict({**_endpoint("a", 1, "m", "outputs").to_dict()}).answer_check == "outputs"
    assert (
        Endpoint.from_dict(
            {"transport": "grpc", "arm": "a", "host": "h", "port": 1, "model_name": "m"}
        ).answer_check
        == "flowers"
    )


def test_a_cluster_kind_s_grpc_target_checks_outputs_generically() -> None:
    target = ArmTarget(
        arm="direct",
        transport="grpc",
        protocol="v2",
        host="10.0.0.7",
        port=9500,
        model_name="iris_1",
        host_header="10.0.0.7",
        grpc_target="10.0.0.7:9500",
        grpc_method="inference.GRPCInferenceService/ModelInfer",
    )
    d = endpoint_dict(target)
    assert (d["protocol"], d["answer_check"], d["model_name"]) == ("v2", "outputs", "iris_1")
    assert Endpoint.from_dict(d).answer_check == "outputs"


@pytest.mark.slow
@pytest.mark.parametrize("check", ["flowers", "outputs"])
def test_each_arm_s_requests_name_its_own_model(tmp_path: Path, check: str) -> None:
    """Two model servers, models `a` and `b`, one k6 process rotating both arms: every request is
    answered OK only if it names its arm's model (the other name is NOT_FOUND)."""
    with (
        model_server("--model-name", "a", rest=False) as sa,
        model_server("--model-name", "b", rest=False) as sb,
    ):
        eps = [
            _endpoint("a", int(sa.grpc.rsplit(":", 1)[1]), "a", check),
            _endpoint("b", int(sb.grpc.rsplit(":", 1)[1]), "b", check),
        ]
        runs = K6Tool().run_pair(eps, PAYLOADS / "flowers_v2.bin", PROFILE, tmp_path / "out", cpus=CPUS)
    for arm in ("a", "b"):
        df = load_samples(runs[arm].samples_path, "k6")
        measured = df[df["phase"] == "measure"]
        assert len(measured) > 0 and measured["ok"].all(), (arm, measured["status"].value_counts().to_dict())
