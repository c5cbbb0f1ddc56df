"""`orchbench report`: one self-contained HTML file per run directory.

The report reads what `orchbench run` wrote (summary.json, samples.parquet, results.parquet,
overheads.parquet, stages.parquet, floor.json, spec.yaml) and shows: the overhead per transport with
95 % CIs next to the seed's published numbers, latency CDFs and histograms per arm, the median per
block per arm (interleaving and drift), the measurement floor and stability verdicts, and
provenance; a run with load stages also gets the overhead and latency against load, capacity per
arm, the hop's CPU and memory and the overhead over time inside each stage
(orchbench.core.report_load). plotly.js is inlined once, so the file opens offline. Missing pieces
(no samples, no floor) are said in their section; nothing crashes.

Table and data builders are small pure functions (report_data, report_load_data); the HTML pieces are
in report_html, the distribution and machine sections in report_sections; `build_report` is the only
function that does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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
    block_medians,
    cdf_points,
    compared_arms,
    histogram,
    load_run,
    load_summary,
    ok_latencies_ms,
    seed_numbers,
    transport_result,
    transports_in,
)
from orchbench.core.report_html import CSS, fmt_ci, fmt_ms, fmt_p
from orchbench.core.report_html import esc as _e
from orchbench.core.report_html import html_table as _table
from orchbench.core.report_html import verdict_badge as _verdict_badge
from orchbench.core.report_load import load_section
from orchbench.core.report_sections import (
    blocks_section,
    distribution_section,
    floor_section,
    limits_section,
    provenance_section,
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
    dists = "".join(f"<h3>{t.upper()}</h3>{distribution_section(data, t)}" for t in transports) or (
        "<p class='missing'>No transports.</p>"
    )
    load = load_section(data, transports)
    pooled = (
        "<p class='sub'>These figures pool the requests of every stage; the section above shows them "
        "stage by stage.</p>"
        if load
        else ""
    )
    title = f"orchbench report: {s.get('experiment', '?')} · {s.get('run_id', '?')}"
    body = f"""
<h1>{_e(title)}</h1>
<p class="sub">created {_e(s.get("created_at", "—"))} · platform {_e(s.get("platform", "—"))} ·
overhead = latency with the orchestrator − latency without it, same model, interleaved blocks</p>
<ul>{"".join(_headline(r) for r in results)}</ul>
<h2 id="overhead">Overhead per transport (95 % CIs)</h2>{overhead}{seed_note}{load}
<h2 id="distributions">Latency distributions per arm</h2>{pooled}{dists}
<h2 id="blocks">Per block</h2>{blocks_section(data, transports)}{limits_section(data, transports)}
<h2 id="floor">Measurement floor and stability</h2>{floor_section(data, transports)}
<h2 id="provenance">Provenance</h2>{provenance_section(data)}
"""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{CSS}</style>"
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
