"""Warm step starts against fresh interpreters, side by side: the same compiled workflow (a small local
spec: REST, 2 arms, 3 blocks of 1 s per arm, no floor) run with every step forked from the preloaded
forkserver (pipelines/warm_start.py) and with every step a fresh `python -m hera.workflows.runner`
(ORCHBENCH_WARM_STEPS=0), the two alternating, each run in a process of its own (so every warm run
pays for starting its forkserver). Prints, per kind of step, the median seconds from start to end
as the runner saw them, and each run's wall time.

    .venv/bin/python benchmarks/step_start_bench.py --pairs 3 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

KINDS = ("taint", "deploy", "wait", "load", "teardown", "compare", "report", "cleanup")
SPEC = {
    "name": "step-start-bench",
    "platform": "local",
    "transports": ["rest"],
    "load": {"tool": "k6", "workers": 1, "duration_s": 1, "warmup_s": 1},
    "blocks": 3,
    "floor": False,
}


def one_run(out: Path) -> None:
    """In a process of its own: run the compiled workflow, write each task's seconds to out/times.json."""
    from orchbench.cli.run_cmd import compiled
    from orchbench.core.spec import parse_spec
    from pipelines.local_runner import LocalRunner
    from serving.lease import OWNER_ENV, owner_value

    spec = parse_spec(SPEC)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec.to_json_dict(), sort_keys=False))
    os.environ[OWNER_ENV] = owner_value()
    times: dict[str, float] = {}

    def event(kind: str, name: str, result: object) -> None:
        if kind == "done" and result is not None:
            times[name] = float(getattr(result, "seconds", 0.0))

    runner = LocalRunner(
        compiled(spec, "workflow"),
        out,
        parameters={"state-dir": str(out / "state"), "results-dir": str(out)},
        on_event=event,
    )
    started = time.monotonic()
    runner.run()
    (out / "times.json").write_text(json.dumps({"wall_s": time.monotonic() - started, "tasks": times}))


def kind_of(task: str) -> str:
    return next((k for k in KINDS if task.startswith(k)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--json", type=Path, help="Also write every run's task times here.")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.one)
        return
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="orchbench-step-start-") as tmp:
        for i in range(args.pairs):
            for warm in (True, False) if i % 2 == 0 else (False, True):
                out = Path(tmp) / f"run-{len(runs)}"
                out.mkdir()
                env = {**os.environ, "ORCHBENCH_WARM_STEPS": "1" if warm else "0"}
                started = time.monotonic()
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", str(out)], env=env, capture_output=True, text=True
                )
                wall = time.monotonic() - started
                if proc.returncode != 0:
                    sys.exit(f"step_start_bench: a run failed: {proc.stderr.strip().splitlines()[-1:]}")
                data = json.loads((out / "times.json").read_text())
                runs.append({"warm": warm, "process_wall_s": wall, **data})
    print(f"{'step':<10}{'warm (s)':>10}{'fresh (s)':>11}{'saved (s)':>11}   median over runs, per step")
    for kind in (*KINDS, "other"):
        per = {}
        for warm in (True, False):
            tasks = [r["tasks"] for r in runs if r["warm"] is warm]
            values = [t for ts in tasks for n, t in ts.items() if kind_of(n) == kind]  # type: ignore[attr-defined]
            per[warm] = statistics.median(values) if values else None
        if per[True] is not None and per[False] is not None:
            print(f"{kind:<10}{per[True]:>10.2f}{per[False]:>11.2f}{per[False] - per[True]:>11.2f}")
    for warm in (True, False):
        walls = [float(r["process_wall_s"]) for r in runs if r["warm"] is warm]  # type: ignore[arg-type]
        label = "warm" if warm else "fresh"
        print(f"run wall, {label}: " + ", ".join(f"{w:.1f}" for w in walls) + " s")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
