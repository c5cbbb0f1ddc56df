"""Where the project's shipped files and caches live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = REPO_ROOT / "manifests"
PAYLOADS = REPO_ROOT / "payloads"
SPECS = REPO_ROOT / "specs"


def cache_dir() -> Path:
    """Cache for built artifacts (the ONNX model): $ORCHBENCH_CACHE, else $XDG_CACHE_HOME/orchbench."""
    env = os.environ.get("ORCHBENCH_CACHE")
    if env:
        path = Path(env)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = base / "orchbench"
    path.mkdir(parents=True, exist_ok=True)
    return path
