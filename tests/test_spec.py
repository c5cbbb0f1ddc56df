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
