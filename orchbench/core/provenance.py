"""Where and with what a result was made: orchbench version, git commit, host, CPU, Python."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from typing import Any

from orchbench import __version__
from orchbench.core.paths import SOURCE_ROOT


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    env = os.environ.get("ORCHBENCH_GIT_COMMIT")
    if env:
        return env
    if SOURCE_ROOT is None:  # installed from a wheel: no source tree to ask
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def collect() -> dict[str, Any]:
    return {
        "orchbench_version": __version__,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
