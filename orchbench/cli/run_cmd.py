"""`orchbench run`, `compile` and `submit`: thin wrappers around the pipeline builder and runners."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchbench.core.errors import ConfigError
from orchbench.core.spec import Spec, load_spec


def compiled(spec: Spec, kind: str) -> dict[str, Any]:
    from pipelines.benchmark import KINDS, compile_dict

    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return compile_dict(spec, kind)


def to_yaml(workflow: dict[str, Any]) -> str:
    return yaml.safe_dump(workflow, sort_keys=False, width=120)


def run_compile(spec_path: Path | None, kind: str, output: Path | None) -> None:
    text = to_yaml(compiled(load_spec(spec_path), kind))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text)
        tmp.replace(output)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write ({exc.strerror})") from None
    print(f"wrote {output}", file=sys.stderr)


def run_submit(
    spec_path: Path | None,
    kind: str,
    host: str | None,
    token: str | None,
    namespace: str | None,
    verify_ssl: bool,
) -> None:
    from hera.shared import global_config
    from hera.workflows import WorkflowsService

    spec = load_spec(spec_path)
    host = host or os.environ.get("ARGO_HOST") or os.environ.get("ARGO_SERVER")
    if not host:
        raise ConfigError("no Argo server: pass --host or set ARGO_HOST")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    token = token or os.environ.get("ARGO_TOKEN")
    namespace = namespace or os.environ.get("ARGO_NAMESPACE") or spec.argo.namespace
    global_config.host = host
    global_config.verify_ssl = verify_ssl
    service = WorkflowsService(host=host, token=token, namespace=namespace, verify_ssl=verify_ssl)
    from pipelines.benchmark import build

    wf = build(spec, kind)  # type: ignore[arg-type]
    wf.namespace = namespace
    wf.workflows_service = service
    try:
        created = wf.create()
    except Exception as exc:  # hera raises its own exceptions and requests' ones; never echo the token
        message = str(exc).replace(token, "***") if token else str(exc)
        raise ConfigError(
            f"submission to {host} failed: {message.splitlines()[0] if message else type(exc).__name__}"
        ) from None
    name = getattr(getattr(created, "metadata", None), "name", None)
    print(f"submitted {kind} {name} to {host} (namespace {namespace})")


def _default_out(spec: Spec) -> Path:
    return Path("runs") / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{spec.name}"


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{out}: output directory not writable ({exc.strerror})") from None


def collect_raw(out: Path) -> int:
    """Copy every load-test artifact (raw tool JSON, samples, meta) to OUT/raw/<task>/; finished or not."""
    n = 0
    for task in sorted((out / "tasks").glob("load-*")):
        src = task / "fs" / "out" / "raw"
        if src.is_dir() and any(src.iterdir()):
            shutil.copytree(src, out / "raw" / task.name, dirs_exist_ok=True)
            n += 1
    return n


def run_local(
    spec_path: Path | None, out: Path | None, overrides: dict[str, Any] | None = None, quiet: bool = False
) -> Path:
    from orchbench.cli.progress import RunProgress
    from pipelines.local_runner import LocalRunner

    spec = load_spec(spec_path)
    if overrides:
        from orchbench.core.spec import parse_spec

        data = spec.to_json_dict()
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        spec = parse_spec(data, "spec with overrides")
    if spec.platform != "local":
        raise ConfigError(
            f"spec platform is {spec.platform!r}: `orchbench run` runs locally; use "
            "`orchbench compile` + `argo submit` or `orchbench submit` for a cluster"
        )
    out = (out or _default_out(spec)).resolve()
    _writable(out)
    workflow = compiled(spec, "workflow")
    (out / "spec.yaml").write_text(yaml.safe_dump(spec.to_json_dict(), sort_keys=False))
    (out / "workflow.yaml").write_text(to_yaml(workflow))
    runner = LocalRunner(workflow, out, parameters={"state-dir": str(out / "state"), "results-dir": str(out)})
    progress = RunProgress(workflow, quiet=quiet)
    runner.on_event = progress.event
    try:
        with progress:
            runner.run()
    finally:
        collect_raw(out)
    if not quiet:
        print_summary(out)
    return out


def print_summary(out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = json.loads((out / "summary.json").read_text())
    table = Table(title=f"orchestrator overhead, run {summary['run_id']}")
    for col in ("transport", "metric", "overhead ms", "95% CI ms", "with ms", "without ms", "verdict"):
        table.add_column(col, justify="right" if "ms" in col else "left")
    for transport in ("rest", "grpc"):
        res = summary.get(transport)
        if not res:
            continue
        for metric, est in res["overhead_ms"].items():
            lo, hi = est["ci95"]
            table.add_row(
                transport,
                metric,
                f"{est['estimate']:+.3f}",
                "n/a" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]",
                f"{res['arms']['with'].get('latency_ms', {}).get(metric, float('nan')):.3f}",
                f"{res['arms']['without'].get('latency_ms', {}).get(metric, float('nan')):.3f}",
                res["verdict"] if metric == "mean" else "",
            )
    console = Console()
    console.print(table)
    floor = (summary.get("floor") or {}).get("k6") or {}
    for transport in ("rest", "grpc"):
        p50 = (floor.get(transport) or {}).get("p50_ms")
        if transport in summary and p50 is not None:
            console.print(f"measurement floor (k6 against a no-op {transport} server): p50 {p50:.3f} ms")
    model = summary.get("model_latency_ms") or {}
    if model.get("p50_ms") is not None:
        console.print(f"model alone (in-process inference): p50 {model['p50_ms']:.3f} ms")
    console.print(f"results: {out}")
