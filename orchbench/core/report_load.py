"""The report's load-stage section, shown only when the run measured stages (issue 16): the stages
(requested and achieved rate per arm, dropped iterations, generator CPU, validity), capacity per arm
against the spec's SLO, and the plots people read first:

- **overhead against load**: per transport and metric (p50, p99), one line per compared arm with its
  95 % CI band over the valid stages; an invalid stage is a hollow grey marker labelled "invalid",
  off the line and outside the band, never drawn as a result;
- **latency against achieved rate**: per transport, each arm's p50 (dashed) and p99 against the rate
  it achieved, its knee (capacity.knee) starred, the SLO's p99 as a line; invalid stages hollow grey;
- **the hop's CPU and memory**: CPU ms per 1000 requests and peak RSS per arm per stage, invalid
  stages hatched and labelled; "not measured" when the run recorded none;
- **overhead over time inside a stage**: each compared arm's median minus the baseline's in
  one-second windows from the stage's start (warm-up and drift), invalid stages dotted grey.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from orchbench.core.capacity import knee
from orchbench.core.capacity_sweep import capacity_table
from orchbench.core.report_data import RunData, arm_colour, arm_label
from orchbench.core.report_html import esc, fig_html, html_table, layout
from orchbench.core.report_load_data import (
    KIND_AXIS,
    arm_order,
    arm_reasons,
    has_stages,
    overhead_curves,
    run_baseline,
    spec_slo,
    stage_order,
    windowed_overhead,
)
from orchbench.core.report_search import search_section

INVALID_COLOUR = "#9a9a9a"
#: Line styles that tell the stages of one arm apart in the over-time plot (invalid ones: dotted grey).
STAGE_DASHES = ("solid", "dash", "longdash", "dashdot", "longdashdot")
LOAD_METRICS = ("p50", "p99")


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.{digits}f}"


def _band_rgba(colour: str, alpha: float = 0.18) -> str:
    h = colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _axis(order: pd.DataFrame, transport: str) -> str:
    kinds = set(order.loc[order["transport"] == transport, "stage_kind"])
    return KIND_AXIS.get(kinds.pop(), "stage") if len(kinds) == 1 else "stage"


def _overhead_figure(data: RunData, transport: str, metric: str, order: pd.DataFrame, arms: list[str]) -> str:
    import plotly.graph_objects as go

    curves = overhead_curves(data.overheads, transport, metric)
    if not len(curves):
        return ""
    fig = go.Figure()
    for arm in [a for a in arms if a in set(curves["arm"])]:
        mine = curves[curves["arm"] == arm]
        good, bad = mine[mine["valid"]], mine[~mine["valid"]]
        colour = arm_colour(arm, arms)
        if len(good):
            x = good["stage_value"].tolist()
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=good["ci_high_ms"].round(4).tolist() + good["ci_low_ms"].round(4).tolist()[::-1],
                    fill="toself",
                    fillcolor=_band_rgba(colour),
                    mode="lines",
                    line={"width": 0},
                    hoverinfo="skip",
                    name=f"{arm} {metric} 95 % CI",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=good["estimate_ms"].round(4),
                    mode="lines+markers",
                    name=f"{arm} {metric}",
                    line={"color": colour},
                    customdata=good[["ci_low_ms", "ci_high_ms"]].round(3).to_numpy(),
                    hovertemplate="%{x}: %{y:+.3f} ms [%{customdata[0]:+.3f}, %{customdata[1]:+.3f}]"
                    f"<extra>{esc(arm)}</extra>",
                )
            )
        if len(bad):
            reasons = dict(zip(order["stage"], order["reasons"], strict=True))
            fig.add_trace(
                go.Scatter(
                    x=bad["stage_value"],
                    y=bad["estimate_ms"].round(4),
                    mode="markers+text",
                    name=f"{arm} {metric} invalid stages",
                    marker={"symbol": "circle-open", "color": INVALID_COLOUR, "size": 10},
                    text=["invalid"] * len(bad),
                    textposition="top center",
                    textfont={"color": INVALID_COLOUR},
                    hovertext=[f"invalid: {reasons.get(s, '')}" for s in bad["stage"]],
                    hoverinfo="text",
                )
            )
    fig.add_hline(y=0, line={"color": "#bbb", "width": 1})
    layout(
        fig,
        f"{transport.upper()} {metric} overhead against load",
        _axis(order, transport),
        f"{metric} overhead ms (arm − {run_baseline(data.summary, data.overheads)})",
        "band: 95 % CI over blocks; hollow grey: invalid stage, not a result",
    )
    return fig_html(fig, f"load-overhead-{transport}-{metric}")


def _latency_figure(data: RunData, transport: str, arms: list[str], slo: dict[str, float] | None) -> str:
    import plotly.graph_objects as go

    assert data.stages is not None
    mine = data.stages[(data.stages["transport"] == transport) & (data.stages["stage"].astype(str) != "")]
    if not len(mine) or not mine["achieved_rps"].notna().any():
        return ""
    fig = go.Figure()
    for arm in [a for a in arms if a in set(mine["arm"])]:
        rows = mine[mine["arm"] == arm].sort_values("achieved_rps")
        good, bad = rows[rows["valid"].astype(bool)], rows[~rows["valid"].astype(bool)]
        colour = arm_colour(arm, arms)
        for metric, dash in (("p50", "dash"), ("p99", "solid")):
            fig.add_trace(
                go.Scatter(
                    x=good["achieved_rps"].round(3),
                    y=good[f"{metric}_ms"].round(4),
                    mode="lines+markers",
                    name=f"{arm_label(arm)} {metric}",
                    line={"color": colour, "dash": dash},
                    hovertemplate="%{x:.1f} req/s: %{y:.3f} ms" + f"<extra>{esc(arm)} {metric}</extra>",
                )
            )
        k = knee(good["achieved_rps"].to_numpy(dtype=float), good["p99_ms"].to_numpy(dtype=float))
        if k is not None:
            fig.add_trace(
                go.Scatter(
                    x=[k.rate_per_s],
                    y=[k.latency_ms],
                    mode="markers",
                    name=f"{arm_label(arm)} knee",
                    marker={
                        "symbol": "star",
                        "size": 14,
                        "color": colour,
                        "line": {"color": "#000", "width": 1},
                    },
                    hovertemplate="knee %{x:.1f} req/s, p99 %{y:.3f} ms" + f"<extra>{esc(arm)}</extra>",
                )
            )
        if len(bad):
            fig.add_trace(
                go.Scatter(
                    x=bad["achieved_rps"].round(3),
                    y=bad["p99_ms"].round(4),
                    mode="markers+text",
                    name=f"{arm_label(arm)} invalid stages",
                    marker={"symbol": "circle-open", "color": INVALID_COLOUR, "size": 10},
                    text=["invalid"] * len(bad),
                    textposition="top center",
                    textfont={"color": INVALID_COLOUR},
                    hovertext=[f"invalid: {r}" for r in bad["invalid_reasons"].fillna("")],
                    hoverinfo="text",
                )
            )
    if slo is not None:
        fig.add_hline(
            y=slo["p99_ms"],
            line={"color": "#a11", "dash": "dot"},
            annotation_text=f"SLO p99 {slo['p99_ms']:g} ms",
        )
    layout(
        fig,
        f"{transport.upper()} latency against achieved rate",
        "achieved rate (req/s per arm, its own measured window)",
        "latency ms",
        "solid p99, dashed p50, star: the knee of p99 (Kneedle); hollow grey: invalid stage",
    )
    return fig_html(fig, f"load-latency-{transport}")


def _memory_label(summary: dict[str, Any]) -> str:
    """Locally the arm's processes' resident set (psutil); on Kubernetes the metrics API's working set."""
    return "peak working set MB" if summary.get("platform") == "kubernetes" else "peak RSS MB"


