"""One script task of a compiled workflow on this machine (pipelines/local_runner.py walks the DAG):
its folder, its inputs laid out as Argo would (parameters, artifacts passed with `from`, S3 keys,
inline `raw` data), its step process started, its outputs read back, and the one line a failed step
is reported with.

Paths: everything a template reads or writes under /tmp/orchbench or /tmp/hera-outputs is mapped to
the task's own folder `RUN_DIR/tasks/<task>/`, so runs never collide."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchbench.core.errors import ConfigError, OrchbenchError
from orchbench.core.parentdeath import die_with_parent
from orchbench.fsio import write_text
from pipelines import warm_start
from steps.common import ARTIFACT_ROOT

HERA_OUTPUTS = "/tmp/hera-outputs"
#: `{{...}}` substituted with a template's inputs (LocalRunner.subst).
Subst = Callable[[str, dict[str, str] | None], str]
#: A running step: its own interpreter, or forked warm (pipelines/warm_start.py); pid, poll, wait.
StepProcess = subprocess.Popen[bytes] | warm_start.WarmStep


class StepFailed(OrchbenchError):
    """A task of the workflow failed; the message is the step's own one-line error."""


@dataclass
class TaskResult:
    name: str
    template: str
    phase: str  # Succeeded | Failed
    dir: Path
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    result: str = ""
    seconds: float = 0.0


def map_path(path: str, task_dir: Path) -> Path:
    """Where a template's path under ARTIFACT_ROOT or HERA_OUTPUTS is in the task's folder."""
    for prefix, sub in ((ARTIFACT_ROOT, "fs"), (HERA_OUTPUTS, "hera-outputs")):
        if path == prefix or path.startswith(prefix + "/"):
            return task_dir / sub / path[len(prefix) :].lstrip("/")
    raise ConfigError(
        f"artifact path {path} is outside {ARTIFACT_ROOT} and {HERA_OUTPUTS}: cannot map it locally"
    )


def template_inputs(tpl: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
    """The template's input parameters: the task's arguments, else their defaults (or values)."""
    values: dict[str, str] = {}
    for p in (tpl.get("inputs") or {}).get("parameters", []):
        if p["name"] in params:
            values[p["name"]] = params[p["name"]]
        elif "default" in p:
            values[p["name"]] = str(p["default"])
        elif "value" in p:
            values[p["name"]] = str(p["value"])
        else:
            raise ConfigError(f"template {tpl['name']}: input parameter {p['name']!r} has no value")
    extra = set(params) - set(values)
    if extra:
        raise ConfigError(f"template {tpl['name']}: unknown arguments {sorted(extra)}")
    return values


def lay_out_artifacts(
    tpl: dict[str, Any],
    task: str,
    task_dir: Path,
    artifacts: dict[str, Path],
    source_of: Callable[[dict[str, Any]], Path | None],
) -> None:
    """Copy each input artifact where the template reads it: the task's argument, inline `raw` data,
    or what `source_of` finds for its S3 key; an optional one that was not produced is left out."""
    for a in (tpl.get("inputs") or {}).get("artifacts", []):
        dest = map_path(a["path"], task_dir)
        src = artifacts.get(a["name"])
        if src is None and "raw" in a:  # inline data, as Argo writes it: the file's text is raw.data
            write_text(dest, str(a["raw"].get("data", "")))
            continue
        if src is None and "s3" in a:
            src = source_of(a)
        if src is None or not src.exists():
            if a.get("optional"):
                continue
            raise ConfigError(f"task {task}: input artifact {a['name']!r} was not produced")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)


