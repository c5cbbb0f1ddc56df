"""The experiment spec: defaults, the recorded random arm order, and clear errors."""

from __future__ import annotations

import pytest

from orchbench.core.errors import ConfigError
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
