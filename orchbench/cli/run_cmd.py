"""`orchbench run`, `compile` and `submit`: thin wrappers around the pipeline builder and runners."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchbench.cli.progress import RunProgress
from orchbench.cli.tables import summary_tables
from orchbench.core import capacity_search, noise, precision_run
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools import cpu_wake
from orchbench.core.machine import Cleanup, MachineLock, cleanup_run, holder
from orchbench.core.report import build_report
from orchbench.core.spec import Spec, load_spec
from orchbench.fsio import write_text
from pipelines.local_runner import LocalRunner
from serving.lease import OWNER_ENV, owner_value
from steps.compare import read_blocks, write_results


def compiled(spec: Spec, kind: str) -> dict[str, Any]:
    from pipelines.benchmark import KINDS, compile_dict

    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return compile_dict(spec, kind)


def to_yaml(workflow: dict[str, Any]) -> str:
    return yaml.safe_dump(workflow, sort_keys=False, width=120)


def search_note(spec: Spec) -> None:
    """A compiled workflow is the sweep: the search's further rounds are run by `orchbench run`."""
    capacity_search.check(spec)
    if spec.load.stages is not None and spec.load.stages.search is not None:
        print(
            "orchbench: load.stages.search: this workflow runs the sweep (round 1); the refinement "
            "rounds are run by `orchbench run`, which compiles one workflow per round",
            file=sys.stderr,
        )


def run_compile(spec_path: Path | None, kind: str, output: Path | None) -> None:
    spec = load_spec(spec_path)
    search_note(spec)
    text = to_yaml(compiled(spec, kind))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_text(output, text)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write ({exc.strerror})") from None
    print(f"wrote {output}", file=sys.stderr)


def _token(token_file: Path | None) -> str | None:
    """The bearer token: from --token-file or $ARGO_TOKEN, never from argv (visible in `ps`)."""
    if token_file is None:
        return os.environ.get("ARGO_TOKEN") or None
    from orchbench.core.safeio import read_text

    text = read_text(token_file, "token file", 64 * 1024).strip()
    if not text or "\n" in text:
        raise ConfigError(f"{token_file}: token file must hold one token on one line")
    return text


def _session(timeout_s: float) -> Any:
    """A requests session giving every call Hera makes a timeout (Hera sets none: a silent server
    would hang `submit` forever)."""
    import requests

    class TimeoutSession(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout_s)
            return super().request(method, url, *args, **kwargs)

    return TimeoutSession()


def run_submit(
    spec_path: Path | None,
    kind: str,
    host: str | None,
    token_file: Path | None,
    namespace: str | None,
    verify_ssl: bool,
    insecure_http: bool = False,
    timeout_s: float = 30.0,
) -> None:
    from pipelines.benchmark import KINDS

    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    spec = load_spec(spec_path)
    search_note(spec)
    host = host or os.environ.get("ARGO_HOST") or os.environ.get("ARGO_SERVER")
    if not host:
        raise ConfigError("no Argo server: pass --host or set ARGO_HOST")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    token = _token(token_file)
    if token and host.startswith("http://"):
        if not insecure_http:
            raise ConfigError(
                f"{host}: refusing to send the bearer token over plain http (anyone on the path can read "
                "it); use https://, or pass --insecure-http if you must"
            )
        print(f"orchbench: warning: sending the bearer token to {host} over plain http", file=sys.stderr)
    from hera.shared import global_config
    from hera.workflows import WorkflowsService

    namespace = namespace or os.environ.get("ARGO_NAMESPACE") or spec.argo.namespace
    global_config.host = host
    global_config.verify_ssl = verify_ssl
    service = WorkflowsService(
        host=host, token=token, namespace=namespace, verify_ssl=verify_ssl, session=_session(timeout_s)
    )
    from pipelines.benchmark import build

    wf = build(spec, kind)
    wf.namespace = namespace
    wf.workflows_service = service
    try:
        created = wf.create()
    except Exception as exc:  # hera raises its own exceptions and requests' ones; never echo the token
        message = str(exc).replace(token, "***") if token else str(exc)
        if type(exc).__name__ in ("ReadTimeout", "ConnectTimeout", "Timeout"):
            message = f"no answer within {timeout_s:g} s (--timeout-s)"
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
        probe = out / ".write-test"  # a probe, removed at once: not a file the run leaves
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
    spec_path: Path | None,
    out: Path | None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    wait: bool = False,
    step: str = "run",
    show_summary: bool = True,
) -> Path:
    spec = load_spec(spec_path)
    if overrides:
        spec = spec.with_overrides(overrides)
    if spec.platform not in ("local", "endpoints"):  # endpoints: the user's own stack, from here
        raise ConfigError(
            f"spec platform is {spec.platform!r}: `orchbench run` runs locally; use "
            "`orchbench compile` + `argo submit` or `orchbench submit` for a cluster"
        )
    from orchbench.core.platform.proxies import require

    require(spec.proxies_needed())  # before anything starts: one line naming what to install
    capacity_search.check(spec)
    out = (out or _default_out(spec)).resolve()
    workflow = compiled(spec, "workflow")
    # one local run per machine: refused (one line) before anything starts, or --wait
    lock = MachineLock()
    previous = lock.acquire(out, wait=wait, on_wait=lambda msg: print(f"orchbench: {msg}", file=sys.stderr))
    try:
        if previous:
            clean_up_after(previous)
        _writable(out)
        progress = RunProgress(workflow, quiet=quiet, spec=spec, run_dir=out, step=step)
        run_workflow(spec, workflow, out, progress)
        if spec.load.precision_ms is not None:
            extend_to_precision(spec, out, quiet, step, progress.blocks)
        if spec.load.stages is not None and spec.load.stages.search is not None:
            search_capacity(spec, out, quiet, step)
    finally:
        lock.release()
    if not quiet and show_summary:
        print_summary(out)
    return out


