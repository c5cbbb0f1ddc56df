"""Property tests: garbage in -> the typed ParseError, never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchbench.core.errors import ParseError
from results_schema import load_summary, parse_data
from tests.helpers import FIXTURES

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
SEEDS = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("seed_*.json"))]
KEYS = sorted({k for s in SEEDS for k in s} | {"latencies", "metrics", "values", "count", "success"})


def _parse_or_typed_error(data):
    try:
        summary = parse_data(data, "fuzz.json")
    except ParseError as exc:
        assert "fuzz.json" in str(exc)
        return None
    assert summary.requests >= 0
    return summary


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_never_crashes(data):
    _parse_or_typed_error(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.sampled_from(KEYS), json_values), max_size=3))
def test_mutated_seed_reports_never_crash(seed, mutations):
    data = json.loads(json.dumps(seed))
    for key, value in mutations:
        target = (
            data.get("latencies")
            if key in ("mean", "50th") and isinstance(data.get("latencies"), dict)
            else data
        )
        target[key] = value
    _parse_or_typed_error(data)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_file(tmp_path, blob):
    path = tmp_path / "blob.json"
    path.write_bytes(blob)
    try:
        load_summary(path)
    except ParseError as exc:
        assert str(path) in str(exc)
