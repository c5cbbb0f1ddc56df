"""Run a compiled Argo workflow (the same dict `orchbench compile` writes) on this machine.

What it honours: the entrypoint DAG and `depends` (`a && b`), the workflow's `parallelism` (ready
script tasks side by side, up to that many: a stage's load generators), workflow and task parameters, template
input defaults, output parameters (`valueFrom.path`), artifacts passed with `from`, S3 keys (mapped to
a local artifact repository folder), `{{workflow.name}}`, `{{workflow.uid}}`, `{{workflow.status}}`,
and the `onExit` handler, which runs whatever happened (failure, SIGINT, SIGTERM, SIGHUP). Each script
template runs through its own command and args (`python -m hera.workflows.runner -e module:fn <inputs
file>`) in a child process group, and dies with the runner (PR_SET_PDEATHSIG) if the runner is killed;
Hera's runner on this interpreter is forked from a forkserver that has imported it and the step
modules already (pipelines/warm_start.py: ~1 s less per step), anything else is exec'd.

One script task (its folder, inputs, process, outputs and error line): pipelines/local_task.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchbench.core.errors import ConfigError, OrchbenchError
from pipelines.local_task import (
    StepFailed,
    StepProcess,
    TaskResult,
    keep_artifacts,
    lay_out_artifacts,
    map_path,
    output_parameters,
    start_step,
    step_error,
    template_inputs,
)
from steps.common import ARTIFACT_ROOT, ERROR_FILE

_EXPR = re.compile(r"{{\s*([^{}]+?)\s*}}")
#: The signals that stop a run (its exit handler still runs); handled while `run()` runs.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds an interrupted step gets to stop what it started before its process group is SIGKILLed.
STOP_GRACE_S = 15.0


class Interrupted(OrchbenchError):
    """The run was stopped by SIGINT, SIGTERM or SIGHUP."""

    exit_code = 130


def parse_depends(expr: str | None) -> list[str]:
    """The subset of Argo's `depends` this builder emits: task names joined by `&&`."""
    if not expr:
        return []
    names = []
    for part in expr.split("&&"):
        name = part.strip().removesuffix(".Succeeded")
        if not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_]*", name):
            raise ConfigError(f"unsupported depends expression {expr!r} (only 'a && b' is run locally)")
        names.append(name)
    return names


@dataclass
class _Started:
    """A script task whose step process runs."""

    tpl: dict[str, Any]
    task: str
    task_dir: Path
    child: StepProcess
    started: float