def run_workflow(spec: Spec, workflow: dict[str, Any], out: Path, progress: RunProgress) -> None:
    """One compiled workflow, executed by the local runner into `out` (under the machine lock)."""
    write_text(out / "spec.yaml", yaml.safe_dump(spec.to_json_dict(), sort_keys=False))
    write_text(out / "workflow.yaml", to_yaml(workflow))
    owner = owner_value()
    old_owner = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = owner  # every process the run starts carries it (their lease)
    write_text(out / OWNER_FILE, json.dumps({"owner": owner, "pid": os.getpid()}))
    runner = LocalRunner(workflow, out, parameters={"state-dir": str(out / "state"), "results-dir": str(out)})
    runner.on_event = progress.event
    # SIGINT, SIGTERM and a closed terminal (SIGHUP) stop the run: the exit handler tears down
    try:
        with progress:
            runner.run()
    finally:
        if old_owner is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = old_owner
        collect_raw(out)


#: A precision-targeted run's second workflow runs here, inside the run directory.
EXTENSION_DIR = "extension"


def extend_to_precision(spec: Spec, out: Path, quiet: bool, step: str, pilot_blocks: list[Any]) -> None:
    """`load.precision_ms`: the workflow just run was the pilot. Size the run from its summary.json
    (orchbench.core.precision_run), run the remaining blocks as a second workflow in OUT/extension
    (every arm deployed afresh), then one final compare over all blocks into OUT (the pilot's own
    summary kept as OUT/pilot-summary.json)."""
    pilot = json.loads((out / "summary.json").read_text())
    write_text(out / "pilot-summary.json", json.dumps(pilot, indent=2, sort_keys=True))
    plan = precision_run.plan_for(spec, pilot)
    if not quiet:
        print(f"orchbench: {precision_run.limited_line(plan, spec)}", file=sys.stderr)
    blocks = read_blocks(out / "raw")
    orders = spec.block_order()
    more = plan.n_blocks - plan.pilot_blocks
    if more > 0:
        ext = precision_run.extension_spec(spec, more)
        ext_dir = out / EXTENSION_DIR
        ext_dir.mkdir(parents=True, exist_ok=True)
        progress = RunProgress(
            compiled(ext, "workflow"),
            quiet=quiet,
            spec=ext,
            run_dir=ext_dir,
            step=f"{step} (extension)",
            blocks_before=pilot_blocks,
            blocks_total=plan.n_blocks,
            block_offset=plan.pilot_blocks,
        )
        run_workflow(ext, compiled(ext, "workflow"), ext_dir, progress)
        for b in read_blocks(ext_dir / "raw"):
            b.meta["block"] = int(b.meta["block"]) + plan.pilot_blocks
            b.raw_artifact = f"{EXTENSION_DIR}/{b.raw_artifact}"
            blocks.append(b)
        orders += ext.block_order()
    floor_file = out / "floor.json"
    floor = json.loads(floor_file.read_text()) if floor_file.exists() else None
    extra = {"precision_run": precision_run.record(plan, spec), "block_order": orders}
    write_results(spec, blocks, floor, str(pilot.get("run_id") or out.name), out, extra)
    build_report(out)


