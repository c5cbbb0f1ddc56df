"""The `orchbench` command line. Thin wrappers only: the work happens in the modules it calls.

Every OrchbenchError becomes one line on stderr and its exit code (2 for bad input), never a traceback.
Imports of heavy modules happen inside the commands so `orchbench --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orchbench.errors import OrchbenchError

app = typer.Typer(
    name="orchbench",
    help="Measure the latency a model-serving orchestrator adds in front of a model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"orchbench: error: {message}", err=True)
    sys.exit(code)


@app.command()
def version() -> None:
    """Print the orchbench version."""
    from orchbench import __version__

    typer.echo(__version__)


@app.command()
def compare(
    with_: Annotated[Path, typer.Option("--with", help="Load-tester JSON of the arm WITH the orchestrator.")],
    without: Annotated[Path, typer.Option("--without", help="Load-tester JSON of the arm WITHOUT it.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    parquet: Annotated[
        Optional[Path], typer.Option("--parquet", help="Also write runs.parquet (and samples) into DIR.")
    ] = None,
    with_samples: Annotated[Optional[Path], typer.Option(help="Per-request samples of the 'with' arm.")] = None,
    without_samples: Annotated[Optional[Path], typer.Option(help="Per-request samples of 'without'.")] = None,
) -> None:
    """Overhead (with - without) in ms from two load-tester results (vegeta, ghz or k6 JSON)."""
    from orchbench.commands.compare_cmd import run_compare

    run_compare(with_, without, json_out, parquet, with_samples, without_samples)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)  # standalone: click prints usage errors itself and exits 2
    except OrchbenchError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("orchbench: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
