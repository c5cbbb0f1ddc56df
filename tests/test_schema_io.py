"""Round trip parse -> Parquet -> read back; unknown schema versions are refused."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchbench.core.provenance import collect
from results_schema import SCHEMA_VERSION, load_summary, read_table, write_table
from results_schema.errors import ResultsFileError, SchemaVersionError
from results_schema.rows import RunContext, runs_row, runs_table
from tests.helpers import FIXTURES


def _seed_runs():
    prov = collect()
    rows = []
    for i, (name, transport, arm) in enumerate(
        [
            ("seed_vegeta_rest_with.json", "rest", "with"),
            ("seed_vegeta_rest_without.json", "rest", "without"),
            ("seed_ghz_grpc_with.json", "grpc", "with"),
            ("seed_ghz_grpc_without.json", "grpc", "without"),
        ]
    ):
        s = load_summary(FIXTURES / name)
        rows.append(
            runs_row(s, RunContext("seed", "r1", transport, arm, block=i, platform="kubernetes"), prov)
        )
    return runs_table(rows)


def test_round_trip_equal(tmp_path):
    table = _seed_runs()
    path = write_table(table, tmp_path / "results.parquet", "runs")
    back = read_table(path, "runs")
    assert back.schema.remove_metadata().equals(table.schema.remove_metadata())
    assert back.to_pylist() == table.to_pylist()
    row = back.to_pylist()[2]
    assert row["latency_p99_ns"] == 128647238 and dict(row["status_codes"]) == {"OK": 22977, "Unavailable": 1}
    assert row["started_at"].isoformat() == "2020-07-12T17:12:04+00:00"
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_unknown_schema_version_refused(tmp_path):
    path = write_table(_seed_runs(), tmp_path / "r.parquet", "runs")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"orchbench.schema_version"] = str(SCHEMA_VERSION + 98).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 98} is unknown"):
        read_table(path, "runs")


def test_foreign_parquet_and_wrong_table_refused(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(SchemaVersionError, match="not an orchbench results file"):
        read_table(foreign, "runs")
    path = write_table(_seed_runs(), tmp_path / "r.parquet", "runs")
    with pytest.raises(ResultsFileError, match="expected 'samples'"):
        read_table(path, "samples")


def test_failed_write_keeps_previous_file(tmp_path):
    path = write_table(_seed_runs(), tmp_path / "r.parquet", "runs")
    before = path.read_bytes()
    bad = pa.table({"nope": [1]})
    with pytest.raises(KeyError):
        write_table(bad, path, "runs")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_version_1_overheads_file_reads_as_the_seed_arms():
    """A version-1 file (tests/fixtures/overheads_v1.parquet) reads in the current schema: arm "with",
    baseline "without", the columns version 1 lacked null, each row still saying version 1."""
    from results_schema.schema import OVERHEADS_SCHEMA
    from tests.helpers import ROOT

    path = ROOT / "tests" / "fixtures" / "overheads_v1.parquet"
    table = read_table(path, "overheads")
    assert table.schema.names == OVERHEADS_SCHEMA.names
    df = table.to_pandas()
    assert set(df["arm"]) == {"with"} and set(df["baseline"]) == {"without"}
    assert df["se_ms"].isna().all() and df["paired_test_p"].isna().all()
    assert set(df["schema_version"]) == {1} and len(df) == 4
    assert df.loc[(df.transport == "rest") & (df.metric == "mean"), "estimate_ms"].item() == 0.52


def test_version_1_file_in_a_trend_dataset(tmp_path):
    import shutil

    from orchbench.core.trend import evaluate
    from tests.helpers import ROOT

    d = tmp_path / "ds" / "date=2026-01-01" / "r1"
    d.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "overheads_v1.parquet", d / "overheads.parquet")
    per, results = evaluate(tmp_path / "ds")
    assert set(per) == {"rest", "grpc"} and results["rest"].threshold_ms == 5.0
