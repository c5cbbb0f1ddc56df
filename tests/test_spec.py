"""The experiment spec: defaults, the recorded random arm order, and clear errors."""

from __future__ import annotations

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.k6_options import check_rotation
from orchbench.core.spec import load_spec, parse_spec
from tests.helpers import ROOT


def test_shipped_specs_load():
    default = load_spec(ROOT / "specs" / "default.yaml")
    seed = load_spec(ROOT / "specs" / "seed.yaml")
    assert default.platform == "local" and default.transports == ["rest", "grpc"]
    assert seed.platform == "kubernetes" and seed.load.workers == 1 and seed.load.mode == "closed"
    assert seed.blocks * seed.load.duration_s == 20 * 60  # the seed's 20 min per REST arm


def test_block_order_is_random_but_reproducible_from_the_seed():
    a = parse_spec({"name": "x", "blocks": 12, "order_seed": 7})
    b = parse_spec({"name": "x", "blocks": 12, "order_seed": 7})
    c = parse_spec({"name": "x", "blocks": 12, "order_seed": 8})
    assert a.block_order() == b.block_order()
    assert a.block_order() != c.block_order()
    firsts = {arms[0] for arms in a.block_order()}
    assert firsts == {"with", "without"}, "both arms must go first in some block"
    assert all(sorted(arms) == ["with", "without"] for arms in a.block_order())


@pytest.mark.parametrize(
    ("load", "platform", "resolved"),
    [
        ({}, "local", "request"),  # auto: k6 locally
        ({"tool": "k6"}, "kubernetes", "request"),
        ({}, "kubernetes", "block"),  # auto tool on a cluster: vegeta / ghz in the step image
        ({"tool": "vegeta"}, "local", "block"),
        ({"interleave": "block"}, "local", "block"),
        ({"interleave": "request"}, "kubernetes", "request"),
    ],
)
def test_interleave_resolution(load, platform, resolved):
    assert parse_spec({"name": "x", "platform": platform, "load": load}).interleave() == resolved


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "blokcs": 3}, "blokcs: unknown key"),
        ({"name": "x", "load": {"duration_s": -1}}, "load.duration_s: Input should be greater than 0"),
        ({"name": "x", "load": {"mode": "open"}}, "load.rate is required"),
        ({"name": "x", "transports": ["rest", "rest"]}, "without repeats"),
        ({"name": "Bad Name"}, "name: String should match pattern"),
        ({"name": "x", "local": {"ports": {"with": 9000, "without": 9000}}}, "three different ports"),
        ({"name": "x", "load": {"tool": "ghz", "interleave": "request"}}, "'request' needs k6; ghz drives"),
        ({"name": "x", "load": {"interleave": "requests"}}, "load.interleave: Input should be"),
    ],
)
def test_bad_values_one_clear_error(data, message):
    with pytest.raises(ConfigError) as info:
        parse_spec(data, "s.yaml")
    assert message in str(info.value) and str(info.value).startswith("s.yaml: ")


def _with_arms(arms, **extra):
    from orchbench.core.spec import parse_spec

    return parse_spec({"name": "x", "arms": arms, **extra})


def test_default_arms_are_the_seeds_two_and_serialise_as_before():
    from orchbench.core.spec import parse_spec

    spec = parse_spec({"name": "x"})
    assert spec.arm_names() == ["without", "with"] and spec.baseline == "without"
    assert spec.compared_arms() == ["with"] and spec.arm_ports() == {"without": 9000, "with": 8000}
    assert "arms" not in spec.to_json_dict()
    assert spec.block_order() == parse_spec({"name": "x", "order_seed": spec.order_seed}).block_order()


def test_arms_list_ports_hops_thresholds_and_order():
    spec = _with_arms(
        [
            {"name": "direct", "baseline": True},
            {"name": "orch"},
            {"name": "ng", "hop": "nginx", "threshold_ms": 1.5},
            {"name": "hp", "hop": "haproxy", "port": 8500},
        ],
        thresholds={"rest_ms": 5.0},
    )
    assert spec.arm_names() == ["direct", "orch", "ng", "hp"] and spec.baseline == "direct"
    assert [spec.arm(a).local_hop() for a in spec.arm_names()] == [
        "model",
        "orchestrator",
        "nginx",
        "haproxy",
    ]
    assert spec.arm_ports() == {"direct": 9000, "orch": 8000, "ng": 8001, "hp": 8500}
    assert spec.threshold_ms("rest", "ng") == 1.5 and spec.threshold_ms("rest", "orch") == 5.0
    assert spec.proxies_needed() == ["haproxy", "nginx"]
    orders = spec.block_order()
    assert all(sorted(o) == sorted(spec.arm_names()) for o in orders)
    assert spec.to_json_dict()["arms"][0]["name"] == "direct"


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ([{"name": "a", "baseline": True}, {"name": "a"}], "arm 'a' is named twice"),
        ([{"name": "a"}, {"name": "b"}], "exactly one arm must have baseline: true, got none"),
        (
            [{"name": "a", "baseline": True}, {"name": "b", "baseline": True}],
            "exactly one arm must have baseline: true, got 2",
        ),
        ([{"name": "a", "baseline": True}, {"name": "b", "hop": "envoy"}], "arms.1.hop"),
        ([{"name": "a", "baseline": True}, {"name": "B_1"}], "arms.1.name"),
        (
            [{"name": "a", "baseline": True, "hop": "nginx"}, {"name": "b"}],
            "the baseline is the model server",
        ),
        ([{"name": "a", "baseline": True}], "at least two arms"),
    ],
)
def test_bad_arms_one_line(arms, message):
    with pytest.raises(ConfigError, match=message) as info:
        _with_arms(arms)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_arms_on_kubernetes_stay_the_seldon_two():
    ok = _with_arms([{"name": "without", "baseline": True}, {"name": "with"}], platform="kubernetes")
    assert ok.compared_arms() == ["with"]
    with pytest.raises(ConfigError, match="on kubernetes the arms are"):
        _with_arms([{"name": "a", "baseline": True}, {"name": "b"}], platform="kubernetes")


