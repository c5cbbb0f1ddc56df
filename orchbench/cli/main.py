"""The `orchbench` command line. Thin wrappers only: the work happens in the modules it calls.

Every OrchbenchError becomes one line on stderr and its exit code (2 for bad input), never a traceback.
Imports of heavy modules happen inside the commands so `orchbench --help` stays fast.
"""

from __future__ import annotations

import errno
import math
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from typer._click.exceptions import ClickException, UsageError  # typer vendors click

from orchbench.cli import interrupts
from orchbench.core.errors import USER_FACING

Kind = Literal["workflow", "template", "cron"]

app = typer.Typer(
    name="orchbench",
    help="Measure the latency a model-serving orchestrator adds in front of a model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    one_line = " | ".join(line.strip() for line in message.splitlines() if line.strip()) or "unknown error"
    typer.echo(f"orchbench: error: {one_line}", err=True)
    sys.exit(code)


def _finite_non_negative(value: float | None) -> float | None:
    """A threshold in ms: NaN would turn the gate off ("within threshold nan ms"), negative is no limit."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number >= 0, got {value!r}")
    return value


@app.command()
def version() -> None:
    """Print the orchbench version."""
    from orchbench import __version__

    typer.echo(__version__)


@app.command()
def run(
    spec: Annotated[Path | None, typer.Option(help="Experiment spec (default: specs/default.yaml).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<time>-<name>).")] = None,
    inject_delay_ms: Annotated[
        float | None, typer.Option(help="Override local.inject_delay_ms (known-answer calibration).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress and no table.")] = False,
    wait: Annotated[
        bool, typer.Option(help="If another run holds this machine, wait for it (default: refuse).")
    ] = False,
) -> None:
    """Run the benchmark on this machine: the compiled workflow, executed by the local runner."""
    from orchbench.cli.run_cmd import run_local

    overrides = {} if inject_delay_ms is None else {"local.inject_delay_ms": inject_delay_ms}
    run_local(spec, out, overrides, quiet, wait=wait)


@app.command()
def cleanup(
    run_dir: Annotated[
        Path | None,
        typer.Argument(help="A run directory (default: the run that died holding this machine, if any)."),
    ] = None,
) -> None:
    """Stop what a killed local run left running (servers, steps, k6) and keep its finished blocks."""
    from orchbench.cli.run_cmd import run_cleanup

    run_cleanup(run_dir)


@app.command()
def measure(
    baseline: Annotated[
        str | None, typer.Option(help="The baseline: REST base URL, or host:port for gRPC.")
    ] = None,
    arm: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of an arm compared with the baseline (repeat).")
    ] = None,
    transport: Annotated[str, typer.Option(help="rest or grpc.")] = "rest",
    protocol: Annotated[
        str, typer.Option(help="tfserving, v2 (Open Inference Protocol) or http.")
    ] = "tfserving",
    model: Annotated[str | None, typer.Option(help="Model name in paths and requests.")] = None,
    payload: Annotated[Path | None, typer.Option(help="Request body file (default: per protocol).")] = None,
    verify: Annotated[
        list[str] | None,
        typer.Option(help="NAME=HEADER the arm's answers must carry (NAME=!HEADER: must not) (repeat)."),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE or NAME=env:VARIABLE sent to every arm (repeat).")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for https / grpcs arms.")] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS certificate checks.")] = False,
    duration: Annotated[float, typer.Option(help="Measured seconds per arm and block.")] = 10.0,
    blocks: Annotated[int, typer.Option(help="Blocks (each measures every arm once).")] = 4,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<time>-measure).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress and no table.")] = False,
    floor: Annotated[
        bool, typer.Option(help="Measure the load tester's own floor first (--no-floor: skip it, ~10 s).")
    ] = True,
) -> None:
    """Measure your own endpoints: N arms against a baseline, interleaved request by request."""
    from orchbench.cli.measure_cmd import run_measure

    run_measure(
        out,
        quiet=quiet,
        baseline=baseline,
        arms=list(arm or []),
        transport=transport,
        protocol=protocol,
        model=model,
        payload=payload,
        verify=list(verify or []),
        headers=list(header or []),
        ca_file=ca_file,
        insecure=insecure,
        duration_s=duration,
        blocks=blocks,
        floor=floor,
    )


@app.command()
def calibrate(
    delays: Annotated[
        str, typer.Option(help="Injected orchestrator delays in ms, comma-separated.")
    ] = "0.5,1,2",
    spec: Annotated[Path | None, typer.Option(help="Spec (default: specs/calibrate.yaml).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the runs (default: runs/calibrate-<time>).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the table as a JSON list.")] = False,
    design: Annotated[
        str,
        typer.Option(
            help="interleaved: one run, an arm per delay against a reference delay; runs: a run per delay."
        ),
    ] = "interleaved",
    metrics: Annotated[
        str,
        typer.Option(help="The overhead figures each delay is recovered from, comma-separated: p50, mean."),
    ] = "p50,mean",
) -> None:
    """Known-answer calibration: inject delays into the reference orchestrator and recover them."""
    import json
    from datetime import UTC, datetime

    from orchbench.cli.calibrate import JSON_KEYS, parse_delays, parse_metrics, table_lines
    from orchbench.cli.calibrate import calibrate as run_calibration

    values = parse_delays(delays)
    figures = parse_metrics(metrics)
    folder = out or Path("runs") / f"calibrate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    rows = run_calibration(values, spec, folder, design=design, metrics=figures)
    if json_out:
        printed = [{k: r[k] for k in JSON_KEYS} | {"passed": r["passed"]} for r in rows]
        typer.echo(json.dumps(printed, indent=2))
        return
    for line in table_lines(rows):
        typer.echo(line)


@app.command("compile")
def compile_(
    spec: Annotated[Path | None, typer.Option(help="Experiment spec (default: specs/default.yaml).")] = None,
    kind: Annotated[Kind, typer.Option(help="workflow | template | cron")] = "workflow",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write YAML here (default: stdout).")
    ] = None,
) -> None:
    """Compile the spec to Argo YAML for `argo submit` (Workflow, WorkflowTemplate or CronWorkflow)."""
    from orchbench.cli.run_cmd import run_compile

    run_compile(spec, kind, output)


@app.command()
def submit(
    spec: Annotated[Path | None, typer.Option(help="Experiment spec.")] = None,
    kind: Annotated[Kind, typer.Option(help="workflow | template | cron")] = "workflow",
    host: Annotated[str | None, typer.Option(help="Argo server URL (or ARGO_HOST).")] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the bearer token (default: $ARGO_TOKEN); never printed."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(hidden=True, help="Refused: a token in argv is visible in `ps`.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (or ARGO_NAMESPACE).")] = None,
    verify_ssl: Annotated[bool, typer.Option(help="Verify the server's TLS certificate.")] = True,
    insecure_http: Annotated[
        bool, typer.Option(help="Allow sending the token over plain http:// (it travels readable).")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option(min=0.1, max=600, help="Timeout of each API call, in seconds.")
    ] = 30.0,
) -> None:
    """Submit the compiled pipeline through the Argo server API (Hera's WorkflowsService)."""
    from orchbench.cli.run_cmd import run_submit
    from orchbench.core.errors import ConfigError

    if token is not None:
        raise ConfigError(
            "--token is refused: a token on the command line is visible to every user in `ps`; "
            "set ARGO_TOKEN or pass --token-file FILE"
        )
    run_submit(spec, kind, host, token_file, namespace, verify_ssl, insecure_http, timeout_s)


@app.command()
def compare(
    with_: Annotated[Path, typer.Option("--with", help="Load-tester JSON of the arm WITH the orchestrator.")],
    without: Annotated[Path, typer.Option("--without", help="Load-tester JSON of the arm WITHOUT it.")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", help="Also write runs.parquet (and samples) into DIR.")
    ] = None,
    with_samples: Annotated[Path | None, typer.Option(help="Per-request samples of the 'with' arm.")] = None,
    without_samples: Annotated[Path | None, typer.Option(help="Per-request samples of 'without'.")] = None,
) -> None:
    """Overhead (with - without) in ms from two load-tester results (vegeta, ghz or k6 JSON)."""
    from orchbench.cli.compare_cmd import run_compare

    run_compare(with_, without, json_out, parquet, with_samples, without_samples)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `orchbench run`.")],
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="HTML file (default: RUN_DIR/report.html)")
    ] = None,
) -> None:
    """Write one self-contained HTML report of a run (tables, CDFs, per-block plot, provenance)."""
    from orchbench.core.report import build_report

    typer.echo(str(build_report(run_dir, out)))


