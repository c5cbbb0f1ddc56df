"""The terminal tables (rich), made to fit 80 columns: no cell wraps (numbers are never folded).

`summary_tables` is what `orchbench run` prints at the end, from summary.json; `running_table` the
live display's table of running estimates (orchbench.cli.progress).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from orchbench.core.overheads_table import arm_results
from orchbench.core.watch import Running

#: Arm names may be 32 characters; headers and cells show at most this many.
NAME_WIDTH = 10


def short(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


def _ci(ci: Sequence[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    try:
        return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"
    except (TypeError, ValueError):
        return "n/a"


def _table(title: str | None, columns: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", pad_edge=False, padding=(0, 1))
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    return table


def summary_tables(summary: dict[str, Any]) -> list[Table]:
    """One table per transport and compared arm: metric, overhead, 95 % CI, the two arms' values
    (the overhead is their difference), verdict; the A/A band and flag under it (summary.json's
    `aa_noise`)."""
    tables = []
    aa_arm = summary.get("aa_arm")
    for transport in ("rest", "grpc"):
        if not summary.get(transport):
            continue
        results = arm_results(summary[transport], summary.get("compared_arms"))
        for arm, res in results.items():
            base = str(res.get("baseline", "without"))
            seed = (arm, base) == ("with", "without")
            what = "orchestrator overhead" if seed else f"{short(arm, 24)} − {short(base, 24)}"
            aa_note = " (A/A arm)" if arm == aa_arm else ""
            table = _table(
                f"{transport}: {what}{aa_note}, ms",
                [
                    ("metric", "left"),
                    ("overhead", "right"),
                    ("95% CI", "right"),
                    (short(arm), "right"),
                    (short(base), "right"),
                    ("verdict", "left"),
                ],
            )
            for metric, est in res["overhead_ms"].items():
                table.add_row(
                    metric,
                    _num(est.get("estimate"), signed=True),
                    _ci(est.get("ci95")),
                    _num(res["arms"].get(arm, {}).get("latency_ms", {}).get(metric)),
                    _num(res["arms"].get(base, {}).get("latency_ms", {}).get(metric)),
                    str(res.get("verdict") or "") if metric == "mean" else "",
                )
            noise = res.get("aa_noise")
            if noise:
                band = (noise.get("metrics") or {}).get("mean", {}).get("aa_ci95")
                flag = "WITHIN A/A NOISE" if noise.get("within_aa_noise") else "stands clear"
                table.caption = f"A/A band ({short(noise['aa_arm'])}) mean {_ci(band)}: {flag}"
                table.caption_justify = "left"
            tables.append(table)
    return tables


def running_table(rows: Sequence[Running], title: str | None = None) -> Table:
    """The running estimates: one line per transport and arm, mean and p50 with their 95 % CIs."""
    table = _table(
        title,
        [
            ("transport", "left"),
            ("arm", "left"),
            ("blocks", "right"),
            ("mean ms", "right"),
            ("p50 ms", "right"),
        ],
    )
    by: dict[tuple[str, str], dict[str, Running]] = {}
    for r in rows:
        by.setdefault((r.transport, r.arm), {})[r.metric] = r
    for (transport, arm), metrics in by.items():
        any_row = next(iter(metrics.values()))
        table.add_row(
            transport,
            short(arm),
            str(any_row.blocks),
            metrics["mean"].text() if "mean" in metrics else "",
            metrics["p50"].text() if "p50" in metrics else "",
        )
    return table
