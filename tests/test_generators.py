"""Load from many generators: N generators' samples of one stage merged, per-arm counts, and the summed
achieved rate held against the request. Literal expectations on small synthetic tables."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from orchbench.core import generators as gen
from orchbench.core.errors import ConfigError
from results_schema.schema import SAMPLES_SCHEMA

T0 = 1_800_000_000_000_000_000  # epoch ns


def part(rate_per_arm: float, seconds: float, arms=("with", "without"), offset_ns: int = 0, run="r1"):
    """One generator's samples: each arm at `rate_per_arm` for `seconds`, alternating (its own order)."""
    n = round(rate_per_arm * seconds)
    gap = round(1e9 / rate_per_arm)
    rows = []
    for i in range(n):
        for j, arm in enumerate(arms):
            rows.append(
                {
                    "schema_version": 1,
                    "experiment": "sweep",
                    "run_id": run,
                    "transport": "rest",
                    "arm": arm,
                    "block": 0,
                    "seq": i * len(arms) + j,
                    "timestamp": T0 + offset_ns + i * gap + j * gap // len(arms),
                    "latency_ns": 9_000_000 + 1000 * j,
                    "status": "200",
                    "ok": True,
                }
            )
    return pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA)


def test_split_rate():
    assert gen.split_rate(100, 2) == [50.0, 50.0]
    assert gen.split_rate(10, 4) == [2.5, 2.5, 2.5, 2.5]
    with pytest.raises(ConfigError):
        gen.split_rate(100, 0)


def test_merge_two_generators():
    a = part(10, 2.0, arms=("with", "without"))
    b = part(10, 2.0, arms=("without", "with"), offset_ns=25_000_000).to_pandas()  # a DataFrame works too
    merged = gen.merge_samples([a, b])
    assert merged.schema == gen.MERGED_SAMPLES_SCHEMA
    assert merged.num_rows == 80
    assert merged.column("generator").to_pylist() == [0] * 40 + [1] * 40
    assert gen.counts(merged) == {"with": {0: 20, 1: 20}, "without": {0: 20, 1: 20}}
    # each generator keeps its own seq
    assert merged.column("seq").to_pylist()[:3] == [0, 1, 2]
    assert merged.column("seq").to_pylist()[40:43] == [0, 1, 2]


def test_summed_rate_of_two_honest_generators_matches_the_request():
    merged = gen.merge_samples([part(10, 2.0), part(10, 2.0, arms=("without", "with"))])
    check = gen.check_merged(
        merged, requested_per_s=20, measured_s=2.0, arms=["with", "without"], generators=2
    )
    assert check.valid
    assert check.to_dict() == {
        "requested_per_s": 20.0,
        "generators": 2,
        "counts": {"with": {"0": 20, "1": 20}, "without": {"0": 20, "1": 20}},
        "arm_counts": {"with": 40, "without": 40},
        "achieved_per_s": {"with": {"0": 10.0, "1": 10.0}, "without": {"0": 10.0, "1": 10.0}},
        "summed_per_s": {"with": 20.0, "without": 20.0},
        "shortfall": {"with": 0.0, "without": 0.0},
        "valid": True,
        "reasons": [],
    }


def test_rate_from_start_times_without_a_window():
    merged = gen.merge_samples([part(10, 2.0), part(10, 2.0)])
    check = gen.check_merged(merged, requested_per_s=20)
    # 20 starts 100 ms apart per generator and arm: 19 intervals over 1.9 s = 10 req/s each
    assert check.summed_per_s == {"with": pytest.approx(20.0), "without": pytest.approx(20.0)}
    assert check.valid


def test_a_starved_generator_makes_the_stage_invalid():
    # generator 1 reached only 8 of its 10 req/s per arm: the sum is 18 of 20 (10 % short)
    merged = gen.merge_samples([part(10, 2.0), part(8, 2.0)])
    check = gen.check_merged(merged, requested_per_s=20, measured_s=2.0)
    assert not check.valid
    assert check.summed_per_s == {"with": 18.0, "without": 18.0}
    assert check.reasons == (
        "arm 'with' achieved 18.00 req/s, 10.0 % below the requested 20 req/s (allowed: 2 %)",
        "arm 'without' achieved 18.00 req/s, 10.0 % below the requested 20 req/s (allowed: 2 %)",
    )


def test_a_generator_missing_an_arm_is_a_reason():
    merged = gen.merge_samples([part(20, 1.0), part(10, 1.0, arms=("with",))])
    check = gen.check_merged(merged, requested_per_s=30, measured_s={0: 1.0, 1: 1.0})
    assert check.counts == {"with": {0: 20, 1: 10}, "without": {0: 20, 1: 0}}
    assert check.arm_counts == {"with": 30, "without": 20}
    assert check.reasons == (
        "arm 'without' achieved 20.00 req/s, 33.3 % below the requested 30 req/s (allowed: 2 %)",
        "generator 1 measured no request of arm 'without'",
    )


def test_three_generators_and_a_missing_generator():
    merged = gen.merge_samples([part(5, 2.0), part(5, 2.0), part(5, 2.0)])
    assert gen.check_merged(merged, 15, 2.0).valid
    four = gen.check_merged(merged, 20, 2.0, generators=4)
    assert not four.valid
    assert "generator 3 measured no request of arm 'with'" in four.reasons


def test_parts_of_different_runs_are_refused():
    with pytest.raises(ConfigError, match="mix run_id"):
        gen.merge_samples([part(5, 1.0, run="r1"), part(5, 1.0, run="r2")])
    with pytest.raises(ConfigError, match="lack columns"):
        gen.merge_samples([pd.DataFrame({"arm": ["with"]})])
    with pytest.raises(ConfigError):
        gen.merge_samples([])
