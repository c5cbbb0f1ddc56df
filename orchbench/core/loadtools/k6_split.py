"""Splitting a paired k6 run (all arms rotated in one process, every metric tagged `arm`) into one
folder per arm: its handleSummary JSON (`split_summary`) and its `--out csv` samples
(`split_samples`), each then read exactly like a single-arm run. Pure file transformations."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

from orchbench.fsio import atomic_path


def split_summary(data: dict[str, Any], arm: str, selector: str | None = None) -> dict[str, Any]:
    """One arm's view of a paired run's handleSummary JSON: its `{scenario:measure,arm:<arm>}`
    submetrics (`selector`: an open-loop stage's `scenario:measure-<arm>`) renamed to
    `{scenario:measure}`, metrics mixing both arms dropped, so that results_schema.k6 reads it as a
    single-arm run."""
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        return dict(data)
    suffix = f"{{{selector or f'scenario:measure,arm:{arm}'}}}"
    mine = {k[: -len(suffix)]: v for k, v in metrics.items() if k.endswith(suffix)}
    out_metrics: dict[str, Any] = {f"{base}{{scenario:measure}}": v for base, v in mine.items()}
    for key in ("vus", "vus_max"):  # the process's, not an arm's; harmless context
        if key in metrics:
            out_metrics[key] = metrics[key]
    out = {k: v for k, v in data.items() if k != "metrics"}
    out["metrics"] = out_metrics
    out["orchbench_split"] = {"arm": arm, "from": "../k6-summary.json"}
    return out


def _row_arm(row: list[str], tag_cols: list[int]) -> str | None:
    for i in tag_cols:
        if i < len(row) and row[i]:
            for part in row[i].split("&"):
                if part.startswith("arm="):
                    return part[4:]
    return None


def split_samples(path: Path, outputs: dict[str, Path]) -> dict[str, int]:
    """Split a paired run's `--out csv` by the `arm` tag into one CSV per arm (same header); rows
    without the tag (process-wide metrics such as vus) go to every file. Returns rows per arm."""

    rows = dict.fromkeys(outputs, 0)
    with contextlib.ExitStack() as stack, open(path, newline="") as src:
        writers = {}
        for out_arm, out_path in outputs.items():  # each file appears whole once the split is done
            tmp = stack.enter_context(atomic_path(out_path))
            out = stack.enter_context(open(tmp, "w", newline=""))
            writers[out_arm] = csv.writer(out, lineterminator="\n")
        reader = csv.reader(src)
        header = next(reader, None)
        if header is None:
            return rows
        for w in writers.values():
            w.writerow(header)
        tag_cols = [header.index(c) for c in ("extra_tags", "metadata") if c in header]
        for row in reader:
            arm = _row_arm(row, tag_cols)
            for name in [arm] if arm in writers else ([] if arm else list(writers)):
                writers[name].writerow(row)
                rows[name] += 1
    return rows
