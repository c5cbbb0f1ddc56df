"""Known-answer calibration: inject a delay into the reference orchestrator and recover it.

For each injected delay d (and d = 0), run the local benchmark; the recovered delay is
overhead(d) − overhead(0) per transport. The two runs are independent, so the 95 % interval of the
difference combines their intervals (each a t-interval over blocks): se = sqrt(se_d² + se_0²), se
from each half-width / 1.96.
A benchmark that cannot recover a known 0.5 ms is not to be trusted with an unknown one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orchbench.core.errors import ConfigError
from orchbench.core.paths import SPECS

CALIBRATE_SPEC = SPECS / "calibrate.yaml"
Z95 = 1.959963984540054


def parse_delays(text: str) -> list[float]:
    try:
        delays = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--delays must be comma-separated numbers of ms, got {text!r}") from None
    if not delays or any(d <= 0 or d > 1000 or not math.isfinite(d) for d in delays):
        raise ConfigError(f"--delays must be positive ms values up to 1000, got {text!r}")
    return delays


def recovered(
    run_d: dict[str, Any], run_0: dict[str, Any], transport: str, injected: float, metric: str = "p50"
) -> dict[str, Any]:
    """Pure: the recovered delay and its 95 % CI from two runs' summary.json dicts."""
    a = run_d[transport]["overhead_ms"][metric]
    b = run_0[transport]["overhead_ms"][metric]
    est = a["estimate"] - b["estimate"]
    se = math.hypot((a["ci95"][1] - a["ci95"][0]) / (2 * Z95), (b["ci95"][1] - b["ci95"][0]) / (2 * Z95))
    lo, hi = est - Z95 * se, est + Z95 * se
    return {
        "transport": transport,
        "injected_ms": injected,
        "recovered_ms": round(est, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "metric": metric,
        "within_0_1_ms_or_ci": bool(abs(est - injected) <= 0.1 or lo <= injected <= hi),
    }


def calibrate(delays: list[float], spec: Path | None, out: Path, quiet: bool = True) -> list[dict[str, Any]]:
    from orchbench.cli.run_cmd import run_local

    spec = spec or CALIBRATE_SPEC
    runs: dict[float, dict[str, Any]] = {}
    for delay in [0.0, *delays]:
        run_dir = run_local(spec, out / f"delay-{delay:g}ms", {"local.inject_delay_ms": delay}, quiet=True)
        runs[delay] = json.loads((run_dir / "summary.json").read_text())
    transports = [t for t in ("rest", "grpc") if t in runs[0.0]]
    rows = [recovered(runs[d], runs[0.0], t, d) for d in delays for t in transports]
    (out / "calibration.json").write_text(json.dumps(rows, indent=2))
    return rows