serve_app = typer.Typer(help="The local serving stack: model server, orchestrator, model and payloads.")
app.add_typer(serve_app, name="serve")


#: The servers' own argparse options (and their --help) pass through as they are: one definition,
#: in serving/, for `python -m serving.<server>` and for these commands.
_PASS_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@serve_app.command("model", context_settings=_PASS_ARGS)
def serve_model(ctx: typer.Context) -> None:
    """Run the TF-Serving-style model server (--help lists its options)."""
    from serving.model_server import main as model_main

    model_main(list(ctx.args), prog="orchbench serve model")


@serve_app.command("orchestrator", context_settings=_PASS_ARGS)
def serve_orchestrator(ctx: typer.Context) -> None:
    """Run the reference orchestrator (--help lists its options)."""
    from serving.orchestrator import main as orch_main

    orch_main(list(ctx.args), prog="orchbench serve orchestrator")


@serve_app.command("build-model")
def serve_build_model(force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False) -> None:
    """Convert the EfficientNet-Lite0 weights to ONNX (cached, verified); print its path."""
    from serving.model import build_model

    typer.echo(str(build_model(force=force)))


@serve_app.command("payloads")
def serve_payloads(out: Annotated[Path | None, typer.Option(help="Output directory.")] = None) -> None:
    """Regenerate payloads/flowers.json and flowers.bin from sklearn's flower.jpg."""
    from serving.payloads import main as payloads_main

    payloads_main(["--out", str(out or Path("payloads"))])


