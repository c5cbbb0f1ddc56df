"""The code stays as `make lint` wants it: ruff (lint and format) and mypy, configured in pyproject."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ["orchbench", "results_schema", "steps", "pipelines", "serving"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_check_is_clean() -> None:
    proc = _run("ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_clean() -> None:
    proc = _run("ruff", "format", "--check", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_import_layers_are_one_way() -> None:
    """import-linter's contract in pyproject.toml names the layers; function-level imports count."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in proc.stdout
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0][
        "layers"
    ]
    assert layers == [
        "orchbench.cli",
        "pipelines",
        "steps",
        "orchbench.core",
        "results_schema | serving",
        "orchbench.fsio",
    ]


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    proc = _run("mypy", *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
