"""Spec-level `protocol: tfserving | v2 | http`: default payloads and payload checks per protocol,
the k6 configuration (REST path and method, gRPC method and protoset, checks), and `v2` end to end
through `orchbench run` on both transports with k6."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.base import LoadProfile
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.paths import PAYLOADS
from orchbench.core.spec import load_spec, parse_spec
from tests.helpers import ROOT, orchbench
from tests.pipeline_specs import tiny_spec


def _write(tmp_path, data):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_payloads_follow_the_protocol_and_tfserving_specs_dump_as_before() -> None:
    v2 = parse_spec({"name": "x", "protocol": "v2"})
    assert {t: p.rsplit("/", 1)[1] for t, p in v2.payloads.items()} == {
        "rest": "flowers_v2.json",
        "grpc": "flowers_v2.bin",
    }
    assert v2.to_json_dict()["protocol"] == "v2"
    plain = parse_spec({"name": "x"}).to_json_dict()
    assert "protocol" not in plain and "http" not in plain
    assert {p.rsplit("/", 1)[1] for p in plain["payloads"].values()} == {"flowers.json", "flowers.bin"}


def test_payload_check_per_protocol(tmp_path) -> None:
    base = {"name": "x", "manifest": str(ROOT / "manifests" / "tf_flowers.yaml")}
    load_spec(_write(tmp_path, {**base, "protocol": "v2"}))
    tf_in_v2 = {**base, "protocol": "v2", "payloads": {"rest": str(PAYLOADS / "flowers.json")}}
    with pytest.raises(ConfigError, match="not a usable v2 REST payload"):
        load_spec(_write(tmp_path, {**tf_in_v2, "transports": ["rest"]}))
    v2_in_tf = {**base, "transports": ["grpc"], "payloads": {"grpc": str(PAYLOADS / "flowers_v2.bin")}}
    with pytest.raises(ConfigError, match="gRPC payload"):
        load_spec(_write(tmp_path, v2_in_tf))


def test_http_protocol_is_rest_only_and_refuses_grpc_in_one_line() -> None:
    spec = parse_spec(
        {"name": "x", "protocol": "http", "http": {"method": "GET", "path": "/v2/health/ready"}}
    )
    assert spec.transports == ["rest"]
    assert spec.http_request() == {
        "method": "GET",
        "path": "/v2/health/ready",
        "success_status": 200,
        "json_field": None,
        "send_body": False,
    }
    with pytest.raises(ConfigError) as exc:
        parse_spec({"name": "x", "protocol": "http", "transports": ["rest", "grpc"]})
    assert "gRPC is refused" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="applies to protocol http only"):
        parse_spec({"name": "x", "http": {"path": "/x"}})


def test_endpoint_urls_and_grpc_methods_per_protocol() -> None:
    tf = Endpoint("rest", "a", "h", 1, "flowers")
    v2 = Endpoint("rest", "a", "h", 1, "flowers", protocol="v2")
    plain = Endpoint("rest", "a", "h", 1, "m", protocol="http", http={"path": "/ping?x=1"})
    assert tf.url == "http://h:1/v1/models/flowers:predict"
    assert v2.url == "http://h:1/v2/models/flowers/infer"
    assert plain.url == "http://h:1/ping?x=1"
    assert Endpoint("grpc", "a", "h", 1, "flowers", protocol="v2").grpc_method.endswith("/ModelInfer")
    assert Endpoint.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2
    assert (
        Endpoint.from_dict(
            {k: v for k, v in tf.to_dict().items() if k in ("transport", "arm", "host", "port", "model_name")}
        )
        == tf
    )


def test_k6_config_per_protocol_names_env_headers_not_their_values(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ORCHBENCH_TEST_SECRET", "s3cr3t-value")
    tool = K6Tool(binary="/bin/true")
    profile = LoadProfile(mode="closed", workers=1, rate=None, duration_s=1, warmup_s=0, timeout_s=5)
    headers = {"Authorization": {"env": "ORCHBENCH_TEST_SECRET"}, "x-team": "a"}
    grpc_eps = [
        Endpoint("grpc", a, "127.0.0.1", p, "flowers", protocol="v2", headers=headers)
        for a, p in (("a", 1), ("b", 2))
    ]
    _cmd, env, cfg = tool.build(
        grpc_eps[0], PAYLOADS / "flowers_v2.bin", profile, tmp_path / "g", pair=grpc_eps
    )
    assert cfg["method"] == "inference.GRPCInferenceService/ModelInfer"
    assert cfg["protoset"].endswith("grpc_inference_service.protoset") and cfg["protocol"] == "v2"
    assert cfg["targets"][0]["env_headers"] == {"Authorization": "ORCHBENCH_TEST_SECRET"}
    assert json.loads((tmp_path / "g" / "grpc-request.json").read_text())["model_name"] == "flowers"
    rest = Endpoint("rest", "a", "127.0.0.1", 1, "flowers", protocol="v2", headers=headers)
    _cmd, env, cfg = tool.build(rest, PAYLOADS / "flowers_v2.json", profile, tmp_path / "r")
    assert cfg["url"].endswith("/v2/models/flowers/infer") and cfg["http_method"] == "POST"
    for folder in ("g", "r"):
        for f in (tmp_path / folder).iterdir():
            assert b"s3cr3t-value" not in f.read_bytes(), f
    assert "s3cr3t-value" not in json.dumps(env)


@pytest.mark.slow
def test_v2_end_to_end_on_both_transports_through_orchbench_run(tmp_path) -> None:
    """protocol v2, the model server direct against nginx in front of it, both transports, k6
    rotating the arms request by request: every request checked as an Open Inference answer."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed")
    data = yaml.safe_load(tiny_spec(tmp_path, blocks=1, duration_s=1).read_text())
    data.update(
        protocol="v2",
        arms=[{"name": "direct", "baseline": True}, {"name": "nginx", "hop": "nginx"}],
        manifest=str(ROOT / "manifests" / "tf_flowers.yaml"),
    )
    spec_path = _write(tmp_path, data)
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(spec_path), "--out", str(out), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for transport in ("rest", "grpc"):
        res = summary[transport]["by_arm"]["nginx"]
        assert res["arms"]["nginx"]["verified"] and res["arms"]["direct"]["verified"]
        assert summary[transport]["by_arm"]["nginx"]["overhead_ms"]["p50"]["estimate"] is not None
    cfgs = sorted(out.glob("raw/*/k6-config.json"))
    assert len(cfgs) == 2
    for path in cfgs:
        cfg = json.loads(path.read_text())
        assert cfg["protocol"] == "v2"
        if cfg["transport"] == "rest":
            assert all(t["url"].endswith("/v2/models/flowers/infer") for t in cfg["targets"])
        else:
            assert cfg["method"] == "inference.GRPCInferenceService/ModelInfer"
    for meta in out.glob("raw/*/*/meta.json"):
        m = json.loads(meta.read_text())
        assert m["status"] == "ok" and m["endpoint"]["protocol"] == "v2"