@app.command()
def trend(
    dataset: Annotated[Path, typer.Argument(help="Directory of runs; reads every overheads.parquet below.")],
    threshold_ms: Annotated[
        float | None,
        typer.Option(
            help="Fail above this overhead (default: the run's own threshold).", callback=_finite_non_negative
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="mean | p50")] = "mean",
    transport: Annotated[str, typer.Option(help="rest | grpc | all")] = "all",
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML plot (CI bands).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    experiment: Annotated[str | None, typer.Option(help="Only runs of this experiment.")] = None,
    baseline_runs: Annotated[
        int, typer.Option(min=1, max=10_000, help="Earlier runs the latest is compared with.")
    ] = 7,
    min_effect_ms: Annotated[
        float, typer.Option(help="Smallest step (ms) counted as a regression.", callback=_finite_non_negative)
    ] = 0.1,
) -> None:
    """Overhead over many runs and a regression gate on the latest (exit 3: regression, 2: bad input)."""
    from orchbench.core.trend import run_trend

    code = run_trend(
        dataset, threshold_ms, metric, transport, html, json_out, experiment, baseline_runs, min_effect_ms
    )
    if code:
        raise typer.Exit(code)


@app.command()
def floor(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    requests: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Measured requests per tool and transport.")
    ] = 2000,
) -> None:
    """The measurement floor: k6 and a minimal Python client against no-op REST/gRPC servers, pinned."""
    from orchbench.core.floor import run_floor_cli

    run_floor_cli(json_out, requests)


def _usage_error(exc: ClickException) -> None:
    """A usage error as one line (click and typer print boxes of 5-6 lines), exit 2."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and isinstance(exc, UsageError) else ""
    _fail(f"{message}{hint}", exc.exit_code if isinstance(exc, UsageError) else 2)


def main(argv: list[str] | None = None) -> None:
    interrupts.install()
    try:
        # not standalone: usage errors come here as exceptions and leave as one line
        try:
            code = app(args=argv, prog_name="orchbench", standalone_mode=False)
        except Exception as exc:
            stopped_by = interrupts.signalled()
            if stopped_by and getattr(exc, "exit_code", None) != 130:
                _fail(f"interrupted by {stopped_by}", 130)
            raise
    except ClickException as exc:
        _usage_error(exc)
    except typer.Abort:
        typer.echo("orchbench: interrupted", err=True)
        sys.exit(130)
    except USER_FACING as exc:
        _fail(str(exc), getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        typer.echo("orchbench: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # a path the user gave that the OS refuses (too long, a folder, no access)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", 2 if exc.errno in _USER_PATH_ERRNOS else 1)
    sys.exit(code if isinstance(code, int) else 0)


#: OS errors that mean a path given on the command line is unusable (exit 2, the user's to fix).
_USER_PATH_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.ELOOP, errno.EROFS}
)


if __name__ == "__main__":
    main()
