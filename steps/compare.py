"""Step: every block's load-test artifact in; Parquet tables, summary.json and the report out.

A thin wrapper: reading and writing here, every figure from orchbench.core.analysis.
"""

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from orchbench.core import stage_analysis
from orchbench.core.analysis import Block, build_tables, deployment_reuse, summarise
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools import cpu_wake
from orchbench.core.overheads_table import overheads_table
from orchbench.core.provenance import collect
from orchbench.core.spec import Spec
from orchbench.core.stages_table import stages_table
from orchbench.fsio import write_text
from results_schema import load_summary, write_table
from results_schema.samples import load_samples
from steps.common import in_dir, load, log, out_dir, step


def _artifact_folders(raw_root: Path) -> list[Path]:
    """Folders holding one arm's meta.json: each load-test task's artifact, or, for a paired task
    (interleave request), its per-arm subfolders."""
    out = []
    for folder in sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []:
        arms = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "meta.json").exists())
        if not (folder / "meta.json").exists() and arms:
            out += arms
        else:
            out.append(folder)
    return out


def read_blocks(raw_root: Path) -> list[Block]:
    """Each arm's artifact below raw_root: meta.json, raw JSON and samples."""
    blocks = []
    for folder in _artifact_folders(raw_root):
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise ConfigError(f"{folder}: load-test artifact without meta.json")
        meta = json.loads(meta_path.read_text())
        if meta.get("status") != "ok":
            raise ConfigError(f"{folder}: load test did not finish ({meta.get('error', meta.get('status'))})")
        summary = load_summary(folder / meta["raw"])
        summary.tool_version = meta.get("tool_version")
        samples = load_samples(folder / meta["samples"], measure_only=True) if meta.get("samples") else None
        name = folder.name if folder.parent == raw_root else f"{folder.parent.name}/{folder.name}"
        blocks.append(Block(meta, summary, samples, f"{name}/{meta['raw']}"))
    return blocks


#: summary.json `floor_note` (and so the report and the terminal) when the spec has `floor: false`.
#: (One line of 80 columns: the terminal prints it too.)
FLOOR_OFF_NOTE = "Measurement floor not measured: switched off in the spec (floor: false)."


def floor_record(s: Spec, floor: dict | None) -> dict:
    """What summary.json says of the floor besides its figures (`floor`): `floor_measured`, and with
    `floor: false` in the spec, `floor_note` saying so."""
    if floor is not None:
        return {"floor_measured": True}
    return {"floor_measured": False, **({} if s.floor else {"floor_note": FLOOR_OFF_NOTE})}


def _floor_p50_ns(floor: dict | None) -> int | None:
    try:
        return round(float(floor["k6"]["rest"]["p50_ms"]) * 1e6) if floor else None
    except (KeyError, TypeError, ValueError):
        return None


@step
def compare(spec: str, results_dir: str = "", run_id: str = "") -> None:
    s = load(spec)
    run_id = run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{s.name}"
    blocks = read_blocks(in_dir("raw"))
    floor_file = in_dir("floor") / "floor.json"
    floor = json.loads(floor_file.read_text()) if floor_file.exists() else None
    out = out_dir("results")
    summary = write_results(s, blocks, floor, run_id, out)
    if summary.get("floor_note"):
        log(summary["floor_note"])
    for transport in s.transports:
        res = summary[transport]
        for st in res.get("stages") or []:
            log(
                f"{transport} {st['label']}: "
                + ("valid" if st["valid"] else "INVALID: " + "; ".join(st["invalid_reasons"]))
            )
        o = res["overhead_ms"]
        log(
            f"{transport}: overhead mean {o['mean']['estimate']} ms {o['mean']['ci95']}, "
            f"p50 {o['p50']['estimate']} ms {o['p50']['ci95']}; verdict {res['verdict']}"
            + (f" ({res['precision']['line']})" if "precision" in res else "")
        )
    if results_dir:
        publish(out, Path(results_dir))


def write_results(
    s: Spec, blocks: list[Block], floor: dict | None, run_id: str, out: Path, extra: dict | None = None
) -> dict:
    """The Parquet tables and summary.json (with `extra` keys merged in) of `blocks`, into `out`.
    With load stages: per stage (orchbench.core.stage_analysis), the generators' samples merged, and
    the `stages` table (stages.parquet)."""
    staged = bool(s.stage_plan())
    if staged:
        summary = stage_analysis.summarise_stages(s, blocks, floor, run_id, collect())
    else:
        summary = summarise(s, blocks, floor, run_id, collect())
    summary.update(floor_record(s, floor))
    summary["cpu_wake"] = cpu_wake.summarise(b.meta.get("cpu_wake") for b in blocks)
    summary.update(extra or {})
    prov = summary["provenance"]
    merged = stage_analysis.merge_generators(blocks) if staged else None
    runs, samples = build_tables(blocks, run_id, prov, _floor_p50_ns(floor), deployment_reuse(s), merged)
    write_table(runs, out / "results.parquet", "runs")
    write_table(samples, out / "samples.parquet", "samples")
    write_table(overheads_table(summary, time.time_ns(), prov), out / "overheads.parquet", "overheads")
    if staged:
        write_table(stages_table(summary), out / "stages.parquet", "stages")
    write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    if floor is not None:
        write_text(out / "floor.json", json.dumps(floor, indent=2, sort_keys=True))
    return summary


def publish(out: Path, results_dir: Path) -> None:
    """Copy results into a folder outside the artifact store (the local runner's run directory)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():
        if item.is_file():
            shutil.copy2(item, results_dir / item.name)
