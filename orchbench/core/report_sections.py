"""The report's sections about distributions and the machine: latency CDFs and histograms per arm,
the median per block per arm (interleaving and drift), the measurement floor and stability verdicts,
and provenance. Each takes the loaded run (report_data.RunData) and returns HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from orchbench.core import stats
from orchbench.core.loadtools import cpu_wake
from orchbench.core.report_data import (
    RunData,
    arm_colour,
    arm_label,
    block_medians,
    cdf_points,
    dig,
    histogram,
    number,
    ok_latencies_ms,
    run_arms,
)
from orchbench.core.report_html import esc as _e
from orchbench.core.report_html import fig_html as _fig_html
from orchbench.core.report_html import fmt_ms
from orchbench.core.report_html import html_table as _table
from orchbench.core.report_html import layout as _layout


def distribution_section(data: RunData, transport: str) -> str:
    import plotly.graph_objects as go

    if data.samples is None or not len(data.samples):
        return f"<p class='missing'>{_e(data.notes.get('samples', 'No per-request samples.'))} "
    order = run_arms(data.summary, data.samples)
    arms = {arm: ok_latencies_ms(data.samples, transport, arm) for arm in order}
    if not any(len(v) for v in arms.values()):
        return f"<p class='missing'>No successful {transport.upper()} requests in samples.parquet.</p>"
    cdf = go.Figure()
    for arm, values in arms.items():
        if not len(values):
            continue
        x, y = cdf_points(values)
        shown = "" if len(x) == len(values) else f" ({len(x):,} of {len(values):,} points)"
        cdf.add_trace(
            go.Scatter(
                x=x.round(4),
                y=y.round(6),
                mode="lines",
                name=f"{arm_label(arm)}{shown}",
                line={"color": arm_colour(arm, order)},
                hovertemplate="%{x:.3f} ms: %{y:.4f}<extra>" + arm + "</extra>",
            )
        )
    allv = np.concatenate([v for v in arms.values() if len(v)])
    cdf.update_xaxes(range=[float(allv.min()) * 0.98, float(stats.percentile(allv, 0.995)) * 1.02])
    _layout(
        cdf,
        f"{transport.upper()} latency CDF",
        "latency ms",
        "fraction of requests ≤ x",
        "successful requests; x axis cut at p99.5 (double-click to see the tail)",
    )
    edges, fractions, tails = histogram(arms)
    hist = go.Figure()
    centres = (edges[:-1] + edges[1:]) / 2
    for arm, frac in fractions.items():
        if len(arms[arm]):
            hist.add_trace(
                go.Bar(
                    x=centres.round(4),
                    y=frac.round(6),
                    name=arm_label(arm),
                    opacity=0.6,
                    marker={"color": arm_colour(arm, order)},
                    width=float(edges[1] - edges[0]),
                )
            )
    tail = ", ".join(f"{arm} {n:,}" for arm, n in tails.items() if n)
    hist.update_layout(barmode="overlay")
    _layout(
        hist,
        f"{transport.upper()} latency histogram",
        "latency ms",
        "fraction of requests",
        f"beyond {edges[-1]:.2f} ms, not drawn: {tail}" if tail else "all successful requests",
    )
    return (
        '<div class="pair">'
        + _fig_html(cdf, f"cdf-{transport}")
        + _fig_html(hist, f"hist-{transport}")
        + "</div>"
    )


def blocks_section(data: RunData, transports: Sequence[str]) -> str:
    import plotly.graph_objects as go

    medians, source = block_medians(data.samples, data.runs)
    if not len(medians):
        return "<p class='missing'>No per-block data (neither samples.parquet nor results.parquet).</p>"
    how = (
        "Within each block one load-test process alternates the arms request by request, the first "
        "arm drawn at random"
        if data.summary.get("interleave") == "request"
        else "Arms run one after the other in random order within each block"
    )
    parts = [
        f"<p>Per block: {_e(source)}. {how}; a trend across blocks in both arms is drift of the "
        "machine, not the orchestrator.</p>"
    ]
    for transport in transports:
        sel = medians[medians["transport"] == transport]
        if not len(sel):
            parts.append(f"<p class='missing'>No {transport.upper()} blocks.</p>")
            continue
        firsts = (
            sel.sort_values("started").groupby("block")["arm"].first() if sel["started"].notna().any() else {}
        )
        fig = go.Figure()
        arms = run_arms(data.summary, data.samples)
        for arm in arms:
            a = sel[sel["arm"] == arm].sort_values("block")
            if not len(a):
                continue
            order = (
                [
                    "ran first" if firsts.get(b) == arm else "ran second" if len(arms) == 2 else "ran later"
                    for b in a["block"]
                ]
                if len(firsts)
                else None
            )
            fig.add_trace(
                go.Scatter(
                    x=a["block"].astype(int),
                    y=a["median_ms"].round(4),
                    mode="lines+markers",
                    name=arm_label(arm),
                    line={"color": arm_colour(arm, arms)},
                    text=order,
                    hovertemplate="block %{x}: %{y:.3f} ms %{text}<extra>" + arm + "</extra>",
                )
            )
        fig.update_xaxes(dtick=1)
        _layout(
            fig,
            f"{transport.upper()} median latency per block",
            "block",
            "median latency ms",
            "hover a point: which arm ran first in that block",
        )
        parts.append(_fig_html(fig, f"blocks-{transport}"))
    return "".join(parts)


def limits_section(data: RunData, transports: Sequence[str]) -> str:
    """What limits the interval (summary.json `noise`, orchbench.core.noise): one row per transport
    and compared arm; nothing for a summary of before, which has no `noise`."""

    def ms(*keys: str) -> str:
        return fmt_ms(number(dig(n, *keys)))

    rows = []
    for transport in transports:
        res = data.summary.get(transport)
        by_arm = dig(res, "by_arm") or ({str(res.get("arm", "with")): res} if isinstance(res, dict) else {})
        for arm, arm_res in by_arm.items() if isinstance(by_arm, dict) else ():
            n = dig(arm_res, "noise")
            if not isinstance(n, dict):
                continue
            base = str(arm_res.get("baseline", "without"))
            lag = [number(dig(n, "arms", x, "lag1")) for x in (arm, base)]
            removed = number(dig(n, "drift_removed", "mean"))
            rows.append(
                [
                    f"{transport.upper()} {arm} − {base}",
                    f"{ms('arms', arm, 'request_sd_ms')} / {ms('arms', base, 'request_sd_ms')}",
                    " / ".join("—" if v is None else f"{v:.2f}" for v in lag),
                    f"{ms('arms', arm, 'block_sd_ms', 'mean')} / {ms('arms', base, 'block_sd_ms', 'mean')}",
                    "—" if removed is None else f"{100 * removed:.1f} %",
                    f"{ms('diff_sd_ms', 'mean')} / {ms('diff_sd_ms', 'p50')}",
                    ms("independent_diff_sd_ms"),
                ]
            )
    if not rows:
        return ""
    header = [
        "arm",
        "one request's SD, arm / baseline (ms)",
        "lag-1",
        "block means' SD between blocks",
        "drift cancelled by pairing",
        "SD of the per-block difference, mean / p50",
        "the same for independent requests",
    ]
    return (
        "<h3>What limits the interval</h3><p>Each request varies around its block's level (its SD, and "
        "lag-1: how much the next request of the arm shares it); block levels drift; pairing the arms "
        "in one block cancels most of the drift, and the interval is made of what is left, the SD of "
        "the per-block difference (half-width ≈ t · SD / √blocks or replicates). A difference SD below "
        "the last column means the arms' neighbouring requests share their jitter.</p>" + _table(header, rows)
    )


def floor_section(data: RunData, transports: Sequence[str]) -> str:
    parts = []
    if data.floor is None:
        parts.append(f"<p class='missing'>{_e(data.notes.get('floor', 'No measurement floor.'))}</p>")
    else:
        rows = []
        for client, per_transport in data.floor.items():
            if not isinstance(per_transport, Mapping):
                continue
            for transport, vals in per_transport.items():
                if isinstance(vals, Mapping):
                    rows.append(
                        [_e(client), _e(transport)]
                        + [fmt_ms(number(vals.get(k))) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")]
                    )
        parts.append(
            "<p>Latency the client reports against a no-op server on this machine: differences smaller "
            "than this are below what the set-up can resolve.</p>"
            + _table(["client", "transport", "p50 ms", "p90 ms", "p99 ms", "mean ms"], rows, "num")
        )
    wake = cpu_wake.line(data.summary.get("cpu_wake"))
    if wake:
        parts.append(f"<p>{_e(wake)}.</p>")
    model = data.summary.get("model_latency_ms")
    if isinstance(model, Mapping) and model:
        vals = ", ".join(f"{_e(k)} {fmt_ms(number(v))} ms" for k, v in model.items())
        parts.append(f"<p>Model latency (server side): {vals}.</p>")
    rows = []
    for transport in transports:
        for arm in run_arms(data.summary, data.samples):
            a = dig(data.summary, transport, "arms", arm)
            if not isinstance(a, Mapping):
                a = next(
                    (
                        r["arms"][arm]
                        for r in (dig(data.summary, transport, "by_arm") or {}).values()
                        if isinstance(dig(r, "arms", arm), Mapping)
                    ),
                    None,
                )
            if not isinstance(a, Mapping):
                continue
            stable = a.get("stable")
            stable_txt = "—" if stable is None else ("stable" if stable else "<b class='bad'>NOT stable</b>")
            rows.append(
                [
                    _e(transport.upper()),
                    _e(arm),
                    _e(a.get("requests", "—")),
                    _e(a.get("errors", "—")),
                    stable_txt,
                    _e(a.get("verified", "—")),
                ]
            )
    if rows:
        parts.append(
            "<p>Stable: the last three windows' medians agree within 10 % (perf_analyzer's rule). "
            "Verified: the evidence that each arm is what it claims.</p>"
            + _table(["transport", "arm", "requests", "errors", "stability", "arm verified by"], rows)
        )
    else:
        parts.append("<p class='missing'>No stability verdicts in summary.json.</p>")
    return "".join(parts)


def provenance_section(data: RunData) -> str:
    s = data.summary
    facts: list[tuple[str, Any]] = [(k, s.get(k)) for k in ("experiment", "run_id", "created_at", "platform")]
    prov = s.get("provenance")
    if isinstance(prov, Mapping):
        facts += list(prov.items())
    if data.runs is not None and len(data.runs):
        for col in ("cluster", "tool", "tool_version"):
            if col in data.runs:
                vals = sorted({str(v) for v in data.runs[col].dropna()})
                if vals:
                    facts.append((col, ", ".join(vals)))
    facts.append(("run directory", str(data.run_dir)))
    rows = [[_e(k), f"<code>{_e(v)}</code>"] for k, v in facts if v is not None]
    spec = (
        f"<details open><summary>spec as run (YAML)</summary><pre>{_e(data.spec_yaml)}</pre></details>"
        if data.spec_yaml
        else "<p class='missing'>No spec recorded (spec.yaml is missing).</p>"
    )
    return _table(["what", "value"], rows, "kv") + spec
