"""How much a held answer slows the requests after it (issue 14's calibration lean): from the samples
of `orchbench calibrate` interleaved runs, each request's latency regressed on the injected hold of the
requests 1, 2 and 3 places before it, with one level per block and arm (ordinary least squares,
numpy.linalg.lstsq; standard errors by the block jackknife, since requests within a block are not
independent). Then, per delay arm, the bias those slopes put into "arm minus the reference" through
the walk's imbalance: the mean hold 1, 2 and 3 places before the arm's requests minus before the
reference's (the order-2 cycle of before 2026-12-07 06:00 UTC evened out 1 place before; the order-3
cycle of orchbench.core.loadtools.rotation evens out 1 and 2; neither 3).

    .venv/bin/python benchmarks/carryover.py CAL_DIR [CAL_DIR ...]

CAL_DIR is an `orchbench calibrate --out` folder (its `interleaved/` run) or a run folder: its
samples.parquet, and each arm's injected delay from its deploy records (state/deploy/*.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchbench.cli.calibrate import REFERENCE_ARM

LAGS = (1, 2, 3)


def holds_of(run: Path, transport: str) -> dict[str, float]:
    """Each arm's injected hold (ms) as the run deployed it: state/deploy/<transport>-<arm>.json's
    `inject_delay_ms` (0 for an arm that injects none, the baseline)."""
    out = {}
    for path in sorted((run / "state" / "deploy").glob(f"{transport}-*.json")):
        details = json.loads(path.read_text()).get("details") or {}
        out[path.stem.removeprefix(f"{transport}-")] = float(details.get("inject_delay_ms") or 0.0)
    return out


def lagged(samples: pd.DataFrame, transport: str, hold_ms: Mapping[str, float]) -> pd.DataFrame:
    """Pure: one row per request (after the first max(LAGS) of its block): block, arm, latency (ms) and
    the hold (`hold_ms`: arm -> ms) of the request 1, 2, 3 places before it, in time order."""
    parts = []
    for block, g in samples[samples["transport"] == transport].groupby("block"):
        g = g.sort_values("timestamp")
        holds = g["arm"].map(hold_ms).to_numpy(dtype=np.float64)
        lat = g["latency_ns"].to_numpy(dtype=np.float64) / 1e6
        n, m = len(g), max(LAGS)
        frame = {"block": block, "arm": g["arm"].to_numpy()[m:], "lat": lat[m:]}
        frame |= {f"h{k}": holds[m - k : n - k] for k in LAGS}
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)


def _slopes(f: pd.DataFrame) -> np.ndarray:
    levels = pd.get_dummies(f["block"].astype(str) + "/" + f["arm"], dtype=float).to_numpy()
    x = np.column_stack([levels, f[[f"h{k}" for k in LAGS]].to_numpy()])
    beta, *_ = np.linalg.lstsq(x, f["lat"].to_numpy(), rcond=None)
    return beta[-len(LAGS) :]


@dataclass(frozen=True)
class Carryover:
    """The slopes (ms of latency per ms of hold, 1-3 places before), their block-jackknife standard
    errors, and per delay arm the hold imbalance against the reference (ms, 1-3 before) and the bias
    (ms) the slopes put into that arm's recovered delay through it."""

    slopes: np.ndarray
    se: np.ndarray
    imbalance_ms: dict[str, np.ndarray]
    bias_ms: dict[str, float]


def carryover(f: pd.DataFrame, hold_ms: Mapping[str, float]) -> Carryover:
    """Pure: `Carryover` of one transport's `lagged` rows, for the arms holding longer than the
    reference (REFERENCE_ARM)."""
    beta = _slopes(f)
    blocks = sorted(f["block"].unique())
    jack = np.array([_slopes(f[f["block"] != b]) for b in blocks])
    n = len(blocks)
    se = np.sqrt((n - 1) / n * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0)) if n > 1 else np.full(3, np.nan)
    ref = f[f["arm"] == REFERENCE_ARM]
    imbalance = {}
    for arm in sorted(set(f["arm"]), key=lambda a: hold_ms[a]):
        if hold_ms[arm] > hold_ms[REFERENCE_ARM]:
            mine = f[f["arm"] == arm]
            imbalance[arm] = np.array([mine[f"h{k}"].mean() - ref[f"h{k}"].mean() for k in LAGS])
    bias = {arm: float(beta @ imb) for arm, imb in imbalance.items()}
    return Carryover(beta, se, imbalance, bias)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for run in args.runs:
        folder = next((d for d in (run / "interleaved", run) if (d / "samples.parquet").is_file()), None)
        if folder is None:
            print(f"carryover: {run}: no samples.parquet", file=sys.stderr)
            return 2
        samples = pd.read_parquet(folder / "samples.parquet")
        samples = samples[samples["ok"]]
        for transport in sorted(samples["transport"].unique()):
            holds = holds_of(folder, transport)
            arms = set(samples.loc[samples["transport"] == transport, "arm"])
            if REFERENCE_ARM not in holds or not arms <= set(holds):
                print(
                    f"carryover: {run}: no deploy records of a calibration run ({transport})", file=sys.stderr
                )
                return 2
            res = carryover(lagged(samples, transport, holds), holds)
            slopes = ", ".join(
                f"{k} before {b * 1000:+.1f} ± {s * 1000:.1f}"
                for k, b, s in zip(LAGS, res.slopes, res.se, strict=True)
            )
            print(f"{run.name} {transport}: µs per ms of hold: {slopes}")
            for arm, imb in res.imbalance_ms.items():
                held = " / ".join(f"{x:+.2f}" for x in imb)
                bias = res.bias_ms[arm] * 1000
                print(f"  {arm}: hold imbalance 1/2/3 before {held} ms, bias {bias:+.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