class LocalRunner:
    def __init__(
        self,
        workflow: dict[str, Any],
        run_dir: Path,
        parameters: dict[str, str] | None = None,
        artifact_repo: Path | None = None,
        python: str = sys.executable,
        on_event: Callable[[str, str, TaskResult | None], None] | None = None,
    ) -> None:
        self.wf = workflow
        self.spec = workflow.get("spec") or {}
        self.templates = {t["name"]: t for t in self.spec.get("templates", [])}
        self.run_dir = Path(run_dir)
        self.artifact_repo = Path(artifact_repo) if artifact_repo else self.run_dir / "artifact-repo"
        self.python = python
        self.on_event = on_event or (lambda _kind, _name, _res: None)
        meta = workflow.get("metadata") or {}
        self.name = meta.get("name") or f"{meta.get('generateName', 'workflow-')}{secrets.token_hex(3)}"
        self.uid = str(meta.get("uid") or uuid.uuid4())  # `{{workflow.uid}}`, as Argo gives each run
        self.created = datetime.now(UTC)
        self.params = {
            p["name"]: str(p.get("value", ""))
            for p in (self.spec.get("arguments") or {}).get("parameters", [])
        }
        for key, value in (parameters or {}).items():
            if key not in self.params:
                raise ConfigError(f"workflow has no parameter {key!r} (has {sorted(self.params)})")
            self.params[key] = value
        self.tasks: dict[str, TaskResult] = {}
        self.status = "Running"
        self._children: list[StepProcess] = []  # the running steps (several: parallelism)
        self.parallelism = max(1, int(self.spec.get("parallelism") or 1))
        self._stop: str | None = None
        self._stop_at: float | None = None  # monotonic time the current child was asked to stop
        self._exiting = False  # running the exit handler: signals are noted, the handler runs on
        self._late_signal: str | None = None  # a signal that arrived while the exit handler ran

    # substitution -------------------------------------------------------------------------------
    def _lookup(self, expr: str, inputs: dict[str, str] | None) -> str:
        parts = expr.split(".")
        if parts[:2] == ["workflow", "parameters"] and len(parts) == 3 and parts[2] in self.params:
            return self.params[parts[2]]
        if expr == "workflow.name":
            return self.name
        if expr == "workflow.uid":
            return self.uid
        if expr == "workflow.status":
            return self.status
        if parts[:2] == ["workflow", "creationTimestamp"] and len(parts) == 3:
            return self.created.strftime(f"%{parts[2]}")
        if parts[0] == "tasks" and len(parts) >= 4 and parts[1] in self.tasks:
            task = self.tasks[parts[1]]
            if parts[2:4] == ["outputs", "parameters"] and len(parts) == 5 and parts[4] in task.parameters:
                return task.parameters[parts[4]]
            if parts[2:] == ["outputs", "result"]:
                return task.result
        if (
            inputs is not None
            and parts[:2] == ["inputs", "parameters"]
            and len(parts) == 3
            and parts[2] in inputs
        ):
            return inputs[parts[2]]
        raise ConfigError(f"cannot resolve {{{{{expr}}}}}: no such parameter or task output at this point")

    def subst(self, text: str, inputs: dict[str, str] | None = None) -> str:
        return _EXPR.sub(lambda m: self._lookup(m.group(1), inputs), text)

    # artifacts --------------------------------------------------------------------------------------
    def _artifact_source(self, spec: dict[str, Any]) -> Path | None:
        if "from" in spec:
            m = re.fullmatch(r"{{\s*tasks\.([^.]+)\.outputs\.artifacts\.([^.}\s]+)\s*}}", spec["from"])
            if not m or m.group(1) not in self.tasks or m.group(2) not in self.tasks[m.group(1)].artifacts:
                raise ConfigError(f"cannot resolve artifact {spec['from']}")
            return self.tasks[m.group(1)].artifacts[m.group(2)]
        if "s3" in spec:
            return self.artifact_repo / self.subst(spec["s3"]["key"])
        return None

    # running --------------------------------------------------------------------------------------
    def run(self) -> str:
        """Run the entrypoint, then the exit handler. Returns the final status or raises.

        SIGINT, SIGTERM and SIGHUP (a closed terminal) stop the run the same way: the running step
        is asked to stop, and the exit handler tears down what was started."""
        old = {sig: signal.signal(sig, self._signal) for sig in STOP_SIGNALS}
        error: BaseException | None = None
        try:
            try:
                self._run_template(self.spec["entrypoint"], "", {}, {})
                self.status = "Succeeded"
            except BaseException as exc:
                self.status = "Failed"
                error = exc
            exit_tpl = self.spec.get("onExit")
            if exit_tpl:
                # The exit handler must run to the end: from here on SIGINT is ignored (its children
                # inherit that) and SIGTERM / SIGHUP are only noted, never passed on to the cleanup step.
                self._exiting = True
                self._stop = None
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    self._run_template(exit_tpl, "exit-handler", {}, {})
                except BaseException as exc:
                    error = error or exc
            if error is None and self._late_signal:
                error = Interrupted(f"interrupted by {self._late_signal} during the exit handler")
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if error is not None:
            raise error
        return self.status

    def _signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._exiting:
            self._late_signal = self._late_signal or name
            return
        first = self._stop is None
        self._stop = self._stop or name
        if first:
            self._interrupt_child()

    def _interrupt_child(self) -> None:
        """Ask the running steps to stop: SIGINT to their process groups, so a Python step unwinds
        (KeyboardInterrupt: its `finally` blocks stop the load tester and servers it started).
        `_wait_children` escalates to SIGKILL if one is still there after STOP_GRACE_S."""
        live = [c for c in self._children if c.poll() is None]
        if not live or self._stop_at is not None:
            return
        self._stop_at = time.monotonic()
        for child in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGINT)

    def _wait_children(self, children: list[StepProcess]) -> list[int]:
        """Wait for every child (started from this thread, which the kernel watches for them); their
        exit codes in order."""
        codes: list[int | None] = [None] * len(children)
        while True:
            for i, child in enumerate(children):
                if codes[i] is None:
                    codes[i] = child.poll()
            if all(c is not None for c in codes):
                return [int(c) for c in codes if c is not None]
            time.sleep(0.05)
            if self._stop and self._stop_at is None:
                self._interrupt_child()  # the signal came while the child was being started
            if self._stop_at is not None and time.monotonic() - self._stop_at > STOP_GRACE_S:
                for i, child in enumerate(children):
                    if codes[i] is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(child.pid, signal.SIGKILL)
                        codes[i] = child.wait()

    def _run_template(
        self, name: str, task_name: str, params: dict[str, str], artifacts: dict[str, Path]
    ) -> TaskResult:
        if name not in self.templates:
            raise ConfigError(f"workflow has no template {name!r}")
        tpl = self.templates[name]
        if "dag" in tpl:
            self._run_dag(tpl["dag"])
            return TaskResult(task_name, name, "Succeeded", self.run_dir)
        if "script" in tpl:
            return self._run_script(tpl, task_name or name, params, artifacts)
        raise ConfigError(f"template {name!r}: only dag and script templates run locally")

    def _task_inputs(self, task: dict[str, Any]) -> tuple[dict[str, str], dict[str, Path]]:
        args = task.get("arguments") or {}
        params = {p["name"]: self.subst(str(p.get("value", ""))) for p in args.get("parameters", [])}
        arts: dict[str, Path] = {}
        for a in args.get("artifacts", []):
            src = self._artifact_source(a)
            if src is not None:
                arts[a["name"]] = src
        return params, arts

    def _run_dag(self, dag: dict[str, Any]) -> None:
        """The DAG's tasks in order; with the workflow's `parallelism` > 1, up to that many ready
        script tasks at once (as Argo would: a stage's N load generators side by side)."""
        pending = list(dag.get("tasks", []))
        while pending:
            if self._stop:
                raise Interrupted(f"interrupted by {self._stop}")
            ready = [t for t in pending if all(d in self.tasks for d in parse_depends(t.get("depends")))]
            if not ready:
                raise ConfigError(
                    f"DAG cannot progress: tasks {[t['name'] for t in pending]} wait on missing tasks"
                )
            batch = [ready[0]]
            if self.parallelism > 1:
                batch += [t for t in ready[1:] if "script" in self.templates.get(t["template"], {})][
                    : self.parallelism - 1
                ]
                if "script" not in self.templates.get(ready[0]["template"], {}):
                    batch = [ready[0]]
            for task in batch:
                pending.remove(task)
            if len(batch) == 1:
                task = batch[0]
                params, arts = self._task_inputs(task)
                self.on_event("start", task["name"], None)
                result = self._run_template(task["template"], task["name"], params, arts)
                self.tasks[task["name"]] = result
                self.on_event("done", task["name"], result)
                continue
            self._run_parallel(batch)

    def _run_parallel(self, batch: list[dict[str, Any]]) -> None:
        """Script tasks side by side: all started from this thread, waited for together; the first
        failure (in DAG order) is raised once every one has ended."""
        started = []
        for task in batch:
            params, arts = self._task_inputs(task)
            self.on_event("start", task["name"], None)
            tpl = self.templates[task["template"]]
            started.append(self._start_script(tpl, task["name"], params, arts))
        try:
            codes = self._wait_children([p.child for p in started])
        finally:
            self._children = []
            self._stop_at = None
        error: BaseException | None = None
        for task, pend, rc in zip(batch, started, codes, strict=True):
            try:
                result = self._finish_script(pend, rc)
            except BaseException as exc:
                error = error or exc
                continue
            self.tasks[task["name"]] = result
            self.on_event("done", task["name"], result)
        if error is not None:
            raise error

    def _inputs(self, tpl: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
        return template_inputs(tpl, params)

    def _run_script(
        self, tpl: dict[str, Any], task: str, params: dict[str, str], artifacts: dict[str, Path]
    ) -> TaskResult:
        pend = self._start_script(tpl, task, params, artifacts)
        try:
            rc = self._wait_children([pend.child])[0]
        finally:
            self._children = []
            self._stop_at = None
        return self._finish_script(pend, rc)

    def _start_script(
        self, tpl: dict[str, Any], task: str, params: dict[str, str], artifacts: dict[str, Path]
    ) -> _Started:
        task_dir = self.run_dir / "tasks" / task
        if task_dir.exists():
            shutil.rmtree(task_dir)
        task_dir.mkdir(parents=True)
        inputs = self._inputs(tpl, params)
        lay_out_artifacts(tpl, task, task_dir, artifacts, self._artifact_source)
        started = time.monotonic()
        child = start_step(tpl["script"], inputs, task_dir, self.python, self.subst)
        self._children.append(child)
        return _Started(tpl, task, task_dir, child, started)

    def _finish_script(self, pend: _Started, rc: int) -> TaskResult:
        tpl, task, task_dir, started = pend.tpl, pend.task, pend.task_dir, pend.started
        result = TaskResult(
            task,
            tpl["name"],
            "Succeeded" if rc == 0 else "Failed",
            task_dir,
            result=(task_dir / "stdout.log").read_text(errors="replace").strip(),
            seconds=time.monotonic() - started,
        )
        keep_artifacts(tpl, task_dir, result, self.artifact_repo, self.subst)
        if rc != 0:
            self.tasks[task] = result
            if self._stop:
                raise Interrupted(f"interrupted by {self._stop} during {task}")
            error_file = map_path(f"{ARTIFACT_ROOT}/{ERROR_FILE}", task_dir)
            raise StepFailed(step_error(task, rc, error_file, task_dir / "stderr.log"))
        result.parameters.update(output_parameters(tpl, task, task_dir))
        return result
