"""`orchbench trend`: the overhead over many runs, and a regression gate on the latest one.

A dataset is a directory tree of run outputs, e.g. one run a night under a date partition:
`DATASET/date=2026-11-24/<run_id>/overheads.parquet`. Every `overheads.parquet` below DATASET is read
with the schema reader, so a file of an unknown schema version is refused, not half-read.

The gate (`gate`, a pure function) fails a transport when the LATEST run's overhead is

1. **over the threshold**: its point estimate > `threshold_ms` (the `--threshold-ms` flag, else the
   threshold the run itself recorded); or
2. **significantly worse than the runs before it**. The baseline is the previous `baseline_runs`
   (default 7) runs of the same transport and metric. Its centre is the median of their estimates; its
   spread is the larger of
     - the robust between-run standard deviation, 1.4826 × MAD of their estimates (night-to-night
       noise: other tenants, other nodes, a different CPU frequency), and
     - the median within-run standard error, (CI high − CI low) / 3.92 (so a run of identical
       nights, MAD = 0, does not turn every microsecond into an alarm).
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

Exit codes of `orchbench trend`: 0 no regression, 3 regression found (one line per failing transport
on stderr), 2 bad input (missing/empty dataset, unknown schema version, bad flag), as ConfigError.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from orchbench.core.errors import ConfigError, OrchbenchError
from results_schema.io import read_table

EXIT_OK = 0
EXIT_REGRESSION = 3
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

    @property
    def se_ms(self) -> float | None:
        """Standard error implied by the 95 % CI (None without a CI)."""
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
    """All overheads rows of a dataset, read with the schema reader (unknown versions are refused)."""
    frames = [read_table(path, "overheads").to_pandas() for path in find_overheads(Path(dataset))]
    df = pd.concat(frames, ignore_index=True)
    if df.empty:
        raise ConfigError(f"{dataset}: the overheads files hold no rows")
    return df


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def series(df: pd.DataFrame, transport: str, metric: str) -> list[RunPoint]:
    """One transport's and metric's runs, oldest first; a run present twice counts once (the last)."""
    sel = df[(df["transport"] == transport) & (df["metric"] == metric)]
    sel = sel.sort_values(["created_at", "run_id"], kind="stable").drop_duplicates("run_id", keep="last")
    return [
        RunPoint(
            run_id=str(r.run_id),
            created_at=pd.Timestamp(r.created_at).to_pydatetime(),
            estimate_ms=float(r.estimate_ms),
            ci_low_ms=_opt(r.ci_low_ms),
            ci_high_ms=_opt(r.ci_high_ms),
            threshold_ms=_opt(r.threshold_ms),
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

    def line(self) -> str:
        """One line: the transport, the verdict and why."""
        head = (
            f"{self.transport}: {self.metric} overhead {_ms(self.latest.estimate_ms)} ms {_ci(self.latest)}"
        )
        head += f" in run {self.latest.run_id} ({self.latest.created_at:%Y-%m-%d})"
        if not self.passed:
            return f"{head}: " + "; ".join(self.reasons)
        checks = []
        if self.threshold_ms is not None:
            checks.append(f"within threshold {self.threshold_ms:g} ms")
        if self.baseline is not None:
            checks.append(
                f"within baseline (median {_ms(self.baseline.median_ms)} ms"
                f" of {self.baseline.runs} earlier runs,"
                f" band up to {_ms(self.baseline.upper_ms)} ms)"
            )
        return f"{head}: pass, " + ", ".join(checks + list(self.notes))


def _ms(value: float) -> str:
    return f"{value:+.3f}"


def _ci(p: RunPoint) -> str:
    if p.ci_low_ms is None or p.ci_high_ms is None:
        return "(no CI)"
    return f"(95 % CI [{_ms(p.ci_low_ms)}, {_ms(p.ci_high_ms)}])"


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
    if threshold is None:
        notes.append("no threshold set (none in the run, no --threshold-ms)")
    elif latest.estimate_ms > threshold:
        reasons.append(f"over the threshold {threshold:g} ms by {latest.estimate_ms - threshold:.3f} ms")
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
                f" CI low {_ms(low)} ms > baseline band {_ms(base.upper_ms)} ms"
                f" (median {_ms(base.median_ms)} + {k_sigma:g} × spread {base.spread_ms:.3f})"
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
    )


# ---------------------------------------------------------------------------------------------------
# output


def _table(per_transport: dict[str, list[RunPoint]], results: dict[str, GateResult], metric: str) -> Any:
    from rich.table import Table

    table = Table(title=f"orchestrator overhead over time ({metric}, ms, 95 % CI)", title_justify="left")
    for col in ("transport", "created at", "run", "overhead", "95 % CI", "threshold", "gate"):
        table.add_column(col, justify="right" if col in ("overhead", "95 % CI", "threshold") else "left")
    for transport, points in per_transport.items():
        shown = points[-TABLE_ROWS:]
        if len(points) > len(shown):
            table.add_row(transport, f"… {len(points) - len(shown)} earlier runs", "", "", "", "", "")
        for p in shown:
            verdict = ""
            if p is points[-1]:
                verdict = (
                    "[green]pass[/green]" if results[transport].passed else "[bold red]REGRESSION[/bold red]"
                )
            ci = (
                ""
                if p.ci_low_ms is None or p.ci_high_ms is None
                else f"[{_ms(p.ci_low_ms)}, {_ms(p.ci_high_ms)}]"
            )
            thr = "" if p.threshold_ms is None else f"{p.threshold_ms:g}"
            table.add_row(
                transport, f"{p.created_at:%Y-%m-%d %H:%M}", p.run_id, _ms(p.estimate_ms), ci, thr, verdict
            )
        table.add_section()
    return table


def trend_json(per_transport: dict[str, list[RunPoint]], results: dict[str, GateResult], metric: str) -> dict:
    def point(p: RunPoint) -> dict[str, Any]:
        d = asdict(p)
        d["created_at"] = p.created_at.isoformat()
        return d

    return {
        "metric": metric,
        "regression": any(not r.passed for r in results.values()),
        "transports": {
            t: {
                "series": [point(p) for p in pts],
                "gate": {
                    "passed": results[t].passed,
                    "reasons": list(results[t].reasons),
                    "notes": list(results[t].notes),
                    "threshold_ms": results[t].threshold_ms,
                    "baseline": asdict(b) if (b := results[t].baseline) is not None else None,
                    "line": results[t].line(),
                },
            }
            for t, pts in per_transport.items()
        },
    }


def trend_html(per_transport: dict[str, list[RunPoint]], results: dict[str, GateResult], metric: str) -> str:
    """A self-contained HTML page: overhead per run with its CI band, thresholds and the gate lines."""
    import html

    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    colours = {"rest": "#1f77b4", "grpc": "#2ca02c"}
    fig = go.Figure()
    for transport, points in per_transport.items():
        colour = colours.get(transport, "#555")
        xs = [p.created_at for p in points]
        with_ci = [p for p in points if p.ci_low_ms is not None and p.ci_high_ms is not None]
        if with_ci:
            fig.add_trace(
                go.Scatter(
                    x=[p.created_at for p in with_ci] + [p.created_at for p in reversed(with_ci)],
                    y=[p.ci_high_ms for p in with_ci] + [p.ci_low_ms for p in reversed(with_ci)],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    name=f"{transport.upper()} 95 % CI",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[p.estimate_ms for p in points],
                mode="lines+markers",
                name=f"{transport.upper()} overhead",
                line={"color": colour},
                text=[p.run_id for p in points],
                hovertemplate="%{x}<br>%{y:.3f} ms<br>%{text}<extra>" + transport + "</extra>",
            )
        )
        res = results[transport]
        if res.threshold_ms is not None:
            fig.add_trace(
                go.Scatter(
                    x=[xs[0], xs[-1]],
                    y=[res.threshold_ms] * 2,
                    mode="lines",
                    line={"color": colour, "dash": "dash"},
                    name=f"{transport.upper()} threshold {res.threshold_ms:g} ms",
                )
            )
        if res.baseline is not None:
            fig.add_trace(
                go.Scatter(
                    x=[xs[-1]],
                    y=[res.baseline.upper_ms],
                    mode="markers",
                    marker={"symbol": "line-ew-open", "size": 18, "color": colour},
                    name=f"{transport.upper()} baseline band edge",
                )
            )
        if not res.passed:
            fig.add_trace(
                go.Scatter(
                    x=[xs[-1]],
                    y=[res.latest.estimate_ms],
                    mode="markers",
                    marker={"color": "red", "size": 14, "symbol": "x"},
                    name=f"{transport.upper()} REGRESSION",
                )
            )
    fig.update_layout(
        title=f"orchestrator overhead ({metric}) per run, ms",
        template="plotly_white",
        xaxis_title="run created at",
        yaxis_title="overhead ms (with − without)",
        legend={"orientation": "h", "y": -0.25},
    )
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id="trend",
        default_height="480px",
        config={"displaylogo": False, "responsive": True},
    )
    lines = "".join(
        f"<li class='{'pass' if r.passed else 'fail'}'>{html.escape(r.line())}</li>" for r in results.values()
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>orchbench trend</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:0 24px}"
        ".fail{color:#a11;font-weight:600}.pass{color:#11632b}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>orchbench trend: {html.escape(metric)} overhead</h1><ul>{lines}</ul>{div}</body></html>\n"
    )


def evaluate(
    dataset: Path,
    metric: str = "mean",
    transports: Sequence[str] = TRANSPORTS,
    thresholds: dict[str, float | None] | None = None,
    experiment: str | None = None,
    baseline_runs: int = BASELINE_RUNS,
    min_effect_ms: float = MIN_EFFECT_MS,
) -> tuple[dict[str, list[RunPoint]], dict[str, GateResult]]:
    """Load a dataset and gate the latest run of each transport (threshold per transport, else the run's)."""
    if metric not in GATE_METRICS:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(GATE_METRICS)}")
    if baseline_runs < 2:
        raise ConfigError(f"--baseline-runs {baseline_runs}: needs at least 2")
    df = load_dataset(dataset)
    experiments = sorted(df["experiment"].unique())
    if experiment is not None:
        df = df[df["experiment"] == experiment]
        if df.empty:
            raise ConfigError(
                f"{dataset}: no runs of experiment {experiment!r} (found {', '.join(experiments)})"
            )
    elif len(experiments) > 1:
        raise ConfigError(
            f"{dataset}: runs of several experiments ({', '.join(experiments)}); pick one with --experiment"
        )
    per_transport = {t: pts for t in transports if (pts := series(df, t, metric))}
    if not per_transport:
        raise ConfigError(f"{dataset}: no {metric!r} overheads for {' or '.join(transports)}")
    thresholds = thresholds or {}
    results = {
        t: gate(pts, t, metric, thresholds.get(t), baseline_runs=baseline_runs, min_effect_ms=min_effect_ms)
        for t, pts in per_transport.items()
    }
    return per_transport, results


