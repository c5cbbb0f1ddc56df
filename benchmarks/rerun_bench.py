"""Do reruns agree? Time to verdict, and the agreement of repeated runs of one spec (issue 14).

Runs `orchbench run --spec SPEC` N times one after the other (or reads run folders already made) and
prints, per run, the wall time and the 95 % CI half-width of every reported figure (transport x arm x
mean / p50); then, for each pair of runs and each figure, whether the difference of the two
estimates lies inside the 95 % interval of that difference, half-width sqrt(h1^2 + h2^2) from the two
runs' half-widths. Of k independent such checks about 5 % miss by chance.

    .venv/bin/python benchmarks/rerun_bench.py --runs 3 [--spec default] [--out runs/rerun]
    .venv/bin/python benchmarks/rerun_bench.py --read runs/rerun/run1 runs/rerun/run2 ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("mean", "p50")


def figures(summary: dict) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(transport, arm, metric) -> (estimate, CI half-width) for every compared arm of a summary.json."""
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    for transport in ("rest", "grpc"):
        res = summary.get(transport)
        if not isinstance(res, dict):
            continue
        by_arm = res.get("by_arm") or {res.get("arm", "with"): res}
        for arm, block in by_arm.items():
            for metric in METRICS:
                o = block["overhead_ms"][metric]
                lo, hi = o["ci95"]
                if o["estimate"] is None or lo is None or hi is None:
                    continue
                out[(transport, arm, metric)] = (float(o["estimate"]), (hi - lo) / 2)
    return out


def agreement(runs: dict[str, dict]) -> list[dict]:
    """One row per pair of runs and shared figure: the two estimates, their difference, the allowed
    half-width sqrt(h1^2 + h2^2) and whether it holds."""
    rows = []
    for (a, sa), (b, sb) in itertools.combinations(runs.items(), 2):
        fa, fb = figures(sa), figures(sb)
        for key in sorted(set(fa) & set(fb)):
            (e1, h1), (e2, h2) = fa[key], fb[key]
            allowed = math.hypot(h1, h2)
            rows.append(
                {
                    "pair": f"{a}/{b}",
                    "figure": " ".join(key),
                    "est_1": e1,
                    "est_2": e2,
                    "diff": abs(e1 - e2),
                    "allowed": allowed,
                    "holds": abs(e1 - e2) <= allowed,
                }
            )
    return rows


def run_once(spec: str, out: Path) -> float:
    t0 = time.monotonic()
    exe = Path(sys.executable).with_name("orchbench")
    proc = subprocess.run([str(exe), "run", "--spec", spec, "--out", str(out), "--quiet"], check=False)
    if proc.returncode not in (0, 3, 4):  # pass / fail / inconclusive verdicts all measured
        raise SystemExit(f"rerun_bench: orchbench run exited {proc.returncode} for {out}")
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--spec", default="default")
    ap.add_argument("--out", type=Path, default=Path("runs/rerun"))
    ap.add_argument("--read", nargs="+", type=Path, help="run folders already made (no new runs)")
    ap.add_argument("--json", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    walls: dict[str, float | None] = {}
    if args.read:
        dirs = list(args.read)
        if len({d.name for d in dirs}) != len(dirs):
            raise SystemExit("rerun_bench: the run folders' names must differ (they label the runs)")
        for d in dirs:
            walls[d.name] = None
    else:
        if not 2 <= args.runs <= 10:
            raise SystemExit("rerun_bench: --runs must be 2..10")
        dirs = [args.out / f"run{i + 1}" for i in range(args.runs)]
        for d in dirs:
            walls[d.name] = run_once(args.spec, d)
    runs = {}
    for d in dirs:
        path = d / "summary.json"
        if not path.is_file():
            raise SystemExit(f"rerun_bench: {path} not found")
        runs[d.name] = json.loads(path.read_text())
    print(
        "run | wall s | " + " | ".join(f"{' '.join(k)} ±" for k in sorted(figures(next(iter(runs.values())))))
    )
    for name, summary in runs.items():
        f = figures(summary)
        wall = walls[name]
        cells = [f"{f[k][0]:+.3f} ±{f[k][1]:.3f}" for k in sorted(f)]
        print(f"{name} | {'' if wall is None else f'{wall:.0f}'} | " + " | ".join(cells))
    rows = agreement(runs)
    misses = [r for r in rows if not r["holds"]]
    print("\npair | figure | diff | allowed | holds")
    for r in rows:
        holds = "yes" if r["holds"] else "NO"
        print(f"{r['pair']} | {r['figure']} | {r['diff']:.3f} | {r['allowed']:.3f} | {holds}")
    print(f"\n{len(rows) - len(misses)} of {len(rows)} differences inside their 95 % interval")
    if args.json:
        args.json.write_text(json.dumps({"walls_s": walls, "agreement": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
