"""The results schema as code. Bump SCHEMA_VERSION on any change to a column's name, type or meaning.

Three tables:
- `runs`: one row per load-test run (one arm, one block, one transport).
- `samples`: one row per request, for tools that record them (k6 CSV, ghz details, vegeta CSV).
- `overheads`: one row per (run, transport, compared arm, metric) with the estimate and its 95 % CI.

All latencies are integer nanoseconds (`*_ns`); timestamps are UTC with ns resolution.
"""

from __future__ import annotations

import pyarrow as pa

#: 2: `overheads` gains `arm`, `baseline`, `se_ms`, `df`, `n_blocks`, `paired_test_p` (one row per
#: transport x compared arm x metric) and loses `mann_whitney_u_p`. Version-1 files still read
#: (`results_schema.io.read_table` upgrades them: arm "with", baseline "without").
SCHEMA_VERSION = 2
KNOWN_VERSIONS = frozenset({1, 2})

TS = pa.timestamp("ns", tz="UTC")

LATENCY_FIELDS = ("min", "mean", "p50", "p90", "p95", "p99", "max")

RUNS_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("transport", pa.string(), nullable=False),  # rest | grpc
        pa.field("arm", pa.string(), nullable=False),  # the spec's arm name (seed: with | without)
        pa.field("block", pa.int32(), nullable=False),
        pa.field("platform", pa.string(), nullable=False),  # local | kubernetes | external
        pa.field("tool", pa.string(), nullable=False),  # k6 | vegeta | ghz
        pa.field("tool_version", pa.string()),
        pa.field("mode", pa.string()),  # closed | open
        pa.field("workers", pa.int32()),
        pa.field("rate_per_s", pa.float64()),
        pa.field("duration_ns", pa.int64()),
        pa.field("warmup_ns", pa.int64()),
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("successes", pa.int64()),
        pa.field("errors", pa.int64()),
        pa.field("status_codes", pa.map_(pa.string(), pa.int64())),
        *[pa.field(f"latency_{name}_ns", pa.int64()) for name in LATENCY_FIELDS],
        pa.field("throughput_rps", pa.float64()),
        pa.field("bytes_in_total", pa.int64()),
        pa.field("bytes_out_total", pa.int64()),
        pa.field("started_at", TS),
        pa.field("ended_at", TS),
        pa.field("payload_sha256", pa.string()),
        pa.field("arm_verified", pa.bool_()),
        pa.field("arm_evidence", pa.string()),
        pa.field("deployment_reuse", pa.string()),
        pa.field("floor_p50_ns", pa.int64()),
        pa.field("orchbench_version", pa.string(), nullable=False),
        pa.field("git_commit", pa.string()),
        pa.field("host", pa.string()),
        pa.field("cluster", pa.string()),
        pa.field("nodes", pa.string()),  # JSON: node or CPU placement of load tester and model
        pa.field("raw_artifact", pa.string()),
    ]
)

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("transport", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("block", pa.int32(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("timestamp", TS),
        pa.field("latency_ns", pa.int64(), nullable=False),
        pa.field("status", pa.string()),
        pa.field("ok", pa.bool_(), nullable=False),
    ]
)

#: One row per (run, transport, arm, metric): the compare step's answer, what trends and gates read.
#: `with_ms` / `n_with` are the arm's, `without_ms` / `n_without` the baseline's.
OVERHEADS_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
        pa.field("transport", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),  # the compared arm (seed: with)
        pa.field("baseline", pa.string(), nullable=False),  # what it is compared with (seed: without)
        pa.field("metric", pa.string(), nullable=False),  # mean | p50 | p90 | p95 | p99
        pa.field("estimate_ms", pa.float64(), nullable=False),
        pa.field("ci_low_ms", pa.float64()),
        pa.field("ci_high_ms", pa.float64()),
        pa.field("se_ms", pa.float64()),
        pa.field("df", pa.float64()),  # Student-t degrees of freedom (Welch-Satterthwaite: not whole)
        pa.field("n_blocks", pa.int32()),
        pa.field("paired_test_p", pa.float64()),  # sign-flip permutation test over the blocks
        pa.field("with_ms", pa.float64()),
        pa.field("without_ms", pa.float64()),
        pa.field("n_with", pa.int64()),
        pa.field("n_without", pa.int64()),
        pa.field("threshold_ms", pa.float64()),
        pa.field("platform", pa.string()),
        pa.field("orchbench_version", pa.string()),
        pa.field("git_commit", pa.string()),
        pa.field("host", pa.string()),
    ]
)

SCHEMAS = {"runs": RUNS_SCHEMA, "samples": SAMPLES_SCHEMA, "overheads": OVERHEADS_SCHEMA}


#: `overheads` as version 1 wrote it (read, upgraded, by results_schema.io.read_table).
OVERHEADS_SCHEMA_V1 = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
        pa.field("transport", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("estimate_ms", pa.float64(), nullable=False),
        pa.field("ci_low_ms", pa.float64()),
        pa.field("ci_high_ms", pa.float64()),
        pa.field("with_ms", pa.float64()),
        pa.field("without_ms", pa.float64()),
        pa.field("n_with", pa.int64()),
        pa.field("n_without", pa.int64()),
        pa.field("mann_whitney_u_p", pa.float64()),
        pa.field("threshold_ms", pa.float64()),
        pa.field("platform", pa.string()),
        pa.field("orchbench_version", pa.string()),
        pa.field("git_commit", pa.string()),
        pa.field("host", pa.string()),
    ]
)