def _resource_figure(data: RunData, transport: str, arms: list[str], column: str, what: str) -> str:
    import plotly.graph_objects as go

    assert data.stages is not None
    mine = data.stages[(data.stages["transport"] == transport) & (data.stages["stage"].astype(str) != "")]
    if column not in mine.columns or not mine[column].notna().any():
        return f"<p class='missing'>{esc(transport.upper())}: {esc(what)} not measured in this run.</p>"
    order = stage_order(mine)
    labels = dict(zip(order["stage"], order["label"], strict=True))
    fig = go.Figure()
    for arm in [a for a in arms if a in set(mine["arm"])]:
        rows = mine[mine["arm"] == arm].sort_values("stage_value")
        valid = rows["valid"].astype(bool)
        fig.add_trace(
            go.Bar(
                x=[labels.get(s, s) for s in rows["stage"]],
                y=rows[column].round(3),
                name=arm_label(arm),
                marker={
                    "color": arm_colour(arm, arms),
                    "pattern": {"shape": ["" if v else "/" for v in valid]},
                    "opacity": [1.0 if v else 0.45 for v in valid],
                },
                text=["" if v else "invalid" for v in valid],
                textposition="outside",
                hovertemplate="%{x}: %{y:.2f}" + f"<extra>{esc(arm)}</extra>",
            )
        )
    fig.update_layout(barmode="group")
    layout(
        fig,
        f"{transport.upper()} {what} per arm",
        "stage",
        what,
        "each arm's own processes (the baseline: the model server); hatched: invalid stage",
    )
    return fig_html(fig, f"load-{column.replace('_', '-')}-{transport}")