def search_capacity(spec: Spec, out: Path, quiet: bool, step: str) -> None:
    """`load.stages.search`: the workflow just run was the sweep (round 1). The rounds
    orchbench.core.capacity_search asks for each run as one more compiled workflow in
    OUT/search/round-K (every arm deployed afresh), and after each every stage measured so far is
    compared into OUT; summary.json `capacity_search` records every round and why the search stopped
    (the sweep's own summary kept as OUT/sweep-summary.json)."""
    sweep = json.loads((out / "summary.json").read_text())
    write_text(out / "sweep-summary.json", json.dumps(sweep, indent=2, sort_keys=True))
    blocks = read_blocks(out / "raw")
    floor_file = out / "floor.json"
    floor = json.loads(floor_file.read_text()) if floor_file.exists() else None
    run_id = str(sweep.get("run_id") or out.name)
    measured = [float(s.rate_per_s or 0) for s in spec.stage_plan()]

    def measure(number: int, rates: list[float], so_far: list[float]) -> dict[str, Any]:
        round_spec = capacity_search.round_spec(spec, rates, number)
        where = capacity_search.round_dir(number)
        if not quiet:
            shown = ", ".join(f"{r:g}" for r in rates)
            print(f"orchbench: capacity search round {number}: {shown} req/s per arm", file=sys.stderr)
        (out / where).mkdir(parents=True, exist_ok=True)
        workflow = compiled(round_spec, "workflow")
        progress = RunProgress(
            workflow, quiet=quiet, spec=round_spec, run_dir=out / where, step=f"{step} ({where})"
        )
        run_workflow(round_spec, workflow, out / where, progress)
        for b in read_blocks(out / where / "raw"):
            b.raw_artifact = f"{where}/{b.raw_artifact}"
            blocks.append(b)
        measured[:] = so_far
        return write_results(capacity_search.merged_spec(spec, so_far), blocks, floor, run_id, out)

    record, _ = capacity_search.run_search(spec, sweep, measure)
    extra = {"capacity_search": record.to_dict()}
    write_results(capacity_search.merged_spec(spec, measured), blocks, floor, run_id, out, extra)
    build_report(out)
    if not quiet:
        print(f"orchbench: {record.line()}", file=sys.stderr)


#: In a run folder: the ORCHBENCH_OWNER value its processes carry (for `orchbench cleanup RUN_DIR`).
OWNER_FILE = "owner.json"


def clean_up_after(previous: dict[str, Any]) -> Cleanup | None:
    """The run named in a stale holder.json died without cleaning up: stop what it left, keep its
    finished blocks, and say so in one line."""
    run_dir = Path(str(previous.get("run_dir") or ""))
    if not previous.get("run_dir"):
        return None
    result = cleanup_run(run_dir, previous.get("owner"))
    kept = collect_raw(run_dir) if run_dir.is_dir() else 0
    blocks = f"; its {kept} load task(s) kept in {run_dir / 'raw'}" if kept else ""
    print(f"orchbench: an earlier run died without cleaning up: {result.summary()}{blocks}", file=sys.stderr)
    return result


def run_cleanup(run_dir: Path | None) -> None:
    """`orchbench cleanup [RUN_DIR]`: what a dead run left running, stopped; its blocks collected."""
    if run_dir is None:
        lock = MachineLock()
        previous = lock.acquire(Path("(cleanup)"))
        try:
            if not previous:
                print("orchbench: nothing to clean up: no run died holding this machine")
                return
            clean_up_after(previous)
        finally:
            lock.release()
        return
    run_dir = run_dir.resolve()
    if not (run_dir / "workflow.yaml").exists() and not (run_dir / "state").is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no workflow.yaml or state/)")
    owner = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        owner = json.loads((run_dir / OWNER_FILE).read_text()).get("owner")
    previous = holder()
    if previous and Path(str(previous.get("run_dir"))) == run_dir:
        owner = owner or previous.get("owner")
    clean_up_after({"run_dir": str(run_dir), "owner": owner})


def print_summary(out: Path) -> None:
    from rich.console import Console

    summary = json.loads((out / "summary.json").read_text())
    console = Console(width=80) if not sys.stdout.isatty() else Console()
    for table in summary_tables(summary):
        console.print(table)
    for key in ("precision_run", "capacity_search"):
        if summary.get(key):
            console.print(summary[key]["line"])
    for transport in ("rest", "grpc"):
        res = summary.get(transport) or {}
        line = (res.get("precision") or {}).get("line")
        if line:
            console.print(f"{transport}: {line}")
        if res.get("noise") and not (res.get("precision") or {}).get("met", True):
            arm, baseline = res.get("arm", "with"), res.get("baseline", "without")
            console.print(f"{transport}: {noise.line(res['noise'], arm, baseline)}")
    floor = (summary.get("floor") or {}).get("k6") or {}
    for transport in ("rest", "grpc"):
        p50 = (floor.get(transport) or {}).get("p50_ms")
        if transport in summary and p50 is not None:
            console.print(f"measurement floor (k6 against a no-op {transport} server): p50 {p50:.3f} ms")
    if summary.get("floor_note"):  # `floor: false`: the floor was switched off, not lost
        console.print(summary["floor_note"])
    wake = cpu_wake.line(summary.get("cpu_wake"))
    if wake:
        console.print(wake)
    model = summary.get("model_latency_ms") or {}
    if model.get("p50_ms") is not None:
        console.print(f"model alone (in-process inference): p50 {model['p50_ms']:.3f} ms")
    console.print(f"results: {out}")
