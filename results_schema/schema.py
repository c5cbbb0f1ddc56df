"""The results schema as code. Bump SCHEMA_VERSION on any change to a column's name, type or meaning.

Four tables:
- `runs`: one row per load-test run (one arm, one block, one transport; with load stages, one stage
  and generator).
- `samples`: one row per request, for tools that record them (k6 CSV, ghz details, vegeta CSV).
- `overheads`: one row per (run, transport, stage, compared arm, metric) with the estimate and its
  95 % CI.
- `stages`: one row per (run, transport, stage, arm): requested and achieved rate, dropped
  iterations, the load generator's CPU, whether the stage holds, the arm's CPU and memory, latency.

`stage` is the stage's id (orchbench.core.stages.Stage.id: `rate-100`, `workers-4`; "" for a run of
one load), `stage_kind` `rate` | `workers` | `none`, `stage_value` its requested rate (requests/s per
arm) or workers (null for `none`).

All latencies are integer nanoseconds (`*_ns`); timestamps are UTC with ns resolution.
"""

from __future__ import annotations

import pyarrow as pa

#: 2: `overheads` gains `arm`, `baseline`, `se_ms`, `df`, `n_blocks`, `paired_test_p` (one row per
#: transport x compared arm x metric) and loses `mann_whitney_u_p`. Version-1 files still read
#: (`results_schema.io.read_table` upgrades them: arm "with", baseline "without").
#: 3: `runs`, `samples` and `overheads` gain `stage`, `stage_kind`, `stage_value` (and `overheads`
#: `valid`: false for an invalid stage, whose figures are no result); the `stages` table. Version-1
#: and -2 files still read (stage "", stage_kind "none", stage_value null, valid true).
SCHEMA_VERSION = 3
KNOWN_VERSIONS = frozenset({1, 2, 3})
STAGE_KINDS = ("rate", "workers", "none")

TS = pa.timestamp("ns", tz="UTC")

#: The stage columns of `runs`, `samples` and `overheads` (version 3), and what older files read as.
STAGE_FIELDS = (
    pa.field("stage", pa.string(), nullable=False),
    pa.field("stage_kind", pa.string(), nullable=False),  # rate | workers | none
    pa.field("stage_value", pa.float64()),  # requests/s per arm, or workers; null for none
)
STAGE_DEFAULTS = {"stage": "", "stage_kind": "none", "stage_value": None}

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
        *STAGE_FIELDS,
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
        *STAGE_FIELDS,
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
        *STAGE_FIELDS,
        pa.field("valid", pa.bool_(), nullable=False),  # false: an invalid stage's figures, no result
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

#: One row per (run, transport, stage, arm): what the stage asked for and got, and whether it holds
#: (orchbench.core.stages.judge_stage). With N generators the rates and counts are summed over them,
#: the generator's utilisation is the busiest one's. `cpu_ms_per_1000` / `peak_rss_mb`: the arm's own
#: processes over the measured windows (null where not measured, e.g. on Kubernetes without a metrics
#: API); latencies are means over the stage's blocks of each block's figure.
STAGES_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("transport", pa.string(), nullable=False),
        *STAGE_FIELDS,
        pa.field("arm", pa.string(), nullable=False),
        pa.field("requested_rps", pa.float64()),  # null for workers stages
        pa.field("achieved_rps", pa.float64()),
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("errors", pa.int64(), nullable=False),
        pa.field("error_rate", pa.float64()),
        pa.field("dropped_iterations", pa.int64()),
        pa.field("generator_cpu_util", pa.float64()),
        pa.field("generators", pa.int32()),
        pa.field("blocks", pa.int32()),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("invalid_reasons", pa.string(), nullable=False),  # "; "-joined, "" when valid
        pa.field("cpu_ms_per_1000", pa.float64()),
        pa.field("peak_rss_mb", pa.float64()),
        pa.field("mean_ms", pa.float64()),
        pa.field("p50_ms", pa.float64()),
        pa.field("p99_ms", pa.float64()),
    ]
)

SCHEMAS = {
    "runs": RUNS_SCHEMA,
    "samples": SAMPLES_SCHEMA,
    "overheads": OVERHEADS_SCHEMA,
    "stages": STAGES_SCHEMA,
}


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
