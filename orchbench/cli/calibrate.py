"""Known-answer calibration: inject a delay into the reference orchestrator and recover it.

For each injected delay d (and d = 0), run the local benchmark; the recovered delay is
overhead(d) - overhead(0) per transport. The two runs are independent, so the standard error of the
difference is se = sqrt(se_d^2 + se_0^2), each run's se and degrees of freedom taken from its
summary.json (the t-interval over blocks: se = sd / sqrt(n), n - 1 df; never a width / 1.96), and
the 95 % interval is est ± t(0.975, df) · se with Welch-Satterthwaite's df.

A delay is recovered (`passed`) only when BOTH hold: the interval covers the injected delay, and
the error |recovered - injected| is within 0.05 ms. A run of one block has no interval over blocks,
so calibration refuses it up front with one line (`blocks` must be >= 2).
A benchmark that cannot recover a known 0.5 ms is not to be trusted with an unknown one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orchbench.cli.run_cmd import run_local
from orchbench.core.errors import ConfigError
from orchbench.core.paths import SPECS
from orchbench.core.spec import load_spec
from orchbench.core.stats import t_quantile
from orchbench.fsio import write_text

CALIBRATE_SPEC = SPECS / "calibrate.yaml"
MAX_ERROR_MS = 0.05


def parse_delays(text: str) -> list[float]:
    try:
        delays = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--delays must be comma-separated numbers of ms, got {text!r}") from None
    if not delays or any(d <= 0 or d > 1000 or not math.isfinite(d) for d in delays):
        raise ConfigError(f"--delays must be positive ms values up to 1000, got {text!r}")
    return delays


def _se_df(entry: dict[str, Any], what: str) -> tuple[float, int]:
    n = entry.get("n_blocks")
    se, df = entry.get("se"), entry.get("df")
    if (n is not None and n < 2) or (se is not None and df is None):
        raise ConfigError(
            f"{what}: {n or 1} block(s); calibration needs >= 2 blocks per run (its interval is over blocks)"
        )
    if se is None or df is None or not math.isfinite(se):
        raise ConfigError(f"{what}: summary.json has no standard error (a run of an older orchbench?)")
    return float(se), int(df)


def recovered(
    run_d: dict[str, Any], run_0: dict[str, Any], transport: str, injected: float, metric: str = "p50"
) -> dict[str, Any]:
    """Pure: the recovered delay, its SE, 95 % CI and verdict from two runs' summary.json dicts."""
    a = run_d[transport]["overhead_ms"][metric]
    b = run_0[transport]["overhead_ms"][metric]
    se_a, df_a = _se_df(a, f"{transport} run with {injected:g} ms injected")
    se_b, df_b = _se_df(b, f"{transport} run without injected delay")
    est = a["estimate"] - b["estimate"]
    se = math.hypot(se_a, se_b)
    # Welch-Satterthwaite degrees of freedom of the difference of two independent t-statistics
    df = (se_a**2 + se_b**2) ** 2 / (se_a**4 / df_a + se_b**4 / df_b) if se > 0 else float(min(df_a, df_b))
    half = t_quantile(max(1, math.floor(df))) * se
    lo, hi = est - half, est + half
    error = est - injected
    covers = lo <= injected <= hi
    close = abs(error) <= MAX_ERROR_MS
    return {
        "transport": transport,
        "injected_ms": injected,
        "recovered_ms": round(est, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "se_ms": round(se, 5),
        "df": round(df, 1),
        "error_ms": round(error, 4),
        "metric": metric,
        "covers": bool(covers),
        f"within_{MAX_ERROR_MS:g}_ms": bool(close),
        "passed": bool(covers and close),
    }


def aa_row(
    run: dict[str, Any], transport: str, run_delay: float, metric: str = "p50"
) -> dict[str, Any] | None:
    """Pure: the A/A arm's overhead in one run (two copies of the model, so the truth is 0): its
    estimate and 95 % CI straight from the run's summary.json; `passed` when the CI covers 0."""
    arm = run.get("aa_arm")
    res = ((run.get(transport) or {}).get("by_arm") or {}).get(arm) if arm else None
    if res is None:
        return None
    e = res["overhead_ms"][metric]
    se, df = _se_df(e, f"{transport} A/A arm {arm} (run with {run_delay:g} ms injected)")
    lo, hi = e["ci95"]
    covers = lo <= 0.0 <= hi
    return {
        "kind": "aa",
        "arm": arm,
        "transport": transport,
        "run_delay_ms": run_delay,
        "injected_ms": 0.0,
        "recovered_ms": round(float(e["estimate"]), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "se_ms": round(se, 5),
        "df": df,
        "error_ms": round(float(e["estimate"]), 4),
        "metric": metric,
        "covers": bool(covers),
        "passed": bool(covers),
    }


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The terminal table (80 columns): one line per transport and delay, then the A/A arm's
    interval per run and transport (two copies of the model: it should cover 0)."""
    out = [f"{'transport':<10}{'injected':>9}{'recovered':>11}{'95% CI ms':>20}{'error':>9}  ok"]
    aa_rows = [r for r in rows if r.get("kind") == "aa"]
    rows = [r for r in rows if r.get("kind") != "aa"]
    for r in rows:
        ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
        why = (
            ""
            if r["passed"]
            else (" (CI misses it)" if not r["covers"] else f" (|error| > {MAX_ERROR_MS:g})")
        )
        out.append(
            f"{r['transport']:<10}{r['injected_ms']:>9.3f}{r['recovered_ms']:>11.3f}{ci:>20}"
            f"{r['error_ms']:>+9.3f}  {'yes' if r['passed'] else 'NO' + why}"
        )
    if aa_rows:
        out.append(f"A/A arm {aa_rows[0]['arm']} (a second model server; its interval should cover 0)")
        out.append(f"{'transport':<10}{'run':>9}{'overhead':>11}{'95% CI ms':>20}{'':>9}  covers 0")
        for r in aa_rows:
            ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
            run = f"{r['run_delay_ms']:g} ms"
            out.append(
                f"{r['transport']:<10}{run:>9}{r['recovered_ms']:>+11.3f}{ci:>20}{'':>9}  "
                f"{'yes' if r['covers'] else 'NO'}"
            )
    return out


def calibrate(delays: list[float], spec: Path | None, out: Path, quiet: bool = False) -> list[dict[str, Any]]:
    """Every run with the live progress display on stderr (step `calibrate: <delay>`), unless quiet."""
    spec = spec or CALIBRATE_SPEC
    blocks = load_spec(spec).blocks
    if blocks < 2:
        raise ConfigError(
            f"{spec}: blocks {blocks}; calibration needs >= 2 blocks per run (its interval is over blocks)"
        )
    runs: dict[float, dict[str, Any]] = {}
    for delay in [0.0, *delays]:
        run_dir = run_local(
            spec,
            out / f"delay-{delay:g}ms",
            {"local.inject_delay_ms": delay},
            quiet=quiet,
            step=f"calibrate: {delay:g} ms injected",
            show_summary=False,
        )
        runs[delay] = json.loads((run_dir / "summary.json").read_text())
    transports = [t for t in ("rest", "grpc") if t in runs[0.0]]
    rows = [recovered(runs[d], runs[0.0], t, d) for d in delays for t in transports]
    # the A/A arm (aa: true in the spec), in every run: the noise between two copies of the model
    rows += [r for d in [0.0, *delays] for t in transports if (r := aa_row(runs[d], t, d)) is not None]
    write_text(out / "calibration.json", json.dumps(rows, indent=2))
    return rows
