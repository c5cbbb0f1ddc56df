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
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core.analysis import SEED_OVERHEAD_MS
from orchbench.core.errors import ConfigError, SchemaVersionError
from results_schema.io import read_table
from results_schema.schema import KNOWN_VERSIONS

TRANSPORTS = ("rest", "grpc")
ARMS = ("with", "without")
TABLE_METRICS = ("mean", "p50", "p90", "p99")
#: Quantiles the downsampled CDF keeps exactly (the order statistic numpy's "inverted_cdf" returns).
CDF_EXACT_QUANTILES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
MAX_POINTS_PER_ARM = 20_000
ARM_COLOURS = {"with": "#d62728", "without": "#1f77b4"}
ARM_LABELS = {"with": "with orchestrator", "without": "without orchestrator"}


# ---------------------------------------------------------------------------------------------------
# loading


@dataclass
class RunData:
    """Everything a report is drawn from; pieces that are absent are None and explained in `notes`."""

    run_dir: Path
    summary: dict[str, Any]
    samples: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None
    floor: dict[str, Any] | None = None
    spec_yaml: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def load_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of a run directory; anything that is not a run directory is a ConfigError."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not an orchbench run directory (no summary.json)")
    summary = _read_json(path)
    if not isinstance(summary, dict):
        raise ConfigError(f"{path}: not an orchbench summary (expected a JSON object)")
    version = summary.get("schema_version")
    if version not in KNOWN_VERSIONS:
        raise SchemaVersionError(
            f"{path}: schema version {version!r} is unknown to this orchbench"
            f" (knows {sorted(KNOWN_VERSIONS)})"
        )
    return summary


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir=run_dir, summary=load_summary(run_dir))
    samples_path = run_dir / "samples.parquet"
    if samples_path.is_file():
        data.samples = read_table(samples_path, "samples").to_pandas()
    else:
        data.notes["samples"] = "This run has no per-request samples (samples.parquet is missing)."
    runs_path = run_dir / "results.parquet"
    if runs_path.is_file():
        data.runs = read_table(runs_path, "runs").to_pandas()
    floor_path = run_dir / "floor.json"
    floor = _read_json(floor_path) if floor_path.is_file() else data.summary.get("floor")
    if isinstance(floor, dict) and floor:
        data.floor = floor
    else:
        data.notes["floor"] = "No measurement floor was recorded for this run (floor.json is missing)."
    spec_path = run_dir / "spec.yaml"
    if spec_path.is_file():
        data.spec_yaml = spec_path.read_text()
    elif isinstance(data.summary.get("spec"), dict):
        import yaml

        data.spec_yaml = yaml.safe_dump(data.summary["spec"], sort_keys=False)
    return data


# ---------------------------------------------------------------------------------------------------
# pure builders


@dataclass(frozen=True)
class OverheadRow:
    metric: str
    with_ms: float | None
    without_ms: float | None
    overhead_ms: float | None
    ci95: tuple[float, float] | None
    seed_ms: float | None


