"""The command line, the top layer: imports pipelines (and the local runner), steps' results and the core."""

from orchbench.cli.main import app, main

__all__ = ["app", "main"]
