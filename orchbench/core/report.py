"""`orchbench report`: one self-contained HTML file per run directory.

The report reads what `orchbench run` wrote (summary.json, samples.parquet, results.parquet, floor.json,
spec.yaml) and shows: the overhead per transport with 95 % CIs next to the seed's published numbers,
latency CDFs and histograms per arm, the median per block per arm (interleaving and drift), the
measurement floor and stability verdicts, and provenance. plotly.js is inlined once, so the file
opens offline. Missing pieces (no samples, no floor) are said in their section; nothing crashes.

Table and data builders are small pure functions; `build_report` is the only one that does I/O.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchbench.core import stats
from orchbench.core.errors import ConfigError
from orchbench.core.report_data import (
    ARM_COLOURS,
    ARM_LABELS,
    ARMS,
    CDF_EXACT_QUANTILES,
    MAX_POINTS_PER_ARM,
    TABLE_METRICS,
    TRANSPORTS,
    OverheadRow,
    RunData,
    TransportResult,
    arm_colour,
    arm_label,
    block_medians,
    cdf_points,
    compared_arms,
    dig,
    histogram,
    load_run,
    load_summary,
    number,
    ok_latencies_ms,
    run_arms,
    seed_numbers,
    transport_result,
    transports_in,
)
from orchbench.fsio import write_text

__all__ = [
    "ARMS",
    "ARM_COLOURS",
    "ARM_LABELS",
    "CDF_EXACT_QUANTILES",
    "MAX_POINTS_PER_ARM",
    "TABLE_METRICS",
    "TRANSPORTS",
    "OverheadRow",
    "RunData",
    "TransportResult",
    "block_medians",
    "build_report",
    "cdf_points",
    "fmt_ci",
    "fmt_ms",
    "fmt_p",
    "histogram",
    "load_run",
    "load_summary",
    "ok_latencies_ms",
    "render_html",
    "seed_numbers",
    "transport_result",
    "transports_in",
    "write_text_atomic",
]


# ---------------------------------------------------------------------------------------------------
# formatting


def fmt_ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def fmt_ci(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def fmt_p(p: float | None) -> str:
    """A p-value; one that underflowed to 0 is shown as below the smallest double, not as 0."""
    if p is None:
        return "—"
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _verdict_badge(verdict: str | None) -> str:
    if verdict is None:
        return '<span class="badge none">no verdict</span>'
    cls = {"pass": "pass", "fail": "fail"}.get(verdict.lower(), "none")
    return f'<span class="badge {cls}">{_e(verdict.upper())}</span>'


# ---------------------------------------------------------------------------------------------------
# sections


def _test_text(res: TransportResult) -> str:
    """The paired test over blocks (a summary of an older orchbench: its pooled rank test, so named)."""
    if res.paired_test_p is not None:
        return (
            f"sign-flip test over {_e(res.paired_test_blocks)} blocks (mean): p = {fmt_p(res.paired_test_p)}"
        )
    if res.mann_whitney_u_p is not None:
        return f"Mann-Whitney U p = {fmt_p(res.mann_whitney_u_p)} (pooled requests)"
    return "no paired test (one block)"


def _overhead_section(res: TransportResult) -> str:
    rows = [
        [
            _e(r.metric),
            fmt_ms(r.with_ms),
            fmt_ms(r.without_ms),
            f"<b>{fmt_ms(r.overhead_ms, signed=True)}</b>",
            fmt_ci(r.ci95),
            fmt_ms(r.seed_ms, signed=True),
        ]
        + ([fmt_ci(res.aa_band.get(r.metric))] if res.aa_band is not None else [])
        for r in res.rows
    ]
    table = _table(
        [
            "metric",
            f"{res.arm} ms",
            f"{res.baseline} ms",
            "overhead ms",
            "95 % CI ms",
            "seed overhead ms (published)",
        ]
        + ([f"A/A band ms ({res.aa_arm}: 95 % CI)"] if res.aa_band is not None else []),
        rows,
        "num",
    )
    threshold = "none set" if res.threshold_ms is None else f"{res.threshold_ms:g} ms (mean overhead)"
    facts = (
        f"<p>n = {_e(res.n_with if res.n_with is not None else '—')} requests {_e(res.arm)}, "
        f"{_e(res.n_without if res.n_without is not None else '—')} {_e(res.baseline)} · "
        f"{_test_text(res)} · threshold {_e(threshold)} · "
        f"verdict {_verdict_badge(res.verdict)}</p>"
    )
    if res.verdict_reason:
        facts += f'<p class="sub">verdict: {_e(res.verdict_reason)}</p>'
    if res.method:
        facts += f'<p class="sub">CI method: {_e(res.method)}</p>'
    if res.within_aa_noise is not None:
        facts += (
            f"<p>A/A noise (arm {_e(res.aa_arm)}, a second copy of the baseline): "
            + (
                "<b>within the A/A noise</b>: the mean or p50 CI overlaps the A/A arm's"
                if res.within_aa_noise
                else "stands clear: the mean and p50 CIs lie outside the A/A arm's"
            )
            + "</p>"
        )
    if (res.arm, res.baseline) == ("with", "without"):
        return f'<h3 id="overhead-{res.transport}">{res.transport.upper()}</h3>{table}{facts}'
    head = f"{res.transport.upper()} · {_e(res.arm)} − {_e(res.baseline)}"
    return f'<h3 id="overhead-{res.transport}-{_e(res.arm)}">{head}</h3>{table}{facts}'


def _fig_html(fig: Any, div_id: str) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=div_id,
            default_height="380px",
            config={"displaylogo": False, "responsive": True, "displayModeBar": "hover"},
        )
    )


def _layout(fig: Any, title: str, xtitle: str, ytitle: str, subtitle: str = "") -> None:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}, "subtitle": {"text": subtitle, "font": {"size": 11}}},
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )


def _distribution_section(data: RunData, transport: str) -> str:
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


def _blocks_section(data: RunData, transports: Sequence[str]) -> str:
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


def _floor_section(data: RunData, transports: Sequence[str]) -> str:
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


def _provenance_section(data: RunData) -> str:
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


def _headline(res: TransportResult) -> str:
    mean = res.rows[0]
    seed = f"; the seed published {fmt_ms(mean.seed_ms, signed=True)} ms" if mean.seed_ms is not None else ""
    return (
        f"<li><b>{res.transport.upper()}</b>"
        + ("" if res.arm == "with" else f" {_e(res.arm)} − {_e(res.baseline)}")
        + ": mean overhead"
        f" <b>{fmt_ms(mean.overhead_ms, signed=True)} ms</b> "
        f"(95 % CI {fmt_ci(mean.ci95)}) {_verdict_badge(res.verdict)}{seed}</li>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 24px 48px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:24px 0 4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 10px}
th{background:#f4f4f4;text-align:left}table.num td{text-align:right;font-variant-numeric:tabular-nums}
table.num td:first-child{text-align:left}table.kv td:first-child{font-weight:600}
.badge{padding:1px 8px;border-radius:10px;font-weight:700;font-size:.85em}
.badge.pass{background:#d4f4dd;color:#11632b}.badge.fail{background:#fde0e0;color:#a11}
.badge.none{background:#eee;color:#555}.bad{color:#a11}.missing{color:#8a5a00;font-style:italic}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}.sub{color:#666}
pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:.85em}.note{background:#f5f8ff;padding:8px 12px;
border-left:4px solid #8aa4e0}
"""