@dataclass(frozen=True)
class TransportResult:
    transport: str
    rows: list[OverheadRow]
    n_with: int | None
    n_without: int | None
    mann_whitney_u_p: float | None
    threshold_ms: float | None
    verdict: str | None
    method: str | None = None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def seed_numbers(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The seed's published overheads: SEED_OVERHEAD_MS, overridden by what summary.json carries."""
    out = {t: dict(v) for t, v in SEED_OVERHEAD_MS.items()}
    for transport, metrics in (summary.get("seed") or {}).items():
        if isinstance(metrics, Mapping):
            for metric, value in metrics.items():
                if _num(value) is not None:
                    out.setdefault(transport, {})[metric] = float(value)
    return out


def transports_in(summary: Mapping[str, Any], samples: pd.DataFrame | None = None) -> list[str]:
    """Transports this run has results for, REST first."""
    present = {t for t in TRANSPORTS if isinstance(summary.get(t), Mapping)}
    if samples is not None and "transport" in samples:
        present |= set(samples["transport"].unique()) & set(TRANSPORTS)
    return [t for t in TRANSPORTS if t in present]


def transport_result(summary: Mapping[str, Any], transport: str) -> TransportResult:
    """The overhead table of one transport from summary.json (absent values are None)."""
    block = summary.get(transport) or {}
    seed = seed_numbers(summary).get(transport, {})
    rows = []
    for metric in TABLE_METRICS:
        ci = _get(block, "overhead_ms", metric, "ci95")
        ci_pair = None
        if isinstance(ci, Sequence) and len(ci) == 2 and all(_num(v) is not None for v in ci):
            ci_pair = (float(ci[0]), float(ci[1]))
        rows.append(
            OverheadRow(
                metric=metric,
                with_ms=_num(_get(block, "arms", "with", "latency_ms", metric)),
                without_ms=_num(_get(block, "arms", "without", "latency_ms", metric)),
                overhead_ms=_num(_get(block, "overhead_ms", metric, "estimate")),
                ci95=ci_pair,
                seed_ms=seed.get(metric),
            )
        )
    n_with, n_without = _get(block, "n", "with"), _get(block, "n", "without")
    verdict = block.get("verdict")
    return TransportResult(
        transport=transport,
        rows=rows,
        n_with=int(n_with) if _num(n_with) is not None else None,
        n_without=int(n_without) if _num(n_without) is not None else None,
        mann_whitney_u_p=_num(block.get("mann_whitney_u_p")),
        threshold_ms=_num(block.get("threshold_ms")),
        method=str(block["method"]) if block.get("method") else None,
        verdict=str(verdict) if verdict is not None else None,
    )


def cdf_points(values: np.ndarray, max_points: int = MAX_POINTS_PER_ARM) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF (x sorted, y = rank / n). Above `max_points`, keep evenly spaced ranks plus, exactly,
    the order statistics at CDF_EXACT_QUANTILES and the min and max, so percentiles read off the
    plot are the data's own (numpy's "inverted_cdf" quantiles)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    y = np.arange(1, n + 1, dtype=np.float64) / n
    if n <= max_points:
        return x, y
    exact = [max(math.ceil(q * n) - 1, 0) for q in CDF_EXACT_QUANTILES]
    idx = np.unique(np.concatenate([np.linspace(0, n - 1, max_points).round().astype(np.int64), exact]))
    return x[idx], y[idx]


def ok_latencies_ms(samples: pd.DataFrame, transport: str, arm: str) -> np.ndarray:
    sel = samples[(samples["transport"] == transport) & (samples["arm"] == arm) & samples["ok"].astype(bool)]
    return sel["latency_ns"].to_numpy(dtype=np.float64) / 1e6


