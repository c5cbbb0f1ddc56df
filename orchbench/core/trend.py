"""`orchbench trend`: the overhead over many runs, and a regression gate on the latest one.

A dataset is a directory tree of run outputs, e.g. one run a night under a date partition:
`DATASET/date=2026-11-24/<run_id>/overheads.parquet`. Every `overheads.parquet` below DATASET is read
with the schema reader, so a file of an unknown schema version is refused, not half-read.

The gate on the latest run is `trend_gate.gate` (see that module for the rule and why).

Exit codes of `orchbench trend` and of the CronWorkflow's gate step (orchbench.core.verdict):
0 pass; 3 fail, a regression found (one line per failing transport on stderr); 4 inconclusive, no
failure but a CI that contains the threshold (one line per such transport on stderr, with how many
more blocks would likely decide it); 2 bad input (missing/empty dataset, unknown schema version, bad
flag), as ConfigError.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchbench.core.errors import ConfigError, OrchbenchError
from orchbench.core.report import write_text_atomic
from orchbench.core.trend_gate import (
    BASELINE_RUNS,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_REGRESSION,
    GATE_METRICS,
    K_SIGMA,
    MIN_EFFECT_MS,
    TABLE_ROWS,
    TRANSPORTS,
    Baseline,
    GateResult,
    RunPoint,
    arm_label,
    arms_of,
    baseline_of,
    find_overheads,
    gate,
    load_dataset,
    ms_text,
    series,
)

__all__ = [
    "BASELINE_RUNS",
    "EXIT_INCONCLUSIVE",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "GATE_METRICS",
    "K_SIGMA",
    "MIN_EFFECT_MS",
    "TRANSPORTS",
    "Baseline",
    "GateResult",
    "Inconclusive",
    "RegressionFound",
    "RunPoint",
    "baseline_of",
    "evaluate",
    "find_overheads",
    "gate",
    "load_dataset",
    "run_gate",
    "run_trend",
    "series",
    "trend_html",
    "trend_json",
]


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
                    "[bold red]REGRESSION[/bold red]"
                    if not results[transport].passed
                    else "[yellow]inconclusive[/yellow]"
                    if results[transport].verdict == "inconclusive"
                    else "[green]pass[/green]"
                )
            ci = (
                ""
                if p.ci_low_ms is None or p.ci_high_ms is None
                else f"[{ms_text(p.ci_low_ms)}, {ms_text(p.ci_high_ms)}]"
            )
            thr = "" if p.threshold_ms is None else f"{p.threshold_ms:g}"
            table.add_row(
                transport,
                f"{p.created_at:%Y-%m-%d %H:%M}",
                p.run_id,
                ms_text(p.estimate_ms),
                ci,
                thr,
                verdict,
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
                    "verdict": results[t].verdict,
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
    # one series per transport and compared arm: `rest` (the seed's "with"), `rest/<arm>` for others
    per_transport: dict[str, list[RunPoint]] = {}
    transport_of: dict[str, str] = {}
    for t in transports:
        for arm in arms_of(df, t):
            if pts := series(df, t, metric, arm):
                label = arm_label(t, arm)
                per_transport[label], transport_of[label] = pts, t
    if not per_transport:
        raise ConfigError(f"{dataset}: no {metric!r} overheads for {' or '.join(transports)}")
    thresholds = thresholds or {}
    # a threshold given per transport applies to every arm of it; without one, each run's own
    # (the arm's threshold_ms, else the spec's thresholds.<transport>_ms)
    results = {
        label: gate(
            pts,
            label,
            metric,
            thresholds.get(transport_of[label]),
            baseline_runs=baseline_runs,
            min_effect_ms=min_effect_ms,
        )
        for label, pts in per_transport.items()
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
    """The `orchbench trend` command; returns its exit code (EXIT_OK, EXIT_REGRESSION, EXIT_INCONCLUSIVE)."""
    import sys

    if transport not in (*TRANSPORTS, "all"):
        raise ConfigError(f"--transport {transport!r}: choose rest, grpc or all")
    wanted = TRANSPORTS if transport == "all" else (transport,)
    per_transport, results = evaluate(
        dataset, metric, wanted, dict.fromkeys(wanted, threshold_ms), experiment, baseline_runs, min_effect_ms
    )
    if html_out is not None:
        write_text_atomic(html_out, trend_html(per_transport, results, metric))
    if json_out:
        print(json.dumps(trend_json(per_transport, results, metric), indent=2))
    else:
        from rich.console import Console

        console = Console(width=140) if not sys.stdout.isatty() else Console()
        console.print(_table(per_transport, results, metric))
        for r in results.values():
            if r.passed and r.verdict != "inconclusive":
                console.print(f"gate {r.line()}", highlight=False, markup=False, soft_wrap=True)
    failed = [r for r in results.values() if not r.passed]
    for r in failed:
        print(f"orchbench: regression: {r.line()}", file=sys.stderr)
    undecided = [r for r in results.values() if r.passed and r.verdict == "inconclusive"]
    for r in undecided:
        print(f"orchbench: inconclusive: {r.line()}", file=sys.stderr)
    return EXIT_REGRESSION if failed else EXIT_INCONCLUSIVE if undecided else EXIT_OK


class RegressionFound(OrchbenchError):
    """The gate failed: the latest run regressed. Exit code 3 (distinct from 2 = bad input)."""

    exit_code = EXIT_REGRESSION

    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results = list(results)
        super().__init__("regression: " + " | ".join(r.line() for r in self.results))


class Inconclusive(OrchbenchError):
    """The gate could not decide: no regression, but a CI contains the threshold. Exit code 4."""

    exit_code = EXIT_INCONCLUSIVE

    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results = list(results)
        super().__init__("inconclusive: " + " | ".join(r.line() for r in self.results))


def run_gate(
    dataset: str | Path,
    rest_ms: float | None = None,
    grpc_ms: float | None = None,
    metric: str = "mean",
    experiment: str | None = None,
) -> dict[str, GateResult]:
    """The CronWorkflow's gate step: gate both transports (per-transport thresholds, else each run's own),
    print one line per transport, raise RegressionFound (exit 3) when any failed, else Inconclusive
    (exit 4) when any CI contains its threshold."""
    _, results = evaluate(Path(dataset), metric, TRANSPORTS, {"rest": rest_ms, "grpc": grpc_ms}, experiment)
    for r in results.values():
        print(f"gate {r.line()}", flush=True)
    failed = [r for r in results.values() if not r.passed]
    if failed:
        raise RegressionFound(failed)
    undecided = [r for r in results.values() if r.verdict == "inconclusive"]
    if undecided:
        raise Inconclusive(undecided)
    return results
