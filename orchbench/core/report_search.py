"""The report's account of a capacity search (summary.json `capacity_search`,
orchbench.core.capacity_search): every round, the rates it measured and which transport x arm
proposed each, and why the search stopped. Pure: HTML from the summary."""

from __future__ import annotations

from typing import Any

from orchbench.core.report_html import esc, html_table


def _rates(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def search_section(summary: dict[str, Any]) -> str:
    """ "" when the run made no search (a plain sweep reads as before)."""
    record = summary.get("capacity_search")
    if not isinstance(record, dict) or not record.get("rounds"):
        return ""
    rows = []
    for r in record["rounds"]:
        why = r.get("proposed_by") or []
        reasons = "; ".join(
            f"{str(p['transport']).upper()} {p['arm']}: {p['next_per_s']:g} ({p['reason']})" for p in why
        )
        rows.append(
            [
                str(r["round"]),
                esc(_rates(r["rates_per_s"])),
                esc(reasons or "the spec's sweep (load.stages.rates)"),
                esc(str(r.get("workflow_dir", ""))),
            ]
        )
    plan = record.get("plan") or {}
    final = "".join(
        f"<li>{esc(str(p['transport']).upper())} {esc(p['arm'])}: {esc(p['reason'])}</li>"
        for p in record.get("final") or []
    )
    return (
        f"<p>The capacity search refined the sweep round by round, bisecting each arm's bracket "
        f"down to {plan.get('resolution_per_s', 0):g} req/s (rates on a grain of "
        f"{plan.get('grain_per_s', 1):g} req/s); every round is a workflow of its own, all arms "
        f"measured at each of its rates. Stopped: {esc(str(record.get('stopped', '')))}.</p>"
        + html_table(["round", "rates req/s per arm", "proposed by", "run folder"], rows)
        + (f"<ul>{final}</ul>" if final else "")
    )