def histogram(
    arms: Mapping[str, np.ndarray], bins: int = 60, upper_quantile: float = 0.995
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """Shared bin edges over [min, upper_quantile of all arms]; fraction of each arm's requests per bin
    and how many requests of each arm lie beyond the last edge (the tail, not drawn)."""
    values = [v for v in arms.values() if len(v)]
    if not values:
        return np.array([]), {}, {}
    allv = np.concatenate(values)
    lo, hi = float(allv.min()), float(np.quantile(allv, upper_quantile))
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    fractions, tails = {}, {}
    for arm, v in arms.items():
        counts, _ = np.histogram(v, bins=edges)
        fractions[arm] = counts / len(v) if len(v) else counts.astype(np.float64)
        tails[arm] = int((v > hi).sum())
    return edges, fractions, tails


def block_medians(samples: pd.DataFrame | None, runs: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Median latency (ms) per (transport, arm, block) and where it came from.

    From samples (ok requests only) when there are any, else from the runs table's per-block p50.
    Columns: transport, arm, block, median_ms, started (first timestamp, for the order within a block).
    """
    cols = ["transport", "arm", "block", "median_ms", "started"]
    if samples is not None and len(samples):
        ok = samples[samples["ok"].astype(bool)]
        grouped = ok.groupby(["transport", "arm", "block"], sort=True)
        out = grouped.agg(median_ns=("latency_ns", "median"), started=("timestamp", "min")).reset_index()
        out["median_ms"] = out["median_ns"] / 1e6
        return out[cols], "median of the successful requests of each block (samples.parquet)"
    if runs is not None and len(runs) and runs["latency_p50_ns"].notna().any():
        r = runs[runs["latency_p50_ns"].notna()]
        out = r[["transport", "arm", "block", "latency_p50_ns", "started_at"]].copy()
        out["median_ms"] = out["latency_p50_ns"] / 1e6
        out = out.rename(columns={"started_at": "started"}).sort_values(["transport", "arm", "block"])
        return out[cols].reset_index(drop=True), "p50 the load tool reported for each block (results.parquet)"
    return pd.DataFrame(columns=cols), ""


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
        for r in res.rows
    ]
    table = _table(
        ["metric", "with ms", "without ms", "overhead ms", "95 % CI ms", "seed overhead ms (published)"],
        rows,
        "num",
    )
    threshold = "none set" if res.threshold_ms is None else f"{res.threshold_ms:g} ms (mean overhead)"
    facts = (
        f"<p>n = {_e(res.n_with if res.n_with is not None else '—')} requests with, "
        f"{_e(res.n_without if res.n_without is not None else '—')} without · "
        f"Mann-Whitney U p = {fmt_p(res.mann_whitney_u_p)} · threshold {_e(threshold)} · "
        f"verdict {_verdict_badge(res.verdict)}</p>"
    )
    if res.method:
        facts += f'<p class="sub">CI method: {_e(res.method)}</p>'
    return f'<h3 id="overhead-{res.transport}">{res.transport.upper()}</h3>{table}{facts}'


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
    arms = {arm: ok_latencies_ms(data.samples, transport, arm) for arm in ARMS}
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
                name=f"{ARM_LABELS[arm]}{shown}",
                line={"color": ARM_COLOURS[arm]},
                hovertemplate="%{x:.3f} ms: %{y:.4f}<extra>" + arm + "</extra>",
            )
        )
    allv = np.concatenate([v for v in arms.values() if len(v)])
    cdf.update_xaxes(range=[float(allv.min()) * 0.98, float(np.quantile(allv, 0.995)) * 1.02])
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
                    name=ARM_LABELS[arm],
                    opacity=0.6,
                    marker={"color": ARM_COLOURS[arm]},
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
        for arm in ARMS:
            a = sel[sel["arm"] == arm].sort_values("block")
            if not len(a):
                continue
            order = (
                ["ran first" if firsts.get(b) == arm else "ran second" for b in a["block"]]
                if len(firsts)
                else None
            )
            fig.add_trace(
                go.Scatter(
                    x=a["block"].astype(int),
                    y=a["median_ms"].round(4),
                    mode="lines+markers",
                    name=ARM_LABELS[arm],
                    line={"color": ARM_COLOURS[arm]},
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
                        + [fmt_ms(_num(vals.get(k))) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")]
                    )
        parts.append(
            "<p>Latency the client reports against a no-op server on this machine: differences smaller "
            "than this are below what the set-up can resolve.</p>"
            + _table(["client", "transport", "p50 ms", "p90 ms", "p99 ms", "mean ms"], rows, "num")
        )
    model = data.summary.get("model_latency_ms")
    if isinstance(model, Mapping) and model:
        vals = ", ".join(f"{_e(k)} {fmt_ms(_num(v))} ms" for k, v in model.items())
        parts.append(f"<p>Model latency (server side): {vals}.</p>")
    rows = []
    for transport in transports:
        for arm in ARMS:
            a = _get(data.summary, transport, "arms", arm)
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
        f"<li><b>{res.transport.upper()}</b>: mean overhead"
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
    results = [transport_result(s, t) for t in transports if isinstance(s.get(t), Mapping)]
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
    """Write `text` to `path` via a temporary file and a rename; unwritable places are a ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path.parent}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of `run_dir` to `out` (default RUN_DIR/report.html) and return its path."""
    data = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_text_atomic(path, render_html(data))
    return path
