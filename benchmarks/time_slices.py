"""Issue 13's reference method, applied to an orchbench run: each block's measured window cut into
equal wall-clock slices, each arm's p50 (and mean) per slice, paired with the baseline's of the same
slice, and the t-interval over the slices (orchbench.core.stats.t_interval).

Issue 13 states its target (REST p50 half-width <= 0.03 ms per arm in <= 4 minutes) next to "an
independent paired measurement here": k6 rotating the arms request by request for 150 s, p50 over ten
time blocks, which gave +/-0.02-0.03 ms on its day. This script runs that method on today's host, from
one orchbench run of `specs/proxies.yaml` on REST with two blocks whose k6 measures 75 s each (`--spec
OUT` writes that spec: ten slices of 15 s, ~250 requests per arm and slice), so the method, not
orchbench's block layout, can be judged against the target. It also prints the baseline's latency
spread and, for a target half-width, the k6 time the same method would need at the measured spread
(half-width ~ 1/sqrt(time)).

    .venv/bin/python benchmarks/time_slices.py --spec /tmp/px150.yaml
    .venv/bin/python -m orchbench run --spec /tmp/px150.yaml --out /tmp/px150
    .venv/bin/python benchmarks/time_slices.py /tmp/px150 [--slices-per-block 5] [--target 0.03]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from orchbench.core.paths import SPECS
from orchbench.core.stats import percentile, t_interval
from orchbench.fsio import write_text

METRICS = ("p50", "mean")


def slice_stats(samples: pd.DataFrame, transport: str, per_block: int) -> pd.DataFrame:
    """Pure: per block, `per_block` equal wall-clock slices of the block's requests (all arms); each
    arm's p50, mean and count per slice. Columns: block, slice, arm, p50, mean, n (ms)."""
    mine = samples[(samples["transport"] == transport) & samples["ok"]]
    rows = []
    for block, g in mine.groupby("block"):
        ts = g["timestamp"].astype("int64").to_numpy()
        edges = np.linspace(ts.min(), ts.max() + 1, per_block + 1)
        slices = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, per_block - 1)
        for (s, arm), h in g.assign(slice=slices).groupby(["slice", "arm"]):
            x = h["latency_ns"].to_numpy(dtype=np.float64) / 1e6
            rows.append((int(block), int(s), str(arm), float(percentile(x, 0.5)), float(x.mean()), len(x)))
    return pd.DataFrame(rows, columns=["block", "slice", "arm", "p50", "mean", "n"])


def paired(stats: pd.DataFrame, arm: str, baseline: str, metric: str) -> dict[str, float]:
    """Pure: the mean over slices of arm - baseline, its 95 % t-interval half-width, the SD of the
    slice differences and the number of slices both arms have."""
    a = stats[stats["arm"] == arm].set_index(["block", "slice"])[metric]
    b = stats[stats["arm"] == baseline].set_index(["block", "slice"])[metric]
    diff = (a - b).dropna().to_numpy()
    est = t_interval(diff)
    return {
        "estimate": est.estimate,
        "half": est.half_width,
        "sd": float(diff.std(ddof=1)),
        "slices": len(diff),
    }


def time_for(half: float, target: float, seconds: float) -> float:
    """The k6 time a half-width of `half` after `seconds` would need for `target` (~ 1/sqrt(time))."""
    return seconds * (half / target) ** 2


def write_spec(out: Path) -> None:
    """The shipped proxies spec on REST only, two blocks of 75 s of k6 each (18.75 s per arm)."""
    spec = yaml.safe_load((SPECS / "proxies.yaml").read_text())
    spec["transports"] = ["rest"]
    spec["blocks"] = 2
    spec["load"]["duration_s"] = 18.75
    spec["manifest"] = str((SPECS / spec["manifest"]).resolve())
    spec["payloads"] = {k: str((SPECS / v).resolve()) for k, v in spec["payloads"].items()}
    write_text(out, yaml.safe_dump(spec, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="an orchbench run folder (samples.parquet)")
    ap.add_argument("--spec", type=Path, help="write the 150 s REST proxies spec here and stop")
    ap.add_argument("--transport", default="rest")
    ap.add_argument("--baseline", default="direct")
    ap.add_argument("--slices-per-block", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.03, help="half-width sought, ms")
    args = ap.parse_args(argv)
    if args.spec:
        write_spec(args.spec)
        print(f"wrote {args.spec}")
        return 0
    path = args.run / "samples.parquet" if args.run else None
    if path is None or not path.is_file():
        print(f"time_slices: {path or 'a run folder'}: no samples.parquet", file=sys.stderr)
        return 2
    samples = pd.read_parquet(path)
    if args.slices_per_block < 1 or args.target <= 0:
        print("time_slices: --slices-per-block must be >= 1 and --target > 0", file=sys.stderr)
        return 2
    stats = slice_stats(samples, args.transport, args.slices_per_block)
    if args.baseline not in set(stats["arm"]):
        print(f"time_slices: no arm {args.baseline!r} on {args.transport}", file=sys.stderr)
        return 2
    mine = samples[(samples["transport"] == args.transport) & samples["ok"]]
    k6_s = sum(
        (g["timestamp"].max() - g["timestamp"].min()).total_seconds() for _, g in mine.groupby("block")
    )
    base = mine[mine["arm"] == args.baseline]["latency_ns"].to_numpy(dtype=np.float64) / 1e6
    q = {p: float(percentile(base, p / 100)) for p in (10, 50, 90)}
    print(
        f"{args.transport}: {len(stats.groupby(['block', 'slice']))} slices over {k6_s:.0f} s of k6, "
        f"{int(stats['n'].median())} requests per arm and slice; {args.baseline}: p10 {q[10]:.2f}, "
        f"p50 {q[50]:.2f}, p90 {q[90]:.2f}, SD {base.std(ddof=1):.2f} ms"
    )
    for arm in sorted(set(stats["arm"]) - {args.baseline}):
        for metric in METRICS:
            r = paired(stats, arm, args.baseline, metric)
            need = time_for(r["half"], args.target, k6_s)
            print(
                f"  {arm:13s} {metric:4s} {r['estimate']:+.3f} ± {r['half']:.3f} ms "
                f"(SD of the slice differences {r['sd']:.3f}; "
                f"±{args.target:g} would take ~{need / 60:.0f} min of k6)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
