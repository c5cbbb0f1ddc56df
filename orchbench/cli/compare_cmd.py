"""`orchbench compare`: a thin wrapper around orchbench.core.analysis (pure) and the results schema."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import typer

from orchbench.core import provenance
from orchbench.core.tool_compare import compare
from results_schema import load_summary, samples, write_table
from results_schema.checks import check_pair
from results_schema.rows import RunContext, runs_row, runs_table, samples_table
from results_schema.summary import ToolSummary

_TRANSPORT = {"vegeta": "rest", "ghz": "grpc"}


def _load_samples(path: Path | None, summary_path: Path) -> pd.DataFrame | None:
    if path is not None:
        return samples.load_samples(path)
    return samples.embedded_samples(summary_path)


def _transport(summary: ToolSummary) -> str:
    if summary.tool == "k6":
        return "grpc" if str(summary.options.get("metric", "")).startswith("grpc") else "rest"
    return _TRANSPORT[summary.tool]


def _table(result: dict) -> str:
    """One row per metric: with, without (the values the overhead is the difference of), overhead, CI."""
    lines = [f"{'metric':<8}{'with ms':>11}{'without ms':>12}{'overhead ms':>13}{'95% CI ms':>22}"]
    for metric, value in result["overhead_ms"].items():
        a = result["with"]["latency_ms"].get(metric)
        b = result["without"]["latency_ms"].get(metric)
        ci = result.get("ci95_ms", {}).get(metric)
        ci_text = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and None not in ci else ""
        fa = f"{a:.3f}" if a is not None else "-"
        fb = f"{b:.3f}" if b is not None else "-"
        lines.append(f"{metric:<8}{fa:>11}{fb:>12}{value:>13.6f}{ci_text:>22}")
    lines.append(f"source: {result['source']}" + (f"; {result['method']}" if "method" in result else ""))
    test = (result.get("paired_test") or {}).get("mean")
    if test:
        lines.append(f"sign-flip test over {test['n_blocks']} blocks (mean): p = {test['p']:.3g}")
    return "\n".join(lines)


def run_compare(
    with_path: Path,
    without_path: Path,
    json_out: bool,
    parquet_dir: Path | None,
    with_samples_path: Path | None,
    without_samples_path: Path | None,
) -> None:
    with_ = load_summary(with_path)
    without = load_summary(without_path)
    check_pair(with_, without)  # same tool and transport, plausible latencies, one arm each
    a = _load_samples(with_samples_path, with_path)
    b = _load_samples(without_samples_path, without_path)
    if a is not None and "phase" in a.columns:
        a = a[a["phase"] == "measure"]
    if b is not None and "phase" in b.columns:
        b = b[b["phase"] == "measure"]
    result = compare(with_, without, a, b)
    if parquet_dir is not None:
        run_id = uuid.uuid4().hex[:12]
        prov = provenance.collect()
        ctxs = [
            RunContext("compare", run_id, _transport(s), arm, raw_artifact=str(p))
            for s, arm, p in ((with_, "with", with_path), (without, "without", without_path))
        ]
        write_table(
            runs_table([runs_row(with_, ctxs[0], prov), runs_row(without, ctxs[1], prov)]),
            parquet_dir / "results.parquet",
            "runs",
        )
        frames = [(c, df) for c, df in zip(ctxs, (a, b), strict=True) if df is not None]
        if frames:
            write_table(samples_table(frames), parquet_dir / "samples.parquet", "samples")
        result["parquet"] = str(parquet_dir)
    if json_out:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        typer.echo(_table(result))
