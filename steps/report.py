"""Steps: the HTML report of a run, and the regression gate over the nightly dataset (CronWorkflow)."""

from pathlib import Path

from orchbench.fsio import write_bytes
from steps.common import in_dir, log, out_dir, step


@step
def report(results_dir: str = "") -> None:
    from orchbench.core.report import build_report

    source = in_dir("results")
    path = build_report(source, out_dir("report") / "report.html")
    log(f"report: {path}")
    if results_dir:
        write_bytes(Path(results_dir) / "report.html", path.read_bytes())


@step
def gate(threshold_rest_ms: str = "", threshold_grpc_ms: str = "") -> None:
    from orchbench.core.trend import run_gate

    run_gate(
        in_dir("dataset"),
        rest_ms=float(threshold_rest_ms) if threshold_rest_ms else None,
        grpc_ms=float(threshold_grpc_ms) if threshold_grpc_ms else None,
    )
