"""The report's HTML pieces: number formatting, escaped tables, badges, plotly figures as divs (the
library inlined once by the page, not by each figure), the common layout and the page's CSS."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


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


def esc(value: Any) -> str:
    return html.escape(str(value))


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def verdict_badge(verdict: str | None) -> str:
    if verdict is None:
        return '<span class="badge none">no verdict</span>'
    cls = {"pass": "pass", "fail": "fail"}.get(verdict.lower(), "none")
    return f'<span class="badge {cls}">{esc(verdict.upper())}</span>'


def fig_html(fig: Any, div_id: str) -> str:
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


def layout(fig: Any, title: str, xtitle: str, ytitle: str, subtitle: str = "") -> None:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}, "subtitle": {"text": subtitle, "font": {"size": 11}}},
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )


CSS = """
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