def _over_time_figure(data: RunData, transport: str, order: pd.DataFrame, arms: list[str]) -> str:
    import plotly.graph_objects as go

    base = run_baseline(data.summary, data.overheads, data.stages)
    windows = windowed_overhead(data.samples, transport, base)
    if not len(windows):
        return ""
    mine = order[order["transport"] == transport]
    fig = go.Figure()
    for i, stage in enumerate(mine.itertuples()):
        sel = windows[windows["stage"] == stage.stage]
        for arm in [a for a in arms if a in set(sel["arm"])]:
            w = sel[sel["arm"] == arm]
            fig.add_trace(
                go.Scatter(
                    x=w["second"],
                    y=w["overhead_ms"].round(4),
                    mode="lines+markers",
                    name=f"{arm} · {stage.label}" + ("" if stage.valid else " (invalid)"),
                    line={
                        "color": arm_colour(arm, arms) if stage.valid else INVALID_COLOUR,
                        "dash": STAGE_DASHES[i % len(STAGE_DASHES)] if stage.valid else "dot",
                    },
                    customdata=w["requests"],
                    hovertemplate="second %{x:g}: %{y:+.3f} ms (%{customdata} requests)"
                    f"<extra>{esc(arm)} {esc(stage.label)}</extra>",
                )
            )
    fig.add_hline(y=0, line={"color": "#bbb", "width": 1})
    layout(
        fig,
        f"{transport.upper()} overhead over time inside each stage",
        "seconds from the stage's first measured request",
        f"median overhead ms (arm − {base}, per 1 s window)",
        "one-second windows of successful requests; a slope or an early step is warm-up or drift",
    )
    return fig_html(fig, f"load-over-time-{transport}")


def _stages_table(data: RunData, arms: list[str]) -> str:
    if data.stages is None or not len(data.stages):
        return "<p class='missing'>No stages table (stages.parquet) in this run.</p>"
    order = stage_order(data.stages)
    labels = {(r.transport, r.stage): r.label for r in order.itertuples()}
    rows = []
    df = data.stages[data.stages["stage"].astype(str) != ""]
    rank = {a: i for i, a in enumerate(arms)}
    df = df.assign(_rank=df["arm"].map(rank), _t=df["transport"].map({"rest": 0, "grpc": 1}).fillna(2))
    df = df.sort_values(["_t", "transport", "stage_value", "_rank"])
    for r in df.itertuples():
        util = r.generator_cpu_util
        rows.append(
            [
                esc(str(r.transport).upper()),
                esc(labels.get((r.transport, r.stage), r.stage)),
                esc(r.arm),
                _num(r.requested_rps, 1),
                _num(r.achieved_rps, 2),
                esc(r.requests),
                esc(r.errors),
                esc(r.dropped_iterations),
                "—" if util is None or not math.isfinite(util) else f"{100 * util:.0f} %",
                _num(r.p50_ms, 3),
                _num(r.p99_ms, 3),
                "valid"
                if bool(r.valid)
                else f"<b class='bad'>invalid</b>: {esc(arm_reasons(r.invalid_reasons, str(r.arm), arms))}",
            ]
        )
    header = ["transport", "stage", "arm", "requested req/s", "achieved req/s", "requests", "errors"]
    header += ["dropped", "generator CPU", "p50 ms", "p99 ms", "validity"]
    n_invalid = int((~order["valid"]).sum())
    return (
        "<p>Achieved rate: the arm's requests over its own measured window. A stage is invalid when an "
        "arm's achieved rate is more than 2 % below the request, k6 dropped iterations, or the load "
        "generator was saturated: it is kept, shown greyed, and its overhead is not a result.</p>"
        f"<details{' open' if n_invalid else ''}><summary>{len(order)} stages"
        f"{f', {n_invalid} invalid' if n_invalid else ', all valid'}: requested and achieved rate per "
        f"arm</summary>{html_table(header, rows, 'num')}</details>"
    )