def render_html(data: RunData) -> str:
    """The whole report as one HTML string, plotly.js inlined once in <head>."""
    from plotly.offline import get_plotlyjs

    s = data.summary
    transports = transports_in(s, data.samples)
    results = [
        transport_result(s, t, arm)
        for t in transports
        if isinstance(s.get(t), Mapping)
        for arm in compared_arms(s, t)
    ]
    if results:
        overhead = "".join(_overhead_section(r) for r in results)
    else:
        overhead = "<p class='missing'>summary.json has no transport results.</p>"
    seed_note = (
        "<p class='note'>The <b>seed</b> column is the original benchmark's published overhead "
        "(Seldon Core executor in front of TF-Serving flowers, 3-node cluster, one run per arm, "
        "no error bars), "
        "for context only: it was measured on other hardware and software, so a difference is not a "
        "regression or an improvement of this run.</p>"
    )
    dists = "".join(f"<h3>{t.upper()}</h3>{_distribution_section(data, t)}" for t in transports) or (
        "<p class='missing'>No transports.</p>"
    )
    title = f"orchbench report: {s.get('experiment', '?')} · {s.get('run_id', '?')}"
    body = f"""
<h1>{_e(title)}</h1>
<p class="sub">created {_e(s.get("created_at", "—"))} · platform {_e(s.get("platform", "—"))} ·
overhead = latency with the orchestrator − latency without it, same model, interleaved blocks</p>
<ul>{"".join(_headline(r) for r in results)}</ul>
<h2 id="overhead">Overhead per transport (95 % CIs)</h2>{overhead}{seed_note}
<h2 id="distributions">Latency distributions per arm</h2>{dists}
<h2 id="blocks">Per block</h2>{_blocks_section(data, transports)}
<h2 id="floor">Measurement floor and stability</h2>{_floor_section(data, transports)}
<h2 id="provenance">Provenance</h2>{_provenance_section(data)}
"""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{body}</body></html>\n"
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (orchbench.fsio); unwritable places are a ConfigError."""
    try:
        write_text(path, text)
    except OSError as exc:
        raise ConfigError(f"{path.parent}: cannot write there ({exc.strerror})") from None


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of `run_dir` to `out` (default RUN_DIR/report.html) and return its path."""
    data = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_text_atomic(path, render_html(data))
    return path