def run_trend(
    dataset: Path,
    threshold_ms: float | None = None,
    metric: str = "mean",
    transport: str = "all",
    html_out: Path | None = None,
    json_out: bool = False,
    experiment: str | None = None,
    baseline_runs: int = BASELINE_RUNS,
    min_effect_ms: float = MIN_EFFECT_MS,
) -> int:
    """The `orchbench trend` command; returns its exit code (0 or EXIT_REGRESSION)."""
    import sys

    if transport not in (*TRANSPORTS, "all"):
        raise ConfigError(f"--transport {transport!r}: choose rest, grpc or all")
    wanted = TRANSPORTS if transport == "all" else (transport,)
    per_transport, results = evaluate(
        dataset, metric, wanted, dict.fromkeys(wanted, threshold_ms), experiment, baseline_runs, min_effect_ms
    )
    if html_out is not None:
        from orchbench.core.report import write_text_atomic

        write_text_atomic(html_out, trend_html(per_transport, results, metric))
    if json_out:
        print(json.dumps(trend_json(per_transport, results, metric), indent=2))
    else:
        from rich.console import Console

        console = Console(width=140) if not sys.stdout.isatty() else Console()
        console.print(_table(per_transport, results, metric))
        for r in results.values():
            if r.passed:
                console.print(f"gate {r.line()}", highlight=False, markup=False, soft_wrap=True)
    failed = [r for r in results.values() if not r.passed]
    for r in failed:
        print(f"orchbench: regression: {r.line()}", file=sys.stderr)
    return EXIT_REGRESSION if failed else EXIT_OK


class RegressionFound(OrchbenchError):
    """The gate failed: the latest run regressed. Exit code 3 (distinct from 2 = bad input)."""

    exit_code = EXIT_REGRESSION

    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results = list(results)
        super().__init__("regression: " + " | ".join(r.line() for r in self.results))


def run_gate(
    dataset: str | Path,
    rest_ms: float | None = None,
    grpc_ms: float | None = None,
    metric: str = "mean",
    experiment: str | None = None,
) -> dict[str, GateResult]:
    """The CronWorkflow's gate step: gate both transports (per-transport thresholds, else each run's own),
    print one line per transport, raise RegressionFound (exit 3) when any failed."""
    _, results = evaluate(Path(dataset), metric, TRANSPORTS, {"rest": rest_ms, "grpc": grpc_ms}, experiment)
    for r in results.values():
        print(f"gate {r.line()}", flush=True)
    failed = [r for r in results.values() if not r.passed]
    if failed:
        raise RegressionFound(failed)
    return results
