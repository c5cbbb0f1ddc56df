"""Watching a local run: a live display (rich) on a terminal, plain lines otherwise (CI logs).

`RunProgress` is the reusable piece: give it the compiled workflow (and, for the running estimates,
the spec and the run directory), set it as the local runner's `on_event`, and enter it around
`runner.run()`. It shows the step (`run`, `calibrate: 0.5 ms`, `measure`...), the stage (the task
running), block k of N, the load-testing time left (blocks left × a block's nominal length,
orchbench.core.watch.block_seconds) and, after each finished block, the running estimate and 95 %
CI per arm, computed from the blocks finished so far (their raw per-arm folders under the run
directory's tasks/, read with the compare step's reader; orchbench.core.watch.running_estimates).

On a terminal: bars per phase, a status line and the table (80 columns). Not a terminal: the
`[orchbench] start|done <task>` lines, and after each load task one line with the running estimates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from orchbench.cli.tables import running_table
from orchbench.core.analysis import Block
from orchbench.core.spec import Spec
from orchbench.core.watch import Running, fmt_duration, running_estimates, time_left_s
from steps.compare import read_blocks

PHASES = ("taint", "floor", "deploy", "wait", "load", "teardown", "compare", "report", "gate", "cleanup")


def phase_of(task: str) -> str:
    head = task.split("-", 1)[0]
    return head if head in PHASES else "other"


def load_task_names(workflow: dict[str, Any]) -> list[str]:
    return [
        task["name"]
        for tpl in workflow["spec"]["templates"]
        for task in (tpl.get("dag") or {}).get("tasks", [])
        if phase_of(task["name"]) == "load"
    ]


def task_blocks(task_dir: Path) -> list[Block]:
    """A finished load task's blocks: every arm's folder under its raw artifact (tasks/<t>/fs/out)."""
    root = task_dir / "fs" / "out"
    return read_blocks(root) if (root / "raw").is_dir() else []


def estimate_line(rows: list[Running]) -> str:
    """One line of running estimates: `rest with mean +0.345 [+0.317, +0.374] p50 ...; ...`."""
    parts: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        parts.setdefault((r.transport, r.arm), []).append(f"{r.metric} {r.text()}")
    return "; ".join(f"{t} {a}: {' '.join(v)}" for (t, a), v in parts.items())


class RunProgress:
    def __init__(
        self,
        workflow: dict[str, Any],
        quiet: bool = False,
        spec: Spec | None = None,
        run_dir: Path | None = None,
        step: str = "run",
        blocks_before: list[Block] | None = None,
        blocks_total: int | None = None,
        block_offset: int = 0,
        console: Console | None = None,
    ) -> None:
        """`blocks_before`: blocks of an earlier workflow of the same run (a pilot's) counted into
        the estimates; `block_offset`: added to this workflow's block numbers (they follow the
        pilot's); `blocks_total`: the run's total block count per transport (default: this
        workflow's)."""
        counts: dict[str, int] = {}
        for tpl in workflow["spec"]["templates"]:
            for task in (tpl.get("dag") or {}).get("tasks", []):
                counts[phase_of(task["name"])] = counts.get(phase_of(task["name"]), 0) + 1
        self.console = console or Console(file=sys.stderr)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.spec, self.run_dir, self.step = spec, run_dir, step
        self.block_offset = block_offset
        self.loads = load_task_names(workflow)
        self.loads_done = 0
        self.blocks: list[Block] = list(blocks_before or [])
        per = len(self.loads) // max(1, len(spec.transports)) if spec else len(self.loads)
        arms_per_task = 1 if spec is None or spec.interleave() == "request" else len(spec.arm_names())
        self.block_tasks_per_transport = max(1, per)
        self.before = len({(b.transport, b.block) for b in self.blocks}) // max(
            1, len(spec.transports) if spec else 1
        )
        self.arms_per_task = arms_per_task
        self.total = blocks_total or (self.before + per // arms_per_task)
        self.stage = ""
        self.estimates: list[Running] = []
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.bars = {p: self.progress.add_task(p, total=counts[p], current="") for p in PHASES if p in counts}
        self._live: Live | None = None

    # the display ----------------------------------------------------------------------------------
    def block_of(self) -> tuple[int, int]:
        """(blocks finished so far, over every transport and counting earlier workflows of the run;
        blocks in all): one block is one transport's load test of every arm."""
        transports = len(self.spec.transports) if self.spec else 1
        return self.before * transports + self.loads_done // self.arms_per_task, self.total * transports

    def left_s(self) -> float | None:
        if self.spec is None:
            return None
        tasks_left = len(self.loads) - self.loads_done
        return time_left_s(self.spec, -(-tasks_left // self.arms_per_task))

    def status(self) -> str:
        k, n = self.block_of()
        left = self.left_s()
        return f"{self.step}: {self.stage or 'starting'} | block {k}/{n}" + (
            "" if left is None else f" | load time left ~{fmt_duration(left)}"
        )

    def __rich__(self) -> Group:
        parts: list[Any] = [self.progress, Text(self.status(), no_wrap=True, overflow="ellipsis")]
        if self.estimates:
            parts.append(running_table(self.estimates, title="running estimate (overhead, 95% CI)"))
        return Group(*parts)

    def __enter__(self) -> RunProgress:
        if self.live:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)  # type: ignore[arg-type]
            self._live = None

    # the runner's events --------------------------------------------------------------------------
    def event(self, kind: str, task: str, result: Any) -> None:
        bar = self.bars.get(phase_of(task))
        if bar is None:
            return
        if kind == "start":
            self.stage = task
            self.progress.update(bar, current=task)
        else:
            self.progress.update(bar, advance=1, current="")
        plain = not self.live and not self.quiet
        if plain:
            detail = f" ({result.seconds:.1f}s)" if result is not None else ""
            print(f"[orchbench] {kind:<5} {task}{detail}", file=sys.stderr, flush=True)
        if kind == "done" and phase_of(task) == "load":
            self.loads_done += 1
            self._block_done(result)
            if plain:
                k, n = self.block_of()
                left = self.left_s()
                print(
                    f"[orchbench] block {k}/{n} ({task})"
                    + ("" if left is None else f", load time left ~{fmt_duration(left)}")
                    + (f": {estimate_line(self.estimates)}" if self.estimates else ""),
                    file=sys.stderr,
                    flush=True,
                )

    def _block_done(self, result: Any) -> None:
        """Read the finished task's blocks and recompute the running estimates (cheap: the run's
        estimator over a few blocks); a display never fails a run."""
        if self.spec is None or result is None or getattr(result, "phase", "") != "Succeeded":
            return
        try:
            for b in task_blocks(Path(result.dir)):
                b.meta["block"] = int(b.meta["block"]) + self.block_offset
                self.blocks.append(b)
            self.estimates = running_estimates(self.blocks, self.spec.compared_arms(), self.spec.baseline)
        except Exception as exc:
            self.estimates = []
            if not self.live and not self.quiet:
                print(f"[orchbench] (no running estimate: {exc})", file=sys.stderr, flush=True)
