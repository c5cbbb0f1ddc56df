"""Search for the evenly spread walks of orchbench.core.loadtools.rotation.WALKS.

For k arms: of the de Bruijn cycles of order 3 that rotation.de_bruijn_walk builds from seeds 0 ..
SEARCH_SEEDS - 1 (every arm after every ordered pair of arms once, k³ requests), the seed whose
cycle has the smallest largest gap between two requests of one arm (the first such seed). Prints
the table the module holds, and the largest gap of seed 0's cycle beside it.

    .venv/bin/python benchmarks/rotation_search.py [--max-arms 8]

Measured 2026-12-07 (2 CPUs, Python 3.11): see the module's table; the run time is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchbench.core.loadtools.rotation import SEARCH_SEEDS, de_bruijn_walk, max_gap


def search(k: int, seeds: int = SEARCH_SEEDS) -> tuple[int, int]:
    """(seed, largest gap) of the most evenly spread walk over k arms among the first `seeds`."""
    best = (0, max_gap(de_bruijn_walk(k, 0)))
    for seed in range(1, seeds):
        gap = max_gap(de_bruijn_walk(k, seed))
        if gap < best[1]:
            best = (seed, gap)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-arms", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for k in range(1, args.max_arms + 1):
        seed, gap = search(k)
        print(f"    {k}: ({seed}, {gap}),  # seed 0: {max_gap(de_bruijn_walk(k, 0))}")
    print(f"# {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
