"""The regression gate of `orchbench trend`, and the run points it judges (read from a dataset).

The gate (`gate`, a pure function) fails a transport when the LATEST run's overhead is

1. **over the threshold**: its whole 95 % CI lies above `threshold_ms` (the `--threshold-ms` flag,
   else the threshold the run itself recorded); a CI that contains the threshold makes the result
   **inconclusive** (with how many more blocks would likely decide it), a CI wholly below it passes
   (orchbench.core.verdict); or
2. **significantly worse than the runs before it**. The baseline is the previous `baseline_runs`
   (default 7) runs of the same transport and metric. Its centre is the median of their estimates; its
   spread is the larger of
     - the robust between-run standard deviation, 1.4826 × MAD of their estimates (night-to-night
       noise: other tenants, other nodes, a different CPU frequency), and
     - the median within-run standard error (so a run of identical nights, MAD = 0, does not turn
       every microsecond into an alarm): each run's own SE, read from the summary.json beside its
       overheads.parquet (sd of the block differences / √n); for a run without one, its CI width /
       3.92, which for a t-interval over few blocks overstates the SE (t > 1.96): an upper bound.
   The baseline band's upper edge is `median + k × spread` (k = 3). The latest run regresses when its
   **95 % CI lies entirely above that edge** (CI low > upper edge; its own sampling noise is thus
   accounted for) **and** its estimate exceeds the baseline median by at least `min_effect_ms`
   (default 0.1 ms; statistically clear but practically irrelevant shifts do not page anyone).

   Why this: the spread of past estimates is what decides whether tonight is unusual; a run's own CI
   is narrower than night-to-night variation, so comparing CIs alone raises false alarms. Median and
   MAD ignore one odd night in the baseline. Under Gaussian noise the rule fires on well under 1 % of
   nights (about 2 % with heavy-tailed, Student-t(3), night-to-night noise; tests/test_trend.py
   simulates it); a real step of about 10 × the noise is caught the first night.
   With fewer than 2 earlier runs there is no baseline: only the threshold applies, and the result
   says so. Only the latest run is judged; earlier regressions were the earlier nights' business.

Exit codes: EXIT_OK 0 (pass), EXIT_REGRESSION 3 (fail: a regression), EXIT_INCONCLUSIVE 4 (no
failure, but a CI contains the threshold), 2 bad input.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from orchbench.core import verdict
from orchbench.core.errors import ConfigError
from results_schema.io import read_table

EXIT_OK = verdict.EXIT_PASS
EXIT_REGRESSION = verdict.EXIT_FAIL
EXIT_INCONCLUSIVE = verdict.EXIT_INCONCLUSIVE
TRANSPORTS = ("rest", "grpc")
GATE_METRICS = ("mean", "p50")
BASELINE_RUNS = 7
K_SIGMA = 3.0
MIN_EFFECT_MS = 0.1
TABLE_ROWS = 30
_Z95 = 1.959964


# ---------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class RunPoint:
    """One run's overhead estimate for one transport and metric."""

    run_id: str
    created_at: datetime
    estimate_ms: float
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    threshold_ms: float | None = None
    se: float | None = None  # the run's own standard error (summary.json), when known
    n_blocks: int | None = None

    @property
    def se_ms(self) -> float | None:
        """The run's standard error; without one, the CI width / 3.92 (an upper bound for a
        t-interval); None without either."""
        if self.se is not None:
            return self.se
        if self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return (self.ci_high_ms - self.ci_low_ms) / (2 * _Z95)


def find_overheads(dataset: Path) -> list[Path]:
    """Every overheads.parquet below `dataset` (or `dataset` itself when it is a Parquet file)."""
    if not dataset.exists():
        raise ConfigError(f"{dataset}: no such dataset")
    if dataset.is_file():
        return [dataset]
    files = sorted(dataset.rglob("overheads.parquet"))
    if not files:
        raise ConfigError(f"{dataset}: no overheads.parquet below it; an empty dataset or not one of runs")
    return files