def _capacity_section(data: RunData, arms: list[str]) -> str:
    slo = spec_slo(data.summary)
    if slo is None:
        return "<p class='missing'>The spec has no SLO (slo.p99_ms): capacity per arm is not computed.</p>"
    assert data.stages is not None
    base = run_baseline(data.summary, data.overheads, data.stages)
    table = capacity_table(data.stages, slo, baseline=base)
    if not len(table):
        return "<p class='missing'>No open-loop (rate) stages: capacity is a rate, not computed.</p>"
    rank = {a: i for i, a in enumerate(arms)}
    table = table.assign(_rank=table["arm"].map(rank)).sort_values(["_rank"], kind="stable")
    table = table.sort_values("transport", key=lambda t: t.map({"rest": 0, "grpc": 1}), kind="stable")
    rows = []
    for r in table.itertuples():
        bracket = f"[{_num(r.capacity_rps, 0)}, {_num(r.first_bad_rps, 0)})"
        cost = "—" if not math.isfinite(r.cost_rps) else f"{r.cost_rps:g}"
        cost_range = (
            "—"
            if not math.isfinite(r.cost_rps)
            else f"[{_num(r.cost_low_rps, 0)}, {_num(r.cost_high_rps, 0)}]"
        )
        rows.append(
            [
                esc(str(r.transport).upper()),
                esc(r.arm) + (" (baseline)" if r.arm == base else ""),
                f"<b>{_num(r.capacity_rps, 0)}</b>",
                esc(bracket),
                cost,
                esc(cost_range),
                _num(r.knee_rps, 1),
                _num(r.knee_p99_ms, 3),
                esc(r.capacity_reason)
                + (
                    f"; good above the first bad (noise): {esc(r.non_monotonic_rps)}"
                    if r.non_monotonic_rps
                    else ""
                ),
            ]
        )
    header = ["transport", "arm", "capacity req/s", "bracket", "cost of the hop req/s", "cost range"]
    header += ["knee req/s", "knee p99 ms", "how"]
    return (
        f"<p>Capacity: the highest rate whose p99 is within {slo['p99_ms']:g} ms and whose error "
        f"rate is at most {slo['max_error_rate']:g}, in [last good, first bad); the cost of the hop is "
        f"the baseline's ({esc(base)}) capacity minus the arm's, its range from the two brackets. "
        "An invalid stage where the arm's own requests were dropped or its rate fell short counts as "
        "a rate it could not take; one whose load generator was saturated is left out.</p>"
        + html_table(header, rows, "num")
    )


def load_section(data: RunData, transports: list[str]) -> str:
    """The whole load-stage section, or "" when the run has no stages (the report as before)."""
    if not has_stages(data.stages, data.overheads, data.samples):
        return ""
    order = stage_order(data.stages, data.overheads)
    base = run_baseline(data.summary, data.overheads, data.stages)
    arms = arm_order(data.summary, data.stages, data.overheads, data.samples, baseline=base)
    slo = spec_slo(data.summary)
    parts = ['<h2 id="load">Overhead under load</h2>', _stages_table(data, arms)]
    if data.stages is not None and len(data.stages):
        parts += ['<h3 id="capacity">Capacity per arm</h3>', _capacity_section(data, arms)]
        searched = search_section(data.summary)
        if searched:
            parts += ['<h3 id="capacity-search">Capacity search</h3>', searched]
    for transport in transports:
        figs = [_overhead_figure(data, transport, m, order, arms) for m in LOAD_METRICS]
        parts.append(f"<h3>{esc(transport.upper())}</h3>")
        parts.append('<div class="pair">' + "".join(figs) + "</div>" if any(figs) else "")
        if data.stages is not None and len(data.stages):
            parts.append(_latency_figure(data, transport, arms, slo))
            parts.append(
                '<div class="pair">'
                + _resource_figure(data, transport, arms, "cpu_ms_per_1000", "CPU ms per 1000 requests")
                + _resource_figure(data, transport, arms, "peak_rss_mb", _memory_label(data.summary))
                + "</div>"
            )
        parts.append(_over_time_figure(data, transport, order, arms))
    return "".join(parts)
