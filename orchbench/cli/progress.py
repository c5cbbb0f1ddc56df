"""Progress of a local run: one rich progress bar per phase (taint, deploy, load, ...)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PHASES = ("taint", "floor", "deploy", "wait", "load", "teardown", "compare", "report", "gate", "cleanup")


def phase_of(task: str) -> str:
    head = task.split("-", 1)[0]
    return head if head in PHASES else "other"


class RunProgress:
    def __init__(self, workflow: dict[str, Any], quiet: bool = False) -> None:
        counts: dict[str, int] = {}
        for tpl in workflow["spec"]["templates"]:
            for task in (tpl.get("dag") or {}).get("tasks", []):
                counts[phase_of(task["name"])] = counts.get(phase_of(task["name"]), 0) + 1
        self.console = Console(file=sys.stderr)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.bars = {p: self.progress.add_task(p, total=counts[p], current="") for p in PHASES if p in counts}

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def event(self, kind: str, task: str, result: Any) -> None:
        bar = self.bars.get(phase_of(task))
        if bar is None:
            return
        if kind == "start":
            self.progress.update(bar, current=task)
        else:
            self.progress.update(bar, advance=1, current="")
        if not self.live and not self.quiet:
            detail = f" ({result.seconds:.1f}s)" if result is not None else ""
            print(f"[orchbench] {kind:<5} {task}{detail}", file=sys.stderr, flush=True)
