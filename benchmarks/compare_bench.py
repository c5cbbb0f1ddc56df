"""The compare step on one million synthetic samples: CIs, Parquet write and read-back, timed phase by
phase with orchbench's own functions (what steps/compare.py calls). Not a timed test: a figure.

    .venv/bin/python benchmarks/compare_bench.py [--samples 1000000] [--blocks 20] [--repeat 3] [--json F]

The data: 2 transports x 2 arms x `--blocks` blocks, the samples split evenly (12,500 per arm and
block by default), latencies lognormal around 9 ms ("with" 0.4 ms slower), 0.1 % failed requests,
start times 1 ms apart. Phases, as the compare step runs them after reading its artifacts (the
reading of the tools' raw files is not part of this):

- `summarise`: orchbench.core.analysis.summarise: every transport's overheads (mean, p50, p90, p99)
  with t-intervals over blocks, per-arm values, sign-flip tests, verdicts;
- `tables`: analysis.build_tables + overheads_table (the `runs`, `samples`, `overheads` tables);
- `write`: results_schema.write_table of the three tables (atomic, schema-stamped Parquet);
- `read`: results_schema.read_table of samples.parquet back and to pandas;
- `from-parquet` (extra, not in the total): tool_compare.sample_overheads per transport from the samples
  read back (the estimator again, on the Parquet samples, as `orchbench compare` does).

Target: the compare step (summarise + tables + write + read) <= 5 s on this machine. Wall seconds,
and the process's own CPU seconds beside them (steadier on a shared machine). Bounded: at most
5,000,000 samples, 10 repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core import analysis, overheads_table, tool_compare
from orchbench.core.analysis import Block
from orchbench.core.spec import parse_spec
from orchbench.fsio import write_text
from results_schema import read_table, write_table
from results_schema.summary import ToolSummary

T0_NS = 1_800_000_000_000_000_000
TARGET_S = 5.0
#: The compare step's own phases (the total); `from-parquet` is reported beside it.
STEP_PHASES = ("summarise", "tables", "write", "read")


def synthetic_blocks(samples: int, n_blocks: int, seed: int = 0) -> list[Block]:
    rng = np.random.default_rng(seed)
    per = samples // (2 * 2 * n_blocks)
    blocks = []
    for transport in ("rest", "grpc"):
        for block in range(n_blocks):
            for arm, shift_ms in (("with", 0.4), ("without", 0.0)):
                latency = (rng.lognormal(np.log(9.0), 0.12, per) + shift_ms) * 1e6
                ok = rng.random(per) >= 0.001
                ts = T0_NS + (block * 2 * per + np.arange(per) * 2 + (arm == "with")) * 1_000_000
                df = pd.DataFrame(
                    {
                        "seq": np.arange(per, dtype=np.int64),
                        "ts_ns": ts.astype(np.int64),
                        "latency_ns": latency.astype(np.int64),
                        "status": np.where(ok, "200", "503"),
                        "ok": ok,
                        "phase": "measure",
                        "error": "",
                    }
                )
                summary = ToolSummary(tool="k6", source="synthetic", requests=per, successes=int(ok.sum()))
                meta = {
                    "transport": transport,
                    "arm": arm,
                    "block": block,
                    "experiment": "compare-bench",
                    "platform": "local",
                    "profile": {"mode": "closed", "workers": 1, "duration_s": 6.0, "warmup_s": 1.0},
                }
                blocks.append(Block(meta, summary, df, f"load-{transport}-b{block}/{arm}/k6-summary.json"))
    return blocks


def spec(n_blocks: int) -> Any:
    return parse_spec(
        {
            "name": "compare-bench",
            "platform": "local",
            "transports": ["rest", "grpc"],
            "load": {"tool": "k6", "mode": "closed", "workers": 1, "duration_s": 6, "warmup_s": 1},
            "blocks": n_blocks,
            "thresholds": {"rest_ms": 5.0, "grpc_ms": 5.0},
        },
        "compare-bench",
    )


def run_once(blocks: list[Block], n_blocks: int, out: Path) -> dict[str, float]:
    s = spec(n_blocks)
    prov = {"orchbench_version": "bench", "git_commit": None, "host": "bench"}
    times: dict[str, float] = {}
    cpu0 = time.process_time()
    t = time.perf_counter()
    summary = analysis.summarise(s, blocks, None, "bench", prov)
    times["summarise"] = time.perf_counter() - t
    t = time.perf_counter()
    runs, samples = analysis.build_tables(blocks, "bench", prov, None, analysis.deployment_reuse(s))
    overheads = overheads_table.overheads_table(summary, time.time_ns(), prov)
    times["tables"] = time.perf_counter() - t
    t = time.perf_counter()
    write_table(runs, out / "results.parquet", "runs")
    write_table(samples, out / "samples.parquet", "samples")
    write_table(overheads, out / "overheads.parquet", "overheads")
    times["write"] = time.perf_counter() - t
    t = time.perf_counter()
    back = read_table(out / "samples.parquet", "samples").to_pandas()
    times["read"] = time.perf_counter() - t
    times["cpu_total"] = time.process_time() - cpu0
    t = time.perf_counter()
    for transport in ("rest", "grpc"):
        mine = back[back["transport"] == transport]
        tool_compare.sample_overheads(mine[mine["arm"] == "with"], mine[mine["arm"] == "without"])
    times["from-parquet"] = time.perf_counter() - t
    times["total"] = sum(times[k] for k in STEP_PHASES)
    times["rows"] = float(samples.num_rows)
    times["parquet_mb"] = (out / "samples.parquet").stat().st_size / 2**20
    times["rest_mean_overhead_ms"] = float(summary["rest"]["overhead_ms"]["mean"]["estimate"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, choices=range(4, 5_000_001), metavar="N")
    parser.add_argument("--blocks", type=int, default=20, choices=range(2, 101), metavar="2..100")
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--json", type=Path, help="Also write every repeat's figures as JSON here.")
    args = parser.parse_args()
    t = time.perf_counter()
    blocks = synthetic_blocks(args.samples, args.blocks)
    print(f"synthetic data: {time.perf_counter() - t:.2f} s (not timed below)")
    results = []
    with tempfile.TemporaryDirectory(prefix="compare-bench-") as tmp:
        for i in range(args.repeat):
            r = run_once(blocks, args.blocks, Path(tmp))
            results.append(r)
            phases = "  ".join(f"{k} {r[k]:.2f}" for k in STEP_PHASES)
            print(
                f"repeat {i + 1}: {int(r['rows']):,} samples  {phases}  total {r['total']:.2f} s "
                f"(CPU {r['cpu_total']:.2f} s)  [from-parquet {r['from-parquet']:.2f}] "
                f"(samples.parquet {r['parquet_mb']:.1f} MB; "
                f"rest mean overhead {r['rest_mean_overhead_ms']:.3f} ms)"
            )
    totals = [r["total"] for r in results]
    for k in (*STEP_PHASES, "from-parquet"):
        print(f"  {k:<13} median {statistics.median(r[k] for r in results):.2f} s")
    best, median = min(totals), statistics.median(totals)
    verdict = "within" if median <= TARGET_S else "OVER"
    cpu = statistics.median(r["cpu_total"] for r in results)
    print(
        f"total s: median {median:.2f}, best {best:.2f}, worst {max(totals):.2f}; CPU s median {cpu:.2f} "
        f"({verdict} the {TARGET_S:g} s target; {os.cpu_count()} CPUs)"
    )
    if args.json:
        write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
