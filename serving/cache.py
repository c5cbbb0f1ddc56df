"""The cache for built artifacts (the ONNX model): $ORCHBENCH_CACHE, else $XDG_CACHE_HOME/orchbench."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("ORCHBENCH_CACHE")
    if env:
        path = Path(env)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = base / "orchbench"
    path.mkdir(parents=True, exist_ok=True)
    return path
