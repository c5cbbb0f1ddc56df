"""The local platform's taints: a CPU plan (the load tester on one CPU, the servers on the rest, when
there are at least two), written to <run_dir>/cpu_plan.json for the load-test and floor steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchbench.core.errors import PlatformError
from orchbench.fsio import write_text

CPU_PLAN_FILE = "cpu_plan.json"


def cpu_plan(cpus: list[int], cpu_pinning: bool) -> dict[str, Any]:
    """How `cpus` are shared between the load tester and the servers."""
    if not cpu_pinning:
        return {
            "pinned": False,
            "reason": "cpu pinning disabled",
            "available_cpus": cpus,
            "loadtester_cpus": None,
            "serving_cpus": None,
        }
    if len(cpus) < 2:
        return {
            "pinned": False,
            "reason": f"only {len(cpus)} CPU available: no pinning",
            "available_cpus": cpus,
            "loadtester_cpus": None,
            "serving_cpus": None,
        }
    return {
        "pinned": True,
        "reason": "load tester on one CPU, model and orchestrator on the others",
        "available_cpus": cpus,
        "loadtester_cpus": cpus[:1],
        "serving_cpus": cpus[1:],
    }


def write_cpu_plan(run_dir: Path, plan: dict[str, Any]) -> None:
    write_text(Path(run_dir) / CPU_PLAN_FILE, json.dumps(plan, indent=2))


def read_cpu_plan(run_dir: Path) -> dict[str, Any] | None:
    """The CPU plan `taint()` wrote, or None when there is none (not tainted, or untainted)."""
    path = Path(run_dir) / CPU_PLAN_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PlatformError(f"{path}: unreadable CPU plan ({exc})") from None
    return data if isinstance(data, dict) else None
