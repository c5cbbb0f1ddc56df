"""The measurement floor, repeated: `orchbench floor` N times in a row, one table per run plus the
spread of each (tool, transport) p50 across runs. Bounded: at most 10 runs of at most 20,000 requests.

    .venv/bin/python benchmarks/floor_bench.py --runs 3 --requests 2000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from orchbench.core.floor import format_table, measure_floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--requests", type=int, default=2000, choices=range(1, 20_001), metavar="1..20000")
    parser.add_argument("--json", type=Path, help="Also write every run as JSON here.")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        floor = measure_floor(requests=args.requests, warmup=min(200, args.requests))
        runs.append(floor)
        print(f"run {i + 1}/{args.runs}\n{format_table(floor)}\n")
    p50s: dict[tuple[str, str], list[float]] = {}
    for floor in runs:
        for r in floor["results"]:
            p50s.setdefault((r["tool"], r["transport"]), []).append(r["p50_ms"])
    print("p50 ms across runs (median [min, max]):")
    for (tool, transport), values in p50s.items():
        print(
            f"  {tool:<7}{transport:<6}{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
