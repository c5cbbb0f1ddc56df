"""Step: every block's load-test artifact in; Parquet tables, summary.json and the report out."""

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchbench.core import provenance
from orchbench.core.analysis import SEED_OVERHEAD_MS, Block, build_tables, overheads_table, transport_result
from orchbench.core.errors import ConfigError
from results_schema import load_summary, write_table
from steps.common import in_dir, load, log, out_dir, step

DEPLOYMENT_REUSE = "one deployment per arm and transport, kept across its blocks"
SHARED_MODEL = (
    "one model process per transport, kept across its blocks; the 'with' arm's orchestrator fronts the "
    "'without' arm's model process"
)


def deployment_reuse(spec: Any) -> str:
    """What the results say about deployments (local runs may share the model process)."""
    return SHARED_MODEL if spec.platform == "local" and spec.local.shared_model else DEPLOYMENT_REUSE


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
    from results_schema.samples import load_samples

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


def summarise(
    spec_json: str, blocks: list[Block], floor: dict[str, Any] | None, run_id: str
) -> dict[str, Any]:
    s = load(spec_json)
    summary: dict[str, Any] = {
        "schema_version": 1,
        "experiment": s.name,
        "run_id": run_id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": s.platform,
        "deployment_reuse": deployment_reuse(s),
        "block_order": s.block_order(),
        "interleave": s.interleave(),
        "order_seed": s.order_seed,
        "aa_mode": s.local.aa_mode if s.platform == "local" else False,
        "inject_delay_ms": s.local.inject_delay_ms if s.platform == "local" else None,
        "provenance": provenance.collect(),
        "spec": s.to_json_dict(),
        "floor": floor,
        "model_latency_ms": (floor or {}).get("model"),
        "seed": SEED_OVERHEAD_MS,
    }
    for transport in s.transports:
        mine = [b for b in blocks if b.transport == transport]
        if not mine:
            raise ConfigError(f"no load-test results for transport {transport}")
        arms = {b.arm for b in mine}
        if arms != {"with", "without"}:
            raise ConfigError(f"{transport}: results for arms {sorted(arms)}, need both 'with' and 'without'")
        summary[transport] = transport_result(mine, s.threshold_ms(transport))
    return summary


def _floor_p50_ns(floor: dict[str, Any] | None) -> int | None:
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
    summary = summarise(spec, blocks, floor, run_id)
    prov = summary["provenance"]
    runs, samples = build_tables(blocks, run_id, prov, _floor_p50_ns(floor), deployment_reuse(s))
    out = out_dir("results")
    write_table(runs, out / "results.parquet", "runs")
    write_table(samples, out / "samples.parquet", "samples")
    write_table(overheads_table(summary, time.time_ns(), prov), out / "overheads.parquet", "overheads")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    if floor is not None:
        (out / "floor.json").write_text(json.dumps(floor, indent=2, sort_keys=True))
    for transport in s.transports:
        o = summary[transport]["overhead_ms"]
        log(
            f"{transport}: overhead mean {o['mean']['estimate']} ms {o['mean']['ci95']}, "
            f"p50 {o['p50']['estimate']} ms {o['p50']['ci95']}"
        )
    if results_dir:
        publish(out, Path(results_dir))


def publish(out: Path, results_dir: Path) -> None:
    """Copy results into a folder outside the artifact store (the local runner's run directory)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():
        if item.is_file():
            shutil.copy2(item, results_dir / item.name)