def test_proxies_spec_ships():
    from orchbench.core.spec import load_spec

    spec = load_spec("proxies")
    assert spec.baseline == "direct" and spec.compared_arms() == ["orchestrator", "nginx", "haproxy"]
    assert spec.interleave() == "request" and spec.transports == ["rest", "grpc"]


def _kind_spec(tmp_path, name, **changes):
    import yaml as _yaml

    from orchbench.core.paths import SPECS
    from orchbench.core.spec import load_spec as _load

    data = _yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if isinstance(data["manifest"], str):
        data["manifest"] = str(SPECS / data["manifest"])
    data["payloads"] = {t: str(SPECS / p) for t, p in data["payloads"].items()}
    path = tmp_path / "spec.yaml"
    path.write_text(_yaml.safe_dump(data))
    return _load(path)


def test_kserve_and_seldon2_specs_ship_and_keep_seldon_specs_as_they_were(tmp_path):
    kserve, seldon2 = load_spec("kserve"), load_spec("seldon2")
    assert (kserve.custom_kind(), kserve.baseline, kserve.compared_arms()) == (
        "kserve",
        "raw",
        ["serverless", "graph"],
    )
    assert (seldon2.custom_kind(), seldon2.baseline) == ("seldon2", "direct")
    assert kserve.manifest_document()["kind"] == "InferenceService"
    assert (
        "kind" not in load_spec("seed").to_json_dict()["kubernetes"]
    )  # the seed's compiled form is unchanged


def test_a_rendering_with_the_same_hop_in_two_arms_is_refused_in_one_line(tmp_path):
    # a graph fronting a Knative service next to the Knative arm: both add queue-proxy & co.
    with pytest.raises(ConfigError, match="arms 'graph' and 'serverless' both put") as exc:
        _kind_spec(tmp_path, "kserve", **{"kubernetes.kserve.graph_backend": "serverless"})
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        (
            "kserve",
            {"arms": [{"name": "raw", "baseline": True}, {"name": "with"}]},
            "the arms are raw, serverless, graph",
        ),
        ("kserve", {"protocol": "tfserving"}, "set protocol: v2"),
        (
            "kserve",
            {"kubernetes.seldon2": {"server": "x"}},
            "kubernetes.seldon2 applies with kubernetes.kind seldon2",
        ),
        ("kserve", {"transports": ["rest", "grpc"], "payloads": None}, None),
        ("seldon2", {"manifest": "../manifests/kserve_sklearn_iris.yaml"}, "expected kind Model"),
        ("seldon2", {"kubernetes.kind": "seldon"}, "kubernetes.seldon2 applies with kubernetes.kind seldon2"),
    ],
)
def test_bad_kind_specs_one_line(tmp_path, name, changes, message):
    if changes.get("payloads", 0) is None:  # gRPC with the graph arm: the router serves HTTP only
        changes = {"transports": ["rest", "grpc"]}
        message = "payloads.grpc|router serves HTTP only"
    with pytest.raises(ConfigError, match=message):
        _kind_spec(tmp_path, name, **changes)


def test_kind_spec_with_inline_manifest(tmp_path):
    import yaml as _yaml

    from orchbench.core.paths import MANIFESTS

    doc = _yaml.safe_load((MANIFESTS / "seldon2_iris.yaml").read_text())
    spec = _kind_spec(tmp_path, "seldon2", manifest=doc)
    assert spec.manifest_document()["metadata"]["name"] == "iris"


def test_injected_delays_per_arm_and_the_rotation_check():
    """Spec.injected_delays_ms / delays_injected: which arms hold answers (a calibration; then k6
    walks loadtools.rotation's cycle, tests/test_rotation.py), and the check of a rotation."""
    arms = [
        {"name": "direct", "baseline": True},
        {"name": "ref", "hop": "orchestrator", "inject_delay_ms": 2.0},
        {"name": "plus-500us", "hop": "orchestrator", "inject_delay_ms": 2.5},
        {"name": "nginx", "hop": "nginx"},
    ]
    s = parse_spec({"name": "x", "arms": arms})
    assert s.injected_delays_ms() == {"direct": 0.0, "ref": 2.0, "plus-500us": 2.5, "nginx": 0.0}
    assert s.delays_injected()
    # the spec-wide delay applies to the orchestrator arm (the seed's two arms)
    one = parse_spec({"name": "x", "local": {"inject_delay_ms": 1.5}})
    assert one.injected_delays_ms() == {"without": 0.0, "with": 1.5} and one.delays_injected()
    assert not parse_spec({"name": "x"}).delays_injected()
    assert not parse_spec({"name": "x", "local": {"inject_delay_ms": 1.5, "aa_mode": True}}).delays_injected()
    eps = parse_spec(
        {
            "name": "x",
            "platform": "endpoints",
            "transports": ["rest"],
            "arms": [
                {"name": "a", "baseline": True, "url": "http://127.0.0.1:1"},
                {"name": "b", "url": "http://127.0.0.1:2"},
            ],
        }
    )
    assert eps.injected_delays_ms() == {} and not eps.delays_injected()
    assert check_rotation([0, 1, 0, 2], 3, open_stage=False) == [0, 1, 0, 2]
    for bad, arms, open_stage in (([0, 0], 2, False), ([0, 1, 2], 2, False), ([0, 1], 2, True)):
        with pytest.raises(ConfigError, match="rotation: every arm's index, closed loop only"):
            check_rotation(bad, arms, open_stage)