def start_step(
    script: dict[str, Any], inputs: dict[str, str], task_dir: Path, python: str, subst: Subst
) -> StepProcess:
    """The script template's command and args on its source file, in the task's folder and its own
    process group, output into stdout.log / stderr.log; it gets SIGTERM if this runner dies. Hera's
    runner on this interpreter is forked warm (pipelines/warm_start.py), anything else exec'd."""
    source = (
        subst(script.get("source", ""), inputs)
        if script.get("source") != "{{inputs.parameters}}"
        else json.dumps([{"name": k, "value": v} for k, v in inputs.items()])
    )
    source_file = task_dir / "source"
    # Plain write, not fsio: a temporary input only the child started below reads, at once.
    source_file.write_text(source)
    env = dict(os.environ)  # steps import the installed orchbench, as in the steps image
    for e in script.get("env", []):
        value = subst(str(e.get("value", "")), inputs)
        env[e["name"]] = (
            str(map_path(value, task_dir)) if value.startswith((ARTIFACT_ROOT, HERA_OUTPUTS)) else value
        )
    env.setdefault("hera__outputs_directory", str(map_path(HERA_OUTPUTS, task_dir)))
    env["ORCHBENCH_ARTIFACT_ROOT"] = str(map_path(ARTIFACT_ROOT, task_dir))
    command = [subst(c, inputs) for c in script.get("command", ["python"])]
    if command and command[0] in ("python", "python3"):
        command[0] = python
    args = [subst(a, inputs) for a in script.get("args", [])]
    if warm_start.eligible(command, args, python):
        return warm_start.start(
            args[-1],
            str(source_file),
            str(task_dir),
            env,
            str(task_dir / "stdout.log"),
            str(task_dir / "stderr.log"),
        )
    with open(task_dir / "stdout.log", "wb") as out, open(task_dir / "stderr.log", "wb") as err:
        return subprocess.Popen(
            [*command, *args, str(source_file)],
            cwd=task_dir,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
            # SIGTERM to the step if this runner dies (SIGKILL included); steps are started
            # from the thread that waits for them, the one the kernel watches
            preexec_fn=die_with_parent(),
        )


def keep_artifacts(
    tpl: dict[str, Any], task_dir: Path, result: TaskResult, artifact_repo: Path, subst: Subst
) -> None:
    """The output artifacts the step wrote, in `result.artifacts` (and copied to the artifact
    repository under their S3 keys)."""
    for a in (tpl.get("outputs") or {}).get("artifacts", []):
        path = map_path(a["path"], task_dir)
        if path.exists():
            result.artifacts[a["name"]] = path
            if "s3" in a:
                dest = artifact_repo / subst(a["s3"]["key"], None)
                shutil.copytree(path, dest, dirs_exist_ok=True) if path.is_dir() else shutil.copy2(path, dest)


def output_parameters(tpl: dict[str, Any], task: str, task_dir: Path) -> dict[str, str]:
    """The output parameters (`valueFrom.path`) the step wrote; StepFailed for one it did not."""
    out: dict[str, str] = {}
    for p in (tpl.get("outputs") or {}).get("parameters", []):
        vf = p.get("valueFrom") or {}
        if "path" not in vf:
            continue
        path = map_path(vf["path"], task_dir)
        if not path.exists():
            raise StepFailed(f"step {task} did not write its output parameter {p['name']!r}")
        out[p["name"]] = path.read_text()
    return out


def step_error(task: str, rc: int, error_file: Path, stderr: Path) -> str:
    """StepFailed's message: the error the step recorded in `error_file` (steps.common.record_error),
    else, for a step that died without recording one (killed, or failed outside the step wrapper),
    how it ended and the last line of its stderr."""
    try:
        record = json.loads(error_file.read_text())
        message = str(record["message"])
        if record.get("unexpected"):
            message = f"{record['error']}: {message}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    else:
        return f"step {task} failed (exit {rc}): {message}"
    if rc < 0:
        try:
            how = f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            how = f"was killed by signal {-rc}"
    else:
        how = f"failed (exit {rc})"
    return f"step {task} {how} without recording an error; last stderr line: {_last_line(stderr)}"


def _last_line(stderr: Path) -> str:
    try:
        lines = [line.strip() for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no stderr)"
    return lines[-1] if lines else "(empty)"