def load_dataset(dataset: str | Path) -> pd.DataFrame:
    """All overheads rows of a dataset, read with the schema reader (unknown versions are refused).
    Rows of invalid load stages are left out; a staged run's rows get their stage in the arm's name,
    so that each (arm, stage) is a series of its own."""
    frames = [
        _with_se(read_table(path, "overheads").to_pandas(), path) for path in find_overheads(Path(dataset))
    ]
    df = pd.concat(frames, ignore_index=True)
    if "valid" in df.columns:  # an invalid load stage's figures are no result (schema version 3)
        df = df[df["valid"].fillna(True).astype(bool)]
    if df.empty:
        raise ConfigError(f"{dataset}: the overheads files hold no rows (of a valid stage)")
    if "stage" in df.columns:  # each load stage is a series of its own: arm "nginx@rate-100"
        staged = df["stage"].fillna("").astype(str) != ""
        if staged.any():
            df = df.copy()
            df.loc[staged, "arm"] = (
                df.loc[staged, "arm"].astype(str) + "@" + df.loc[staged, "stage"].astype(str)
            )
    return df.reset_index(drop=True)


def _with_se(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Each row's standard error and block count: its own columns (schema version 2), else from the
    run's summary.json beside its Parquet file (version 1 had no column for them); NaN without."""
    if "se_ms" in frame.columns and frame["se_ms"].notna().all():
        return frame
    se, n = {}, {}
    try:
        summary = json.loads((path.parent / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    for transport in TRANSPORTS:
        block = summary.get(transport) if isinstance(summary, dict) else None
        for metric, entry in ((block or {}).get("overhead_ms") or {}).items():
            if isinstance(entry, dict) and entry.get("se") is not None:
                se[(transport, metric)] = float(entry["se"])
                n[(transport, metric)] = entry.get("n_blocks")
    keys = list(zip(frame["transport"], frame["metric"], strict=True))
    frame = frame.copy()
    own_se = frame["se_ms"] if "se_ms" in frame.columns else pd.Series([math.nan] * len(frame))
    own_n = frame["n_blocks"] if "n_blocks" in frame.columns else pd.Series([None] * len(frame))
    frame["se_ms"] = [
        float(o) if pd.notna(o) else se.get(k, math.nan) for o, k in zip(own_se, keys, strict=True)
    ]
    frame["n_blocks"] = [int(o) if pd.notna(o) else n.get(k) for o, k in zip(own_n, keys, strict=True)]
    return frame


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def arm_label(transport: str, arm: str) -> str:
    """How trend and gate name one transport's compared arm: the seed's "with" is the transport
    alone (`rest`), any other arm `rest/<arm>`."""
    return transport if arm == "with" else f"{transport}/{arm}"


def arms_of(df: pd.DataFrame, transport: str) -> list[str]:
    """The compared arms a dataset holds for `transport` ("with" first, then by name)."""
    if "arm" not in df.columns:
        return ["with"]
    arms = {str(a) for a in df.loc[df["transport"] == transport, "arm"].dropna().unique()}
    return sorted(arms, key=lambda a: (a != "with", a))


def series(df: pd.DataFrame, transport: str, metric: str, arm: str | None = None) -> list[RunPoint]:
    """One transport's (and compared arm's) metric over the runs, oldest first; a run present twice
    counts once (the last)."""
    sel = df[(df["transport"] == transport) & (df["metric"] == metric)]
    if arm is not None and "arm" in sel.columns:
        sel = sel[sel["arm"] == arm]
    sel = sel.sort_values(["created_at", "run_id"], kind="stable").drop_duplicates("run_id", keep="last")
    return [
        RunPoint(
            run_id=str(r.run_id),
            created_at=pd.Timestamp(r.created_at).to_pydatetime(),
            estimate_ms=float(r.estimate_ms),
            ci_low_ms=_opt(r.ci_low_ms),
            ci_high_ms=_opt(r.ci_high_ms),
            threshold_ms=_opt(r.threshold_ms),
            se=_opt(getattr(r, "se_ms", None)),
            n_blocks=None if getattr(r, "n_blocks", None) is None else int(r.n_blocks),
        )
        for r in sel.itertuples(index=False)
    ]


# ---------------------------------------------------------------------------------------------------
# the gate (pure)


@dataclass(frozen=True)
class Baseline:
    runs: int
    median_ms: float
    spread_ms: float
    upper_ms: float


@dataclass(frozen=True)
class GateResult:
    transport: str
    metric: str
    passed: bool
    reasons: tuple[str, ...]  # why it failed, empty when it passed
    notes: tuple[str, ...]  # what was (not) checked
    latest: RunPoint
    threshold_ms: float | None
    baseline: Baseline | None
    verdict: str = "pass"  # pass | fail | inconclusive (the threshold's CI verdict decides the last)

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if not self.passed else verdict.EXIT_CODES.get(self.verdict, EXIT_OK)

    def line(self) -> str:
        """One line: the transport, the verdict and why."""
        latest = self.latest
        head = f"{self.transport}: {self.metric} overhead {ms_text(latest.estimate_ms)} ms {_ci(latest)}"
        head += f" in run {self.latest.run_id} ({self.latest.created_at:%Y-%m-%d})"
        if not self.passed:
            return f"{head}: " + "; ".join(self.reasons)
        if self.verdict == "inconclusive":
            return f"{head}: inconclusive, " + "; ".join(self.notes)
        checks = []
        if self.threshold_ms is not None:
            checks.append(f"within threshold {self.threshold_ms:g} ms")
        if self.baseline is not None:
            checks.append(
                f"within baseline (median {ms_text(self.baseline.median_ms)} ms"
                f" of {self.baseline.runs} earlier runs,"
                f" band up to {ms_text(self.baseline.upper_ms)} ms)"
            )
        return f"{head}: pass, " + ", ".join(checks + list(self.notes))


def ms_text(value: float) -> str:
    return f"{value:+.3f}"


def _ci(p: RunPoint) -> str:
    if p.ci_low_ms is None or p.ci_high_ms is None:
        return "(no CI)"
    return f"(95 % CI [{ms_text(p.ci_low_ms)}, {ms_text(p.ci_high_ms)}])"


def baseline_of(previous: Sequence[RunPoint], k_sigma: float = K_SIGMA) -> Baseline:
    """Median of the previous estimates and `median + k × spread` (spread: see the module docstring)."""
    estimates = [p.estimate_ms for p in previous]
    median = statistics.median(estimates)
    mad = statistics.median(abs(e - median) for e in estimates)
    ses = [se for p in previous if (se := p.se_ms) is not None]
    spread = max(1.4826 * mad, statistics.median(ses) if ses else 0.0)
    return Baseline(
        runs=len(previous), median_ms=median, spread_ms=spread, upper_ms=median + k_sigma * spread
    )


def gate(
    points: Sequence[RunPoint],
    transport: str,
    metric: str = "mean",
    threshold_ms: float | None = None,
    baseline_runs: int = BASELINE_RUNS,
    k_sigma: float = K_SIGMA,
    min_effect_ms: float = MIN_EFFECT_MS,
) -> GateResult:
    """Judge the latest of `points` (any order; sorted by time here). See the module docstring."""
    if not points:
        raise ValueError("gate needs at least one run")
    ordered = sorted(points, key=lambda p: (p.created_at, p.run_id))
    latest, earlier = ordered[-1], ordered[:-1]
    threshold = threshold_ms if threshold_ms is not None else latest.threshold_ms
    reasons: list[str] = []
    notes: list[str] = []
    outcome = "pass"
    if threshold is None:
        notes.append("no threshold set (none in the run, no --threshold-ms)")
    else:
        v = verdict.judge(
            latest.estimate_ms,
            (latest.ci_low_ms, latest.ci_high_ms),
            threshold,
            latest.se,
            latest.n_blocks or 0,
        )
        if v.verdict == "fail":
            reasons.append(
                f"over the threshold {threshold:g} ms by {latest.estimate_ms - threshold:.3f} ms"
                " (whole 95 % CI above it)"
            )
        elif v.verdict == "inconclusive":
            outcome = "inconclusive"
            notes.insert(0, f"threshold {threshold:g} ms: {v.reason}")
    base = None
    if len(earlier) < 2:
        notes.append(f"only {len(earlier)} earlier run(s): only the threshold applies (a baseline needs 2)")
    else:
        base = baseline_of(earlier[-baseline_runs:], k_sigma)
        low = latest.ci_low_ms if latest.ci_low_ms is not None else latest.estimate_ms
        step = latest.estimate_ms - base.median_ms
        if low > base.upper_ms and step >= min_effect_ms:
            reasons.append(
                f"significantly worse than the {base.runs} earlier runs: step {step:+.3f} ms,"
                f" CI low {ms_text(low)} ms > baseline band {ms_text(base.upper_ms)} ms"
                f" (median {ms_text(base.median_ms)} + {k_sigma:g} × spread {base.spread_ms:.3f})"
            )
    return GateResult(
        transport=transport,
        metric=metric,
        passed=not reasons,
        reasons=tuple(reasons),
        notes=tuple(notes),
        latest=latest,
        threshold_ms=threshold,
        baseline=base,
        verdict="fail" if reasons else outcome,
    )
